"""Residue constants and atoms <-> frames + torsions on real proteins (villin, HIV integrase, T4L).

Measured on villin (openmm/app/data/test.pdb, an MD snapshot): ideal-geometry rebuild has
heavy-atom RMSD 0.293 A, N max 0.195 A, C max 0.075 A; on the 1BHL crystal structure the
heavy-atom RMSD is 0.164 A. The gap is the force field's (and thermal) departure from the
AF2 literature geometry, not the conversion: carrying each atom's local position in its
rigid group (``atom14_to_local_positions``) reproduces every atom to float precision.
"""
import math
import os

import numpy as np
import openmm.app as app
import pytest
import torch

from openmm_starmd.geometry import all_atom as aa
from openmm_starmd.geometry import residue_constants as rc
from openmm_starmd.geometry.rigid import rigid_apply, rigid_invert_apply
from openmm_starmd.geometry.so3 import uniform_random_rotmat
from openmm_starmd.units import ANGSTROM_PER_NM, NM_PER_ANGSTROM

VILLIN = os.path.join(os.path.dirname(app.__file__), "data", "test.pdb")
# (package that ships it, path inside the package)
HIV_INTEGRASE = ("pdbfixer", ("tests", "data", "1BHL.pdb"))  # crystal structure, 2.2 A
T4_LYSOZYME = ("openmmtools", ("data", "T4-lysozyme-L99A-implicit", "receptor.pdb"))


class Protein:
    """Protein residues of a PDB file in atom14 layout (nm, float64), with the topology."""

    def __init__(self, path: str):
        pdb = app.PDBFile(path)
        positions = np.asarray(pdb.getPositions(asNumpy=True)._value)  # nm
        self.residues = [r for r in pdb.topology.residues() if rc.is_modelled_residue(r.name)]
        n = len(self.residues)
        self.positions = torch.tensor(positions, dtype=torch.float64)
        self.atom14 = torch.zeros(n, rc.NUM_ATOM14, 3, dtype=torch.float64)
        self.mask = torch.zeros(n, rc.NUM_ATOM14, dtype=torch.float64)
        self.aatype = torch.tensor([rc.restype_index(r.name) for r in self.residues])
        self.slot_of_atom = {}  # atom index -> (residue position, atom14 slot)
        for i, residue in enumerate(self.residues):
            for atom in residue.atoms():
                slot = rc.atom14_index(residue.name, atom.name)
                if slot >= 0:
                    self.atom14[i, slot] = self.positions[atom.index]
                    self.mask[i, slot] = 1.0
                    self.slot_of_atom[atom.index] = (i, slot)
        self.bonds = [(a.index, b.index) for a, b in pdb.topology.bonds()]
        self.residue_of_atom = {a.index: i for i, r in enumerate(self.residues) for a in r.atoms()}
        self.complete = (self.mask.sum(-1) == rc.restype_atom14_mask[self.aatype].sum(-1)) & (self.aatype < rc.UNKNOWN_RESTYPE)


@pytest.fixture(scope="module")
def villin() -> Protein:
    return Protein(VILLIN)


def _distances_angstrom(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).norm(dim=-1) * ANGSTROM_PER_NM


