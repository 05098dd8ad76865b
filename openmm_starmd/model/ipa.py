"""Invariant Point Attention (AF2 supplement, Algorithm 22), written for this package.

One call updates the singles of each frame independently; frames are flattened into the
batch: M = B·F structures of N residues.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from openmm_starmd.geometry.rigid import rigid_apply, rigid_invert_apply


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
        self.down_z = nn.Linear(c_z, c_z // 4)
        out_dim = heads * (self.c + v_points * 4 + c_z // 4)
        self.out = nn.Linear(out_dim, c_s)
        self.w_l = math.sqrt(1.0 / 3.0)
        self.w_c = math.sqrt(2.0 / (9.0 * qk_points))

    def forward(self, s: torch.Tensor, z: torch.Tensor, rots: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
        M, N, _ = s.shape
        H, C, P, V = self.heads, self.c, self.qk_points, self.v_points
        q, k, v = self.to_qkv(s).view(M, N, H, 3 * C).split(C, dim=-1)  # each [M, N, H, C]

        qk_pts = self.to_qk_pts(s).view(M, N, 2 * H * P, 3)
        qk_pts = rigid_apply(rots[:, :, None], trans[:, :, None], qk_pts)  # local -> global, nm
        q_pts, k_pts = qk_pts.view(M, N, 2, H, P, 3).unbind(2)  # each [M, N, H, P, 3]
        v_pts = self.to_v_pts(s).view(M, N, H * V, 3)
        v_pts = rigid_apply(rots[:, :, None], trans[:, :, None], v_pts).view(M, N, H, V, 3)

        logits = torch.einsum("mihc,mjhc->mhij", q, k) / math.sqrt(C)
        logits = logits + self.to_bias(z).permute(0, 3, 1, 2)  # [M, H, N, N]
        d2 = ((q_pts[:, :, None] - k_pts[:, None, :]) ** 2).sum(dim=(-1, -2))  # [M, N, N, H]
        gamma = nn.functional.softplus(self.head_weights)
        logits = logits - 0.5 * self.w_c * gamma.view(1, H, 1, 1) * d2.permute(0, 3, 1, 2)
        attn = torch.softmax(self.w_l * logits, dim=-1)  # [M, H, N, N]

        o_scalar = torch.einsum("mhij,mjhc->mihc", attn, v).reshape(M, N, H * C)
        o_pts = torch.einsum("mhij,mjhvx->mihvx", attn, v_pts)  # global [M, N, H, V, 3]
        o_pts = rigid_invert_apply(rots[:, :, None, None], trans[:, :, None, None], o_pts)  # back to local
        o_norm = torch.sqrt((o_pts**2).sum(-1) + 1e-8).reshape(M, N, H * V)
        o_pair = torch.einsum("mhij,mijc->mihc", attn, self.down_z(z)).reshape(M, N, -1)
        return self.out(torch.cat([o_scalar, o_pts.reshape(M, N, H * V * 3), o_norm, o_pair], dim=-1))
