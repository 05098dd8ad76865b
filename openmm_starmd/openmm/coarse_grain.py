"""Coarse-grain an OpenMM topology: which atoms are the protein the model sees, and how every
other atom is carried through a jump.

The model represents each standard amino acid (any force-field variant: HID/HIE/HIP, CYX, ASH,
GLH, LYN, Amber terminal templates, CHARMM/GROMACS names, see
:func:`~openmm_starmd.geometry.residue_constants.parent_residue_name`) by its backbone frame and
seven torsions; its heavy atoms fill the atom14 layout. Everything else is *carried*:

* hydrogens, OXT and heavy atoms outside atom14 follow the rigid group that carries the atom
  they are bonded to (``residue_constants.attached_group_of_atom14``);
* caps (ACE, NME, NH2, ...) follow the group of the protein atom they are bonded to (ACE: the
  next residue's N, i.e. its phi group; NME: the previous residue's C, i.e. its psi group);
* solvent, ions and ligands (residues not bonded to the protein) are *other* atoms: the
  Generator leaves them where they are (generated frames are superposed on the previous frame,
  so the reference frame does not move) and relaxation settles them around the new protein.

Chains and gaps: inside a chain, consecutive residues that are not joined by a C-N bond in the
topology start a new segment (they are not an error). Every chain and every segment gets its
own ``chain_index`` (the model's "different chain / segment" relative-position bin) and is
separated by :data:`SEGMENT_GAP` in ``residue_index``; the validity gate checks Cα breaks only
across real peptide bonds.

Errors (``ValueError``, naming the residue): no protein residue, or a single one; a modelled residue lacking N,
CA or C; a residue bonded to the protein that is neither an amino acid nor a cap (non-standard
residue or covalent ligand: replace it, e.g. with pdbfixer, or remove it). Checks of a structure
(used by the Generator and the plugin's export): :func:`check_finite_positions` (NaN or infinite
coordinates, naming the atoms), :func:`check_chirality` (a D-configured Cα under an L name),
:func:`warn_chain_gaps` (a chain gap without a peptide bond). :func:`make_whole` undoes periodic
wrapping along the bonds (:func:`protein_bond_tree`) before a structure is coarse-grained.
"""
from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from openmm_starmd.geometry import residue_constants as rc

SEGMENT_GAP = rc.SEGMENT_GAP  # residue_index step between chains/segments (rc.number_residues)
_MAX_PEPTIDE_BOND_NM = 0.2  # C-N distance that counts as bonded when the topology has no bonds
_BACKBONE = ("N", "CA", "C")


@dataclass(frozen=True)
class ProteinMap:
    """Index tables from a topology to the model's residues (N residues, A atoms in the system).

    aatype, residue_index, chain_index ``[N]`` (int64 tensors); chain_start ``[N]`` bool tensor
    (True where a chain or segment starts); chain_index counts segments; atom14_atoms ``[N, 14]`` system atom index or -1;
    atom14_mask ``[N, 14]`` float tensor; carried_atoms ``[M]`` with carried_residue ``[M]``
    (0..N-1) and carried_group ``[M]`` (0..7); other_atoms ``[K]`` (solvent, ions, ligands);
    linked_pairs ``[P, 2]`` residue pairs joined by a peptide bond; labels ``[N]`` like "LYS 12 (chain A)";
    gaps: ``(k, k + 1)`` pairs of consecutive residues of one topology chain not joined by a peptide bond.
    """

    aatype: torch.Tensor
    residue_index: torch.Tensor
    chain_index: torch.Tensor
    chain_start: torch.Tensor
    atom14_atoms: np.ndarray
    atom14_mask: torch.Tensor
    carried_atoms: np.ndarray
    carried_residue: np.ndarray
    carried_group: np.ndarray
    other_atoms: np.ndarray
    linked_pairs: np.ndarray
    labels: tuple
    gaps: tuple = ()

    @property
    def num_residues(self) -> int:
        return int(self.aatype.shape[0])

    @property
    def neighbours(self) -> np.ndarray:
        """``[N-1]`` bool, True where residues k and k+1 are joined by a peptide bond."""
        mask = np.zeros(max(self.num_residues - 1, 0), dtype=bool)
        mask[self.linked_pairs[:, 0]] = True
        return mask

    @property
    def ca_atoms(self) -> np.ndarray:
        """System indices of the Cα atoms ``[N]``."""
        return self.atom14_atoms[:, rc.ATOM14_CA]

    @property
    def backbone_atoms(self) -> np.ndarray:
        """System indices of N, CA, C of every residue (the atoms restrained during relaxation)."""
        return self.atom14_atoms[:, [rc.ATOM14_N, rc.ATOM14_CA, rc.ATOM14_C]].reshape(-1)

    @property
    def protein_heavy_atoms(self) -> np.ndarray:
        """System indices of the modelled heavy atoms (atom14 slots present)."""
        a = self.atom14_atoms.reshape(-1)
        return a[a >= 0]