def _random_motion(seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return uniform_random_rotmat([], generator=g, dtype=dtype), torch.randn(3, generator=g, dtype=dtype)


# --------------------------------------------------------------------------- residue constants
def test_tables_are_consistent():
    assert len(rc.RESTYPES) == rc.NUM_RESTYPES == 20 and len(rc.ATOM37_NAMES) == rc.NUM_ATOM37 == 37
    for r, name in enumerate(rc.RESIDUE_NAMES[:20]):
        names = [a for a in rc.ATOM14_NAMES[name] if a]
        assert set(names) == set(rc.RIGID_GROUP_ATOM_POSITIONS[name]), name
        assert rc.restype_atom14_mask[r].sum() == len(names) == rc.restype_atom37_mask[r].sum()
        for slot, atom in enumerate(names):  # atom14 <-> atom37 tables invert each other
            assert rc.ATOM37_NAMES[rc.restype_atom14_to_atom37[r, slot]] == atom
            assert rc.restype_atom37_to_atom14[r, rc.ATOM37_ORDER[atom]] == slot
        assert rc.chi_angles_mask[r].sum() == len(rc.CHI_ANGLE_ATOMS[name])
    assert rc.restype_atom14_mask[rc.UNKNOWN_RESTYPE].sum() == 0
    # pi-periodic chis are exactly ASP chi2, GLU chi3, PHE chi2, TYR chi2
    periodic = {(rc.RESIDUE_NAMES[r], k + 1) for r, k in torch.nonzero(rc.chi_pi_periodic).tolist()}
    assert periodic == {("ASP", 2), ("GLU", 3), ("PHE", 2), ("TYR", 2)}
    rots = rc.restype_rigid_group_default_frame[..., :3, :3].double()
    torch.testing.assert_close(rots @ rots.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(rots.shape), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rots), torch.ones(rots.shape[:-2], dtype=torch.float64), atol=1e-6, rtol=0)


def test_known_ideal_geometry_in_nanometres():
    """Literature values come out in nm: C=O 1.23 A, CA-CB 1.53 A, N-CA 1.46 A."""
    ala = rc.restype_atom14_local_positions[rc.ALA_INDEX].double()
    assert rc.restype_atom14_local_positions[rc.ALA_INDEX, rc.ATOM14_C, 0].item() == pytest.approx(1.526 * NM_PER_ANGSTROM)
    assert ala[rc.ATOM14_CB].norm().item() == pytest.approx(1.53 * NM_PER_ANGSTROM, abs=0.005 * NM_PER_ANGSTROM)
    assert ala[rc.ATOM14_N].norm().item() == pytest.approx(1.46 * NM_PER_ANGSTROM, abs=0.005 * NM_PER_ANGSTROM)
    assert ala[rc.ATOM14_O].norm().item() == pytest.approx(1.233 * NM_PER_ANGSTROM, abs=0.001 * NM_PER_ANGSTROM)  # psi group: origin C
    assert rc.VAN_DER_WAALS_RADIUS_NM["C"] == pytest.approx(1.7 * NM_PER_ANGSTROM)


def test_residue_and_atom_names():
    variants = {"HID": "HIS", "HIE": "HIS", "HIP": "HIS", "HSD": "HIS", "HSE": "HIS", "HSP": "HIS", "CYX": "CYS",
                "CYM": "CYS", "ASH": "ASP", "GLH": "GLU", "LYN": "LYS", "MSE": "MET", "NALA": "ALA", "CHIE": "HIS"}
    for name, parent in variants.items():
        assert rc.parent_residue_name(name) == parent
        assert rc.restype_index(name) == rc.RESTYPES.index(rc.RESTYPE_3TO1[parent])
    for name in ("ACE", "NME", "NH2", "HOH", "NA", "CL", "LIG"):
        assert not rc.is_modelled_residue(name) and rc.restype_index(name) == rc.UNKNOWN_RESTYPE
        assert rc.atom14_index(name, "C") == -1
    assert rc.atom14_index("ILE", "CD") == rc.atom14_index("ILE", "CD1") == 7
    assert rc.atom14_index("MSE", "SE") == rc.atom14_index("MET", "SD") == 6
    assert rc.atom14_index("HIE", "NE2") == 9 and rc.atom14_index("TRP", "CH2") == 13
    assert rc.atom14_index("ALA", "OXT") == -1 and rc.atom14_index("ALA", "HB1") == -1 and rc.atom14_index("ALA", "OT1") == 3
    torch.testing.assert_close(rc.aatype_from_sequence("ARXv"), torch.tensor([0, 1, 20, 19]))
    with pytest.raises(TypeError, match="residue_name"):
        rc.parent_residue_name(3)


