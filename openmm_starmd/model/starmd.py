"""The STAR-MD denoiser: x̂_0 of frame ℓ from its noisy version and the clean frames < ℓ."""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
from torch import nn

from openmm_starmd.geometry import pseudo_beta
from openmm_starmd.geometry.so3 import rotmat_to_rotvec, rotvec_to_rotmat
from openmm_starmd.model.attention import rope_tables
from openmm_starmd.model.blocks import DiffusionBlock
from openmm_starmd.model.config import StarMDConfig
from openmm_starmd.model.embeddings import (MOTION_FEATURES, ConditioningEmbedding, PairEmbedding, SequenceEmbedding, motion_features,
                                            template_features)
from openmm_starmd.model.init import init_weights


class StarMD(nn.Module):
    """Sequence + frame embeddings, ``num_blocks`` diffusion blocks and a torsion head.

    Two entry points share every weight:

    * :meth:`forward_frames` with ``frame_mask`` — full attention pattern over the F frames of
      the call (the block-causal training pass, see :func:`block_causal_mask`);
    * :meth:`forward_frames` with KV caches — one frame attending to the cached history.
    """

    def __init__(self, cfg: StarMDConfig):
        super().__init__()
        cfg.validate()
        self.num_blocks = cfg.num_blocks
        self.st_layers_per_block = cfg.st_layers_per_block
        self.num_torsions = cfg.num_torsions
        self.st_head_dim = cfg.st_head_dim
        self.rope_base_residue = cfg.rope_base_residue
        self.rope_base_frame = cfg.rope_base_frame
        self.detach_rotations = cfg.detach_rotations
        self.use_template = cfg.template_pair or cfg.start_from_template
        self.template_pair = cfg.template_pair
        self.start_from_template = cfg.start_from_template
        # the noisy input relative to the template, per residue: R_tᵀ(x - t_t) (nm) and R_tᵀR (9); zero-initialised
        self.offset_embed = nn.Linear(12, cfg.c_s) if cfg.start_from_template else nn.Identity()
        # how each residue moved from the frame before the template to the template (motion_features); zero-initialised
        self.context_motion = cfg.context_motion
        self.motion_embed = nn.Linear(MOTION_FEATURES, cfg.c_s) if cfg.context_motion else nn.Identity()
        self.skip_channels = cfg.skip_channels
        self.seq_embed = SequenceEmbedding(cfg.c_s, cfg.c_relpos, cfg.openfold_single_dim, cfg.absolute_index)
        self.pair_embed = PairEmbedding(cfg.c_z, cfg.relpos_max, cfg.distogram_bins, cfg.distogram_min_nm,
                                        cfg.distogram_max_nm, cfg.openfold_pair_dim, cfg.template_pair)
        self.cond_embed = ConditioningEmbedding(cfg.c_cond)
        self.skip_proj = nn.Linear(cfg.c_s, cfg.skip_channels) if cfg.skip_channels > 0 else nn.Identity()
        self.blocks = nn.ModuleList([DiffusionBlock(cfg, last=b == cfg.num_blocks - 1) for b in range(cfg.num_blocks)])
        self.torsion_head = nn.Sequential(nn.LayerNorm(cfg.c_s), nn.Linear(cfg.c_s, cfg.c_s), nn.ReLU(),
                                          nn.Linear(cfg.c_s, cfg.num_torsions * 2))
        init_weights(self)
        # blend_start: log motion scales a + b·log10(stride) for translations (nm) and rotations (rad), learned;
        # initialised to 1 Å and 0.2 rad per component at 0.1 ns, growing as stride^0.25
        self.blend_start = cfg.blend_start
        d = cfg.diffusion
        self.trans_beta_min, self.trans_beta_max, self.trans_scale = d.trans_beta_min, d.trans_beta_max, d.trans_scale_per_nm
        self.rot_sigma_min, self.rot_sigma_max = d.rot_sigma_min, d.rot_sigma_max
        if cfg.blend_start:
            self.blend = nn.Parameter(torch.tensor([math.log(0.1) + 0.25 * math.log(10.0), 0.25 * math.log(10.0),
                                                    math.log(0.2) + 0.25 * math.log(10.0), 0.25 * math.log(10.0)]))
        else:
            self.register_buffer("blend", torch.zeros(4), persistent=False)

    def blended_start(self, rots: torch.Tensor, trans: torch.Tensor, template_rots: torch.Tensor, template_trans: torch.Tensor,
                      t: torch.Tensor, log10_stride_ns: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Start frames of the structure module: the template moved towards the noisy frame by the linear
        least-squares weight of its noise level. Translations: x_t = α x_0 + σ z, x_0 = template + δ with
        δ of RMS s per component: w = α s² / (α² s² + σ²) on x_t - α·template. Rotations: the rotation
        from the template to R_t scaled by s_r² / (s_r² + σ_r(t)²). Translations are taken about the
        template's centroid (the origin, for the centred frames of training and the rollout), so the
        start is equivariant under any rigid motion. Shapes as :meth:`forward_frames`."""
        ls = log10_stride_ns[:, None, None, None]  # [B, 1, 1, 1]
        tt = t[:, :, None, None]  # [B, F, 1, 1]
        integrated = self.trans_beta_min * tt + 0.5 * (self.trans_beta_max - self.trans_beta_min) * tt * tt
        alpha = torch.exp(-0.5 * integrated)
        var = -torch.expm1(-integrated)
        s2 = torch.exp(2.0 * (self.blend[0] + self.blend[1] * ls)) * self.trans_scale**2
        w = alpha * s2 / (alpha * alpha * s2 + var)
        centre = template_trans.mean(dim=-2, keepdim=True)  # both frames are centred in use; this keeps equivariance
        trans = template_trans + w * ((trans - centre) - alpha * (template_trans - centre))
        sigma_r = torch.log(tt * math.exp(self.rot_sigma_max) + (1.0 - tt) * math.exp(self.rot_sigma_min))
        r2 = torch.exp(2.0 * (self.blend[2] + self.blend[3] * ls))
        w_r = r2 / (r2 + sigma_r * sigma_r)
        rel = rotmat_to_rotvec(template_rots.transpose(-1, -2) @ rots)  # [B, F, N, 3]
        rots = template_rots @ rotvec_to_rotmat(w_r * rel)
        return rots, trans

    @torch.jit.export
    def embed_protein(
        self,
        aatype: torch.Tensor,
        residue_index: torch.Tensor,
        chain_index: torch.Tensor,
        openfold_single: Optional[torch.Tensor] = None,
        openfold_pair: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Frame-independent features, computed once per protein:
        aatype, residue_index, chain_index ``[B, N]`` -> (s_seq ``[B, N, c_s]``, z_static ``[B, N, N, c_z]``)."""
        return (self.seq_embed(aatype, residue_index, openfold_single),
                self.pair_embed.static(residue_index, chain_index, openfold_pair))

    def forward_frames(
        self,
        s_seq: torch.Tensor,
        z_static: torch.Tensor,
        aatype: torch.Tensor,
        residue_index: torch.Tensor,
        rots: torch.Tensor,
        trans: torch.Tensor,
        t: torch.Tensor,
        log10_stride_ns: torch.Tensor,
        frame_index: torch.Tensor,
        frame_mask: Optional[torch.Tensor],
        k_caches: List[torch.Tensor],
        v_caches: List[torch.Tensor],
        fill: int,
        append: bool,
        template_rots: Optional[torch.Tensor] = None,
        template_trans: Optional[torch.Tensor] = None,
        cache_start: int = 0,
        sink_end: int = 0,
        prev_rots: Optional[torch.Tensor] = None,
        prev_trans: Optional[torch.Tensor] = None,
        has_prev: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Denoise F frames.

        Args:
            s_seq ``[B, N, c_s]``, z_static ``[B, N, N, c_z]``: from :meth:`embed_protein`.
            aatype, residue_index ``[B, N]``.
            rots ``[B, F, N, 3, 3]``, trans ``[B, F, N, 3]`` (nm): the input (noisy) frames.
            t ``[B, F]``: diffusion time of each frame. log10_stride_ns ``[B]``.
            frame_index ``[F]``: temporal position of each frame (for the rotary embedding).
            frame_mask ``[F, F]`` bool (full mode) or None (cached mode, F == 1).
            k_caches, v_caches: one ``[B, H, capacity·N, D]`` tensor per S×T layer (cached mode).
            fill: number of cached tokens already valid. append: write this frame's keys/values.
            template_rots ``[B, F, N, 3, 3]``, template_trans ``[B, F, N, 3]`` (nm): for a model with
                template pair features, the template of each frame: the frame itself for a clean
                context frame, the last clean context frame for a frame being denoised.
            cache_start: cached mode: the first cached token this frame attends to (a context window).
            sink_end: cached mode: tokens [0, sink_end) are attended to as well when they lie before
                ``cache_start`` (sink frames kept in view by a context window).
            prev_rots ``[B, F, N, 3, 3]``, prev_trans ``[B, F, N, 3]`` (nm), has_prev ``[B, F]``: for a model
                with ``context_motion``, the clean frame before each frame's template (whether there is one
                in has_prev); None: no frame has one.

        Returns:
            rots_0 ``[B, F, N, 3, 3]``, trans_0 ``[B, F, N, 3]``: predicted clean frames;
            torsions ``[B, F, N, 7, 2]`` unit (sin, cos); torsions_raw the same before normalising.
        """
        B, Fr, N = trans.shape[0], trans.shape[1], trans.shape[2]
        s = s_seq[:, None].expand(B, Fr, N, s_seq.shape[-1])
        aatype_f = aatype[:, None].expand(B, Fr, N)
        template: Optional[torch.Tensor] = None
        if self.use_template:
            if template_rots is None or template_trans is None:
                raise ValueError("this model was built with template inputs; pass template_rots and template_trans")
            if self.template_pair:
                template = template_features(template_rots, template_trans, pseudo_beta(template_rots, template_trans, aatype_f),
                                             self.pair_embed.bin_edges)
        z = self.pair_embed(z_static, pseudo_beta(rots, trans, aatype_f), template)
        if self.start_from_template and template_rots is not None and template_trans is not None:
            offset = torch.einsum("bfnij,bfni->bfnj", template_rots, trans - template_trans)  # [B, F, N, 3] nm
            rel_rot = torch.einsum("bfnij,bfnik->bfnjk", template_rots, rots).reshape(B, Fr, N, 9)
            s = s + self.offset_embed(torch.cat([offset, rel_rot], dim=-1))
            if self.context_motion:
                if prev_rots is not None and prev_trans is not None and has_prev is not None:
                    motion = motion_features(template_rots, template_trans, prev_rots, prev_trans, has_prev)
                else:
                    motion = torch.zeros([B, Fr, N, 14], dtype=trans.dtype, device=trans.device)  # MOTION_FEATURES
                s = s + self.motion_embed(motion)
            if self.blend_start:
                rots, trans = self.blended_start(rots, trans, template_rots, template_trans, t, log10_stride_ns)
            else:
                rots, trans = template_rots, template_trans  # the structure module starts from the template
        cond = self.cond_embed(t, log10_stride_ns)
        skip = self.skip_proj(s_seq)  # [B, N, c_skip] (unused without a skip)
        rope_cos, rope_sin = rope_tables(residue_index, frame_index, Fr, self.st_head_dim, self.rope_base_residue, self.rope_base_frame)
        L = self.st_layers_per_block
        for b, block in enumerate(self.blocks):
            ks: List[torch.Tensor] = []
            vs: List[torch.Tensor] = []
            if len(k_caches) > 0:
                ks = k_caches[b * L:(b + 1) * L]
                vs = v_caches[b * L:(b + 1) * L]
            if self.detach_rotations and b > 0:
                rots = rots.detach()  # AlphaFold2/FrameDiff: no rotation gradient flows between blocks
            s, z, rots, trans = block(s, z, rots, trans, cond, skip, rope_cos, rope_sin, frame_mask, ks, vs, fill, append, cache_start, sink_end)
        raw = self.torsion_head(s).view(B, Fr, N, self.num_torsions, 2)
        torsions = raw / torch.sqrt((raw**2).sum(-1, keepdim=True) + 1e-8)
        return rots, trans, torsions, raw


def block_causal_mask(num_frames: int, device: Optional[torch.device] = None) -> torch.Tensor:
    """Frame-level attention pattern of the training sequence [clean 0..L-1 | noisy 1..L-1].

    Returns a bool ``[2L-1, 2L-1]`` (query frame, key frame): clean ℓ sees clean ≤ ℓ; noisy ℓ
    (the denoising target for frame ℓ) sees clean < ℓ and itself.
    """
    L = num_frames
    idx = torch.arange(L, device=device)
    clean_clean = idx[None, :] <= idx[:, None]  # [L, L]
    noisy_idx = idx[1:]
    noisy_clean = idx[None, :] < noisy_idx[:, None]  # [L-1, L]
    noisy_noisy = torch.eye(L - 1, dtype=torch.bool, device=device)
    top = torch.cat([clean_clean, torch.zeros(L, L - 1, dtype=torch.bool, device=device)], dim=1)
    bottom = torch.cat([noisy_clean, noisy_noisy], dim=1)
    return torch.cat([top, bottom], dim=0)


def block_causal_frame_index(num_frames: int, device: Optional[torch.device] = None) -> torch.Tensor:
    """Temporal positions ``[2L-1]`` of the [clean | noisy] training sequence (noisy ℓ sits at ℓ)."""
    idx = torch.arange(num_frames, device=device)
    return torch.cat([idx, idx[1:]])


def log10_stride(stride_ns: torch.Tensor) -> torch.Tensor:
    return torch.log10(stride_ns) if stride_ns.dtype.is_floating_point else torch.log10(stride_ns.float())


__all__ = ["StarMD", "block_causal_mask", "block_causal_frame_index", "log10_stride"]
_ = math