def _label(residue) -> str:
    return f"{residue.name} {residue.id} (chain {(residue.chain.id or '').strip() or residue.chain.index})"


def atom_label(atom) -> str:
    """An atom's name for messages: "CA of LYS 12 (chain A)"."""
    return f"{atom.name} of {_label(atom.residue)}"


def _is_hydrogen(atom) -> bool:
    return atom.element is not None and atom.element.symbol in ("H", "D")


def map_topology(topology, positions_nm: Optional[np.ndarray] = None) -> ProteinMap:
    """Build the :class:`ProteinMap` of an ``openmm.app.Topology``.

    ``positions_nm`` ``[A, 3]`` is used only where the topology has no bonds (C-N distance decides
    chain links; nearest heavy atom decides which group carries a hydrogen).
    """
    atoms = list(topology.atoms())
    bonded = defaultdict(list)
    for a, b in topology.bonds():
        bonded[a.index].append(b)
        bonded[b.index].append(a)
    has_bonds = len(bonded) > 0
    if not has_bonds and positions_nm is None:
        raise ValueError("the topology has no bonds; pass positions_nm so chain links can be found by distance")

    modelled = [r for r in topology.residues() if rc.is_modelled_residue(r.name)]
    if not modelled:
        names = sorted({r.name for r in topology.residues()})
        raise ValueError(f"no protein residue found in the Simulation's topology (residue names: {names[:12]}); "
                         "STAR-MD needs at least one of the 20 standard amino acids")
    if len(modelled) < 2:
        raise ValueError(f"the topology has a single amino acid ({_label(modelled[0])}); STAR-MD models proteins and "
                         "peptides of at least 2 residues")
    res_pos = {r.index: k for k, r in enumerate(modelled)}

    aatype = np.zeros(len(modelled), dtype=np.int64)
    atom14 = -np.ones((len(modelled), rc.NUM_ATOM14), dtype=np.int64)
    carried: dict[int, tuple[int, int]] = {}  # atom index -> (residue k, group)
    pending: list[tuple[object, int]] = []  # (atom, residue k) whose group is decided by bonds
    for k, res in enumerate(modelled):
        aatype[k] = rc.restype_index(res.name)
        for atom in res.atoms():
            slot = -1 if _is_hydrogen(atom) else rc.atom14_index(res.name, atom.name)
            if slot >= 0 and atom14[k, slot] < 0:
                atom14[k, slot] = atom.index
            else:
                pending.append((atom, k))
        missing = [name for name, slot in zip(_BACKBONE, (rc.ATOM14_N, rc.ATOM14_CA, rc.ATOM14_C)) if atom14[k, slot] < 0]
        if missing:
            raise ValueError(f"residue {_label(res)} lacks backbone atom(s) {missing}; STAR-MD needs N, CA and C of every "
                             "amino acid (add missing atoms, e.g. with pdbfixer, or remove the residue)")
    slot_of = {int(a): (k, s) for k in range(len(modelled)) for s, a in enumerate(atom14[k]) if a >= 0}

    def group_of_slot(k: int, s: int) -> int:
        return int(rc.attached_group_of_atom14[aatype[k], s])

    # carried atoms of modelled residues: follow the bond graph inside the residue
    unresolved = pending
    for _ in range(4):  # hydrogens on carried heavy atoms need a second pass
        left = []
        for atom, k in unresolved:
            group = None
            for other in bonded[atom.index]:
                if other.index in slot_of and slot_of[other.index][0] == k:
                    group = group_of_slot(*slot_of[other.index])
                    break
                if other.index in carried and carried[other.index][0] == k:
                    group = carried[other.index][1]
                    break
            if group is None:
                left.append((atom, k))
            else:
                carried[atom.index] = (k, group)
        unresolved = left
    for atom, k in unresolved:  # no usable bond: nearest heavy atom of the residue
        slots = [s for s in range(rc.NUM_ATOM14) if atom14[k, s] >= 0]
        if positions_nm is None:
            s = rc.ATOM14_CA
        else:
            d = np.linalg.norm(positions_nm[atom14[k, slots]] - positions_nm[atom.index], axis=-1)
            s = slots[int(np.argmin(d))]
        carried[atom.index] = (k, group_of_slot(k, s))

    # residues that are not modelled: caps are carried, anything else bonded to the protein is an error
    other = []
    for res in topology.residues():
        if res.index in res_pos:
            continue
        anchor = None
        for atom in res.atoms():
            for nb in bonded[atom.index]:
                if nb.index in slot_of and nb.residue.index != res.index:
                    anchor = slot_of[nb.index]
                    break
            if anchor is not None:
                break
        if anchor is None:
            other.extend(a.index for a in res.atoms())
            continue
        if res.name.strip().upper() not in rc.CAP_RESIDUE_NAMES:
            raise ValueError(f"residue {_label(res)} is bonded to the protein but is not one of the 20 amino acids, a "
                             "force-field variant or a cap (ACE/NME/NH2); replace non-standard residues (e.g. pdbfixer "
                             "replaceNonstandardResidues) or remove them")
        for atom in res.atoms():
            carried[atom.index] = (anchor[0], group_of_slot(*anchor))

    # chains, segments, peptide links: numbered as the training data are (rc.number_residues)
    continues = np.zeros(len(modelled), dtype=bool)
    linked, gaps = [], []
    for k, res in enumerate(modelled):
        if k == 0:
            continue
        same_chain = modelled[k - 1].chain.index == res.chain.index
        c_prev, n_this = int(atom14[k - 1, rc.ATOM14_C]), int(atom14[k, rc.ATOM14_N])
        if has_bonds:
            joined = any(nb.index == n_this for nb in bonded[c_prev])
        else:
            joined = float(np.linalg.norm(positions_nm[c_prev] - positions_nm[n_this])) < _MAX_PEPTIDE_BOND_NM
        if same_chain and joined:
            continues[k] = True
            linked.append((k - 1, k))
        elif same_chain:
            gaps.append((k - 1, k))
    residue_index, chain_index = rc.number_residues(continues)
    chain_start = ~continues

    items = sorted(carried.items())
    return ProteinMap(
        aatype=torch.as_tensor(aatype),
        residue_index=torch.as_tensor(residue_index),
        chain_index=torch.as_tensor(chain_index),
        chain_start=torch.as_tensor(chain_start),
        atom14_atoms=atom14,
        atom14_mask=torch.as_tensor(atom14 >= 0, dtype=torch.float32),
        carried_atoms=np.array([a for a, _ in items], dtype=np.int64),
        carried_residue=np.array([v[0] for _, v in items], dtype=np.int64),
        carried_group=np.array([v[1] for _, v in items], dtype=np.int64),
        other_atoms=np.array(sorted(other), dtype=np.int64),
        linked_pairs=np.array(linked, dtype=np.int64).reshape(-1, 2),
        labels=tuple(_label(r) for r in modelled),
        gaps=tuple(gaps),
    )