def test_group_tables():
    lys, ser, ala = (rc.RESTYPES.index(c) for c in "KSA")
    slot = rc.ATOM14_NAMES["LYS"].index
    assert [rc.group_of_atom14[lys, slot(a)].item() for a in ("N", "CA", "C", "O", "CB", "CG", "CD", "CE", "NZ")] == [0, 0, 0, 3, 0, 4, 5, 6, 7]
    # hydrogens ride with the group whose origin is their heavy atom (CB -> chi1, N -> phi, C -> psi)
    assert [rc.attached_group_of_atom14[lys, slot(a)].item() for a in ("N", "CA", "C", "CB", "CG", "CD", "CE", "NZ")] == [2, 0, 3, 4, 5, 6, 7, 7]
    assert rc.attached_group_of_atom14[ala, rc.ATOM14_CB] == 0 and rc.attached_group_of_atom14[ser, 5] == 4


# --------------------------------------------------------------------------- atoms -> frames + torsions -> atoms
def test_villin_ideal_rebuild(villin):
    ft = aa.atom14_to_frames_torsions(villin.atom14, villin.mask, villin.aatype)
    assert ft.frame_mask.all() and ft.torsion_mask[0, :2].sum() == 0 and ft.torsion_mask[1:, :3].all()
    rebuilt, rebuilt_mask = aa.atom14_from_frames_torsions(ft.rots, ft.trans, ft.torsions, villin.aatype)
    torch.testing.assert_close(rebuilt_mask, villin.mask.to(rebuilt_mask))
    d = _distances_angstrom(rebuilt, villin.atom14)
    assert d[:, rc.ATOM14_CA].max() < 1e-6
    assert d[:, rc.ATOM14_N].max() < 0.21 and d[:, rc.ATOM14_C].max() < 0.08  # measured 0.195, 0.075 A
    rmsd = ((d**2 * villin.mask).sum() / villin.mask.sum()).sqrt().item()
    assert rmsd < 0.30, f"heavy-atom RMSD {rmsd:.3f} A (measured 0.293 A)"
    # psi and the chis are free parameters of the rebuild and come back exactly
    again = aa.atom14_to_frames_torsions(rebuilt, rebuilt_mask, villin.aatype)
    sidechain = ft.torsion_mask[:, 2:, None]
    torch.testing.assert_close(again.torsions[:, 2:] * sidechain, ft.torsions[:, 2:] * sidechain, atol=1e-3, rtol=0)
    # an ideal structure is a fixed point: N, CA, C and every heavy atom to 0.01 A, all 7 torsions
    rebuilt2, _ = aa.atom14_from_frames_torsions(again.rots, again.trans, again.torsions, villin.aatype)
    assert _distances_angstrom(rebuilt2, rebuilt).max() < 0.01
    third = aa.atom14_to_frames_torsions(rebuilt2, rebuilt_mask, villin.aatype)
    torch.testing.assert_close(third.torsions * third.torsion_mask[..., None], again.torsions * again.torsion_mask[..., None], atol=1e-3, rtol=0)


@pytest.mark.parametrize("path, bound_angstrom", [(HIV_INTEGRASE, 0.18), (T4_LYSOZYME, 0.32)], ids=["1BHL", "T4L"])
def test_other_proteins_ideal_rebuild(path, bound_angstrom):
    """Crystal structure 1BHL: 0.164 A measured; T4 lysozyme (Amber-prepared): 0.306 A."""
    package, parts = path
    protein = Protein(os.path.join(os.path.dirname(pytest.importorskip(package).__file__), *parts))
    ft = aa.atom14_to_frames_torsions(protein.atom14.float(), protein.mask, protein.aatype)
    rebuilt, _ = aa.atom14_from_frames_torsions(ft.rots, ft.trans, ft.torsions, protein.aatype)
    mask = protein.mask * protein.complete[:, None]
    d = _distances_angstrom(rebuilt.double(), protein.atom14)
    rmsd = ((d**2 * mask).sum() / mask.sum()).sqrt().item()
    assert protein.complete.sum() > 100 and rmsd < bound_angstrom


