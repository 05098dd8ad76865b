"""Residue constants for the 20 standard amino acids (AlphaFold2 / OpenFold conventions).

Facts transcribed from the published AF2 residue constants (Jumper et al. 2021,
supplement section 1.8 "Frames and torsion angles"; ``rigid_group_atom_positions``):
atom37 and atom14 layouts, chi-angle atoms, pi-periodic chis, and the ideal local
position of every heavy atom in the rigid group that places it. Literature lengths
are in Angstrom; they are converted once, here, to nanometres (the package unit).

Rigid groups (index: name, the torsion that rotates it, the atom at its origin):

    0 backbone  (none)   CA      4 chi1  chi1  CB (axis CA->CB)
    1 pre-omega omega    CA      5 chi2  chi2  axis end of chi2
    2 phi       phi      N       6 chi3  chi3  axis end of chi3
    3 psi       psi      C       7 chi4  chi4  axis end of chi4

Every group frame has its x axis along its rotation axis; rotated by its torsion, it has
the torsion's far atom (C(i-1) for phi, O for psi, the fourth chi atom for chi_k) in its
xy plane with positive y. The default frames (zero torsion, relative to the parent group)
are derived from the positions below as AF2 does, by
``internal.default_frames_from_local_positions`` (shared with per-structure geometry).

Tables are torch tensors indexed by ``restype`` (order ``RESTYPES``, index
``UNKNOWN_RESTYPE`` = 20 is an all-masked unknown residue) so they can be gathered
with an ``aatype`` tensor:

    ``restype_atom14_mask``                [21, 14]       float32, 1 where the slot exists
    ``restype_atom14_local_positions``     [21, 14, 3]    float32, nm, in the placing group
    ``group_of_atom14``                    [21, 14]       int64, rigid group placing the atom
    ``attached_group_of_atom14``           [21, 14]       int64, group carrying atoms bonded
                                                          to it that are not modelled (H, OXT)
    ``restype_rigid_group_default_frame``  [21, 8, 4, 4]  float32, group -> parent (nm)
    ``chi_angles_atom14``                  [21, 4, 4]     int64, atom14 slots of chi1..chi4
    ``chi_angles_mask``                    [21, 4]        float32
    ``chi_pi_periodic``                    [21, 4]        float32
    ``restype_atom14_to_atom37``           [21, 14]       int64 (0 where the slot is empty)
    ``restype_atom37_to_atom14``           [21, 37]       int64 (0 where the atom is absent)
    ``restype_atom37_mask``                [21, 37]       float32
    ``restype_atom14_swap``                [21, 14]       int64, permutation swapping the
                                                          symmetric atoms (ASP, GLU, PHE, TYR)
    ``restype_atom14_vdw_radius_nm``       [21, 14]       float32

Residue names from force fields (Amber, CHARMM, GROMACS) map to their parent type with
:func:`parent_residue_name`; caps (ACE, NME, NH2) and non-protein residues are not
modelled (:func:`is_modelled_residue`).
"""
from __future__ import annotations

import numpy as np
import torch

from openmm_starmd.geometry.internal import default_frames_from_local_positions
from openmm_starmd.units import NM_PER_ANGSTROM

# ---------------------------------------------------------------------------------------
# Residue types
# ---------------------------------------------------------------------------------------
RESTYPES = "ARNDCQEGHILKMFPSTWYV"
NUM_RESTYPES = 20
UNKNOWN_RESTYPE = 20  # index of the all-masked "UNK" row of every table
NUM_RESTYPES_WITH_UNKNOWN = 21

RESTYPE_1TO3 = {
    "A": "ALA", "R": "ARG", "N": "ASN", "D": "ASP", "C": "CYS", "Q": "GLN", "E": "GLU",
    "G": "GLY", "H": "HIS", "I": "ILE", "L": "LEU", "K": "LYS", "M": "MET", "F": "PHE",
    "P": "PRO", "S": "SER", "T": "THR", "W": "TRP", "Y": "TYR", "V": "VAL",
}
RESTYPE_3TO1 = {three: one for one, three in RESTYPE_1TO3.items()}
RESIDUE_NAMES = tuple(RESTYPE_1TO3[r] for r in RESTYPES) + ("UNK",)  # index -> 3-letter name
ALA_INDEX = RESTYPES.index("A")
GLY_INDEX = RESTYPES.index("G")
PRO_INDEX = RESTYPES.index("P")

