"""One STAR-MD diffusion block: IPA -> S×T attention layers -> EdgeTransition -> backbone update,
every sub-layer conditioned on (diffusion time, log stride) through AdaLN."""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import nn

from openmm_starmd.geometry.rigid import rigid_compose
from openmm_starmd.geometry.so3 import quat_to_rotmat
from openmm_starmd.model.attention import SpaceTimeAttention
from openmm_starmd.model.config import StarMDConfig
from openmm_starmd.model.ipa import InvariantPointAttention


def modulate(x_normed: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """AdaLN: a LayerNormed ``x [B, F, N, C]`` shifted and scaled per frame (``[B, F, 1, C]``)."""
    return x_normed * (1.0 + scale) + shift


class Transition(nn.Module):
    def __init__(self, c: int, mult: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(c, mult * c), nn.SiLU(), nn.Linear(mult * c, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class EdgeTransition(nn.Module):
    """z_ij += MLP(s_i, s_j, z_ij) (AF2/FrameDiff edge transition), then LayerNorm."""

    def __init__(self, c_s: int, c_z: int):
        super().__init__()
        self.c_half = c_z // 2 if c_z >= 2 else 1
        self.proj_s = nn.Linear(c_s, self.c_half)
        hidden = 2 * self.c_half + c_z
        self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, c_z))
        self.norm = nn.LayerNorm(c_z)

    def forward(self, s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """s ``[B, F, N, c_s]``, z ``[B, F, N, N, c_z]`` -> new z."""
        e = self.proj_s(s)
        N = s.shape[2]
        ei = e[:, :, :, None].expand(-1, -1, -1, N, -1)
        ej = e[:, :, None, :].expand(-1, -1, N, -1, -1)
        return self.norm(z + self.mlp(torch.cat([z, ei, ej], dim=-1)))


class NoEdgeTransition(nn.Module):
    """Stands in for the last block's EdgeTransition, whose output no layer reads."""

    def forward(self, s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return z


class SkipMix(nn.Module):
    """s += Linear([s, skip]) (zero-initialised): the initial singles, projected to ``c_skip``
    channels once per protein, re-enter every block (paper table 9, FrameDiff's skip embedding)."""

    def __init__(self, c_s: int, c_skip: int):
        super().__init__()
        self.linear = nn.Linear(c_s + c_skip, c_s)

    def forward(self, s: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """s ``[B, F, N, c_s]``, skip ``[B, N, c_skip]`` -> ``[B, F, N, c_s]``."""
        B, Fr, N, _ = s.shape
        return s + self.linear(torch.cat([s, skip[:, None].expand(B, Fr, N, skip.shape[-1])], dim=-1))


class NoSkip(nn.Module):
    def forward(self, s: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return s


class BackboneUpdate(nn.Module):
    """Linear(s) -> quaternion vector part (b, c, d) and translation (nm), composed onto each frame."""

    def __init__(self, c_s: int):
        super().__init__()
        self.linear = nn.Linear(c_s, 6)

    def forward(self, s: torch.Tensor, rots: torch.Tensor, trans: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        upd = self.linear(s)
        quat = torch.cat([torch.ones_like(upd[..., :1]), upd[..., :3]], dim=-1)
        return rigid_compose(rots, trans, quat_to_rotmat(quat), upd[..., 3:])


class DiffusionBlock(nn.Module):
    """Every residual branch is AdaLN-modulated and gated (adaLN-Zero, as in DiT): one linear map of
    the condition gives (shift, scale, gate) for all 2 + 2·st_layers_per_block branches of the block;
    it is zero-initialised, so every branch starts switched off."""

    def __init__(self, cfg: StarMDConfig, last: bool = False):
        super().__init__()
        self.num_branches = 2 + 2 * cfg.st_layers_per_block
        self.norm = nn.LayerNorm(cfg.c_s, elementwise_affine=False)
        self.modulation = nn.Linear(cfg.c_cond, self.num_branches * 3 * cfg.c_s)
        self.ipa = InvariantPointAttention(cfg.c_s, cfg.c_z, cfg.ipa_hidden, cfg.ipa_heads, cfg.ipa_qk_points, cfg.ipa_v_points)
        self.ipa_transition = Transition(cfg.c_s, cfg.transition_mult)
        self.st_layers = nn.ModuleList([
            SpaceTimeAttention(cfg.c_s, cfg.c_z, cfg.st_heads)
            for _ in range(cfg.st_layers_per_block)
        ])
        self.st_transitions = nn.ModuleList([Transition(cfg.c_s, cfg.transition_mult) for _ in range(cfg.st_layers_per_block)])
        self.skip = SkipMix(cfg.c_s, cfg.skip_channels) if cfg.skip_channels > 0 else NoSkip()
        self.edge_transition = EdgeTransition(cfg.c_s, cfg.c_z) if cfg.last_edge_transition or not last else NoEdgeTransition()
        self.backbone_update = BackboneUpdate(cfg.c_s)

    def forward(
        self,
        s: torch.Tensor,
        z: torch.Tensor,
        rots: torch.Tensor,
        trans: torch.Tensor,
        cond: torch.Tensor,
        skip: torch.Tensor,
        rope_cos: torch.Tensor,
        rope_sin: torch.Tensor,
        frame_mask: Optional[torch.Tensor],
        k_caches: List[torch.Tensor],
        v_caches: List[torch.Tensor],
        fill: int,
        append: bool,
        cache_start: int = 0,
        sink_end: int = 0,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """s ``[B, F, N, c_s]``, z ``[B, F, N, N, c_z]``, rots ``[B, F, N, 3, 3]``, trans ``[B, F, N, 3]``,
        cond ``[B, F, c_cond]``, skip ``[B, N, c_skip]`` (ignored without a skip), rope_cos/rope_sin ``[B, 1, F·N, D/2]``. ``k_caches``/``v_caches`` hold this block's S×T layers' caches
        (empty lists in full mode)."""
        B, Fr, N, C = s.shape
        mods = self.modulation(cond)[:, :, None].chunk(3 * self.num_branches, dim=-1)  # each [B, F, 1, C]
        x = modulate(self.norm(s), mods[0], mods[1])
        upd = self.ipa(x.reshape(B * Fr, N, C), z.reshape((B * Fr,) + z.shape[2:]),
                       rots.reshape(B * Fr, N, 3, 3), trans.reshape(B * Fr, N, 3))  # frames flattened into the batch
        s = s + mods[2] * upd.view(B, Fr, N, C)
        s = s + mods[5] * self.ipa_transition(modulate(self.norm(s), mods[3], mods[4]))
        s = self.skip(s, skip)
        for i, (layer, transition) in enumerate(zip(self.st_layers, self.st_transitions)):
            m = 6 + 6 * i
            k_cache: Optional[torch.Tensor] = None
            v_cache: Optional[torch.Tensor] = None
            if len(k_caches) > 0:
                k_cache = k_caches[i]
                v_cache = v_caches[i]
            x = modulate(self.norm(s), mods[m], mods[m + 1])
            s = s + mods[m + 2] * layer(x, z, rope_cos, rope_sin, frame_mask, k_cache, v_cache, fill, append, cache_start, sink_end)
            s = s + mods[m + 5] * transition(modulate(self.norm(s), mods[m + 3], mods[m + 4]))
        z = self.edge_transition(s, z)
        rots, trans = self.backbone_update(s, rots, trans)
        return s, z, rots, trans
