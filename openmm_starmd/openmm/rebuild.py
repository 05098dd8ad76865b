"""Atoms <-> the model's frames for a whole OpenMM system (SPEC §2: exact topology kept).

:func:`coarse_grain` reads backbone frames and torsions from the system's positions;
:func:`rebuild_positions` writes a generated frame back to every atom:

1. heavy atoms of the modelled residues are rebuilt from the new frames and torsions with the
   *current* structure's own bond lengths and angles (``residue_geometry_from_atom14``), so the
   same frames and torsions give back the same atoms;
2. carried atoms (hydrogens, OXT, caps, variant atoms) are expressed in their rigid group's frame
   before the jump and placed by the same group's frame after it (bond lengths to them exact);
3. other atoms (solvent, ions, ligands) near the protein follow the displacement of their nearest
   protein heavy atom, fully within :data:`SHELL_INNER_NM` and tapering linearly to zero at
   :data:`SHELL_OUTER_NM`; each residue (water molecule, ion, ligand) moves rigidly as one.
   Hydration waters thus stay outside the new protein surface and bulk solvent is untouched;
   relaxation removes what overlap remains.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np
import torch

from openmm_starmd.geometry.all_atom import (
    atom14_from_frames_torsions,
    atom14_to_frames_torsions,
    atom14_to_group_frames,
    residue_geometry_from_atom14,
)
from openmm_starmd.geometry.rigid import rigid_apply, rigid_invert_apply
from openmm_starmd.openmm.coarse_grain import ProteinMap, atom14_positions

SHELL_INNER_NM = 0.5  # other atoms closer than this to the protein move fully with it
SHELL_OUTER_NM = 1.0  # ... and farther than this do not move


class CoarseFrame(NamedTuple):
    """One protein conformation: rots ``[N, 3, 3]``, trans ``[N, 3]`` (CA, nm), torsions ``[N, 7, 2]``."""

    rots: torch.Tensor
    trans: torch.Tensor
    torsions: torch.Tensor


def coarse_grain(pmap: ProteinMap, positions_nm: np.ndarray) -> CoarseFrame:
    """Backbone frames and torsions of the protein from system positions ``[A, 3]`` nm."""
    x = atom14_positions(pmap, positions_nm)
    ft = atom14_to_frames_torsions(x, pmap.atom14_mask, pmap.aatype, pmap.residue_index, pmap.chain_start)
    return CoarseFrame(ft.rots, ft.trans, ft.torsions)


def _group_frames(pmap: ProteinMap, atom14: torch.Tensor, default_frames: torch.Tensor):
    rots, trans = atom14_to_group_frames(atom14, pmap.atom14_mask, pmap.aatype, default_frames, pmap.residue_index,
                                         pmap.chain_start)  # [N, 8, 3, 3], [N, 8, 3]
    res = torch.as_tensor(pmap.carried_residue)
    grp = torch.as_tensor(pmap.carried_group)
    return rots[res, grp], trans[res, grp]  # [M, 3, 3], [M, 3]


def _residue_groups(topology_residue_of_atom: np.ndarray, atoms: np.ndarray) -> list[np.ndarray]:
    order = np.argsort(topology_residue_of_atom[atoms], kind="stable")
    sorted_atoms = atoms[order]
    keys = topology_residue_of_atom[sorted_atoms]
    cuts = np.flatnonzero(np.diff(keys)) + 1
    return np.split(sorted_atoms, cuts)


def _shell_weight(distance_nm: np.ndarray) -> np.ndarray:
    return np.clip((SHELL_OUTER_NM - distance_nm) / (SHELL_OUTER_NM - SHELL_INNER_NM), 0.0, 1.0)


def _carry_other_atoms(pmap: ProteinMap, residue_of_atom: np.ndarray, old: np.ndarray, new: np.ndarray,
                       box_nm: Optional[np.ndarray]) -> None:
    """Move solvent/ions/ligands near the protein with it (in place on ``new``)."""
    if pmap.other_atoms.size == 0:
        return
    from scipy.spatial import cKDTree

    heavy = pmap.protein_heavy_atoms
    shift = new[heavy] - old[heavy]  # [H, 3]
    rectangular = box_nm is not None and np.allclose(box_nm - np.diag(np.diag(box_nm)), 0.0)
    if rectangular:
        lengths = np.diag(box_nm)
        tree = cKDTree(np.mod(old[heavy], lengths), boxsize=lengths)
        query = lambda x: tree.query(np.mod(x, lengths), distance_upper_bound=SHELL_OUTER_NM)  # noqa: E731
    else:  # non-periodic, or triclinic: plain distances (documented)
        tree = cKDTree(old[heavy])
        query = lambda x: tree.query(x, distance_upper_bound=SHELL_OUTER_NM)  # noqa: E731
    dist, nearest = query(old[pmap.other_atoms])
    near = np.isfinite(dist)
    if not near.any():
        return
    by_atom_d = np.full(old.shape[0], np.inf)
    by_atom_n = np.zeros(old.shape[0], dtype=np.int64)
    by_atom_d[pmap.other_atoms] = dist
    by_atom_n[pmap.other_atoms] = np.where(near, nearest, 0)
    moving = pmap.other_atoms[near]
    for group in _residue_groups(residue_of_atom, _atoms_of_residues(residue_of_atom, pmap.other_atoms, moving)):
        k = group[np.argmin(by_atom_d[group])]
        w = _shell_weight(by_atom_d[k])
        new[group] = old[group] + w * shift[by_atom_n[k]]


def _atoms_of_residues(residue_of_atom: np.ndarray, candidates: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """All atoms of ``candidates`` whose residue holds at least one atom of ``moving``."""
    keep = np.isin(residue_of_atom[candidates], np.unique(residue_of_atom[moving]))
    return candidates[keep]


def rebuild_protein(pmap: ProteinMap, positions_nm: torch.Tensor, frame: CoarseFrame) -> torch.Tensor:
    """Steps 1 and 2 of the module docstring in pure torch: positions ``[A, 3]`` float64 nm ->
    ``[A, 3]`` float64 with the modelled and carried atoms moved to ``frame``; other atoms unchanged.

    :func:`rebuild_positions` calls this; the C++ plugin runs a trace of it
    (:mod:`openmm_starmd.plugin.propagator`), so both apply the same rules."""
    old = positions_nm.to(torch.float64)
    x_old = atom14_positions(pmap, old)  # [N, 14, 3]
    geometry = residue_geometry_from_atom14(x_old, pmap.atom14_mask, pmap.aatype)
    x_new, _ = atom14_from_frames_torsions(frame.rots.float(), frame.trans.float(), frame.torsions.float(), pmap.aatype,
                                           geometry)  # [N, 14, 3]
    new = old.clone()
    present = torch.as_tensor(pmap.atom14_atoms >= 0)  # [N, 14]
    new[torch.as_tensor(pmap.atom14_atoms)[present]] = x_new[present].double()
    if pmap.carried_atoms.size:
        carried = torch.as_tensor(pmap.carried_atoms)
        r0, t0 = _group_frames(pmap, x_old, geometry.default_frames)
        local = rigid_invert_apply(r0, t0, old[carried].float())  # [M, 3]
        r1, t1 = _group_frames(pmap, x_new * pmap.atom14_mask[..., None], geometry.default_frames)
        new[carried] = rigid_apply(r1, t1, local).double()
    return new


def rebuild_positions(pmap: ProteinMap, positions_nm: np.ndarray, frame: CoarseFrame,
                      residue_of_atom: Optional[np.ndarray] = None, box_nm: Optional[np.ndarray] = None) -> np.ndarray:
    """All-atom positions ``[A, 3]`` nm after moving the protein to ``frame``.

    Args:
        pmap: the system's :class:`ProteinMap`.
        positions_nm: current positions ``[A, 3]`` (the structure before the jump).
        frame: the new rots ``[N, 3, 3]``, trans ``[N, 3]`` and torsions ``[N, 7, 2]``.
        residue_of_atom: ``[A]`` topology residue index of every atom (needed to move solvent
            molecules as wholes; None leaves other atoms where they are).
        box_nm: ``[3, 3]`` periodic box vectors (rows) or None.
    """
    old = np.asarray(positions_nm, dtype=np.float64)
    new = rebuild_protein(pmap, torch.as_tensor(old), frame).numpy()
    if residue_of_atom is not None:
        _carry_other_atoms(pmap, residue_of_atom, old, new, box_nm)
    return new


__all__ = ["CoarseFrame", "coarse_grain", "rebuild_positions", "rebuild_protein", "SHELL_INNER_NM", "SHELL_OUTER_NM"]