def atom14_positions(pmap: ProteinMap, positions_nm) -> torch.Tensor:
    """Gather atom14 positions ``[N, 14, 3]`` (float32 nm, zeros at absent slots) from ``[A, 3]``.

    ``positions_nm`` is a NumPy array or a float64 torch tensor (the tensor path is pure torch,
    so it can be traced for the C++ plugin; both give the same values)."""
    idx = np.where(pmap.atom14_atoms >= 0, pmap.atom14_atoms, 0)
    if isinstance(positions_nm, torch.Tensor):
        x = positions_nm.to(torch.float64)[torch.as_tensor(idx)].to(torch.float32)
    else:
        x = torch.as_tensor(np.asarray(positions_nm, dtype=np.float64)[idx], dtype=torch.float32)
    return x * pmap.atom14_mask[..., None]


class ChainGapWarning(UserWarning):
    """A chain of the topology has a gap: consecutive residues not joined by a peptide bond."""


_MAX_NAMED = 5  # atoms or residues named in one message


def _named(labels: list, total: int) -> str:
    more = f" and {total - len(labels)} more" if total > len(labels) else ""
    return ", ".join(labels) + more


def check_finite_positions(topology, positions_nm, what: str = "positions") -> None:
    """Raise ``ValueError`` naming the atoms whose coordinates ``[A, 3]`` are NaN or infinite."""
    bad = np.flatnonzero(~np.isfinite(np.asarray(positions_nm, dtype=np.float64)).all(axis=-1))
    if bad.size == 0:
        return
    atoms = list(topology.atoms())
    labels = [f"{atom_label(atoms[i])} (atom index {i})" for i in bad[:_MAX_NAMED]]
    raise ValueError(f"{what}: {bad.size} atom(s) have NaN or infinite coordinates: {_named(labels, bad.size)}; "
                     "set finite positions (e.g. the input structure or a saved state) before generating")