def _rotate_torsions(torsions: torch.Tensor, first: int, seed: int, aatype: torch.Tensor) -> torch.Tensor:
    """Add uniform(-1, 1) rad to torsions ``first``..6 (not PRO chis: they close a ring)."""
    g = torch.Generator().manual_seed(seed)
    angle = torch.atan2(torsions[..., 0], torsions[..., 1])
    delta = (torch.rand(angle.shape, generator=g, dtype=angle.dtype) - 0.5) * 2.0
    delta[..., :first] = 0.0
    delta[aatype == rc.PRO_INDEX, 3:] = 0.0
    angle = angle + delta
    return torch.stack([angle.sin(), angle.cos()], dim=-1)


def test_villin_own_geometry_rebuild_is_exact(villin):
    """With the structure's own geometry (residue_geometry_from_atom14), frames + torsions -> atoms
    reproduces every atom and all 7 torsions; new torsions keep every bond length in a residue."""
    ft = aa.atom14_to_frames_torsions(villin.atom14, villin.mask, villin.aatype)
    geometry = aa.residue_geometry_from_atom14(villin.atom14, villin.mask, villin.aatype)
    exact, _ = aa.atom14_from_frames_torsions(ft.rots, ft.trans, ft.torsions, villin.aatype, geometry)
    d = _distances_angstrom(exact, villin.atom14)
    assert d[:, :3].max() < 0.01 and d.max() < 1e-4
    again = aa.atom14_to_frames_torsions(exact, villin.mask, villin.aatype)
    torch.testing.assert_close(again.torsions, ft.torsions, atol=1e-3, rtol=0)

    # group frames sit on the structure's atoms: phi on N, psi on C, chi_k on its axis end
    group_rots, group_trans = aa.atom14_to_group_frames(villin.atom14, villin.mask, villin.aatype, geometry.default_frames)
    names = [rc.ATOM14_NAMES[rc.RESIDUE_NAMES[a]] for a in villin.aatype]
    for i, residue_names in enumerate(names):
        origins = {2: "N", 3: "C"}
        origins.update({4 + k: chi[2] for k, chi in enumerate(rc.CHI_ANGLE_ATOMS[rc.RESIDUE_NAMES[villin.aatype[i]]])})
        for group, atom in origins.items():
            assert _distances_angstrom(group_trans[i, group], villin.atom14[i, residue_names.index(atom)]) < 1e-4

    new_torsions = _rotate_torsions(ft.torsions, 2, seed=0, aatype=villin.aatype)  # psi and chis
    moved, _ = aa.atom14_from_frames_torsions(ft.rots, ft.trans, new_torsions, villin.aatype, geometry)
    moved_ft = aa.atom14_to_frames_torsions(moved, villin.mask, villin.aatype)
    m = ft.torsion_mask[:, 2:, None]
    torch.testing.assert_close(moved_ft.torsions[:, 2:] * m, new_torsions[:, 2:] * m, atol=1e-3, rtol=0)
    pair = villin.mask[:, :, None] * villin.mask[:, None, :]
    before = torch.cdist(villin.atom14, villin.atom14) * pair
    after = torch.cdist(moved, moved) * pair
    bonded = (before > 0) & (before < 1.6 * NM_PER_ANGSTROM)
    assert bonded.sum() > 250 and (after - before)[bonded].abs().max() < 1e-6
    # the literature geometry changes bond lengths by up to a few hundredths of an A
    ideal, _ = aa.atom14_from_frames_torsions(ft.rots, ft.trans, new_torsions, villin.aatype)
    assert (torch.cdist(ideal, ideal) * pair - before)[bonded].abs().max() > 1e-3