# ---------------------------------------------------------------------------------------
# Atom layouts
# ---------------------------------------------------------------------------------------
ATOM37_NAMES = (
    "N", "CA", "C", "CB", "O", "CG", "CG1", "CG2", "OG", "OG1", "SG", "CD", "CD1", "CD2",
    "ND1", "ND2", "OD1", "OD2", "SD", "CE", "CE1", "CE2", "CE3", "NE", "NE1", "NE2", "OE1",
    "OE2", "CH2", "NH1", "NH2", "OH", "CZ", "CZ2", "CZ3", "NZ", "OXT",
)
ATOM37_ORDER = {name: i for i, name in enumerate(ATOM37_NAMES)}
NUM_ATOM37 = 37
NUM_ATOM14 = 14
# atom14 slots shared by every residue type
ATOM14_N, ATOM14_CA, ATOM14_C, ATOM14_O, ATOM14_CB = 0, 1, 2, 3, 4

# Heavy atoms of each residue in atom14 order (slots beyond the list are empty).
_ATOM14_TEXT = """
ALA N CA C O CB
ARG N CA C O CB CG CD NE CZ NH1 NH2
ASN N CA C O CB CG OD1 ND2
ASP N CA C O CB CG OD1 OD2
CYS N CA C O CB SG
GLN N CA C O CB CG CD OE1 NE2
GLU N CA C O CB CG CD OE1 OE2
GLY N CA C O
HIS N CA C O CB CG ND1 CD2 CE1 NE2
ILE N CA C O CB CG1 CG2 CD1
LEU N CA C O CB CG CD1 CD2
LYS N CA C O CB CG CD CE NZ
MET N CA C O CB CG SD CE
PHE N CA C O CB CG CD1 CD2 CE1 CE2 CZ
PRO N CA C O CB CG CD
SER N CA C O CB OG
THR N CA C O CB OG1 CG2
TRP N CA C O CB CG CD1 CD2 NE1 CE2 CE3 CZ2 CZ3 CH2
TYR N CA C O CB CG CD1 CD2 CE1 CE2 CZ OH
VAL N CA C O CB CG1 CG2
"""
ATOM14_NAMES: dict[str, tuple[str, ...]] = {
    fields[0]: tuple(fields[1:]) + ("",) * (NUM_ATOM14 + 1 - len(fields))
    for fields in (line.split() for line in _ATOM14_TEXT.strip().splitlines())
}
ATOM14_NAMES["UNK"] = ("",) * NUM_ATOM14

# ---------------------------------------------------------------------------------------
# Torsions and rigid groups
# ---------------------------------------------------------------------------------------
NUM_RIGID_GROUPS = 8
RIGID_GROUP_NAMES = ("backbone", "pre_omega", "phi", "psi", "chi1", "chi2", "chi3", "chi4")
NUM_TORSIONS = 7
TORSION_NAMES = ("omega", "phi", "psi", "chi1", "chi2", "chi3", "chi4")

# The four atoms of chi1..chi4 (ARG chi5 is planar, +-5 degrees, and not modelled).
_CHI_TEXT = """
ARG N CA CB CG | CA CB CG CD | CB CG CD NE | CG CD NE CZ
ASN N CA CB CG | CA CB CG OD1
ASP N CA CB CG | CA CB CG OD1
CYS N CA CB SG
GLN N CA CB CG | CA CB CG CD | CB CG CD OE1
GLU N CA CB CG | CA CB CG CD | CB CG CD OE1
HIS N CA CB CG | CA CB CG ND1
ILE N CA CB CG1 | CA CB CG1 CD1
LEU N CA CB CG | CA CB CG CD1
LYS N CA CB CG | CA CB CG CD | CB CG CD CE | CG CD CE NZ
MET N CA CB CG | CA CB CG SD | CB CG SD CE
PHE N CA CB CG | CA CB CG CD1
PRO N CA CB CG | CA CB CG CD
SER N CA CB OG
THR N CA CB OG1
TRP N CA CB CG | CA CB CG CD1
TYR N CA CB CG | CA CB CG CD1
VAL N CA CB CG1
"""
CHI_ANGLE_ATOMS: dict[str, tuple[tuple[str, str, str, str], ...]] = {name: () for name in RESIDUE_NAMES}
for _line in _CHI_TEXT.strip().splitlines():
    _name, _rest = _line.split(maxsplit=1)
    CHI_ANGLE_ATOMS[_name] = tuple(tuple(chi.split()) for chi in _rest.split("|"))  # type: ignore[misc]

