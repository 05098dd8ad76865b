"""IGSO(3) diffusion of residue rotations with the logarithmic schedule (SPEC §3).

sigma(t) = log(t e^{sigma_max} + (1 - t) e^{sigma_min}); the forward process is Brownian motion
on SO(3) with g(t)^2 = d sigma^2 / dt, and the marginal at t > 0 is R_t = R_0 exp(hat(v)),
v ~ IGSO3(sigma(t)). At t = 0 exactly the marginal is the clean rotation (no noise), so
contextual noise at tau = 0 is the identity; for t -> 0+ the schedule's floor sigma_min applies.

Tangent-space convention (used by the marginal, the score and the reverse step alike): rotation
vectors live in the residue's LOCAL (body) frame and act by right multiplication,
R -> R exp(hat(v)). The score at R_t given x̂_0 is computed from the relative rotation
R̂_0^T R_t = exp(hat(omega n)) as (d log f / domega)(omega, sigma_t) n, the gradient of
log IGSO3(R_t; R̂_0, sigma_t) under R_t -> R_t exp(hat(delta)). Shapes: rotations
``[..., N, 3, 3]``, rotation vectors and scores ``[..., N, 3]``, masks ``[..., N]`` (absent
residues pass through unchanged and get zero score), times ``[...]``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from openmm_starmd.diffusion.config import DiffusionConfig
from openmm_starmd.diffusion.igso3 import IGSO3
from openmm_starmd.geometry.so3 import rotmat_to_rotvec as logmap, rotvec_to_rotmat as expmap


class SO3Diffuser(nn.Module):
    """Rotation diffusion; holds the IGSO(3) tables (buffers), no parameters."""

    def __init__(self, cfg: DiffusionConfig):
        super().__init__()
        self.sigma_min = float(cfg.rot_sigma_min)
        self.sigma_max = float(cfg.rot_sigma_max)
        self.igso3 = IGSO3(cfg.rot_sigma_min, cfg.rot_sigma_max, cfg.igso3_num_sigma, cfg.igso3_num_omega)

    # --- schedule -------------------------------------------------------------------------
    @torch.jit.export
    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """sigma(t) in radians: sigma_min at t = 0, sigma_max at t = 1."""
        return torch.log(t * math.exp(self.sigma_max) + (1.0 - t) * math.exp(self.sigma_min))

    @torch.jit.export
    def g2(self, t: torch.Tensor) -> torch.Tensor:
        """g(t)^2 = d sigma(t)^2 / dt = 2 sigma (e^{sigma_max} - e^{sigma_min}) e^{-sigma}."""
        sigma = self.sigma(t)
        return 2.0 * sigma * (math.exp(self.sigma_max) - math.exp(self.sigma_min)) * torch.exp(-sigma)

    @torch.jit.export
    def score_scaling(self, t: torch.Tensor) -> torch.Tensor:
        """RMS of one component of the true rotation score at t (FrameDiff's loss normaliser)."""
        return self.igso3.score_rms(self.sigma(t))

    # --- forward process ------------------------------------------------------------------
    @torch.jit.export
    def marginal_from_noise(
        self, rots_0: torch.Tensor, t: torch.Tensor, u: torch.Tensor, axis_noise: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """R_t = R_0 exp(hat(v)), v ~ IGSO3(sigma(t)) from uniforms ``u [..., N]`` and normals ``axis_noise [..., N, 3]``."""
        tt = t.to(torch.float64)[..., None]  # [..., 1]
        sigma = self.sigma(tt).expand(u.shape)  # [..., N]
        rotvec = self.igso3.sample(sigma, u, axis_noise).to(rots_0.dtype)  # [..., N, 3]
        keep = ((tt > 0).to(rots_0.dtype) * mask)[..., None]  # no noise at t = 0 or on absent residues
        return rots_0 @ expmap(rotvec * keep)

    @torch.jit.export
    def prior_from_noise(self, u: torch.Tensor, axis_noise: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """IGSO3(sigma_max) around the identity ``[..., N, 3, 3]``; identity on absent residues."""
        sigma = torch.full(u.shape, self.sigma_max, dtype=torch.float64, device=u.device)
        rotvec = self.igso3.sample(sigma, u, axis_noise)
        return expmap(rotvec * mask.to(rotvec.dtype)[..., None])

    # --- reverse process ------------------------------------------------------------------
    @torch.jit.export
    def score(self, rots_t: torch.Tensor, rots_0_hat: torch.Tensor, t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Body-frame score of IGSO3(R_t; R̂_0, sigma(t)) ``[..., N, 3]`` (see the module docstring)."""
        rotvec = logmap(rots_0_hat.transpose(-1, -2) @ rots_t)  # [..., N, 3], relative rotation
        sigma = self.sigma(t.to(torch.float64)[..., None]).expand(rotvec.shape[:-1])  # [..., N]
        return self.igso3.score(rotvec, sigma.to(rotvec.dtype)) * mask.to(rotvec.dtype)[..., None]

    @torch.jit.export
    def reverse_step(
        self, rots_t: torch.Tensor, rots_0_hat: torch.Tensor, t: float, dt: float,
        z: torch.Tensor, ode: bool, noise_scale: float, mask: torch.Tensor,
    ) -> torch.Tensor:
        """One geodesic Euler step from t to t - dt: R <- R exp(hat(delta)) with
        delta = g^2 s dt + noise_scale g sqrt(dt) z (SDE) or (1 + lambda^2) g^2 s dt / 2 +
        lambda g sqrt(dt) z with lambda = ``noise_scale`` (ODE: the marginal-preserving family,
        lambda = 0 the probability-flow ODE); ``z [..., N, 3]``."""
        sigma = math.log(t * math.exp(self.sigma_max) + (1.0 - t) * math.exp(self.sigma_min))
        g2 = 2.0 * sigma * (math.exp(self.sigma_max) - math.exp(self.sigma_min)) * math.exp(-sigma)
        tt = torch.full(rots_t.shape[:-3], t, dtype=torch.float64, device=rots_t.device)
        s = self.score(rots_t, rots_0_hat, tt, mask)
        if ode:
            lam = noise_scale  # lam = 0: 0.5 * g2 * dt * s, the ODE, to the bit
            delta = 0.5 * (1.0 + lam * lam) * g2 * dt * s
            if lam > 0.0:
                delta = delta + (lam * math.sqrt(g2 * dt)) * z
        else:
            delta = g2 * dt * s + (noise_scale * math.sqrt(g2 * dt)) * z
        return rots_t @ expmap(delta * mask.to(delta.dtype)[..., None])