def test_villin_hydrogens_ride_with_attached_groups(villin):
    """The Generator's recipe: hydrogens expressed in ``attached_group_of_atom14`` frames before a
    jump (new pose, psi, chis) and re-placed after it keep every bond length and every bond
    angle inside their residue."""
    geometry = aa.residue_geometry_from_atom14(villin.atom14, villin.mask, villin.aatype)
    group_rots, group_trans = aa.atom14_to_group_frames(villin.atom14, villin.mask, villin.aatype, geometry.default_frames)
    hydrogens = []  # (atom index, residue, attached group, bonded heavy atom index)
    for a, b in villin.bonds:
        for h, x in ((a, b), (b, a)):
            if h not in villin.slot_of_atom and x in villin.slot_of_atom and h in villin.residue_of_atom:
                i, slot = villin.slot_of_atom[x]
                hydrogens.append((h, i, rc.attached_group_of_atom14[villin.aatype[i], slot].item(), x))
    assert len(hydrogens) > 250
    h_index, h_res, h_group, h_parent = (torch.tensor(c) for c in zip(*hydrogens))
    h_local = rigid_invert_apply(group_rots[h_res, h_group], group_trans[h_res, h_group], villin.positions[h_index])

    ft = aa.atom14_to_frames_torsions(villin.atom14, villin.mask, villin.aatype)
    rot, shift = _random_motion(2)
    new_torsions = _rotate_torsions(ft.torsions, 2, seed=1, aatype=villin.aatype)
    heavy, _ = aa.atom14_from_frames_torsions(rot @ ft.rots, ft.trans @ rot.T + shift, new_torsions, villin.aatype, geometry)
    new_rots, new_trans = aa.atom14_to_group_frames(heavy, villin.mask, villin.aatype, geometry.default_frames)
    new_positions = villin.positions.clone()
    for atom, (i, slot) in villin.slot_of_atom.items():
        new_positions[atom] = heavy[i, slot]
    new_positions[h_index] = rigid_apply(new_rots[h_res, h_group], new_trans[h_res, h_group], h_local)

    neighbours = {}
    for a, b in villin.bonds:
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)

    def bond_angle(p, h, x, y):
        u, v = p[h] - p[x], p[y] - p[x]
        return torch.acos((u @ v) / (u.norm() * v.norm())).item()

    checked = 0
    for h, i, _, x in hydrogens:
        assert (new_positions[h] - new_positions[x]).norm().item() == pytest.approx((villin.positions[h] - villin.positions[x]).norm().item(), abs=1e-6)
        for y in neighbours[x]:
            if y != h and villin.residue_of_atom.get(y) == i:
                assert bond_angle(new_positions, h, x, y) == pytest.approx(bond_angle(villin.positions, h, x, y), abs=1e-5)
                checked += 1
    assert checked > 400


def test_rigid_motion_leaves_torsions_unchanged(villin):
    ft = aa.atom14_to_frames_torsions(villin.atom14, villin.mask, villin.aatype)
    rot, shift = _random_motion(3)
    moved = (villin.atom14 @ rot.T + shift) * villin.mask[..., None]
    ft2 = aa.atom14_to_frames_torsions(moved, villin.mask, villin.aatype)
    torch.testing.assert_close(ft2.torsions, ft.torsions, atol=1e-9, rtol=0)
    torch.testing.assert_close(ft2.torsion_mask, ft.torsion_mask)
    torch.testing.assert_close(ft2.rots, rot @ ft.rots, atol=1e-9, rtol=0)
    torch.testing.assert_close(ft2.trans, ft.trans @ rot.T + shift, atol=1e-9, rtol=0)
    rebuilt, _ = aa.atom14_from_frames_torsions(ft.rots, ft.trans, ft.torsions, villin.aatype)
    rebuilt2, mask = aa.atom14_from_frames_torsions(ft2.rots, ft2.trans, ft2.torsions, villin.aatype)
    torch.testing.assert_close(rebuilt2, (rebuilt @ rot.T + shift) * mask[..., None], atol=1e-9, rtol=0)


def test_pi_periodic_alternative_swaps_symmetric_atoms(villin):
    ft = aa.atom14_to_frames_torsions(villin.atom14, villin.mask, villin.aatype)
    differs = (ft.torsions_alt - ft.torsions).abs().amax(-1) > 0
    expected = torch.zeros_like(differs)
    expected[:, 3:] = rc.chi_pi_periodic[villin.aatype].bool()
    assert expected.sum() >= 5 and torch.equal(differs, expected)
    torch.testing.assert_close(ft.torsions_alt[differs], -ft.torsions[differs])
    rebuilt, _ = aa.atom14_from_frames_torsions(ft.rots, ft.trans, ft.torsions, villin.aatype)
    alt, _ = aa.atom14_from_frames_torsions(ft.rots, ft.trans, ft.torsions_alt, villin.aatype)
    swapped = torch.gather(alt, 1, rc.restype_atom14_swap[villin.aatype][..., None].expand_as(alt))
    assert _distances_angstrom(swapped, rebuilt).max() < 0.05  # the literature rings are not exactly symmetric