# Chis whose rotation by pi gives the same structure (symmetric terminal groups), 1-based.
CHI_PI_PERIODIC: dict[str, tuple[int, ...]] = {"ASP": (2,), "GLU": (3,), "PHE": (2,), "TYR": (2,)}

# Symmetric atom pairs whose names are ambiguous (AF2 renaming swaps).
AMBIGUOUS_ATOM_SWAPS: dict[str, dict[str, str]] = {
    "ASP": {"OD1": "OD2"},
    "GLU": {"OE1": "OE2"},
    "PHE": {"CD1": "CD2", "CE1": "CE2"},
    "TYR": {"CD1": "CD2", "CE1": "CE2"},
}

# Ideal heavy-atom positions (Angstrom) in the frame of the rigid group that places them:
# residue, atom, group index, x, y, z. Backbone group: origin CA, x towards C, N in the
# xy plane. Values as published with AF2 (PRO CD with the CB-CG-CD angle widened by 2 deg,
# as AF2 ships it).
_RIGID_GROUP_POSITIONS_ANGSTROM_TEXT = """
ALA N 0 -0.525 1.363 0.000 | CA 0 0.000 0.000 0.000 | C 0 1.526 -0.000 -0.000 | CB 0 -0.529 -0.774 -1.205 | O 3 0.627 1.062 0.000
ARG N 0 -0.524 1.362 -0.000 | CA 0 0.000 0.000 0.000 | C 0 1.525 -0.000 -0.000 | CB 0 -0.524 -0.778 -1.209 | O 3 0.626 1.062 0.000 | CG 4 0.616 1.390 -0.000 | CD 5 0.564 1.414 0.000 | NE 6 0.539 1.357 -0.000 | NH1 7 0.206 2.301 0.000 | NH2 7 2.078 0.978 -0.000 | CZ 7 0.758 1.093 -0.000
ASN N 0 -0.536 1.357 0.000 | CA 0 0.000 0.000 0.000 | C 0 1.526 -0.000 -0.000 | CB 0 -0.531 -0.787 -1.200 | O 3 0.625 1.062 0.000 | CG 4 0.584 1.399 0.000 | ND2 5 0.593 -1.188 0.001 | OD1 5 0.633 1.059 0.000
ASP N 0 -0.525 1.362 -0.000 | CA 0 0.000 0.000 0.000 | C 0 1.527 0.000 -0.000 | CB 0 -0.526 -0.778 -1.208 | O 3 0.626 1.062 -0.000 | CG 4 0.593 1.398 -0.000 | OD1 5 0.610 1.091 0.000 | OD2 5 0.592 -1.101 -0.003
CYS N 0 -0.522 1.362 -0.000 | CA 0 0.000 0.000 0.000 | C 0 1.524 0.000 0.000 | CB 0 -0.519 -0.773 -1.212 | O 3 0.625 1.062 -0.000 | SG 4 0.728 1.653 0.000
GLN N 0 -0.526 1.361 -0.000 | CA 0 0.000 0.000 0.000 | C 0 1.526 0.000 0.000 | CB 0 -0.525 -0.779 -1.207 | O 3 0.626 1.062 -0.000 | CG 4 0.615 1.393 0.000 | CD 5 0.587 1.399 -0.000 | NE2 6 0.593 -1.189 -0.001 | OE1 6 0.634 1.060 0.000
GLU N 0 -0.528 1.361 0.000 | CA 0 0.000 0.000 0.000 | C 0 1.526 -0.000 -0.000 | CB 0 -0.526 -0.781 -1.207 | O 3 0.626 1.062 0.000 | CG 4 0.615 1.392 0.000 | CD 5 0.600 1.397 0.000 | OE1 6 0.607 1.095 -0.000 | OE2 6 0.589 -1.104 -0.001
GLY N 0 -0.572 1.337 0.000 | CA 0 0.000 0.000 0.000 | C 0 1.517 -0.000 -0.000 | O 3 0.626 1.062 -0.000
HIS N 0 -0.527 1.360 0.000 | CA 0 0.000 0.000 0.000 | C 0 1.525 0.000 0.000 | CB 0 -0.525 -0.778 -1.208 | O 3 0.625 1.063 0.000 | CG 4 0.600 1.370 -0.000 | CD2 5 0.889 -1.021 0.003 | ND1 5 0.744 1.160 -0.000 | CE1 5 2.030 0.851 0.002 | NE2 5 2.145 -0.466 0.004
ILE N 0 -0.493 1.373 -0.000 | CA 0 0.000 0.000 0.000 | C 0 1.527 -0.000 -0.000 | CB 0 -0.536 -0.793 -1.213 | O 3 0.627 1.062 -0.000 | CG1 4 0.534 1.437 -0.000 | CG2 4 0.540 -0.785 -1.199 | CD1 5 0.619 1.391 0.000
LEU N 0 -0.520 1.363 0.000 | CA 0 0.000 0.000 0.000 | C 0 1.525 -0.000 -0.000 | CB 0 -0.522 -0.773 -1.214 | O 3 0.625 1.063 -0.000 | CG 4 0.678 1.371 0.000 | CD1 5 0.530 1.430 -0.000 | CD2 5 0.535 -0.774 1.200
LYS N 0 -0.526 1.362 -0.000 | CA 0 0.000 0.000 0.000 | C 0 1.526 0.000 0.000 | CB 0 -0.524 -0.778 -1.208 | O 3 0.626 1.062 -0.000 | CG 4 0.619 1.390 0.000 | CD 5 0.559 1.417 0.000 | CE 6 0.560 1.416 0.000 | NZ 7 0.554 1.387 0.000
MET N 0 -0.521 1.364 -0.000 | CA 0 0.000 0.000 0.000 | C 0 1.525 0.000 0.000 | CB 0 -0.523 -0.776 -1.210 | O 3 0.625 1.062 -0.000 | CG 4 0.613 1.391 -0.000 | SD 5 0.703 1.695 0.000 | CE 6 0.320 1.786 -0.000
PHE N 0 -0.518 1.363 0.000 | CA 0 0.000 0.000 0.000 | C 0 1.524 0.000 -0.000 | CB 0 -0.525 -0.776 -1.212 | O 3 0.626 1.062 -0.000 | CG 4 0.607 1.377 0.000 | CD1 5 0.709 1.195 -0.000 | CD2 5 0.706 -1.196 0.000 | CE1 5 2.102 1.198 -0.000 | CE2 5 2.098 -1.201 -0.000 | CZ 5 2.794 -0.003 -0.001
PRO N 0 -0.566 1.351 -0.000 | CA 0 0.000 0.000 0.000 | C 0 1.527 -0.000 0.000 | CB 0 -0.546 -0.611 -1.293 | O 3 0.621 1.066 0.000 | CG 4 0.382 1.445 0.0 | CD 5 0.477 1.424 0.0
SER N 0 -0.529 1.360 -0.000 | CA 0 0.000 0.000 0.000 | C 0 1.525 -0.000 -0.000 | CB 0 -0.518 -0.777 -1.211 | O 3 0.626 1.062 -0.000 | OG 4 0.503 1.325 0.000
THR N 0 -0.517 1.364 0.000 | CA 0 0.000 0.000 0.000 | C 0 1.526 0.000 -0.000 | CB 0 -0.516 -0.793 -1.215 | O 3 0.626 1.062 0.000 | CG2 4 0.550 -0.718 -1.228 | OG1 4 0.472 1.353 0.000
TRP N 0 -0.521 1.363 0.000 | CA 0 0.000 0.000 0.000 | C 0 1.525 -0.000 0.000 | CB 0 -0.523 -0.776 -1.212 | O 3 0.627 1.062 0.000 | CG 4 0.609 1.370 -0.000 | CD1 5 0.824 1.091 0.000 | CD2 5 0.854 -1.148 -0.005 | CE2 5 2.186 -0.678 -0.007 | CE3 5 0.622 -2.530 -0.007 | NE1 5 2.140 0.690 -0.004 | CH2 5 3.028 -2.890 -0.013 | CZ2 5 3.283 -1.543 -0.011 | CZ3 5 1.715 -3.389 -0.011
TYR N 0 -0.522 1.362 0.000 | CA 0 0.000 0.000 0.000 | C 0 1.524 -0.000 -0.000 | CB 0 -0.522 -0.776 -1.213 | O 3 0.627 1.062 -0.000 | CG 4 0.607 1.382 -0.000 | CD1 5 0.716 1.195 -0.000 | CD2 5 0.713 -1.194 -0.001 | CE1 5 2.107 1.200 -0.002 | CE2 5 2.104 -1.201 -0.003 | OH 5 4.168 -0.002 -0.005 | CZ 5 2.791 -0.001 -0.003
VAL N 0 -0.494 1.373 -0.000 | CA 0 0.000 0.000 0.000 | C 0 1.527 -0.000 -0.000 | CB 0 -0.533 -0.795 -1.213 | O 3 0.627 1.062 -0.000 | CG1 4 0.540 1.429 -0.000 | CG2 4 0.533 -0.776 1.203
"""