def check_chirality(pmap: ProteinMap, positions_nm: np.ndarray) -> None:
    """Raise ``ValueError`` naming the residues whose Cα has the D configuration under an L residue name.

    The sign of ``(N - CA) x (C - CA) . (CB - CA)`` is positive for L amino acids; glycine and
    residues without CB are not checked. The force field's L templates give a D residue a
    mirror-image side chain with enormous energy, and the model was trained on L proteins."""
    idx = pmap.atom14_atoms[:, [rc.ATOM14_N, rc.ATOM14_CA, rc.ATOM14_C, rc.ATOM14_CB]]
    rows = np.flatnonzero(idx[:, 3] >= 0)
    if rows.size == 0:
        return
    x = np.asarray(positions_nm, dtype=np.float64)[idx[rows]]  # [R, 4, 3]: N, CA, C, CB
    n, ca, c, cb = x[:, 0], x[:, 1], x[:, 2], x[:, 3]
    volume = np.einsum("ri,ri->r", np.cross(n - ca, c - ca), cb - ca)
    bad = rows[volume < 0]
    if bad.size == 0:
        return
    labels = [pmap.labels[k] for k in bad[:_MAX_NAMED]]
    raise ValueError(f"{bad.size} residue(s) have a D-configured Cα under an L amino-acid name: {_named(labels, bad.size)}; "
                     "STAR-MD and the force field's templates model L amino acids only (check the structure's "
                     "chirality, e.g. a mirrored model, or remove those residues)")


