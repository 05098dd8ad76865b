"""IGSO(3), the isotropic Gaussian on SO(3): density, angle sampling and score from cached tables.

A rotation R ~ IGSO3(sigma) is exp(hat(omega * n)) with a uniform axis n and an angle omega whose
density on [0, pi] is f(omega) (1 - cos omega) / pi, where f is the density with respect to the
normalised Haar measure (SPEC §3):

    f(omega) = sum_l (2l + 1) exp(-l (l + 1) sigma^2 / 2) sin((l + 1/2) omega) / sin(omega / 2).

This is the heat kernel of Brownian motion dR = R hat(dW) run for time sigma^2 (each component
of the rotation vector has variance sigma^2 when sigma is small). The series is rewritten as the
cosine series sum_m a_m cos(m omega) (``cosine_coefficients``) so that f, df/domega and the angle
CDF are matrix products that are exact at omega = 0 and pi. Where f has dropped below
``_SERIES_REL_FLOOR * f(0)`` (small sigma, large omega) the truncated series has lost its digits to
cancellation, and the same function is evaluated by its Poisson-summed image form
(``image_sum``, exact there with a few images); the two agree to ~1e-9 where both hold.

Tables over a uniform (sigma, omega) grid are built once in float64 at construction and kept as
non-persistent buffers (rebuilt, not loaded, with a checkpoint); lookups interpolate bilinearly
in (sigma, omega). Dtype casts of the module (``.half()``, ``.float()``) leave the tables in float64.
"""
from __future__ import annotations

import math
from typing import Tuple

import torch
from torch import nn

from openmm_starmd.diffusion.internal import interp_rows

_SERIES_TOL = 1e-12  # terms with exp(-l(l+1) sigma_min^2 / 2) below this are dropped
_SERIES_REL_FLOOR = 1e-6  # below this fraction of f(0) the series is replaced by the image sum


def series_num_terms(sigma_min: float, tol: float = _SERIES_TOL) -> int:
    """Largest degree l kept: the smallest l with exp(-l (l + 1) sigma_min^2 / 2) < tol."""
    bound = 2.0 * math.log(1.0 / tol) / sigma_min**2  # l (l + 1) must exceed this
    return int(math.ceil(0.5 * (-1.0 + math.sqrt(1.0 + 4.0 * bound))))


def cosine_coefficients(sigma: torch.Tensor, num_terms: int) -> torch.Tensor:
    """Coefficients ``[S, num_terms + 1]`` with f(omega) = sum_m a_m cos(m omega), sigma ``[S]``.

    sin((l + 1/2) w) / sin(w / 2) = 1 + 2 sum_{m=1..l} cos(m w), so a_0 = sum_l c_l and
    a_m = 2 sum_{l >= m} c_l with c_l = (2l + 1) exp(-l (l + 1) sigma^2 / 2).
    """
    sigma = sigma.to(torch.float64)
    l = torch.arange(num_terms + 1, dtype=torch.float64, device=sigma.device)
    c = (2.0 * l + 1.0) * torch.exp(-l * (l + 1.0) * sigma[:, None] ** 2 / 2.0)  # [S, L + 1]
    tail = torch.flip(torch.cumsum(torch.flip(c, [-1]), -1), [-1])  # tail[:, m] = sum_{l >= m} c_l
    a = 2.0 * tail
    a[:, 0] = tail[:, 0]
    return a