def _parse_rigid_group_positions() -> dict[str, dict[str, tuple[int, tuple[float, float, float]]]]:
    """Residue -> atom -> (group, local position in nm)."""
    table: dict[str, dict[str, tuple[int, tuple[float, float, float]]]] = {}
    for line in _RIGID_GROUP_POSITIONS_ANGSTROM_TEXT.strip().splitlines():
        resname, rest = line.split(maxsplit=1)
        atoms = {}
        for entry in rest.split("|"):
            atom, group, x, y, z = entry.split()
            xyz = tuple(float(v) * NM_PER_ANGSTROM for v in (x, y, z))
            atoms[atom] = (int(group), xyz)
        table[resname] = atoms  # type: ignore[assignment]
    return table


# residue -> atom -> (rigid group index, local position [nm])
RIGID_GROUP_ATOM_POSITIONS = _parse_rigid_group_positions()

# Van der Waals radii by element (Bondi values as used by AF2), nm.
VAN_DER_WAALS_RADIUS_NM = {
    element: radius_angstrom * NM_PER_ANGSTROM
    for element, radius_angstrom in {"C": 1.7, "N": 1.55, "O": 1.52, "S": 1.8}.items()
}

# The ideal CB of the backbone frame (ALA), nm; used for pseudo-CB of every residue type.
IDEAL_CB_LOCAL_NM = RIGID_GROUP_ATOM_POSITIONS["ALA"]["CB"][1]

