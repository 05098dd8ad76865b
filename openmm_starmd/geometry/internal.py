"""Private tensor helpers for :mod:`openmm_starmd.geometry.all_atom` (torch only)."""
from __future__ import annotations

import torch

_EPS = 1e-8


def dihedral_sincos(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """(sin, cos) ``[..., 2]`` of the dihedral a-b-c-d for points ``[..., 3]`` (AF2's way).

    Builds the frame with origin c, x along b->c and a in the xy plane (positive y), and
    reads d's direction around the x axis: sin = z, cos = y. This is the IUPAC dihedral
    (positive clockwise looking from b to c); degenerate input gives finite values.
    """
    e1 = c - b
    e1 = e1 / torch.sqrt((e1 * e1).sum(-1, keepdim=True) + _EPS)
    u = a - c
    u = u - e1 * (e1 * u).sum(-1, keepdim=True)
    e2 = u / torch.sqrt((u * u).sum(-1, keepdim=True) + _EPS)
    e3 = torch.linalg.cross(e1, e2, dim=-1)
    v = d - c
    y = (v * e2).sum(-1)
    z = (v * e3).sum(-1)
    sincos = torch.stack([z, y], dim=-1)
    return sincos / torch.sqrt((sincos * sincos).sum(-1, keepdim=True) + _EPS)


def gather_slots(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Gather per-residue slots: x ``[..., N, S, *F]``, index ``[..., N, K]`` -> ``[..., N, K, *F]``.

    ``index`` has the same leading dimensions ``[..., N]`` as ``x``.
    """
    d = index.dim() - 1  # the slot dimension
    feat = x.shape[d + 1:]
    expanded = index.reshape(index.shape + (1,) * len(feat)).expand(index.shape + feat)
    return torch.gather(x, d, expanded)


def rot_x(sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """Rotations about the x axis ``[..., 3, 3]`` from sin, cos ``[...]``."""
    zero = torch.zeros_like(sin)
    one = torch.ones_like(sin)
    return torch.stack(
        [
            torch.stack([one, zero, zero], -1),
            torch.stack([zero, cos, -sin], -1),
            torch.stack([zero, sin, cos], -1),
        ],
        -2,
    )


def previous_residue(x: torch.Tensor, residue_dim: int) -> torch.Tensor:
    """Shift along the residue dimension so entry i holds residue i-1 (zeros at i = 0)."""
    first = torch.zeros_like(x.narrow(residue_dim, 0, 1))
    return torch.cat([first, x.narrow(residue_dim, 0, x.shape[residue_dim] - 1)], dim=residue_dim)


def axis_frames(
    on_neg_x: torch.Tensor, origin: torch.Tensor, in_xy: torch.Tensor, eps: float = 1e-8
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames ``(rots [..., 3, 3], trans [..., 3])`` from three points ``[..., 3]``: origin at
    ``origin``, x along on_neg_x -> origin, ``in_xy`` in the xy plane with positive y
    (AF2's rigid-group frame of a torsion axis)."""
    e1 = origin - on_neg_x
    e1 = e1 / torch.sqrt((e1 * e1).sum(-1, keepdim=True) + eps * eps)
    u = in_xy - origin
    u = u - e1 * (e1 * u).sum(-1, keepdim=True)
    e2 = u / torch.sqrt((u * u).sum(-1, keepdim=True) + eps * eps)
    return torch.stack([e1, e2, torch.linalg.cross(e1, e2, dim=-1)], dim=-1), origin


def _frames_4x4(ex: torch.Tensor, ey: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
    """4x4 frames ``[..., 4, 4]``: x along ex, y in the (ex, ey) plane on the ey side."""
    rots, _ = axis_frames(torch.zeros_like(ex), ex, ey + ex)  # x along ex; y from ey's normal part
    m = torch.zeros(ex.shape[:-1] + (4, 4), dtype=ex.dtype, device=ex.device)
    m[..., :3, :3] = rots
    m[..., :3, 3] = origin
    m[..., 3, 3] = 1.0
    return m


def default_frames_from_local_positions(
    local: torch.Tensor, chi_atom14: torch.Tensor, chi_mask: torch.Tensor
) -> torch.Tensor:
    """Rigid-group default frames ``[..., 8, 4, 4]`` (each relative to its parent group) from
    atom positions ``[..., 14, 3]`` given in the frames of their own groups (AF2 supplement 1.8).

    ``chi_atom14`` ``[..., 4, 4]`` holds the atom14 slots of chi1..chi4 and ``chi_mask``
    ``[..., 4]`` which exist. Groups: 0 backbone and 1 pre-omega are the identity; 2 phi
    (origin N, x along CA->N, y towards C); 3 psi (origin C, x along CA->C, y away from N);
    4 chi1 (origin CB, x along CA->CB, y towards N); chi_k (k > 1) relative to chi_{k-1},
    origin at chi_k's axis end, x along the axis, y back towards chi_{k-1}'s axis start.
    """
    n, ca, c = local[..., 0, :], local[..., 1, :], local[..., 2, :]
    unit_x = torch.zeros_like(n)
    unit_x[..., 0] = 1.0
    eye = torch.eye(4, dtype=local.dtype, device=local.device).expand(n.shape[:-1] + (4, 4))
    chi = gather_slots(local, chi_atom14.flatten(-2)).reshape(chi_atom14.shape + (3,))  # [..., 4, 4 atoms, 3]
    a1, b1, c1 = chi[..., 0, 0, :], chi[..., 0, 1, :], chi[..., 0, 2, :]
    frames = [eye, eye, _frames_4x4(n - ca, unit_x, n), _frames_4x4(c - ca, ca - n, c), _frames_4x4(c1 - b1, a1 - b1, c1)]
    for k in (1, 2, 3):
        axis_end = chi[..., k, 2, :]  # already local to chi_{k-1}, whose origin is the axis start
        frames.append(_frames_4x4(axis_end, -unit_x, axis_end))
    frames_t = torch.stack(frames, dim=-3)  # [..., 8, 4, 4]
    exists = torch.cat([torch.ones_like(chi_mask), chi_mask], dim=-1)  # [..., 8]
    return torch.where(exists[..., None, None] > 0, frames_t, eye.unsqueeze(-3))

