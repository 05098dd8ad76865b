"""Heavy atoms <-> per-residue rigid frames + torsion angles (AF2 supplement 1.8, Alg. 24).

A residue is its backbone frame (origin CA, x towards C, N in the xy plane; nm) plus
seven torsions (omega, phi, psi, chi1..chi4) stored as (sin, cos) pairs ``[..., N, 7, 2]``.
The torsions rotate the residue's 8 rigid groups (see :mod:`residue_constants`), whose
ideal atoms give the heavy atoms in the atom14 layout ``[..., N, 14, 3]``.

Conventions, exactly AF2's so that atoms -> frames + torsions -> atoms closes:

* omega_i = dihedral CA(i-1), C(i-1), N(i), CA(i); phi_i = C(i-1), N, CA, C;
  psi_i = N, CA, C, O shifted by pi (O sits trans to N(i+1)); chi_k from
  ``residue_constants.CHI_ANGLE_ATOMS``. omega and phi are masked at the first residue of
  each chain segment; they place no heavy atom (only the amide H, by the phi group).
* Masked torsions are returned as (0, 1), i.e. zero angle.

Geometry: by default the groups carry the literature (AF2) bond lengths and angles, so a
rebuilt MD structure differs from the original by ~0.3 A heavy-atom RMSD (villin: 0.29 A;
a crystal structure: 0.16 A). :func:`residue_geometry_from_atom14` captures a structure's own
geometry in the same form (:class:`ResidueGeometry`); rebuilding with it is exact, and
changing torsions then keeps that structure's bond lengths and angles.

Carrying atoms the model does not place (hydrogens, OXT, a residue's variant atoms):

    geometry = residue_geometry_from_atom14(x0, mask, aatype)
    rots0, trans0 = atom14_to_group_frames(x0, mask, aatype, geometry.default_frames)
    local = rigid_invert_apply(rots0[res, group], trans0[res, group], h_positions)
    x1, _ = atom14_from_frames_torsions(new_rots, new_trans, new_torsions, aatype, geometry)
    rots1, trans1 = atom14_to_group_frames(x1, mask, aatype, geometry.default_frames)
    h_new = rigid_apply(rots1[res, group], trans1[res, group], local)

with ``group = residue_constants.attached_group_of_atom14[aatype[res], slot of the heavy
atom the H is bonded to]``.

Everything on the frames -> atoms path is pure torch, differentiable and batched over any
leading dimensions ``...``; ``aatype`` ``[..., N]`` may have fewer leading dimensions than
the frames (it is broadcast).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from openmm_starmd.geometry import residue_constants as rc
from openmm_starmd.geometry.internal import (
    axis_frames,
    default_frames_from_local_positions,
    dihedral_sincos,
    gather_slots,
    previous_residue,
    rot_x,
)
from openmm_starmd.geometry.rigid import rigid_apply, rigid_compose, rigid_invert_apply
from openmm_starmd.geometry.so3 import frames_from_three_points

_TORSION_EPS = 1e-8


class FramesTorsions(NamedTuple):
    """Per-residue coarse-grained state computed from atoms (nm).

    rots ``[..., N, 3, 3]``, trans ``[..., N, 3]`` (CA), frame_mask ``[..., N]`` (N, CA, C
    present), torsions and torsions_alt ``[..., N, 7, 2]`` (sin, cos; alt adds pi to the
    pi-periodic chis), torsion_mask ``[..., N, 7]``.
    """

    rots: torch.Tensor
    trans: torch.Tensor
    frame_mask: torch.Tensor
    torsions: torch.Tensor
    torsions_alt: torch.Tensor
    torsion_mask: torch.Tensor


class ResidueGeometry(NamedTuple):
    """Internal geometry of residues (bond lengths and angles) in the rigid-group form.

    default_frames ``[..., N, 8, 4, 4]``: each group's frame relative to its parent at zero
    torsion (nm); local_positions ``[..., N, 14, 3]``: each atom in its group's frame (nm).
    ``None`` wherever a function accepts one means the literature (AF2) geometry.
    """

    default_frames: torch.Tensor
    local_positions: torch.Tensor


def _check_aatype(aatype: torch.Tensor, batch_shape: torch.Size, arg: str) -> torch.Tensor:
    """Validate integer restypes and broadcast them to ``batch_shape`` ([..., N])."""
    if not isinstance(aatype, torch.Tensor) or aatype.dtype.is_floating_point or aatype.dtype == torch.bool:
        raise TypeError(f"aatype must be an integer tensor [..., N], got {getattr(aatype, 'dtype', type(aatype))}")
    try:
        return aatype.long().expand(batch_shape)
    except RuntimeError:
        raise ValueError(f"aatype of shape {tuple(aatype.shape)} does not broadcast to {arg} batch shape {tuple(batch_shape)}") from None


def _check_points(x: torch.Tensor, name: str, slots: int) -> None:
    if x.dim() < 3 or x.shape[-2:] != (slots, 3):
        raise ValueError(f"{name} must have shape [..., N, {slots}, 3], got {tuple(x.shape)}")


def segment_starts(
    num_residues: int,
    residue_index: Optional[torch.Tensor] = None,
    chain_start: Optional[torch.Tensor] = None,
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    """Bool ``[..., N]``: True at residue 0, where ``chain_start`` is True, and where the
    residue numbering ``residue_index`` ``[..., N]`` jumps by anything other than +1."""
    start = torch.zeros(num_residues, dtype=torch.bool, device=device)
    start[0] = True
    if residue_index is not None:
        gap = residue_index[..., 1:] - residue_index[..., :-1] != 1
        start = start | torch.cat([torch.zeros_like(gap[..., :1]), gap], dim=-1)
    if chain_start is not None:
        start = start | chain_start.bool()
    return start


def atom14_to_frames_torsions(
    atom14: torch.Tensor,
    atom14_mask: torch.Tensor,
    aatype: torch.Tensor,
    residue_index: Optional[torch.Tensor] = None,
    chain_start: Optional[torch.Tensor] = None,
) -> FramesTorsions:
    """Backbone frames and the 7 torsions of every residue from heavy atoms.

    Args:
        atom14: positions ``[..., N, 14, 3]`` in nm (atom14 layout of ``aatype``).
        atom14_mask: ``[..., N, 14]``, 1 where the atom exists.
        aatype: restype indices ``[..., N]`` (``residue_constants.RESTYPES`` order).
        residue_index: optional residue numbers ``[..., N]``; a step other than +1 starts a
            new segment (omega, phi masked there).
        chain_start: optional bool ``[..., N]``, True at the first residue of each chain.
    """
    _check_points(atom14, "atom14", rc.NUM_ATOM14)
    if atom14_mask.shape != atom14.shape[:-1]:
        raise ValueError(f"atom14_mask must have shape {tuple(atom14.shape[:-1])}, got {tuple(atom14_mask.shape)}")
    aatype = _check_aatype(aatype, atom14.shape[:-2], "atom14")
    mask = atom14_mask.to(atom14.dtype)
    n_res = atom14.shape[-3]
    n, ca, c, o = (atom14[..., i, :] for i in (rc.ATOM14_N, rc.ATOM14_CA, rc.ATOM14_C, rc.ATOM14_O))
    m_n, m_ca, m_c, m_o = (mask[..., i] for i in (rc.ATOM14_N, rc.ATOM14_CA, rc.ATOM14_C, rc.ATOM14_O))
    rots, trans = frames_from_three_points(n, ca, c)
    frame_mask = m_n * m_ca * m_c

    prev_ca, prev_c = previous_residue(ca, -2), previous_residue(c, -2)
    prev_m_ca, prev_m_c = previous_residue(m_ca, -1), previous_residue(m_c, -1)
    linked = (~segment_starts(n_res, residue_index, chain_start, atom14.device)).to(atom14.dtype)

    chi_index = rc.chi_angles_atom14.to(atom14.device)[aatype]  # [..., N, 4 chis, 4 atoms]
    chi_atoms = gather_slots(atom14, chi_index.flatten(-2))  # [..., N, 16, 3]
    chi_atoms = chi_atoms.reshape(chi_atoms.shape[:-2] + (4, 4, 3))  # [..., N, 4, 4, 3]
    chi_atom_mask = gather_slots(mask, chi_index.flatten(-2)).reshape(chi_index.shape).prod(-1)  # [..., N, 4]
    chi_mask = rc.chi_angles_mask.to(atom14)[aatype] * chi_atom_mask

    backbone_quads = [
        torch.stack([prev_ca, prev_c, n, ca], dim=-2),  # omega
        torch.stack([prev_c, n, ca, c], dim=-2),  # phi
        torch.stack([n, ca, c, o], dim=-2),  # psi (+ pi below)
    ]
    quads = torch.cat([torch.stack(backbone_quads, dim=-3), chi_atoms], dim=-3)  # [..., N, 7, 4, 3]
    sincos = dihedral_sincos(quads[..., 0, :], quads[..., 1, :], quads[..., 2, :], quads[..., 3, :])  # [..., N, 7, 2]
    psi_shift = torch.tensor([1.0, 1.0, -1.0, 1.0, 1.0, 1.0, 1.0], dtype=atom14.dtype, device=atom14.device)
    sincos = sincos * psi_shift[:, None]

    torsion_mask = torch.cat(
        [
            torch.stack(
                [prev_m_ca * prev_m_c * m_n * m_ca * linked, prev_m_c * m_n * m_ca * m_c * linked, m_n * m_ca * m_c * m_o],
                dim=-1,
            ),
            chi_mask,
        ],
        dim=-1,
    )  # [..., N, 7]
    identity = torch.tensor([0.0, 1.0], dtype=atom14.dtype, device=atom14.device)
    sincos = torch.where(torsion_mask[..., None] > 0, sincos, identity)
    periodic = torch.cat([torch.zeros_like(chi_mask[..., :3]), rc.chi_pi_periodic.to(atom14)[aatype]], dim=-1)
    sincos_alt = sincos * (1.0 - 2.0 * periodic)[..., None]
    return FramesTorsions(rots, trans, frame_mask, sincos, sincos_alt, torsion_mask)


def torsion_angles_to_frames(
    rots: torch.Tensor,
    trans: torch.Tensor,
    torsions: torch.Tensor,
    aatype: torch.Tensor,
    default_frames: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Global frames of the 8 rigid groups from backbone frames and torsions (AF2 Alg. 24).

    Args:
        rots: backbone rotations ``[..., N, 3, 3]``; trans: CA positions ``[..., N, 3]`` nm.
        torsions: (sin, cos) ``[..., N, 7, 2]`` for omega, phi, psi, chi1..chi4 (normalised here).
        aatype: ``[..., N]`` restype indices.
        default_frames: optional per-residue ``[..., N, 8, 4, 4]`` (``ResidueGeometry``) instead
            of the literature ``residue_constants.restype_rigid_group_default_frame[aatype]``.

    Returns:
        group_rots ``[..., N, 8, 3, 3]`` and group_trans ``[..., N, 8, 3]``.
    """
    if rots.shape[-2:] != (3, 3) or trans.shape != rots.shape[:-1]:
        raise ValueError(f"rots must be [..., N, 3, 3] and trans [..., N, 3], got {tuple(rots.shape)} and {tuple(trans.shape)}")
    if torsions.shape != rots.shape[:-2] + (rc.NUM_TORSIONS, 2):
        raise ValueError(f"torsions must have shape {tuple(rots.shape[:-2]) + (7, 2)}, got {tuple(torsions.shape)}")
    aatype = _check_aatype(aatype, rots.shape[:-2], "rots")
    if default_frames is None:
        default = rc.restype_rigid_group_default_frame.to(rots)[aatype]  # [..., N, 8, 4, 4]
    elif default_frames.dim() < 4 or default_frames.shape[-3:] != (rc.NUM_RIGID_GROUPS, 4, 4):
        raise ValueError(f"default_frames must have shape [..., N, 8, 4, 4], got {tuple(default_frames.shape)}")
    else:
        default = default_frames.to(rots).expand(aatype.shape + (rc.NUM_RIGID_GROUPS, 4, 4))
    sincos = torsions / torch.sqrt((torsions * torsions).sum(-1, keepdim=True) + _TORSION_EPS)
    sin = torch.cat([torch.zeros_like(sincos[..., :1, 0]), sincos[..., 0]], dim=-1)  # [..., N, 8]
    cos = torch.cat([torch.ones_like(sincos[..., :1, 1]), sincos[..., 1]], dim=-1)  # [..., N, 8]
    # each group = its default frame (relative to its parent) followed by the torsion rotation
    local_rots = default[..., :3, :3] @ rot_x(sin, cos)  # [..., N, 8, 3, 3]
    local_trans = default[..., :3, 3]  # [..., N, 8, 3]

    # chi2..chi4 hang off the previous chi group: chain them back to the backbone frame
    chained_rots, chained_trans = [local_rots[..., 4, :, :]], [local_trans[..., 4, :]]
    for g in (5, 6, 7):
        r, t = rigid_compose(chained_rots[-1], chained_trans[-1], local_rots[..., g, :, :], local_trans[..., g, :])
        chained_rots.append(r)
        chained_trans.append(t)
    to_bb_rots = torch.cat([local_rots[..., :4, :, :], torch.stack(chained_rots, dim=-3)], dim=-3)
    to_bb_trans = torch.cat([local_trans[..., :4, :], torch.stack(chained_trans, dim=-2)], dim=-2)
    return rigid_compose(rots[..., None, :, :], trans[..., None, :], to_bb_rots, to_bb_trans)


