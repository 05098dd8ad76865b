"""One block-causal training pass (SPEC §4): [clean 0..L-1 | noisy 1..L-1] in a single forward.

* Each example's L frames are superposed one after the other (frame ℓ onto the already aligned
  frame ℓ-1, Kabsch on present CA atoms, as the rollout aligns each generated frame onto the
  previous one) and each frame is centred on its present CA atoms.
* Clean history frames get contextual noise τ ~ U[0, context_noise_max_t] with probability
  ``context_noise_prob`` per example (else τ = 0) and are conditioned on t = τ.
* The L-1 target frames get independent t ~ U[t_min, 1] per frame.
* Δt enters as log10(stride_ns) of each example.
* Optionally (:class:`HistoryErrors`) the history frames, as context tokens and as templates, carry
  per-residue errors like those of generated frames, while the targets stay the clean MD frames:
  a rollout's history is its own output, and a network trained only on clean MD history copies
  the errors of that output forward, jump after jump.
* Optionally (:class:`SelfHistory`) the history frames are the network's own samples: each frame
  ℓ ≥ 1 generated (no gradient, a short reverse diffusion) from the clean MD frames before it and
  superposed onto MD frame ℓ, so the history carries the errors of one generated jump (clashes,
  strained bonds) rather than Gaussian ones, and the targets stay the clean MD frames.

Randomness comes from torch's global generator; the trainer seeds it per step, so a step is a
pure function of (seed, step, rank, weights).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional

import torch
from torch import nn

from openmm_starmd.data.dataset import Batch
from openmm_starmd.geometry.so3 import rotvec_to_rotmat
from openmm_starmd.geometry.superpose import kabsch
from openmm_starmd.model.config import StarMDConfig
from openmm_starmd.model.embeddings import NUM_RESTYPES_WITH_UNKNOWN
from openmm_starmd.model.starmd import block_causal_frame_index, block_causal_mask, log10_stride
from openmm_starmd.training.losses import LossConfig, Prediction, Target, compute_losses


@dataclass(frozen=True)
class HistoryErrors:
    """Errors put on the history frames of a training example (training only; 0 Å and 0°: none).

    With probability ``prob`` an example gets a level s ~ U[0, 1]; each history residue then moves by
    an isotropic Gaussian of RMS length s·``max_angstrom`` and turns by a rotation vector of RMS
    angle s·``max_degrees``. Generated frames err by about 0.2–0.5 Å per residue (their
    consecutive Cα distances scatter by 0.3–0.5 Å); MD frames by none."""

    max_angstrom: float = 0.0
    max_degrees: float = 0.0
    prob: float = 0.75

    def validate(self) -> "HistoryErrors":
        if self.max_angstrom < 0 or self.max_degrees < 0:
            raise ValueError(f"history errors must be >= 0, got {self.max_angstrom} Å and {self.max_degrees}°")
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"history error probability must lie in [0, 1], got {self.prob}")
        return self

    @property
    def enabled(self) -> bool:
        return self.prob > 0 and (self.max_angstrom > 0 or self.max_degrees > 0)


def perturb_history(rots: torch.Tensor, trans: torch.Tensor, residue_mask: torch.Tensor,
                    errors: HistoryErrors) -> tuple[torch.Tensor, torch.Tensor]:
    """``rots [B, L, N, 3, 3]``, ``trans [B, L, N, 3]`` (nm) with per-residue errors drawn by ``errors``
    (see :class:`HistoryErrors`); masked residues stay put."""
    if not errors.enabled:
        return rots, trans
    B = trans.shape[0]
    level = torch.rand(B, device=trans.device) * (torch.rand(B, device=trans.device) < errors.prob).to(trans.dtype)
    level = level[:, None, None, None] * residue_mask[:, None, :, None].to(trans.dtype)  # [B, 1, N, 1]
    sigma_nm = errors.max_angstrom * 0.1 / math.sqrt(3.0)  # per component: RMS length max_angstrom at level 1
    sigma_rad = math.radians(errors.max_degrees) / math.sqrt(3.0)
    trans = trans + torch.randn_like(trans) * level * sigma_nm
    rots = rotvec_to_rotmat(torch.randn_like(trans) * level * sigma_rad) @ rots
    return rots, trans


@dataclass(frozen=True)
class SelfHistory:
    """History frames the network generated itself (training only; ``prob`` 0: never).

    With probability ``prob`` a training step replaces history frames 1..L-2 of every example by
    the network's own one-jump samples: frame ℓ generated from the clean MD frames < ℓ by
    ``num_steps`` reverse-SDE steps at ``noise_scale`` (no gradient; all frames of the example in
    one block-causal pass per step), then superposed onto MD frame ℓ (Cα Kabsch) so that only its
    internal errors remain. Frame 0 stays the MD start, as in a rollout. Such a step gets no
    :class:`HistoryErrors`. With ``levels`` k > 1 the sampling is repeated k times, level r
    conditioning frame ℓ on the level r-1 samples of frames 1..ℓ-1 (and MD frame 0): frame ℓ then
    carries the errors of min(ℓ, k) jumps, as a rollout's history does; k = L-2 is a full rollout of
    the example's history. It costs ``levels * num_steps`` extra forward passes without gradient."""

    prob: float = 0.0
    num_steps: int = 6
    noise_scale: float = 0.25
    levels: int = 1

    def validate(self) -> "SelfHistory":
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"self-history probability must lie in [0, 1], got {self.prob}")
        if self.num_steps < 2:
            raise ValueError(f"self-history needs at least 2 reverse-diffusion steps, got {self.num_steps}")
        if not 0.0 <= self.noise_scale <= 1.0:
            raise ValueError(f"self-history noise scale must lie in [0, 1], got {self.noise_scale}")
        if self.levels < 1:
            raise ValueError(f"self-history needs at least 1 level, got {self.levels}")
        return self

    @property
    def enabled(self) -> bool:
        return self.prob > 0