# ---------------------------------------------------------------------------------------
# Force-field residue and atom names
# ---------------------------------------------------------------------------------------
RESIDUE_NAME_ALIASES = {
    # histidine protonation states: Amber, CHARMM, GROMACS
    "HID": "HIS", "HIE": "HIS", "HIP": "HIS", "HSD": "HIS", "HSE": "HIS", "HSP": "HIS",
    "HISA": "HIS", "HISB": "HIS", "HISD": "HIS", "HISE": "HIS", "HISH": "HIS",
    # cysteine: disulfide-bonded, deprotonated, GROMACS names
    "CYX": "CYS", "CYM": "CYS", "CYS2": "CYS", "CYSH": "CYS",
    # protonated acids, neutral lysine
    "ASH": "ASP", "ASPH": "ASP", "GLH": "GLU", "GLUH": "GLU", "LYN": "LYS", "LYSH": "LYS", "LYSN": "LYS",
    # selenomethionine
    "MSE": "MET",
}
# Capping groups and other residues that are never modelled (reported as such).
CAP_RESIDUE_NAMES = frozenset({"ACE", "NME", "NMA", "NH2", "NHE", "FOR"})

# Atom names that differ from the PDB names used above, per parent residue ("*" = any).
ATOM_NAME_ALIASES: dict[tuple[str, str], str] = {
    ("ILE", "CD"): "CD1",  # CHARMM / GROMACS
    ("MET", "SE"): "SD",  # selenomethionine
    ("*", "OT1"): "O",  # CHARMM C terminus; OT2 is the OXT analogue (not an atom14 slot)
    ("*", "OC1"): "O",  # GROMACS C terminus
}