def gather_group_frames(
    group_rots: torch.Tensor, group_trans: torch.Tensor, group_index: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames of chosen groups: group_rots ``[..., N, 8, 3, 3]``, group_trans ``[..., N, 8, 3]``,
    group_index ``[..., N, K]`` (0..7) -> rots ``[..., N, K, 3, 3]``, trans ``[..., N, K, 3]``."""
    group_index = group_index.long().expand(group_trans.shape[:-2] + group_index.shape[-1:])
    return gather_slots(group_rots, group_index), gather_slots(group_trans, group_index)


def frames_to_atom14(
    group_rots: torch.Tensor,
    group_trans: torch.Tensor,
    aatype: torch.Tensor,
    local_positions: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Heavy atoms from the 8 rigid-group frames.

    Args:
        group_rots ``[..., N, 8, 3, 3]``, group_trans ``[..., N, 8, 3]`` (nm), from
            :func:`torsion_angles_to_frames`.
        aatype: ``[..., N]``.
        local_positions: optional ``[..., N, 14, 3]`` (broadcast) atom positions in their
            groups' frames, ``ResidueGeometry.local_positions``, instead of the literature ones.

    Returns:
        atom14 ``[..., N, 14, 3]`` (zeros at absent slots) and atom14_mask ``[..., N, 14]``.
    """
    if group_rots.shape[-3:] != (rc.NUM_RIGID_GROUPS, 3, 3) or group_trans.shape != group_rots.shape[:-1]:
        raise ValueError(
            f"group_rots must be [..., N, 8, 3, 3] and group_trans [..., N, 8, 3], "
            f"got {tuple(group_rots.shape)} and {tuple(group_trans.shape)}"
        )
    aatype = _check_aatype(aatype, group_trans.shape[:-2], "group_trans")
    mask = rc.restype_atom14_mask.to(group_trans)[aatype]  # [..., N, 14]
    if local_positions is None:
        local_positions = rc.restype_atom14_local_positions.to(group_trans)[aatype]
    elif local_positions.shape[-2:] != (rc.NUM_ATOM14, 3):
        raise ValueError(f"local_positions must have shape [..., N, 14, 3], got {tuple(local_positions.shape)}")
    else:
        local_positions = local_positions.to(group_trans).expand(mask.shape + (3,))
    r, t = gather_group_frames(group_rots, group_trans, rc.group_of_atom14.to(aatype.device)[aatype])
    return rigid_apply(r, t, local_positions) * mask[..., None], mask


def atom14_from_frames_torsions(
    rots: torch.Tensor,
    trans: torch.Tensor,
    torsions: torch.Tensor,
    aatype: torch.Tensor,
    geometry: Optional[ResidueGeometry] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`torsion_angles_to_frames` then :func:`frames_to_atom14`: backbone frames
    ``[..., N]`` + torsions ``[..., N, 7, 2]`` -> atom14 ``[..., N, 14, 3]`` nm, mask ``[..., N, 14]``.

    ``geometry`` (from :func:`residue_geometry_from_atom14`) keeps a structure's own bond
    lengths and angles; None uses the literature ones.
    """
    default_frames = None if geometry is None else geometry.default_frames
    local_positions = None if geometry is None else geometry.local_positions
    group_rots, group_trans = torsion_angles_to_frames(rots, trans, torsions, aatype, default_frames)
    return frames_to_atom14(group_rots, group_trans, aatype, local_positions)


def residue_geometry_from_atom14(atom14: torch.Tensor, atom14_mask: torch.Tensor, aatype: torch.Tensor) -> ResidueGeometry:
    """The internal geometry of each residue of a structure, in rigid-group form.

    atom14 ``[..., N, 14, 3]`` nm, atom14_mask ``[..., N, 14]``, aatype ``[..., N]``.
    Every atom is expressed in the frame its group has when built from the atoms themselves
    (AF2's ``atom37_to_frames``: origin on the axis end, x along the axis, the torsion's last
    atom in the xy plane), and the default frames are derived from those positions exactly as
    the literature ones are. Rebuilding with the structure's own frames and torsions then
    reproduces it to float precision, and new torsions keep all its bond lengths and angles.
    Residues with a missing heavy atom, and unknown residues, get the literature geometry.
    """
    _check_points(atom14, "atom14", rc.NUM_ATOM14)
    aatype = _check_aatype(aatype, atom14.shape[:-2], "atom14")
    exists = rc.restype_atom14_mask.to(atom14)[aatype]  # [..., N, 14]
    complete = ((atom14_mask.to(atom14) * exists).sum(-1) == exists.sum(-1)) & (aatype != rc.UNKNOWN_RESTYPE)
    chi_index = rc.chi_angles_atom14.to(aatype.device)[aatype]  # [..., N, 4, 4]
    chi_mask = rc.chi_angles_mask.to(atom14)[aatype]  # [..., N, 4]

    # frames of the groups that place atoms (0 backbone, 3 psi, 4-7 chis), built from atoms
    bb_rots, bb_trans = frames_from_three_points(atom14[..., 0, :], atom14[..., 1, :], atom14[..., 2, :])
    psi_rots, psi_trans = axis_frames(atom14[..., 1, :], atom14[..., 2, :], atom14[..., 3, :])  # CA, C, O
    chi = gather_slots(atom14, chi_index.flatten(-2)).reshape(chi_index.shape + (3,))  # [..., N, 4, 4, 3]
    chi_rots, chi_trans = axis_frames(chi[..., 1, :], chi[..., 2, :], chi[..., 3, :])  # [..., N, 4, 3, 3]
    bb_r, bb_t = bb_rots.unsqueeze(-3), bb_trans.unsqueeze(-2)
    group_rots = torch.cat([bb_r, bb_r, bb_r, psi_rots.unsqueeze(-3), chi_rots], dim=-3)  # [..., N, 8, 3, 3]
    group_trans = torch.cat([bb_t, bb_t, bb_t, psi_trans.unsqueeze(-2), chi_trans], dim=-2)  # [..., N, 8, 3]
    r, t = gather_group_frames(group_rots, group_trans, rc.group_of_atom14.to(aatype.device)[aatype])
    local = rigid_invert_apply(r, t, atom14) * exists[..., None]
    default = default_frames_from_local_positions(local, chi_index, chi_mask)

    literature_local = rc.restype_atom14_local_positions.to(atom14)[aatype]
    literature_default = rc.restype_rigid_group_default_frame.to(atom14)[aatype]
    local = torch.where(complete[..., None, None], local, literature_local)
    default = torch.where(complete[..., None, None, None], default, literature_default)
    return ResidueGeometry(default, local)


def atom14_to_group_frames(
    atom14: torch.Tensor,
    atom14_mask: torch.Tensor,
    aatype: torch.Tensor,
    default_frames: Optional[torch.Tensor] = None,
    residue_index: Optional[torch.Tensor] = None,
    chain_start: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The 8 rigid-group frames of a structure: its backbone frames and measured torsions
    through :func:`torsion_angles_to_frames` -> rots ``[..., N, 8, 3, 3]``, trans ``[..., N, 8, 3]``.

    Use it to carry atoms the model does not place (hydrogens, OXT): express them in
    ``attached_group_of_atom14`` frames of the structure before a jump and apply the frames
    of the rebuilt structure after it, both with the same ``default_frames`` (from
    :func:`residue_geometry_from_atom14` of the starting structure). With those, each group
    frame sits on the structure's own atoms (the phi group on N, with C(i-1) in its xy
    plane), so bond lengths and angles to carried atoms are kept exactly.
    """
    ft = atom14_to_frames_torsions(atom14, atom14_mask, aatype, residue_index, chain_start)
    return torsion_angles_to_frames(ft.rots, ft.trans, ft.torsions, aatype, default_frames)


def pseudo_beta(
    rots: torch.Tensor,
    trans: torch.Tensor,
    aatype: torch.Tensor,
    cb_local_nm: tuple[float, float, float] = rc.IDEAL_CB_LOCAL_NM,
    gly_index: int = rc.GLY_INDEX,
) -> torch.Tensor:
    """Ideal CB ``[..., N, 3]`` placed by the backbone frame (ALA's CB); CA for glycine.

    rots ``[..., N, 3, 3]``, trans ``[..., N, 3]`` nm, aatype ``[..., N]`` (broadcast).
    The constants are default arguments so that the function is TorchScript-compatible;
    leave them alone.
    """
    cb_local = torch.tensor([cb_local_nm[0], cb_local_nm[1], cb_local_nm[2]], dtype=trans.dtype, device=trans.device)
    cb = torch.matmul(rots, cb_local) + trans
    is_gly = (aatype == gly_index).unsqueeze(-1)
    return torch.where(is_gly, trans, cb)


def atom37_to_atom14(
    atom37: torch.Tensor, atom37_mask: torch.Tensor, aatype: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """atom37 ``[..., N, 37, 3]`` + mask ``[..., N, 37]`` -> atom14 ``[..., N, 14, 3]`` + mask
    ``[..., N, 14]`` (atoms absent from the residue type, e.g. OXT, are dropped)."""
    _check_points(atom37, "atom37", rc.NUM_ATOM37)
    aatype = _check_aatype(aatype, atom37.shape[:-2], "atom37")
    index = rc.restype_atom14_to_atom37.to(aatype.device)[aatype]  # [..., N, 14]
    exists = rc.restype_atom14_mask.to(atom37)[aatype]
    mask = gather_slots(atom37_mask.to(atom37), index) * exists
    return gather_slots(atom37, index) * mask[..., None], mask


def atom14_to_atom37(
    atom14: torch.Tensor, atom14_mask: torch.Tensor, aatype: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """atom14 ``[..., N, 14, 3]`` + mask -> atom37 ``[..., N, 37, 3]`` + mask ``[..., N, 37]``."""
    _check_points(atom14, "atom14", rc.NUM_ATOM14)
    aatype = _check_aatype(aatype, atom14.shape[:-2], "atom14")
    index = rc.restype_atom37_to_atom14.to(aatype.device)[aatype]  # [..., N, 37]
    exists = rc.restype_atom37_mask.to(atom14)[aatype]
    mask = gather_slots(atom14_mask.to(atom14), index) * exists
    return gather_slots(atom14, index) * mask[..., None], mask