def test_segment_starts_mask_omega_and_phi(villin):
    n = len(villin.aatype)
    residue_index = torch.arange(n)
    residue_index[17:] += 5  # a gap in the numbering
    chain_start = torch.zeros(n, dtype=torch.bool)
    chain_start[26] = True
    ft = aa.atom14_to_frames_torsions(villin.atom14, villin.mask, villin.aatype, residue_index=residue_index, chain_start=chain_start)
    starts = {0, 17, 26}
    for i in range(n):
        assert ft.torsion_mask[i, :2].tolist() == ([0.0, 0.0] if i in starts else [1.0, 1.0])
    torch.testing.assert_close(ft.torsions[[0, 17, 26], :2], torch.tensor([0.0, 1.0], dtype=torch.float64).expand(3, 2, 2))
    plain = aa.atom14_to_frames_torsions(villin.atom14, villin.mask, villin.aatype)
    keep = ft.torsion_mask[..., None]
    torch.testing.assert_close(ft.torsions * keep, plain.torsions * keep)
    # missing atoms mask exactly the torsions that use them
    mask = villin.mask.clone()
    lys = (villin.aatype == rc.RESTYPES.index("K")).nonzero()[0, 0]
    mask[lys, rc.ATOM14_NAMES["LYS"].index("CE")] = 0
    ft3 = aa.atom14_to_frames_torsions(villin.atom14, mask, villin.aatype)
    assert ft3.torsion_mask[lys].tolist() == [1, 1, 1, 1, 1, 0, 0]


def test_batched_and_broadcast_aatype(villin):
    """Leading dims [B=3, L=5] with aatype [N] broadcast equal the per-structure results."""
    motions = [_random_motion(10 + k, torch.float32) for k in range(15)]
    x = villin.atom14.float()
    batch = torch.stack([(x @ r.T + t) * villin.mask[..., None].float() for r, t in motions]).reshape(3, 5, *x.shape)
    mask = villin.mask.float().expand(3, 5, *villin.mask.shape)
    ft = aa.atom14_to_frames_torsions(batch, mask, villin.aatype)
    atoms, _ = aa.atom14_from_frames_torsions(ft.rots, ft.trans, ft.torsions, villin.aatype)
    assert ft.torsions.shape == (3, 5, len(villin.aatype), 7, 2) and atoms.shape == batch.shape
    single = aa.atom14_to_frames_torsions(batch[2, 3], mask[2, 3], villin.aatype)
    single_atoms, _ = aa.atom14_from_frames_torsions(single.rots, single.trans, single.torsions, villin.aatype)
    torch.testing.assert_close(ft.torsions[2, 3], single.torsions)
    torch.testing.assert_close(atoms[2, 3], single_atoms)
    torch.testing.assert_close(ft.torsions[1, 4], ft.torsions[0, 0], atol=1e-4, rtol=0)
    # one structure's own geometry [N, ...] broadcasts over the batch and stays exact in float32
    geometry = aa.residue_geometry_from_atom14(x, villin.mask, villin.aatype)
    own, _ = aa.atom14_from_frames_torsions(ft.rots, ft.trans, ft.torsions, villin.aatype, geometry)
    assert _distances_angstrom(own, batch).max() < 1e-3