def parent_residue_name(residue_name: str) -> str | None:
    """Standard 3-letter parent of a force-field residue name, or None if not modelled.

    Maps protonation and bonding variants (HID/HIE/HIP/HSD/HSE/HSP -> HIS, CYX/CYM -> CYS,
    ASH -> ASP, GLH -> GLU, LYN -> LYS, MSE -> MET, GROMACS HISE/LYSH/...) and Amber
    terminal templates (NALA, CALA, ...). Caps (ACE, NME, NH2) and non-protein residues
    (water, ions, ligands) give None.
    """
    if not isinstance(residue_name, str):
        raise TypeError(f"residue_name must be a str, got {type(residue_name).__name__}")
    name = residue_name.strip().upper()
    if name in CAP_RESIDUE_NAMES:
        return None
    if name in RESTYPE_3TO1:
        return name
    if name in RESIDUE_NAME_ALIASES:
        return RESIDUE_NAME_ALIASES[name]
    if len(name) == 4 and name[0] in "NC":  # Amber terminal templates: NALA, CHIE, ...
        return parent_residue_name(name[1:])
    return None


def is_modelled_residue(residue_name: str) -> bool:
    """True for the 20 standard amino acids and their force-field variants; False for caps,
    water, ions, ligands and anything else the model does not represent."""
    return parent_residue_name(residue_name) is not None


def restype_index(residue_name: str) -> int:
    """Index 0..19 into ``RESTYPES`` for a (force-field) residue name; ``UNKNOWN_RESTYPE``
    (20) for a residue that is not modelled."""
    parent = parent_residue_name(residue_name)
    return UNKNOWN_RESTYPE if parent is None else RESTYPES.index(RESTYPE_3TO1[parent])


def atom14_index(residue_name: str, atom_name: str) -> int:
    """atom14 slot of a heavy atom, or -1 for atoms the model does not place.

    Accepts force-field residue names (see :func:`parent_residue_name`) and a few
    force-field atom names (ILE CD -> CD1, MSE SE -> SD, CHARMM OT1 -> O). Hydrogens,
    OXT and every atom of a non-modelled residue give -1.
    """
    if not isinstance(atom_name, str):
        raise TypeError(f"atom_name must be a str, got {type(atom_name).__name__}")
    parent = parent_residue_name(residue_name)
    if parent is None:
        return -1
    name = atom_name.strip().upper()
    name = ATOM_NAME_ALIASES.get((parent, name), ATOM_NAME_ALIASES.get(("*", name), name))
    names = ATOM14_NAMES[parent]
    return names.index(name) if name in names else -1


def aatype_from_sequence(sequence: str) -> torch.Tensor:
    """One-letter sequence -> restype indices ``[N]`` int64 (X and unknown letters -> 20)."""
    if not isinstance(sequence, str):
        raise TypeError(f"sequence must be a str, got {type(sequence).__name__}")
    return torch.tensor([RESTYPES.find(c) if c in RESTYPES else UNKNOWN_RESTYPE for c in sequence.upper()], dtype=torch.long)


# ---------------------------------------------------------------------------------------
# Derived index tables (torch, built once at import)
# ---------------------------------------------------------------------------------------
# Residue numbering the model sees (``residue_index``, ``chain_index``). The network embeds the
# absolute residue_index (sinusoidal single features) as well as relative offsets, so training
# data and the Generator must number residues the same way, independently of a PDB file's own
# numbering: 1, 2, 3, ... along a chain, a jump of SEGMENT_GAP and a new chain_index at every new
# chain or chain break (beyond any relative-position window).
FIRST_RESIDUE_INDEX = 1
SEGMENT_GAP = 100


def number_residues(continues) -> tuple[np.ndarray, np.ndarray]:
    """``residue_index`` and ``chain_index`` (int64 ``[N]``) for N residues in sequence order.

    ``continues[k]`` (k >= 1) says residue k is peptide-bonded to residue k - 1 of the same chain;
    ``continues[0]`` is ignored.
    """
    continues = np.asarray(continues, dtype=bool)
    residue_index = np.empty(len(continues), dtype=np.int64)
    chain_index = np.empty(len(continues), dtype=np.int64)
    for k, joined in enumerate(continues):
        if k == 0:
            residue_index[k], chain_index[k] = FIRST_RESIDUE_INDEX, 0
        elif joined:
            residue_index[k], chain_index[k] = residue_index[k - 1] + 1, chain_index[k - 1]
        else:
            residue_index[k], chain_index[k] = residue_index[k - 1] + SEGMENT_GAP, chain_index[k - 1] + 1
    return residue_index, chain_index