def _call(model: nn.Module, args: tuple, autocast_dtype, device: torch.device):
    if autocast_dtype is not None and device.type == "cuda":
        with torch.autocast("cuda", dtype=autocast_dtype):
            r0, x0, tors, raw = model(*args)
        return r0.float(), x0.float(), tors.float(), raw.float()
    return model(*args)


def generate_history(model: nn.Module, diffuser, batch: Batch, rots_0: torch.Tensor, trans_0: torch.Tensor,
                     self_history: SelfHistory, autocast_dtype=None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The aligned, centred MD frames ``rots_0 [B, L, N, 3, 3]``, ``trans_0 [B, L, N, 3]`` with frames
    1..L-2 replaced by the network's one-jump samples (see :class:`SelfHistory`); frames 0 and L-1
    (the last is no target's history) are kept. ``model``: a :class:`BlockCausalModel` or its DDP
    wrapper (the samples run on the wrapped module, outside DDP)."""
    B, L, N = trans_0.shape[:3]
    G = L - 1  # frames 0..L-2 of the block-causal pass; targets 1..L-2 are generated
    if G < 2:
        return rots_0, trans_0
    net = getattr(model, "module", model)
    device = trans_0.device
    mask = batch.residue_mask
    mask_g = mask[:, None].expand(B, G - 1, N)
    rots_c, trans_c = rots_0[:, :G], trans_0[:, :G]
    frame_index, frame_mask = block_causal_frame_index(G, device), block_causal_mask(G, device)
    stride = log10_stride(batch.stride_ns)
    ts = diffuser.timesteps(self_history.num_steps)
    with torch.no_grad():
        for _ in range(self_history.levels):
            template_rots = torch.cat([rots_c, rots_c[:, :-1]], 1)
            template_trans = torch.cat([trans_c, trans_c[:, :-1]], 1)
            rots_t, trans_t = diffuser.sample_prior([B, G - 1, N], mask_g, device)
            rots_t, trans_t = rots_t.to(trans_0.dtype), trans_t.to(trans_0.dtype)
            for i in range(self_history.num_steps):
                t = float(ts[i])
                t_in = torch.cat([torch.zeros(B, G, device=device), torch.full((B, G - 1), t, device=device)], 1)
                args = (batch.aatype, batch.residue_index, batch.chain_index, batch.openfold_single, batch.openfold_pair,
                        torch.cat([rots_c, rots_t], 1), torch.cat([trans_c, trans_t], 1), t_in, stride, frame_index,
                        frame_mask, template_rots, template_trans, batch.aatype)  # every type seen, as at inference
                r0, x0, _, _ = _call(net, args, autocast_dtype, device)
                r0, x0 = r0[:, G:], x0[:, G:]
                if i + 1 < self_history.num_steps:
                    dt = t - float(ts[i + 1])
                    rots_t, trans_t = diffuser.reverse_step(rots_t, trans_t, r0, x0, t, dt, torch.randn_like(trans_t),
                                                            torch.randn_like(trans_t), False, self_history.noise_scale, mask_g)
            # superpose each generated frame onto its MD frame: keep its internal errors, not a pose change
            target = trans_0[:, 1:G]
            r, shift = kabsch(x0.reshape(-1, N, 3), target.reshape(-1, N, 3), mask_g.reshape(-1, N).to(x0.dtype))
            r, shift = r.view(B, G - 1, 3, 3), shift.view(B, G - 1, 3)
            x_gen = torch.einsum("blij,blnj->blni", r, x0) + shift[:, :, None]
            m = mask_g[..., None].to(x_gen.dtype)
            x_gen = x_gen - (x_gen * m).sum(2, keepdim=True) / m.sum(2, keepdim=True).clamp_min(1.0)
            r_gen = r[:, :, None] @ r0
            keep = mask_g[..., None] > 0
            x_gen = torch.where(keep, x_gen, target)
            r_gen = torch.where(keep[..., None], r_gen, rots_0[:, 1:G])
            # the next level's context: the MD start, then this level's samples
            rots_c, trans_c = torch.cat([rots_0[:, :1], r_gen], 1), torch.cat([trans_0[:, :1], x_gen], 1)
    rots = torch.cat([rots_0[:, :1], r_gen, rots_0[:, G:]], 1)
    trans = torch.cat([trans_0[:, :1], x_gen, trans_0[:, G:]], 1)
    return rots, trans  # built under no_grad from tensors that need none


def align_and_centre(rots: torch.Tensor, trans: torch.Tensor, residue_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Superpose frame ℓ onto aligned frame ℓ-1 (CA Kabsch) and centre every frame.

    rots ``[B, L, N, 3, 3]``, trans ``[B, L, N, 3]`` nm, residue_mask ``[B, N]`` -> same shapes."""
    B, L, N = trans.shape[:3]
    m = residue_mask[..., None]  # [B, N, 1]
    centred = [trans[:, 0] - (trans[:, 0] * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp_min(1.0)]
    out_rots = [rots[:, 0]]
    for ell in range(1, L):
        r, t = kabsch(trans[:, ell], centred[-1], residue_mask)  # [B, 3, 3], [B, 3]
        moved = torch.einsum("bij,bnj->bni", r, trans[:, ell]) + t[:, None]
        moved = moved - (moved * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp_min(1.0)
        centred.append(moved)
        out_rots.append(r[:, None] @ rots[:, ell])
    return torch.stack(out_rots, 1), torch.stack(centred, 1)


class BlockCausalModel(nn.Module):
    """The network behind one ``forward`` (what DDP wraps): protein embedding + frame denoising."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, aatype, residue_index, chain_index, openfold_single, openfold_pair, rots, trans, t, log10_stride_ns,
                frame_index, frame_mask, template_rots=None, template_trans=None, aatype_seen=None):
        """``aatype_seen``: the amino-acid types the singles embed (with dropped types set to unknown);
        ``aatype`` itself still places pseudo-Cβ atoms. ``template_*`` are those of the block-causal
        sequence [clean 0..L-1 | noisy 1..L-1]; the frame before each template, which a network with
        ``context_motion`` reads, follows from them."""
        s_seq, z_static = self.net.embed_protein(aatype if aatype_seen is None else aatype_seen, residue_index, chain_index,
                                                 openfold_single, openfold_pair)
        prev_rots = prev_trans = has_prev = None
        if getattr(self.net, "context_motion", False) and template_trans is not None:
            prev_rots, prev_trans, has_prev = block_causal_previous(template_rots, template_trans)
        return self.net.forward_frames(s_seq, z_static, aatype, residue_index, rots, trans, t, log10_stride_ns, frame_index,
                                       frame_mask, [], [], 0, False, template_rots, template_trans, 0, 0,
                                       prev_rots, prev_trans, has_prev)


def block_causal_previous(template_rots: torch.Tensor, template_trans: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The frame before each template of the block-causal sequence, as the KV-cached rollout has it.

    ``template_* [B, 2L-1, ...]`` = [h_0..h_{L-1} | h_0..h_{L-2}] (clean frame ℓ: itself; noisy ℓ: clean
    ℓ-1) -> the frames before them [-, h_0..h_{L-2} | -, h_0..h_{L-3}] (a template where there is none)
    and ``has_prev [B, 2L-1]``."""
    B, F = template_trans.shape[0], template_trans.shape[1]
    L = (F + 1) // 2
    prev_rots = torch.cat([template_rots[:, :1], template_rots[:, :L - 1], template_rots[:, L:L + 1],
                           template_rots[:, :L - 2]], 1)
    prev_trans = torch.cat([template_trans[:, :1], template_trans[:, :L - 1], template_trans[:, L:L + 1],
                            template_trans[:, :L - 2]], 1)
    first = torch.zeros(F, dtype=template_trans.dtype, device=template_trans.device)
    first[0] = 1.0
    first[L] = 1.0
    has_prev = (1.0 - first)[None].expand(B, F)
    return prev_rots[:, :F], prev_trans[:, :F], has_prev


LOW_T_MAX = 0.1  # upper end of the low-noise range that --low-t-fraction over-samples


def noise_levels(B: int, L: int, model_cfg: StarMDConfig, t_min: float, device: torch.device,
                 low_t_fraction: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Context noise τ ``[B]`` (0 with probability 1 - context_noise_prob) and target times t ``[B, L-1]``:
    U[t_min, 1], except that a fraction ``low_t_fraction`` of the target frames get t log-uniform in
    [t_min, 0.1]. The last reverse steps, at low t, decide the local geometry of a generated frame
    (its Cα-Cα distances), and uniform t gives them about 5 % of the training signal."""
    tau = torch.rand(B, device=device) * model_cfg.context_noise_max_t
    tau = torch.where(torch.rand(B, device=device) < model_cfg.context_noise_prob, tau, torch.zeros_like(tau))
    t = t_min + (1.0 - t_min) * torch.rand(B, L - 1, device=device)
    if low_t_fraction > 0.0:
        low = t_min * (LOW_T_MAX / t_min) ** torch.rand(B, L - 1, device=device)
        t = torch.where(torch.rand(B, L - 1, device=device) < low_t_fraction, low, t)
    return tau, t


def training_losses(model: nn.Module, diffuser, batch: Batch, model_cfg: StarMDConfig, loss_cfg: LossConfig,
                    autocast_dtype=None, history_errors: Optional[HistoryErrors] = None,
                    low_t_fraction: float = 0.0, self_history: Optional[SelfHistory] = None) -> Dict[str, torch.Tensor]:
    """Loss terms of one block-causal pass over ``batch`` (tensors already on the model's device).

    ``history_errors``: errors on the history frames (context tokens and templates), not on the targets.
    ``low_t_fraction``: see :func:`noise_levels`.
    ``self_history``: with its probability, the history frames are the network's own samples
    (:func:`generate_history`) and get no ``history_errors``.

    ``model`` is a :class:`BlockCausalModel` (or its DDP wrapper). ``autocast_dtype``: e.g.
    ``torch.bfloat16`` to run the network under CUDA autocast; losses are computed in fp32."""
    device = batch.trans.device
    B, L, N = batch.trans.shape[:3]
    if L < 2:
        raise ValueError(f"a training example needs at least 2 frames, got L={L}")
    mask = batch.residue_mask  # [B, N]
    rots_0, trans_0 = align_and_centre(batch.rots, batch.trans, mask)
    tau, t = noise_levels(B, L, model_cfg, diffuser.t_min, device, low_t_fraction)
    mask_l = mask[:, None].expand(B, L, N)
    rots_h, trans_h = rots_0, trans_0  # the history as the network sees it
    generated = self_history is not None and self_history.enabled and bool(torch.rand(()) < self_history.prob)
    if generated:
        rots_h, trans_h = generate_history(model, diffuser, batch, rots_0, trans_0, self_history, autocast_dtype)
    elif history_errors is not None and history_errors.enabled:
        rots_h, trans_h = perturb_history(rots_0, trans_0, mask, history_errors)
    rots_c, trans_c = diffuser.forward_marginal(rots_h, trans_h, tau[:, None].expand(B, L), mask_l)  # τ = 0: clean
    rots_t, trans_t = diffuser.forward_marginal(rots_0[:, 1:], trans_0[:, 1:], t, mask_l[:, 1:])
    rots_in = torch.cat([rots_c, rots_t], 1)  # [B, 2L-1, N, 3, 3]
    trans_in = torch.cat([trans_c, trans_t], 1)  # [B, 2L-1, N, 3]
    t_in = torch.cat([tau[:, None].expand(B, L), t], 1)  # [B, 2L-1]
    # template of clean frame ℓ: itself; of noisy frame ℓ: clean frame ℓ-1; both before context noise, as the
    # KV-cached rollout sees them
    template_rots = torch.cat([rots_h, rots_h[:, :-1]], 1)
    template_trans = torch.cat([trans_h, trans_h[:, :-1]], 1)
    aatype_seen = batch.aatype
    if model_cfg.aatype_dropout > 0.0:
        hidden = torch.rand(batch.aatype.shape, device=device) < model_cfg.aatype_dropout
        aatype_seen = torch.where(hidden, torch.full_like(batch.aatype, UNKNOWN_RESTYPE), batch.aatype)
    args = (batch.aatype, batch.residue_index, batch.chain_index, batch.openfold_single, batch.openfold_pair, rots_in,
            trans_in, t_in, log10_stride(batch.stride_ns), block_causal_frame_index(L, device), block_causal_mask(L, device),
            template_rots, template_trans, aatype_seen)
    r0, x0, tors, raw = _call(model, args, autocast_dtype, device)
    pred = Prediction(r0[:, L:], x0[:, L:], tors[:, L:], raw[:, L:])
    target = Target(rots_0[:, 1:], trans_0[:, 1:], rots_t, trans_t, t, batch.torsions[:, 1:], batch.torsions_alt[:, 1:],
                    batch.torsion_mask, mask, batch.aatype)
    return compute_losses(diffuser, pred, target, loss_cfg)


def batch_to(batch: Batch, device: torch.device) -> Batch:
    """A copy of ``batch`` with every tensor on ``device``."""
    moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(batch).items()}
    return Batch(**moved)


UNKNOWN_RESTYPE = NUM_RESTYPES_WITH_UNKNOWN - 1  # index 20: the type a dropped residue shows

__all__ = ["HistoryErrors", "perturb_history", "SelfHistory", "generate_history", "align_and_centre", "BlockCausalModel", "block_causal_previous", "noise_levels", "training_losses", "batch_to"]
