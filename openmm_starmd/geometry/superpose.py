"""Optimal superposition (Kabsch) in torch."""
from __future__ import annotations

from typing import Optional, Tuple

import torch


def kabsch(mobile: torch.Tensor, target: torch.Tensor, weights: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Rigid motion (R ``[..., 3, 3]``, t ``[..., 3]``) minimising |R mobile + t - target| over points
    ``[..., P, 3]`` (optional weights ``[..., P]``). A proper rotation (det +1). TorchScript-compatible."""
    if mobile.shape != target.shape or mobile.shape[-1] != 3:
        raise ValueError("mobile and target must both be [..., P, 3]; got " + str(list(mobile.shape)) + " and " + str(list(target.shape)))
    if weights is None:
        w = torch.full(mobile.shape[:-1], 1.0 / mobile.shape[-2], dtype=mobile.dtype, device=mobile.device)[..., None]
    else:
        w = (weights / weights.sum(-1, keepdim=True))[..., None]  # [..., P, 1]
    mu_m = (w * mobile).sum(-2)
    mu_t = (w * target).sum(-2)
    a = mobile - mu_m[..., None, :]
    b = target - mu_t[..., None, :]
    cov = torch.einsum("...pi,...pj->...ij", w * b, a).double()  # sum w b a^T
    u, _, vh = torch.linalg.svd(cov)
    d = torch.sign(torch.linalg.det(u @ vh))
    diag = torch.stack([torch.ones_like(d), torch.ones_like(d), d], dim=-1)
    rot = (u * diag[..., None, :]) @ vh
    rot = rot.to(mobile.dtype)
    return rot, mu_t - torch.einsum("...ij,...j->...i", rot, mu_m)


def superpose(mobile: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mobile [..., P, 3]`` moved onto ``target`` by the Kabsch rigid motion."""
    rot, t = kabsch(mobile, target)
    return torch.einsum("...ij,...pj->...pi", rot, mobile) + t[..., None, :]


def rmsd(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """RMSD ``[...]`` between point sets ``[..., P, 3]`` after optimal superposition."""
    return torch.sqrt(((superpose(a, b) - b) ** 2).sum(-1).mean(-1))
