"""Invariant Point Attention (AF2 supplement, Algorithm 22), written for this package.

One call updates the singles of each frame independently; frames are flattened into the
batch: M = B·F structures of N residues.

The point term of the logits, -γ_h w_C/2 Σ_p |T_i q_p - T_j k_p|², is expanded as
γ_h w_C Σ_p q_p·k_p - γ_h w_C/2 Σ_p |k_p|² - (a term constant over keys, which softmax drops),
so scalar and point attention become one batched product of concatenated [q, q_points] and
[k, k_points] vectors. This is the same function as Algorithm 22, with fewer, larger operations.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def _to_global(rots: torch.Tensor, trans: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """Local points ``[M, N, K, 3]`` -> global, with frames rots ``[M, N, 3, 3]``, trans ``[M, N, 3]``."""
    return torch.matmul(pts, rots.transpose(-1, -2)) + trans[:, :, None, :]


def _to_local(rots: torch.Tensor, trans: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """Global points ``[M, N, K, 3]`` -> each residue's local frame."""
    return torch.matmul(pts - trans[:, :, None, :], rots)


class InvariantPointAttention(nn.Module):
    """s ``[M, N, c_s]``, z ``[M, N, N, c_z]``, frames (rots ``[M, N, 3, 3]``, trans ``[M, N, 3]``, nm)
    -> update ``[M, N, c_s]``; invariant to a global rigid motion of the frames."""

    def __init__(self, c_s: int, c_z: int, hidden: int, heads: int, qk_points: int, v_points: int):
        super().__init__()
        self.heads = heads
        self.c = hidden // heads
        self.qk_points = qk_points
        self.v_points = v_points
        self.to_qkv = nn.Linear(c_s, 3 * hidden)
        self.to_qk_pts = nn.Linear(c_s, 2 * heads * qk_points * 3)
        self.to_v_pts = nn.Linear(c_s, heads * v_points * 3)
        self.to_bias = nn.Linear(c_z, heads)
        self.head_weights = nn.Parameter(torch.full((heads,), math.log(math.e - 1.0)))  # softplus -> 1
        self.c_z_down = max(c_z // 4, 1)
        self.down_z = nn.Linear(c_z, self.c_z_down)
        out_dim = heads * (self.c + v_points * 4 + self.c_z_down)
        self.out = nn.Linear(out_dim, c_s)
        self.w_l = math.sqrt(1.0 / 3.0)
        self.w_c = math.sqrt(2.0 / (9.0 * qk_points))

    def forward(self, s: torch.Tensor, z: torch.Tensor, rots: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
        M, N, _ = s.shape
        H, C, P, V = self.heads, self.c, self.qk_points, self.v_points
        q, k, v = self.to_qkv(s).view(M, N, H, 3 * C).split(C, dim=-1)  # each [M, N, H, C]
        qk_pts = _to_global(rots, trans, self.to_qk_pts(s).view(M, N, 2 * H * P, 3)).view(M, N, 2, H, P * 3)
        q_pts, k_pts = qk_pts[:, :, 0], qk_pts[:, :, 1]  # [M, N, H, 3P] global, nm
        v_pts = _to_global(rots, trans, self.to_v_pts(s).view(M, N, H * V, 3)).view(M, N, H, V * 3)

        gamma = nn.functional.softplus(self.head_weights).view(1, 1, H, 1)
        pt_scale = torch.sqrt(gamma * self.w_c)  # [1, 1, H, 1]
        q_cat = torch.cat([q / math.sqrt(C), q_pts * pt_scale], dim=-1).transpose(1, 2)  # [M, H, N, C+3P]
        k_cat = torch.cat([k, k_pts * pt_scale], dim=-1).transpose(1, 2)
        k_sq = 0.5 * (k_pts * pt_scale).pow(2).sum(-1).transpose(1, 2)  # [M, H, N] per key
        logits = torch.matmul(q_cat, k_cat.transpose(-1, -2))  # [M, H, N, N]
        logits = logits + self.to_bias(z).permute(0, 3, 1, 2) - k_sq[:, :, None, :]
        attn = torch.softmax(self.w_l * logits, dim=-1)

        v_cat = torch.cat([v, v_pts], dim=-1).transpose(1, 2)  # [M, H, N, C+3V]
        o = torch.matmul(attn, v_cat).transpose(1, 2)  # [M, N, H, C+3V]
        o_scalar = o[..., :C].reshape(M, N, H * C)
        o_pts = _to_local(rots, trans, o[..., C:].reshape(M, N, H * V, 3))  # back to local frames
        o_norm = torch.sqrt(o_pts.pow(2).sum(-1) + 1e-8)  # [M, N, H·V]
        o_pair = torch.matmul(attn.transpose(1, 2), self.down_z(z)).reshape(M, N, -1)  # [M, N, H·c_z/4]
        return self.out(torch.cat([o_scalar, o_pts.reshape(M, N, H * V * 3), o_norm, o_pair], dim=-1))