def series(omega: torch.Tensor, sigma: torch.Tensor, num_terms: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Truncated series in float64: f, df/domega and the angle CDF, each ``[S, W]``.

    omega ``[W]`` in [0, pi], sigma ``[S]``. The CDF is the exact integral of the truncated
    series' angle pdf f(w) (1 - cos w) / pi from 0 to omega, with
    int_0^omega cos(m w)(1 - cos w) dw = I_m - (I_{|m-1|} + I_{m+1}) / 2, I_j = sin(j omega) / j, I_0 = omega.
    """
    omega = omega.to(torch.float64)
    a = cosine_coefficients(sigma, num_terms)  # [S, L + 1]
    m = torch.arange(num_terms + 2, dtype=torch.float64, device=omega.device)  # 0 .. L + 1
    mw = m[:, None] * omega[None, :]  # [L + 2, W]
    cos_mw, sin_mw = torch.cos(mw), torch.sin(mw)
    L1 = num_terms + 1
    f = a @ cos_mw[:L1]  # [S, W]
    df = -(a * m[:L1]) @ sin_mw[:L1]  # [S, W]
    integral = torch.where(m[:, None] == 0, omega[None, :].expand_as(mw), sin_mw / m[:, None].clamp_min(1.0))
    lower = torch.cat([integral[1:2], integral[: L1 - 1]], 0)  # I_{|m-1|} for m = 0 .. L
    kernel = integral[:L1] - 0.5 * (lower + integral[1 : L1 + 1])  # [L + 1, W]
    cdf = (a @ kernel) / math.pi
    return f, df, cdf


def num_images_needed(sigma_max: float, tol: float = 1e-17) -> int:
    """Images per side K for which the first dropped image, exp(-pi^2 K (K + 1) / eps), is below tol."""
    eps = sigma_max**2 / 2.0
    K = 1
    while math.exp(-math.pi**2 * K * (K + 1) / eps) >= tol:
        K += 1
    return K


def image_sum(omega: torch.Tensor, sigma: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """log f and d log f / domega from the Poisson-summed series; omega in (0, pi], sigma broadcast.

    With eps = sigma^2 / 2 and x_k = omega + 2 pi k (Poisson summation over half-integer l + 1/2):
    f = sqrt(pi) eps^{-3/2} e^{eps/4} sum_k (-1)^k x_k exp(-x_k^2 / (4 eps)) / (2 sin(omega / 2)).
    Every image is weighted relative to exp(-omega^2 / (4 eps)), which keeps all exponents <= 0.
    Exact to fp64 with ``num_images_needed`` images; not defined at omega = 0 (0/0).
    """
    w, s = torch.broadcast_tensors(omega.to(torch.float64), sigma.to(torch.float64))
    eps = s**2 / 2.0
    K = num_images_needed(float(s.max())) if s.numel() > 0 else 1
    k = torch.arange(-K, K + 1, dtype=torch.float64, device=w.device)  # [2K + 1]
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)  # (-1)^k
    x = w[..., None] + 2.0 * math.pi * k  # [..., 2K + 1]
    weight = sign * torch.exp(-math.pi * k * (w[..., None] + math.pi * k) / eps[..., None])  # exp((w^2 - x^2) / 4 eps)
    s0 = (weight * x).sum(-1)
    s1 = (weight * (1.0 - x * math.pi * k / eps[..., None])).sum(-1)
    log_f = (
        0.5 * math.log(math.pi) - 1.5 * torch.log(eps) + eps / 4.0 - w**2 / (4.0 * eps)
        + torch.log(s0) - torch.log(2.0 * torch.sin(w / 2.0))
    )
    dlog_f = -w / (2.0 * eps) + s1 / s0 - 0.5 / torch.tan(w / 2.0)
    return log_f, dlog_f


def build_tables(sigma: torch.Tensor, omega: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """float64 tables on the grid sigma ``[S]`` x omega ``[W]`` (omega[0] = 0, omega[-1] = pi).

    Returns log f ``[S, W]``, d log f / domega ``[S, W]``, the angle CDF ``[S, W]`` (monotone,
    0 at omega = 0 and 1 at pi) and the RMS of one Cartesian component of the score vector,
    sqrt(E[(d log f / domega)^2] / 3) ``[S]``.
    """
    num_terms = series_num_terms(float(sigma.min()))
    f, df, cdf = series(omega, sigma, num_terms)
    reliable = f > _SERIES_REL_FLOOR * f[:, :1]  # omega = 0 is always reliable (f is largest there)
    log_f = torch.log(f.clamp_min(1e-300))
    dlog_f = df / f.clamp_min(1e-300)
    tail = ~reliable
    grid_sigma, grid_omega = torch.broadcast_tensors(sigma[:, None], omega[None, :])  # [S, W]
    log_f[tail], dlog_f[tail] = image_sum(grid_omega[tail], grid_sigma[tail])
    cdf = torch.cummax(cdf.clamp(0.0, 1.0), dim=-1).values
    cdf = cdf / cdf[:, -1:]
    pdf = torch.exp(log_f) * (1.0 - torch.cos(omega)) / math.pi  # [S, W]
    mean_sq = torch.trapezoid(dlog_f**2 * pdf, omega, dim=-1) / torch.trapezoid(pdf, omega, dim=-1)
    return log_f, dlog_f, cdf, torch.sqrt(mean_sq / 3.0)


class IGSO3(nn.Module):
    """IGSO(3) for sigma in [sigma_min, sigma_max] (radians) from tables on a uniform grid.

    Methods take sigma and omega as tensors of one broadcast shape ``[...]`` and return that
    dtype; sigma is clamped to the table range (validate it before, as the diffusers do).
    """

    def __init__(self, sigma_min: float, sigma_max: float, num_sigma: int = 500, num_omega: int = 1000):
        super().__init__()
        if not 0.0 < sigma_min < sigma_max:
            raise ValueError(f"IGSO3 needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        if num_sigma < 2 or num_omega < 16:
            raise ValueError(f"IGSO3 needs num_sigma >= 2 and num_omega >= 16, got {num_sigma}, {num_omega}")
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.num_sigma = int(num_sigma)
        self.num_omega = int(num_omega)
        self.delta_sigma = (self.sigma_max - self.sigma_min) / (num_sigma - 1)
        self.delta_omega = math.pi / (num_omega - 1)
        sigma = torch.linspace(sigma_min, sigma_max, num_sigma, dtype=torch.float64)
        omega = torch.linspace(0.0, math.pi, num_omega, dtype=torch.float64)
        log_f, dlog_f, cdf, score_rms = build_tables(sigma, omega)
        offsets = 2.0 * torch.arange(num_sigma, dtype=torch.float64)[:, None]  # keeps rows apart
        self.register_buffer("log_f", log_f, persistent=False)  # [S, W]
        self.register_buffer("dlog_f", dlog_f, persistent=False)  # [S, W]
        self.register_buffer("cdf_flat", (cdf + offsets).reshape(-1), persistent=False)  # [S * W], sorted
        self.register_buffer("score_rms_table", score_rms, persistent=False)  # [S]

    def _apply(self, fn, recurse=True):
        """Follow device moves but keep the tables in float64 (``.half()`` would ruin the CDF)."""
        tables = dict(self._buffers)
        result = super()._apply(fn, recurse)
        for name, table in tables.items():
            if table is not None:
                self._buffers[name] = table.to(device=self._buffers[name].device)
        return result

    def _sigma_pos(self, sigma: torch.Tensor) -> torch.Tensor:
        return (sigma.to(torch.float64) - self.sigma_min) / self.delta_sigma

    @torch.jit.export
    def log_density(self, omega: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """log f(omega; sigma), the log density w.r.t. the normalised Haar measure."""
        omega, sigma = torch.broadcast_tensors(omega, sigma)
        out = interp_rows(self.log_f, self._sigma_pos(sigma), omega.to(torch.float64) / self.delta_omega)
        return out.to(omega.dtype)

    @torch.jit.export
    def angle_pdf(self, omega: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Density of the rotation angle on [0, pi]: f(omega) (1 - cos omega) / pi."""
        return torch.exp(self.log_density(omega, sigma)) * (1.0 - torch.cos(omega)) / math.pi

    @torch.jit.export
    def dlog_density(self, omega: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """d/domega log f(omega; sigma): the score magnitude along the rotation axis (<= 0)."""
        omega, sigma = torch.broadcast_tensors(omega, sigma)
        out = interp_rows(self.dlog_f, self._sigma_pos(sigma), omega.to(torch.float64) / self.delta_omega)
        return out.to(omega.dtype)

    @torch.jit.export
    def score_rms(self, sigma: torch.Tensor) -> torch.Tensor:
        """RMS of one Cartesian component of the score vector under IGSO3(sigma), ``[...]``."""
        pos = self._sigma_pos(sigma).clamp(0.0, float(self.num_sigma - 1))
        lo = pos.floor().clamp(max=float(self.num_sigma - 2))
        frac = pos - lo
        lo_i = lo.long()
        table = self.score_rms_table
        return ((1.0 - frac) * table[lo_i] + frac * table[lo_i + 1]).to(sigma.dtype)

    def _quantile(self, row: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Inverse of the piecewise-linear CDF of table row ``row`` (long) at ``u`` in [0, 1]."""
        W = self.num_omega
        base = row * W
        key = u + 2.0 * row.to(torch.float64)
        hi = torch.searchsorted(self.cdf_flat, key)
        hi = torch.minimum(torch.maximum(hi, base + 1), base + W - 1)
        c_lo = self.cdf_flat[hi - 1]
        c_hi = self.cdf_flat[hi]
        width = c_hi - c_lo
        frac = torch.where(width > 0, (key - c_lo) / torch.where(width > 0, width, torch.ones_like(width)), torch.zeros_like(width))
        return ((hi - 1 - base).to(torch.float64) + frac.clamp(0.0, 1.0)) * self.delta_omega

    @torch.jit.export
    def sample_angle(self, sigma: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Rotation angles ``[...]`` by inverse CDF of uniforms ``u`` in [0, 1); sigma ``[...]``.

        Quantiles of the two neighbouring sigma rows are blended linearly in sigma.
        """
        sigma, u = torch.broadcast_tensors(sigma, u)
        pos = self._sigma_pos(sigma).clamp(0.0, float(self.num_sigma - 1))
        lo = pos.floor().clamp(max=float(self.num_sigma - 2))
        frac = pos - lo
        lo_i = lo.long()
        u64 = u.to(torch.float64).clamp(0.0, 1.0)
        omega = (1.0 - frac) * self._quantile(lo_i, u64) + frac * self._quantile(lo_i + 1, u64)
        return omega.to(sigma.dtype)

    @torch.jit.export
    def sample(self, sigma: torch.Tensor, u: torch.Tensor, axis_noise: torch.Tensor) -> torch.Tensor:
        """IGSO3(sigma) rotation vectors ``[..., 3]`` from uniforms ``u [...]`` and Gaussian ``axis_noise [..., 3]``."""
        omega = self.sample_angle(sigma, u)
        axis = axis_noise / torch.linalg.norm(axis_noise, dim=-1, keepdim=True).clamp_min(1e-12)
        return omega[..., None].to(axis.dtype) * axis

    @torch.jit.export
    def score(self, rotvec: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Score of IGSO3(sigma) at exp(hat(rotvec)): (d log f / domega)(|v|) v / |v|, ``[..., 3]``.

        It is the gradient of log f for perturbations R -> R exp(hat(delta)) of the rotation
        (or of the left perturbation; the two agree because f is a class function and the
        rotation vector is its own axis).
        """
        omega = torch.linalg.norm(rotvec, dim=-1)  # [...]
        slope = self.dlog_density(omega, sigma) / omega.clamp_min(1e-12)  # finite as omega -> 0
        return rotvec * slope[..., None]
