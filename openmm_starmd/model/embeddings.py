"""Input features: sequence singles, pair features (relative index + pseudo-Cβ distogram),
optional precomputed OpenFold singles/pairs, and the AdaLN conditioning vector."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from openmm_starmd.geometry.superpose import kabsch

NUM_RESTYPES_WITH_UNKNOWN = 21


def sinusoidal_embedding(x: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features ``[..., dim]`` of real positions ``x [...]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=x.device) / half)
    args = x.float()[..., None] * freqs
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[..., :1])], dim=-1)
    return emb


class SequenceEmbedding(nn.Module):
    """Per-residue singles from amino-acid type, optionally the absolute residue index, and
    optional OpenFold singles.

    aatype ``[B, N]`` (0..20), residue_index ``[B, N]``, openfold_single ``[B, N, C_of]`` -> ``[B, N, c_s]``.
    Without ``absolute_index`` the singles do not depend on residue numbers at all; position
    then enters only through the 2D RoPE and the relative-index pair features.
    """

    def __init__(self, c_s: int, c_relpos: int, openfold_single_dim: int, absolute_index: bool = True):
        super().__init__()
        self.c_relpos = c_relpos
        self.absolute_index = absolute_index
        self.aatype = nn.Embedding(NUM_RESTYPES_WITH_UNKNOWN, c_s)
        self.index = nn.Linear(c_relpos, c_s) if absolute_index else nn.Identity()
        self.use_openfold = openfold_single_dim > 0
        self.openfold = nn.Sequential(nn.LayerNorm(openfold_single_dim), nn.Linear(openfold_single_dim, c_s)) if self.use_openfold else nn.Identity()
        self.out = nn.Sequential(nn.LayerNorm(c_s), nn.Linear(c_s, c_s))

    def forward(self, aatype: torch.Tensor, residue_index: torch.Tensor, openfold_single: Optional[torch.Tensor]) -> torch.Tensor:
        s = self.aatype(aatype)
        if self.absolute_index:
            s = s + self.index(sinusoidal_embedding(residue_index, self.c_relpos))
        if self.use_openfold:
            if openfold_single is None:
                raise ValueError("this model was built with OpenFold single features; pass openfold_single [B, N, C]")
            s = s + self.openfold(openfold_single)
        return self.out(s)


def template_features(rots: torch.Tensor, trans: torch.Tensor, pseudo_beta: torch.Tensor, bin_edges: torch.Tensor) -> torch.Tensor:
    """Invariant pair features of a template structure (AlphaFold2-style template channels):
    pseudo-Cβ distogram one-hot, the unit vector from residue i to j in i's frame, and the
    relative rotation R_iᵀR_j.

    rots ``[B, F, N, 3, 3]``, trans ``[B, F, N, 3]`` nm, pseudo_beta ``[B, F, N, 3]`` nm
    -> ``[B, F, N, N, bins + 3 + 9]``; unchanged by a global rotation and translation.
    """
    B, Fr, N = trans.shape[0], trans.shape[1], trans.shape[2]
    d = torch.cdist(pseudo_beta, pseudo_beta)  # [B, F, N, N]
    dgram = nn.functional.one_hot(torch.bucketize(d, bin_edges), bin_edges.shape[0] + 1).to(trans.dtype)
    diff = trans[:, :, None, :, :] - trans[:, :, :, None, :]  # [B, F, N(i), N(j), 3]: t_j - t_i
    local = torch.einsum("bfiac,bfija->bfijc", rots, diff)  # R_iᵀ (t_j - t_i)
    unit = local / torch.sqrt((local**2).sum(-1, keepdim=True) + 1e-8)
    rel_rot = torch.einsum("bfiac,bfjad->bfijcd", rots, rots).reshape(B, Fr, N, N, 9)  # R_iᵀ R_j
    return torch.cat([dgram, unit, rel_rot], dim=-1)


MOTION_FEATURES = 14


def motion_features(rots: torch.Tensor, trans: torch.Tensor, prev_rots: torch.Tensor, prev_trans: torch.Tensor,
                    has_prev: torch.Tensor) -> torch.Tensor:
    """How each residue moved from the frame before to this one, invariant to a rigid motion of either.

    The previous frame is superposed onto this one (Cα Kabsch); then per residue: its displacement in
    this frame's local axes R_ℓᵀ(x_ℓ - x'_ℓ₋₁) in Å (3), the relative rotation R_ℓᵀR'_ℓ₋₁ minus the
    identity (9), the length of the displacement in Å (1) and the flag ``has_prev`` (1). All 14 are 0
    where there is no previous frame.

    rots ``[B, F, N, 3, 3]``, trans ``[B, F, N, 3]`` nm; prev_* the same; has_prev ``[B, F]`` (0 or 1)
    -> ``[B, F, N, 14]``.
    """
    B, Fr, N = trans.shape[0], trans.shape[1], trans.shape[2]
    rot, shift = kabsch(prev_trans, trans)  # [B, F, 3, 3], [B, F, 3]: the previous frame's Cα onto this frame's
    moved = torch.einsum("bfij,bfnj->bfni", rot, prev_trans) + shift[:, :, None, :]
    moved_rots = rot[:, :, None] @ prev_rots
    disp = torch.einsum("bfnij,bfni->bfnj", rots, trans - moved) * 10.0  # Å, in this frame's axes
    eye = torch.eye(3, dtype=trans.dtype, device=trans.device)
    rel = (torch.einsum("bfnij,bfnik->bfnjk", rots, moved_rots) - eye).reshape(B, Fr, N, 9)
    length = torch.sqrt((disp**2).sum(-1, keepdim=True) + 1e-12)
    flag = torch.ones_like(length)
    feats = torch.cat([disp, rel, length, flag], dim=-1)
    return feats * has_prev[:, :, None, None].to(trans.dtype)


class PairEmbedding(nn.Module):
    """Pair features from relative residue index (+ optional OpenFold pairs), and per frame
    a pseudo-Cβ distogram and, with ``template``, the template features of the last clean
    context frame (:func:`template_features`).

    ``static(residue_index, openfold_pair) -> [B, N, N, c_z]`` is computed once per protein;
    ``forward(static, pseudo_beta [B, F, N, 3], template [B, F, N, N, T]) -> [B, F, N, N, c_z]``
    adds the frame geometry.
    """

    def __init__(self, c_z: int, relpos_max: int, bins: int, min_nm: float, max_nm: float, openfold_pair_dim: int,
                 template: bool = False):
        super().__init__()
        self.use_template = template
        self.template = nn.Linear(bins + 3 + 9, c_z) if template else nn.Identity()
        self.relpos_max = relpos_max
        self.relpos = nn.Linear(2 * relpos_max + 2, c_z)  # last bin: different chain / segment
        self.use_openfold = openfold_pair_dim > 0
        self.openfold = nn.Sequential(nn.LayerNorm(openfold_pair_dim), nn.Linear(openfold_pair_dim, c_z)) if self.use_openfold else nn.Identity()
        self.register_buffer("bin_edges", torch.linspace(min_nm, max_nm, bins - 1), persistent=False)
        self.distogram = nn.Linear(bins, c_z)
        self.out = nn.Sequential(nn.LayerNorm(c_z), nn.Linear(c_z, c_z))

    def static(self, residue_index: torch.Tensor, chain_index: torch.Tensor, openfold_pair: Optional[torch.Tensor]) -> torch.Tensor:
        rel = residue_index[:, :, None] - residue_index[:, None, :]  # [B, N, N]
        rel = rel.clamp(-self.relpos_max, self.relpos_max) + self.relpos_max
        other_chain = chain_index[:, :, None] != chain_index[:, None, :]
        rel = torch.where(other_chain, torch.full_like(rel, 2 * self.relpos_max + 1), rel)
        z = self.relpos(nn.functional.one_hot(rel.long(), 2 * self.relpos_max + 2).float())
        if self.use_openfold:
            if openfold_pair is None:
                raise ValueError("this model was built with OpenFold pair features; pass openfold_pair [B, N, N, C]")
            z = z + self.openfold(openfold_pair)
        return z

    def forward(self, z_static: torch.Tensor, pseudo_beta: torch.Tensor, template: Optional[torch.Tensor] = None) -> torch.Tensor:
        d = torch.cdist(pseudo_beta, pseudo_beta)  # [B, F, N, N] nm
        idx = torch.bucketize(d, self.bin_edges)  # bins: <min, ..., >=max
        dgram = nn.functional.one_hot(idx, self.bin_edges.shape[0] + 1).float()
        z = z_static[:, None] + self.distogram(dgram)
        if self.use_template:
            if template is None:
                raise ValueError("this model was built with template pair features; pass the template frames")
            z = z + self.template(template)
        return self.out(z)


class ConditioningEmbedding(nn.Module):
    """AdaLN conditioning from diffusion time t ``[B, F]`` and log10 stride ``[B]`` -> ``[B, F, c_cond]``."""

    def __init__(self, c_cond: int):
        super().__init__()
        self.c_cond = c_cond
        self.time = nn.Sequential(nn.Linear(c_cond, c_cond), nn.SiLU(), nn.Linear(c_cond, c_cond))
        self.stride = nn.Sequential(nn.Linear(c_cond, c_cond), nn.SiLU(), nn.Linear(c_cond, c_cond))

    def forward(self, t: torch.Tensor, log10_stride_ns: torch.Tensor) -> torch.Tensor:
        # t in [0, 1] scaled so the sinusoid sees a useful range; log10 stride in about [-2, 1].
        te = self.time(sinusoidal_embedding(t * 1000.0, self.c_cond))
        se = self.stride(sinusoidal_embedding(log10_stride_ns * 100.0, self.c_cond, max_period=1000.0))
        return nn.functional.silu(te + se[:, None, :])
