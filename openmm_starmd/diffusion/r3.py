"""VP-SDE on residue translations with the centre of mass removed (SPEC §3).

dx = -beta(t) x / 2 dt + sqrt(beta(t)) dW with beta(t) = b_min + t (b_max - b_min), so
B(t) = int_0^t beta = b_min t + (b_max - b_min) t^2 / 2 and the marginal is
x_t = exp(-B/2) x_0 + sqrt(1 - exp(-B)) eps. Everything lives in the zero-mean subspace of the
present residues: x_0 is centred, eps and the scores are projected, so the prior is the
standard normal restricted to that subspace.

Callers pass translations in nanometres; the diffusion coordinate is
x = trans_nm * trans_scale_per_nm and scores are per unit of x. Shapes: translations
``[..., N, 3]``, masks ``[..., N]`` (1 = present residue; absent residues pass through
unchanged and get zero score), times ``[...]`` broadcast over the N residues.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from openmm_starmd.diffusion.config import DiffusionConfig
from openmm_starmd.diffusion.internal import remove_mean


class R3Diffuser(nn.Module):
    """Variance-preserving diffusion of translations; no parameters, no buffers."""

    def __init__(self, cfg: DiffusionConfig):
        super().__init__()
        self.beta_min = float(cfg.trans_beta_min)
        self.beta_max = float(cfg.trans_beta_max)
        self.scale = float(cfg.trans_scale_per_nm)

    # --- schedule -------------------------------------------------------------------------
    @torch.jit.export
    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    @torch.jit.export
    def integrated_beta(self, t: torch.Tensor) -> torch.Tensor:
        """B(t) = int_0^t beta(s) ds."""
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t

    @torch.jit.export
    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """Signal coefficient exp(-B(t) / 2): 1 at t = 0."""
        return torch.exp(-0.5 * self.integrated_beta(t))

    @torch.jit.export
    def variance(self, t: torch.Tensor) -> torch.Tensor:
        """Noise variance 1 - exp(-B(t)) per coordinate: 0 at t = 0."""
        return -torch.expm1(-self.integrated_beta(t))

    @torch.jit.export
    def score_scaling(self, t: torch.Tensor) -> torch.Tensor:
        """1 / sqrt(variance): the RMS of one component of the true score (up to the (N-1)/N of
        the centre-of-mass projection). Divide score errors by it to normalise the loss."""
        return torch.rsqrt(self.variance(t))

    # --- forward process ------------------------------------------------------------------
    @torch.jit.export
    def marginal_from_noise(self, trans_0: torch.Tensor, t: torch.Tensor, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x_t given x_0 and standard normal ``z [..., N, 3]``; returns nm, centred over present residues."""
        tt = t.to(trans_0.dtype)[..., None, None]  # [..., 1, 1]
        x0 = remove_mean(trans_0 * self.scale, mask)
        eps = remove_mean(z, mask)
        xt = self.alpha(tt) * x0 + torch.sqrt(self.variance(tt)) * eps
        return torch.where(mask[..., None] > 0, xt / self.scale, trans_0)

    @torch.jit.export
    def prior_from_noise(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Prior sample (nm) from standard normal ``z [..., N, 3]``: projected to zero mean, 0 where absent."""
        return remove_mean(z, mask) / self.scale

    # --- reverse process ------------------------------------------------------------------
    @torch.jit.export
    def score(self, trans_t: torch.Tensor, trans_0_hat: torch.Tensor, t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """-(x_t - alpha x̂_0) / variance, projected to zero mean; per unit of diffusion coordinate.

        t must be > 0 (the variance vanishes at t = 0).
        """
        tt = t.to(trans_t.dtype)[..., None, None]
        s = -(trans_t - self.alpha(tt) * trans_0_hat) * self.scale / self.variance(tt)
        return remove_mean(s, mask)

    @torch.jit.export
    def reverse_step(
        self, trans_t: torch.Tensor, trans_0_hat: torch.Tensor, t: float, dt: float,
        z: torch.Tensor, ode: bool, noise_scale: float, mask: torch.Tensor,
    ) -> torch.Tensor:
        """One Euler step of the reverse SDE (or probability-flow ODE) from t to t - dt (nm in, nm out).

        SDE: x += (beta x / 2 + beta s) dt + noise_scale sqrt(beta dt) z. ``noise_scale`` < 1 keeps
        the whole score drift, so it samples a colder distribution than the data's.

        ODE: x += (beta x / 2 + (1 + lambda^2) beta s / 2) dt + lambda sqrt(beta dt) z with lambda =
        ``noise_scale``: the family of reverse processes with the data's marginals at every t
        (Song et al. 2021, eq. 6 generalised); lambda = 0 is the probability-flow ODE, x += beta (x
        + s) dt / 2, and lambda = 1 the reverse SDE.
        """
        x = remove_mean(trans_t * self.scale, mask)
        tt = torch.full(trans_t.shape[:-2], t, dtype=trans_t.dtype, device=trans_t.device)
        s = self.score(x / self.scale, trans_0_hat, tt, mask)
        b = self.beta_min + t * (self.beta_max - self.beta_min)
        if ode:
            lam = noise_scale
            if lam > 0.0:
                x = x + (0.5 * b * x + 0.5 * (1.0 + lam * lam) * b * s) * dt + (lam * math.sqrt(b * dt)) * remove_mean(z, mask)
            else:
                x = x + 0.5 * b * (x + s) * dt
        else:
            x = x + (0.5 * b * x + b * s) * dt + (noise_scale * math.sqrt(b * dt)) * remove_mean(z, mask)
        return torch.where(mask[..., None] > 0, x / self.scale, trans_t)
