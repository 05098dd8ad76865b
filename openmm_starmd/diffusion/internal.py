"""Private TorchScript-compatible helpers of the diffusion package.

``expmap``/``logmap`` are the SO(3) exponential and logarithm routed through the quaternion
maps of :mod:`openmm_starmd.geometry.so3`. They exist because ``so3.rotvec_to_rotmat`` and
``so3.rotmat_to_rotvec`` read a module-level float (``_SMALL_ANGLE``), which TorchScript cannot
compile; once those two are scriptable the diffuser should call them and these two go away
(tests/test_diffusion.py checks that both pairs agree).
"""
from __future__ import annotations

from typing import Optional

import torch

from openmm_starmd.geometry.so3 import quat_to_rotmat, rotmat_to_quat


def expmap(rotvec: torch.Tensor) -> torch.Tensor:
    """Rotation vectors ``[..., 3]`` (axis * angle) -> rotation matrices ``[..., 3, 3]``."""
    angle = torch.linalg.norm(rotvec, dim=-1, keepdim=True)  # [..., 1]
    small = angle < 1e-4
    safe = torch.where(small, torch.ones_like(angle), angle)
    # sin(angle / 2) / angle, with its Taylor series near zero
    k = torch.where(small, 0.5 - angle * angle / 48.0, torch.sin(0.5 * safe) / safe)
    quat = torch.cat([torch.cos(0.5 * angle), rotvec * k], dim=-1)  # [..., 4] (w, x, y, z)
    return quat_to_rotmat(quat)


def logmap(rots: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[..., 3, 3]`` -> rotation vectors ``[..., 3]`` with angle in [0, pi]."""
    quat = rotmat_to_quat(rots)
    sign = torch.where(quat[..., :1] < 0, -torch.ones_like(quat[..., :1]), torch.ones_like(quat[..., :1]))
    quat = quat * sign  # w >= 0 so the angle is in [0, pi]
    w = quat[..., 0].clamp(0.0, 1.0)
    xyz = quat[..., 1:]
    sin_half = torch.linalg.norm(xyz, dim=-1)
    angle = 2.0 * torch.atan2(sin_half, w)
    small = sin_half < 1e-4
    scale = torch.where(small, 2.0 / w.clamp_min(1e-12), angle / sin_half.clamp_min(1e-12))
    return xyz * scale[..., None]


def mask_like(x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Residue mask ``[..., N]`` as ``x``'s dtype (all ones when ``mask`` is None) for ``x [..., N, 3]``."""
    if mask is None:
        return torch.ones(x.shape[:-1], dtype=x.dtype, device=x.device)
    return mask.to(x.dtype)


def remove_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Subtract the mean over present residues: ``x [..., N, 3]``, ``mask [..., N]`` (1 = present).

    Absent residues are zeroed, so the result lies in the zero-mean subspace of the present ones.
    """
    m = mask[..., None]  # [..., N, 1]
    count = m.sum(dim=-2, keepdim=True).clamp_min(1.0)  # [..., 1, 1]
    mean = (x * m).sum(dim=-2, keepdim=True) / count  # [..., 1, 3]
    return (x - mean) * m


def interp_rows(table: torch.Tensor, row_pos: torch.Tensor, col_pos: torch.Tensor) -> torch.Tensor:
    """Bilinear interpolation in a table ``[S, W]`` at fractional grid positions (same shape ``[...]``).

    Positions are clamped to the table; the result has the table's dtype.
    """
    S, W = table.shape[0], table.shape[1]
    row_pos = row_pos.clamp(0.0, float(S - 1))
    col_pos = col_pos.clamp(0.0, float(W - 1))
    r0 = row_pos.floor().clamp(max=float(S - 2))
    c0 = col_pos.floor().clamp(max=float(W - 2))
    fr = row_pos - r0
    fc = col_pos - c0
    flat = table.reshape(-1)  # [S * W]
    i00 = r0.long() * W + c0.long()
    v00 = flat[i00]
    v01 = flat[i00 + 1]
    v10 = flat[i00 + W]
    v11 = flat[i00 + W + 1]
    return (1.0 - fr) * ((1.0 - fc) * v00 + fc * v01) + fr * ((1.0 - fc) * v10 + fc * v11)
