"""Joint space×time (S×T) attention over single tokens (residue i, frame ℓ), with 2D rotary
embeddings over (residue index, frame index), pair-feature biases, and a singles-only KV cache.

Two ways to supply keys:

* **full** (training): the F frames of the call attend to each other through a boolean
  ``frame_mask [F, F]`` (True = query frame may attend to key frame); this is how the
  block-causal [clean | noisy] sequence is trained in one pass.
* **cached** (inference): the call's single frame attends to the cached keys/values of every
  finished frame ``k_cache[:, :, :fill]`` plus itself. Its own keys and values are written at
  ``[fill, fill + N)`` in every call; with ``append=True`` the caller then advances ``fill`` so
  they stay, otherwise the slot is scratch for the next call. The cache therefore needs room for
  one frame beyond the finished ones while a frame is being generated.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn


def rope_tables(residue_index: torch.Tensor, frame_index: torch.Tensor, num_frames: int, head_dim: int,
                base_residue: float, base_frame: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """cos and sin ``[B, 1, F·N, D/2]`` of the 2D rotary embedding of tokens (residue i, frame ℓ):
    the first half of each head's channels rotates with the residue index, the second half with
    the frame index. Computed once per forward call and shared by every S×T layer."""
    B, N = residue_index.shape
    quarter = head_dim // 4
    exps = torch.arange(quarter, dtype=torch.float32, device=residue_index.device) / quarter
    res_pos = residue_index.float().repeat(1, num_frames)  # [B, F·N]
    fr_pos = frame_index.float()[:, None].expand(num_frames, N).reshape(1, num_frames * N).expand(B, num_frames * N)
    ang = torch.cat([res_pos[..., None] * base_residue ** (-exps), fr_pos[..., None] * base_frame ** (-exps)], dim=-1)
    return torch.cos(ang)[:, None], torch.sin(ang)[:, None]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (c, c + D/2) of ``x [B, H, T, D]`` by the angles behind ``cos``/``sin [B, 1, T, D/2]``."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class SpaceTimeAttention(nn.Module):
    """Multi-head attention over (residue, frame) tokens; pair features enter as biases only."""

    def __init__(self, c_s: int, c_z: int, heads: int):
        super().__init__()
        self.heads = heads
        self.head_dim = c_s // heads
        self.to_qkv = nn.Linear(c_s, 3 * c_s, bias=False)
        self.to_bias = nn.Linear(c_z, heads, bias=False)
        self.out = nn.Linear(c_s, c_s)

    def forward(
        self,
        x: torch.Tensor,
        z: torch.Tensor,
        rope_cos: torch.Tensor,
        rope_sin: torch.Tensor,
        frame_mask: Optional[torch.Tensor],
        k_cache: Optional[torch.Tensor],
        v_cache: Optional[torch.Tensor],
        fill: int,
        append: bool,
        cache_start: int = 0,
        sink_end: int = 0,
    ) -> torch.Tensor:
        """x ``[B, F, N, C]``, z ``[B, F, N, N, c_z]``, rope_cos/rope_sin from :func:`rope_tables`
        -> ``[B, F, N, C]``. Exactly one of ``frame_mask`` / ``k_cache`` is given."""
        B, Fr, N, C = x.shape
        H, D = self.heads, self.head_dim
        qkv = self.to_qkv(x).view(B, Fr * N, 3, H, D).permute(2, 0, 3, 1, 4)  # [3, B, H, F·N, D]
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = apply_rope(q, rope_cos, rope_sin)
        k = apply_rope(k, rope_cos, rope_sin)
        bias = self.to_bias(z).permute(0, 4, 1, 2, 3)  # [B, H, F, N(query), N(key)]

        if k_cache is None:
            assert frame_mask is not None
            # bias of the query frame applies to the same key residue in every allowed key frame;
            # it is broadcast over key frames onto the scores, never materialised per key token
            scores = torch.matmul(q, k.transpose(-1, -2)) * D ** -0.5  # [B, H, F·N, F·N]
            scores = scores.view(B, H, Fr, N, Fr, N).add_(bias[:, :, :, :, None, :])
            scores = scores.masked_fill_(~frame_mask[None, None, :, None, :, None], float("-inf"))
            out = torch.matmul(torch.softmax(scores.view(B, H, Fr * N, Fr * N), dim=-1), v)
        else:
            assert v_cache is not None and Fr == 1
            # This frame's keys/values go to the next free slot [fill, fill + N): they are final when
            # ``append`` and scratch otherwise (overwritten by the next call), so the attention reads
            # the cache in place without concatenating copies of it.
            k_cache[:, :, fill:fill + N] = k
            v_cache[:, :, fill:fill + N] = v
            # keys of the frames from token ``cache_start`` on (a context window; 0: the whole history),
            # after the first ``sink_end`` tokens (the sink frames) when those lie before the window
            keys = k_cache[:, :, cache_start:fill + N]
            values = v_cache[:, :, cache_start:fill + N]
            if 0 < sink_end < cache_start:
                keys = torch.cat([k_cache[:, :, :sink_end], keys], dim=2)
                values = torch.cat([v_cache[:, :, :sink_end], values], dim=2)
            n_frames = keys.shape[2] // N
            scores = torch.matmul(q, keys.transpose(-1, -2)) * D ** -0.5  # [B, H, N, n·N]
            scores = scores.view(B, H, N, n_frames, N).add_(bias[:, :, 0, :, None, :])  # same bias in every key frame
            out = torch.matmul(torch.softmax(scores.view(B, H, N, n_frames * N), dim=-1), values)
        out = out.permute(0, 2, 1, 3).reshape(B, Fr, N, C)  # [B, F, N, C]
        return self.out(out)
