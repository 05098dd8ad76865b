"""Private TorchScript-compatible helpers of the diffusion package."""
from __future__ import annotations

from typing import Optional

import torch



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