def warn_chain_gaps(pmap: ProteinMap, positions_nm: Optional[np.ndarray] = None) -> None:
    """Warn (:class:`ChainGapWarning`) when a chain has gaps: consecutive residues without a peptide bond."""
    if not pmap.gaps:
        return
    from openmm_starmd.internal import warn_at_caller

    parts = []
    for k, j in pmap.gaps[:_MAX_NAMED]:
        gap = f"{pmap.labels[k]} - {pmap.labels[j]}"
        if positions_nm is not None:
            x = np.asarray(positions_nm, dtype=np.float64)
            d = np.linalg.norm(x[pmap.atom14_atoms[k, rc.ATOM14_C]] - x[pmap.atom14_atoms[j, rc.ATOM14_N]])
            gap += f" (C-N {d:.2f} nm)"
        parts.append(gap)
    warn_at_caller(
        f"the protein has {len(pmap.gaps)} chain gap(s) without a peptide bond: {_named(parts, len(pmap.gaps))}. "
        "The model treats the pieces as separate segments; its frames may then fail the validity gate, and each "
        "failed interval falls back to MD. If residues are missing, build them first: pdbfixer's "
        "findMissingResidues() then addMissingAtoms() models the missing residues so the chain is whole",
        ChainGapWarning)


def protein_bond_tree(topology) -> np.ndarray:
    """``[E, 2]`` (parent, child) atom pairs: a breadth-first spanning tree of the bonds of every
    molecule that contains an amino acid (the protein with its hydrogens, caps and covalent groups).
    Used by :func:`make_whole`; empty when the topology has no bonds."""
    bonded = defaultdict(list)
    for a, b in topology.bonds():
        bonded[a.index].append(b.index)
        bonded[b.index].append(a.index)
    seen, edges = set(), []
    for res in topology.residues():
        if not rc.is_modelled_residue(res.name):
            continue
        for atom in res.atoms():
            if atom.index in seen:
                continue
            seen.add(atom.index)
            queue = deque([atom.index])
            while queue:
                parent = queue.popleft()
                for child in bonded[parent]:
                    if child not in seen:
                        seen.add(child)
                        edges.append((parent, child))
                        queue.append(child)
    return np.array(edges, dtype=np.int64).reshape(-1, 2)


def minimum_image(delta_nm: np.ndarray, box_nm: np.ndarray) -> np.ndarray:
    """Displacements ``[..., 3]`` reduced to their nearest periodic image in the box ``[3, 3]``
    (rows a, b, c in OpenMM's reduced form: a along x, b in the xy plane)."""
    d = np.array(delta_nm, dtype=np.float64)
    for k in (2, 1, 0):
        d -= np.round(d[..., k] / box_nm[k, k])[..., None] * box_nm[k]
    return d


def make_whole(positions_nm: np.ndarray, box_nm: Optional[np.ndarray], tree: np.ndarray) -> np.ndarray:
    """Positions ``[A, 3]`` with every bond of ``tree`` (:func:`protein_bond_tree`) at its minimum
    image, i.e. each molecule whole; each tree's root atom stays where it is. Returns the input
    array itself when no bond crosses the box (or there is no box)."""
    if box_nm is None or len(tree) == 0:
        return positions_nm
    parent, child = tree[:, 0], tree[:, 1]
    delta = positions_nm[child] - positions_nm[parent]
    shift = minimum_image(delta, box_nm) - delta  # [E, 3] lattice vector per bond, zero when it does not cross
    if not np.abs(shift).max() > 0:
        return positions_nm
    total = np.zeros_like(positions_nm)
    for p, c, s in zip(parent.tolist(), child.tolist(), shift):  # breadth-first: a parent's shift is final
        total[c] = total[p] + s
    return positions_nm + total


__all__ = ["ProteinMap", "map_topology", "atom14_positions", "atom_label", "SEGMENT_GAP", "ChainGapWarning", "check_finite_positions",
           "check_chirality", "warn_chain_gaps", "protein_bond_tree", "minimum_image", "make_whole"]