def test_all_residue_types_rebuild_given_torsions():
    """Random frames and torsions for all 20 types: psi and chis measured on the rebuilt atoms are
    the ones given (covers residues villin lacks: CYS, ILE, TYR, ...)."""
    g = torch.Generator().manual_seed(4)
    aatype = torch.arange(21)
    rots = uniform_random_rotmat([21], generator=g, dtype=torch.float64)
    trans = torch.randn(21, 3, generator=g, dtype=torch.float64)
    angle = (torch.rand(21, 7, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    torsions = torch.stack([angle.sin(), angle.cos()], -1)
    atoms, mask = aa.atom14_from_frames_torsions(rots, trans, torsions, aatype)
    ft = aa.atom14_to_frames_torsions(atoms, mask, aatype, residue_index=torch.arange(21) * 3)  # all separate
    assert ft.frame_mask[:20].all() and ft.frame_mask[20] == 0  # UNK has no atoms
    torch.testing.assert_close(ft.rots[:20], rots[:20], atol=1e-6, rtol=0)
    torch.testing.assert_close(ft.trans[:20], trans[:20])
    m = ft.torsion_mask[..., None]
    torch.testing.assert_close(ft.torsions * m, torsions * m, atol=1e-6, rtol=0)
    assert ft.torsion_mask[:20, 2].all() and ft.torsion_mask[:, :2].sum() == 0
    torch.testing.assert_close(ft.torsion_mask[:, 3:], rc.chi_angles_mask.double())


def test_rebuild_is_differentiable():
    g = torch.Generator().manual_seed(5)
    aatype = torch.tensor([1, 13, 7, 17, 11])  # ARG PHE GLY TRP LYS: every group used
    rots = uniform_random_rotmat([5], generator=g, dtype=torch.float64)
    trans = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    torsions = torch.randn(5, 7, 2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, s: aa.atom14_from_frames_torsions(rots, t, s, aatype)[0], (trans, torsions))


def test_pseudo_beta(villin):
    ft = aa.atom14_to_frames_torsions(villin.atom14, villin.mask, villin.aatype)
    pb = aa.pseudo_beta(ft.rots, ft.trans, villin.aatype)
    gly = villin.aatype == rc.GLY_INDEX
    torch.testing.assert_close(pb[gly], ft.trans[gly])
    rebuilt, _ = aa.atom14_from_frames_torsions(ft.rots, ft.trans, ft.torsions, villin.aatype)
    ala = villin.aatype == rc.ALA_INDEX
    torch.testing.assert_close(pb[ala], rebuilt[ala, rc.ATOM14_CB])
    assert _distances_angstrom(pb[~gly], villin.atom14[~gly, rc.ATOM14_CB]).max() < 0.3  # real CBs: 0.27 A measured
    scripted = torch.jit.script(aa.pseudo_beta)
    torch.testing.assert_close(scripted(ft.rots, ft.trans, villin.aatype), pb)


def test_atom37_round_trip(villin):
    x37, m37 = aa.atom14_to_atom37(villin.atom14, villin.mask, villin.aatype)
    assert x37.shape == (len(villin.aatype), 37, 3) and m37.sum() == villin.mask.sum()
    x14, m14 = aa.atom37_to_atom14(x37, m37, villin.aatype)
    torch.testing.assert_close(x14, villin.atom14)
    torch.testing.assert_close(m14, villin.mask)
    ft37 = aa.atom14_to_frames_torsions(*aa.atom37_to_atom14(x37, m37, villin.aatype), villin.aatype)
    cb = x37[:, rc.ATOM37_ORDER["CB"]]
    torch.testing.assert_close(cb, villin.atom14[:, rc.ATOM14_CB])
    assert ft37.frame_mask.all()


def test_user_errors_name_the_argument(villin):
    with pytest.raises(ValueError, match="atom14 must have shape"):
        aa.atom14_to_frames_torsions(villin.atom14[..., :2], villin.mask, villin.aatype)
    with pytest.raises(TypeError, match="aatype must be an integer"):
        aa.atom14_to_frames_torsions(villin.atom14, villin.mask, villin.aatype.float())
    with pytest.raises(ValueError, match="torsions must have shape"):
        aa.torsion_angles_to_frames(torch.eye(3).expand(7, 3, 3), torch.zeros(7, 3), torch.zeros(7, 5, 2), torch.zeros(7, dtype=torch.long))
    with pytest.raises(ValueError, match="aatype of shape"):
        aa.torsion_angles_to_frames(torch.eye(3).expand(7, 3, 3), torch.zeros(7, 3), torch.zeros(7, 7, 2), torch.zeros(5, dtype=torch.long))