def _build_tables() -> dict[str, torch.Tensor]:
    n = NUM_RESTYPES_WITH_UNKNOWN
    t = {
        "atom14_mask": torch.zeros(n, NUM_ATOM14),
        "group": torch.zeros(n, NUM_ATOM14, dtype=torch.long),
        "attached_group": torch.zeros(n, NUM_ATOM14, dtype=torch.long),
        "chi_atom14": torch.zeros(n, 4, 4, dtype=torch.long),
        "chi_mask": torch.zeros(n, 4),
        "chi_pi": torch.zeros(n, 4),
        "to37": torch.zeros(n, NUM_ATOM14, dtype=torch.long),
        "to14": torch.zeros(n, NUM_ATOM37, dtype=torch.long),
        "atom37_mask": torch.zeros(n, NUM_ATOM37),
        "swap": torch.arange(NUM_ATOM14).repeat(n, 1),
        "vdw": torch.zeros(n, NUM_ATOM14),
    }
    local64 = torch.zeros(n, NUM_ATOM14, 3, dtype=torch.float64)
    for r, resname in enumerate(RESIDUE_NAMES):
        if resname == "UNK":
            continue
        names = ATOM14_NAMES[resname]
        # the group whose frame origin sits on an atom carries that atom's hydrogens
        origin_group = {"CA": 0, "N": 2, "C": 3}
        for k, chi in enumerate(CHI_ANGLE_ATOMS[resname]):
            origin_group[chi[2]] = 4 + k
            t["chi_atom14"][r, k] = torch.tensor([names.index(a) for a in chi])
            t["chi_mask"][r, k] = 1.0
        for k in CHI_PI_PERIODIC.get(resname, ()):
            t["chi_pi"][r, k - 1] = 1.0
        for atom, (group, xyz) in RIGID_GROUP_ATOM_POSITIONS[resname].items():
            slot = names.index(atom)
            t["atom14_mask"][r, slot] = 1.0
            local64[r, slot] = torch.tensor(xyz, dtype=torch.float64)
            t["group"][r, slot] = group
            t["attached_group"][r, slot] = origin_group.get(atom, group)
            t["to37"][r, slot] = ATOM37_ORDER[atom]
            t["to14"][r, ATOM37_ORDER[atom]] = slot
            t["atom37_mask"][r, ATOM37_ORDER[atom]] = 1.0
            t["vdw"][r, slot] = VAN_DER_WAALS_RADIUS_NM[atom[0]]
        for a, b in AMBIGUOUS_ATOM_SWAPS.get(resname, {}).items():
            i, j = names.index(a), names.index(b)
            t["swap"][r, i], t["swap"][r, j] = j, i
    t["atom14_local"] = local64.float()
    # default frames derived from the literature positions in float64 (AF2 supplement 1.8)
    frames = default_frames_from_local_positions(local64, t["chi_atom14"], t["chi_mask"].double())
    frames[UNKNOWN_RESTYPE] = torch.eye(4, dtype=torch.float64)
    t["default_frame"] = frames.float()
    return t


_TABLES = _build_tables()
restype_atom14_mask: torch.Tensor = _TABLES["atom14_mask"]
restype_atom14_local_positions: torch.Tensor = _TABLES["atom14_local"]
group_of_atom14: torch.Tensor = _TABLES["group"]
attached_group_of_atom14: torch.Tensor = _TABLES["attached_group"]
restype_rigid_group_default_frame: torch.Tensor = _TABLES["default_frame"]
chi_angles_atom14: torch.Tensor = _TABLES["chi_atom14"]
chi_angles_mask: torch.Tensor = _TABLES["chi_mask"]
chi_pi_periodic: torch.Tensor = _TABLES["chi_pi"]
restype_atom14_to_atom37: torch.Tensor = _TABLES["to37"]
restype_atom37_to_atom14: torch.Tensor = _TABLES["to14"]
restype_atom37_mask: torch.Tensor = _TABLES["atom37_mask"]
restype_atom14_swap: torch.Tensor = _TABLES["swap"]
restype_atom14_vdw_radius_nm: torch.Tensor = _TABLES["vdw"]
del _TABLES
