"""SE(3) diffusion of per-residue rigid frames: IGSO(3) rotations x VP-SDE translations (SPEC §3).

``SE3Diffuser`` is the single object the network, the training losses and the exported core use.
It is a ``torch.nn.Module`` with the IGSO(3) tables as (non-persistent) buffers and no
parameters, and ``torch.jit.script(SE3Diffuser(cfg))`` works. Methods the sampler loop calls take
their randomness as explicit tensors (``*_from_noise``, ``reverse_step``), so eager and scripted
runs agree bit for bit for the same noise; ``forward_marginal`` and ``sample_prior`` draw it from
torch's global generator in a fixed order (uniforms ``[..., N]``, axis normals ``[..., N, 3]``,
translation normals ``[..., N, 3]``) and hand it to those.

Shapes: rots ``[..., N, 3, 3]``, trans ``[..., N, 3]`` in nanometres, mask ``[..., N]``
(1 = present; None = all present), t ``[...]`` (a tensor over the batch dims, or 0-d) in [0, 1].
Translations come back centred over the present residues. Conventions of each half are in
:mod:`openmm_starmd.diffusion.r3` and :mod:`openmm_starmd.diffusion.so3` (rotation scores are
body-frame vectors; translation scores are per unit of ``trans_nm * trans_scale_per_nm``).
Argument checks (``ValueError`` naming the argument) run in eager mode only.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import nn

from openmm_starmd.diffusion.config import DiffusionConfig
from openmm_starmd.diffusion.internal import mask_like
from openmm_starmd.diffusion.r3 import R3Diffuser
from openmm_starmd.diffusion.so3 import SO3Diffuser


class SE3Diffuser(nn.Module):
    """Forward marginals, prior, scores and reverse steps on residue frames."""

    def __init__(self, cfg: DiffusionConfig):
        super().__init__()
        cfg.validate()
        self.r3 = R3Diffuser(cfg)
        self.so3 = SO3Diffuser(cfg)
        self.t_min = float(cfg.t_min)
        self.num_steps = int(cfg.num_steps)
        self.ode = bool(cfg.ode)
        self.noise_scale = float(cfg.noise_scale)

    # --- forward process (training, contextual noise) ---------------------------------------
    @torch.jit.export
    def forward_marginal(
        self, rots_0: torch.Tensor, trans_0: torch.Tensor, t: torch.Tensor, mask: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Sample x_t ~ p(x_t | x_0) with noise from the global generator. t = 0 returns the clean
        (centred) frames exactly, which is what contextual noise at tau = 0 needs."""
        if not torch.jit.is_scripting():
            _check_frames("rots_0", rots_0, "trans_0", trans_0, mask)
            _check_t(t, trans_0.shape[:-2], allow_zero=True)
        shape = list(trans_0.shape[:-1])  # [..., N]
        u_rot = torch.rand(shape, dtype=trans_0.dtype, device=trans_0.device)
        axis_rot = torch.randn(shape + [3], dtype=trans_0.dtype, device=trans_0.device)
        z_trans = torch.randn(shape + [3], dtype=trans_0.dtype, device=trans_0.device)
        return self.forward_marginal_from_noise(rots_0, trans_0, t, u_rot, axis_rot, z_trans, mask)

    @torch.jit.export
    def forward_marginal_from_noise(
        self, rots_0: torch.Tensor, trans_0: torch.Tensor, t: torch.Tensor,
        u_rot: torch.Tensor, axis_rot: torch.Tensor, z_trans: torch.Tensor, mask: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """x_t from explicit noise: uniforms ``u_rot [..., N]`` in [0, 1), normals ``axis_rot`` and ``z_trans [..., N, 3]``."""
        if not torch.jit.is_scripting():
            _check_frames("rots_0", rots_0, "trans_0", trans_0, mask)
            _check_t(t, trans_0.shape[:-2], allow_zero=True)
            _check_noise(trans_0, u_rot=u_rot, axis_rot=axis_rot, z_trans=z_trans)
        m = mask_like(trans_0, mask)
        rots_t = self.so3.marginal_from_noise(rots_0, t, u_rot, axis_rot, m)
        trans_t = self.r3.marginal_from_noise(trans_0, t, z_trans, m)
        return rots_t, trans_t

    # --- prior --------------------------------------------------------------------------------
    @torch.jit.export
    def sample_prior(
        self, shape: List[int], mask: Optional[torch.Tensor] = None, device: Optional[torch.device] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Prior frames for batch-and-residue ``shape`` = [..., N]: rots IGSO3(sigma_max) around the
        identity ``[..., N, 3, 3]``, trans standard normal projected to zero mean ``[..., N, 3]`` (fp32)."""
        if not torch.jit.is_scripting():
            _check_shape(shape)
        shape = list(shape)
        u_rot = torch.rand(shape, device=device)
        axis_rot = torch.randn(shape + [3], device=device)
        z_trans = torch.randn(shape + [3], device=device)
        return self.prior_from_noise(u_rot, axis_rot, z_trans, mask)

    @torch.jit.export
    def prior_from_noise(
        self, u_rot: torch.Tensor, axis_rot: torch.Tensor, z_trans: torch.Tensor, mask: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Prior frames from explicit noise (shapes as in :meth:`forward_marginal_from_noise`)."""
        if not torch.jit.is_scripting():
            _check_noise(z_trans, u_rot=u_rot, axis_rot=axis_rot, z_trans=z_trans)
            _check_mask(mask, u_rot)
        m = mask_like(z_trans, mask)
        return self.so3.prior_from_noise(u_rot, axis_rot, m).to(z_trans.dtype), self.r3.prior_from_noise(z_trans, m)

    # --- scores and the reverse step ------------------------------------------------------------
    @torch.jit.export
    def scores(
        self, rots_t: torch.Tensor, trans_t: torch.Tensor, rots_0_hat: torch.Tensor, trans_0_hat: torch.Tensor,
        t: torch.Tensor, mask: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Scores of p(x_t | x̂_0): rotation (body frame) ``[..., N, 3]`` and translation ``[..., N, 3]``; t > 0."""
        if not torch.jit.is_scripting():
            _check_frames("rots_t", rots_t, "trans_t", trans_t, mask)
            _check_frames("rots_0_hat", rots_0_hat, "trans_0_hat", trans_0_hat, mask, like=trans_t)
            _check_t(t, trans_t.shape[:-2], allow_zero=False)
        m = mask_like(trans_t, mask)
        return self.so3.score(rots_t, rots_0_hat, t, m), self.r3.score(trans_t, trans_0_hat, t, m)

    @torch.jit.export
    def reverse_step(
        self, rots_t: torch.Tensor, trans_t: torch.Tensor, rots_0_hat: torch.Tensor, trans_0_hat: torch.Tensor,
        t: float, dt: float, z_rot: torch.Tensor, z_trans: torch.Tensor,
        ode: bool = False, noise_scale: float = 1.0, mask: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Frames at t - dt from frames at t, the network's x̂_0 and standard normals ``z_rot``,
        ``z_trans [..., N, 3]``; Euler-Maruyama SDE (``noise_scale`` multiplies its noise) or, with
        ``ode``, the process with the data's marginals and noise ``noise_scale`` (0: the
        probability-flow ODE, whose z are unused; 1: the reverse SDE)."""
        if not torch.jit.is_scripting():
            _check_frames("rots_t", rots_t, "trans_t", trans_t, mask)
            _check_frames("rots_0_hat", rots_0_hat, "trans_0_hat", trans_0_hat, mask, like=trans_t)
            _check_noise(trans_t, z_rot=z_rot, z_trans=z_trans)
            _check_step(t, dt, noise_scale)
        m = mask_like(trans_t, mask)
        rots = self.so3.reverse_step(rots_t, rots_0_hat, t, dt, z_rot, ode, noise_scale, m)
        trans = self.r3.reverse_step(trans_t, trans_0_hat, t, dt, z_trans, ode, noise_scale, m)
        return rots, trans

    @torch.jit.export
    def timesteps(self, num_steps: int, spacing: float = 1.0) -> torch.Tensor:
        """The ``num_steps`` network-evaluation times, float64 from 1.0 down to t_min inclusive.

        A sampler evaluates x̂_0 at each and steps from ts[i] to ts[i + 1] (num_steps - 1 steps);
        its output is the last x̂_0 (SPEC §3). ``spacing`` p places them at
        t_i = t_min + (1 - t_min) u_i^p, u evenly spaced from 1 to 0: p = 1 spaces them evenly (the
        default), p > 1 crowds them toward t_min, where the steps set the local chain geometry and
        a coarse Euler step of the exact SDE leaves broken Cα-Cα bonds (EDM-style spacing)."""
        if not torch.jit.is_scripting():
            _check_num_steps(num_steps)
            _check_spacing(spacing)
        if spacing == 1.0:
            return torch.linspace(1.0, self.t_min, num_steps, dtype=torch.float64)
        u = torch.linspace(1.0, 0.0, num_steps, dtype=torch.float64)
        return self.t_min + (1.0 - self.t_min) * u.pow(spacing)

    # --- schedules and loss normalisers -------------------------------------------------------
    @torch.jit.export
    def rot_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """IGSO(3) scale sigma(t) (radians) of the rotation marginal."""
        return self.so3.sigma(t)

    @torch.jit.export
    def trans_alpha(self, t: torch.Tensor) -> torch.Tensor:
        """Translation signal coefficient exp(-B(t)/2)."""
        return self.r3.alpha(t)

    @torch.jit.export
    def trans_variance(self, t: torch.Tensor) -> torch.Tensor:
        """Translation noise variance 1 - exp(-B(t)) (diffusion units squared)."""
        return self.r3.variance(t)

    @torch.jit.export
    def rot_score_scaling(self, t: torch.Tensor) -> torch.Tensor:
        """RMS of one component of the true rotation score at t: divide rotation-score errors by it."""
        return self.so3.score_scaling(t)

    @torch.jit.export
    def trans_score_scaling(self, t: torch.Tensor) -> torch.Tensor:
        """1 / sqrt(variance(t)): divide translation-score errors by it."""
        return self.r3.score_scaling(t)


# --- eager-mode argument checks ------------------------------------------------------------------
def _check_frames(rots_name: str, rots, trans_name: str, trans, mask, like=None) -> None:
    for name, value in ((rots_name, rots), (trans_name, trans)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if trans.dim() < 2 or trans.shape[-1] != 3:
        raise ValueError(f"{trans_name} must have shape [..., N, 3], got {tuple(trans.shape)}")
    if tuple(rots.shape) != tuple(trans.shape) + (3,):
        raise ValueError(f"{rots_name} must have shape {tuple(trans.shape) + (3,)} ([..., N, 3, 3]), got {tuple(rots.shape)}")
    if like is not None and tuple(trans.shape) != tuple(like.shape):
        raise ValueError(f"{trans_name} must have shape {tuple(like.shape)}, got {tuple(trans.shape)}")
    if mask is not None and tuple(mask.shape) != tuple(trans.shape[:-1]):
        raise ValueError(f"mask must have shape {tuple(trans.shape[:-1])} ([..., N]), got {tuple(mask.shape)}")


def _check_t(t, batch_shape, allow_zero: bool) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be a torch.Tensor of shape {tuple(batch_shape)} or 0-d, got {type(t).__name__}")
    try:
        broadcast = torch.broadcast_shapes(tuple(t.shape), tuple(batch_shape))
    except RuntimeError:
        broadcast = None
    if broadcast != tuple(batch_shape):
        raise ValueError(f"t must broadcast to the batch shape {tuple(batch_shape)}, got {tuple(t.shape)}")
    low_ok = (t >= 0) if allow_zero else (t > 0)
    if not bool((low_ok & (t <= 1)).all()):
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(f"t must lie in {interval}, got values in [{float(t.min())}, {float(t.max())}]")


def _check_noise(like, **noise) -> None:
    lead = tuple(like.shape[:-1])  # [..., N]
    for name, value in noise.items():
        expected = lead if name == "u_rot" else lead + (3,)
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if tuple(value.shape) != expected:
            raise ValueError(f"{name} must have shape {expected}, got {tuple(value.shape)}")


def _check_shape(shape) -> None:
    if not isinstance(shape, (list, tuple)) or len(shape) < 1 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in shape):
        raise ValueError(f"shape must be a non-empty list of positive ints [..., N], got {shape!r}")


def _check_mask(mask, like) -> None:
    if mask is not None and tuple(mask.shape) != tuple(like.shape):
        raise ValueError(f"mask must have shape {tuple(like.shape)} ([..., N]), got {tuple(mask.shape)}")


def _check_step(t: float, dt: float, noise_scale: float) -> None:
    if not 0.0 < t <= 1.0:
        raise ValueError(f"t must lie in (0, 1], got {t}")
    if not 0.0 < dt <= t:
        raise ValueError(f"dt must lie in (0, t] = (0, {t}], got {dt}")
    if not noise_scale >= 0.0:
        raise ValueError(f"noise_scale must be >= 0, got {noise_scale}")


def _check_spacing(spacing) -> None:
    if isinstance(spacing, bool) or not isinstance(spacing, (int, float)) or not 0.0 < float(spacing) < float("inf"):
        raise ValueError(f"time spacing must be a number > 0, got {spacing!r}")


def _check_num_steps(num_steps) -> None:
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 2:
        raise ValueError(f"num_steps must be an int >= 2, got {num_steps!r}")
