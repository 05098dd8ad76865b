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
