"""SE(3) diffusion (SPEC §3): IGSO(3) statistics and score, VP-SDE marginals, the reverse sampler,
TorchScript parity and argument checks. References are computed here, independently of the
package: the IGSO(3) density straight from the l-series of the spec, and the closed forms."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from openmm_starmd.diffusion import DiffusionConfig, SE3Diffuser, reverse_sample
from openmm_starmd.diffusion.config import fast
from openmm_starmd.geometry.so3 import rotmat_to_rotvec as logmap, rotvec_to_rotmat as expmap
from openmm_starmd.geometry import so3

N = 7  # residues
B = 5  # batch


@pytest.fixture(scope="module")
def diffuser() -> SE3Diffuser:
    return SE3Diffuser(DiffusionConfig())


@pytest.fixture(scope="module")
def scripted(diffuser):
    return torch.jit.script(diffuser)


def ref_f(omega, sigma, num_terms=120):
    """IGSO(3) density f(omega) by the spec's series, summed directly (numpy float64, omega > 0)."""
    omega = np.asarray(omega, dtype=np.float64)
    l = np.arange(num_terms + 1).reshape((-1,) + (1,) * omega.ndim)
    terms = (2 * l + 1) * np.exp(-l * (l + 1) * sigma**2 / 2) * np.sin((l + 0.5) * omega) / np.sin(omega / 2)
    return terms.sum(0)


def ref_angle_pdf(omega, sigma):
    return ref_f(omega, sigma) * (1.0 - np.cos(omega)) / np.pi


def random_frames(gen, shape):
    rots = so3.uniform_random_rotmat(list(shape), generator=gen)
    trans = torch.randn(list(shape) + [3], generator=gen)
    return rots, trans - trans.mean(-2, keepdim=True)


def angle(rots):
    return torch.linalg.norm(logmap(rots), dim=-1)


# --- configuration and schedules -----------------------------------------------------------------
def test_config_validate_names_the_field():
    assert DiffusionConfig().validate() == DiffusionConfig()
    with pytest.raises(ValueError, match="trans_beta_min"):
        DiffusionConfig(trans_beta_min=30.0).validate()
    with pytest.raises(ValueError, match="rot_sigma_min"):
        DiffusionConfig(rot_sigma_min=0.0).validate()
    with pytest.raises(ValueError, match="t_min"):
        DiffusionConfig(t_min=1.0).validate()
    with pytest.raises(ValueError, match="num_steps"):
        DiffusionConfig(num_steps=1).validate()
    with pytest.raises(TypeError, match="igso3_num_omega"):
        DiffusionConfig(igso3_num_omega=1000.0).validate()
    with pytest.raises(TypeError, match="ode"):
        DiffusionConfig(ode=1).validate()


def test_schedules_at_endpoints_and_derivatives(diffuser):
    cfg = DiffusionConfig()
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    assert torch.allclose(diffuser.rot_sigma(t), torch.tensor([cfg.rot_sigma_min, cfg.rot_sigma_max], dtype=torch.float64))
    big_b = cfg.trans_beta_min + 0.5 * (cfg.trans_beta_max - cfg.trans_beta_min)  # B(1)
    assert torch.allclose(diffuser.trans_alpha(t), torch.tensor([1.0, math.exp(-big_b / 2)], dtype=torch.float64))
    assert torch.allclose(diffuser.trans_variance(t), torch.tensor([0.0, -math.expm1(-big_b)], dtype=torch.float64))
    # beta = dB/dt and g^2 = d sigma^2 / dt, by central differences
    ts = torch.tensor([0.013, 0.25, 0.5, 0.97], dtype=torch.float64)
    h = 1e-6
    r3, rot = diffuser.r3, diffuser.so3
    fd_beta = (r3.integrated_beta(ts + h) - r3.integrated_beta(ts - h)) / (2 * h)
    assert torch.allclose(r3.beta(ts), fd_beta, rtol=1e-8)
    fd_g2 = (rot.sigma(ts + h) ** 2 - rot.sigma(ts - h) ** 2) / (2 * h)
    assert torch.allclose(rot.g2(ts), fd_g2, rtol=1e-7)


def test_timesteps(diffuser):
    ts = diffuser.timesteps(13)
    assert ts.shape == (13,) and ts.dtype == torch.float64
    assert ts[0].item() == 1.0 and ts[-1].item() == pytest.approx(DiffusionConfig().t_min)
    assert bool((ts[1:] < ts[:-1]).all())
    assert len(diffuser.timesteps(diffuser.num_steps)) == 200


@pytest.mark.parametrize("spacing", [0.5, 2.0, 3.0])
def test_timesteps_spacing(diffuser, spacing):
    t_min = DiffusionConfig().t_min
    even = diffuser.timesteps(50)
    assert torch.equal(diffuser.timesteps(50, 1.0), even)  # the default, bit for bit
    ts = diffuser.timesteps(50, spacing)
    assert ts.shape == (50,) and ts.dtype == torch.float64
    assert ts[0].item() == 1.0 and ts[-1].item() == pytest.approx(t_min, abs=1e-15)
    assert bool((ts[1:] < ts[:-1]).all())
    u = torch.linspace(1.0, 0.0, 50, dtype=torch.float64)
    assert torch.allclose((ts - t_min) / (1 - t_min), u ** spacing, atol=1e-14)  # t_i = t_min + (1 - t_min) u_i^p
    # p > 1 crowds the times toward t_min: more of them below t = 0.1 than evenly spaced ones
    assert (int((ts < 0.1).sum()) > int((even < 0.1).sum())) == (spacing > 1)


# --- IGSO(3) -------------------------------------------------------------------------------------
def test_igso3_tables_are_the_normalised_series():
    """The spec's series integrates to 1 as an angle pdf, and the table density matches it."""
    cfg = DiffusionConfig()
    igso3 = SE3Diffuser(cfg).so3.igso3
    for sigma in (0.1, 0.7, 1.5):
        total, _ = integrate.quad(ref_angle_pdf, 1e-9, np.pi, args=(sigma,), limit=200)
        assert total == pytest.approx(1.0, abs=1e-8)
        omega = np.linspace(0.01, min(np.pi - 0.01, 5.0 * sigma), 23)
        got = igso3.log_density(torch.tensor(omega), torch.full((23,), sigma, dtype=torch.float64)).numpy()
        assert np.allclose(got, np.log(ref_f(omega, sigma)), atol=1e-3)  # linear interpolation in omega


@pytest.mark.parametrize("sigma", [0.2, 0.7, 1.5])
def test_igso3_angle_histogram_matches_density(diffuser, sigma):
    """20 equal-probability bins of the reference pdf, 20 000 samples: chi-square and 5-sigma per bin."""
    n, bins = 20000, 20
    grid = np.linspace(1e-6, np.pi, 40001)
    cdf = integrate.cumulative_trapezoid(ref_angle_pdf(grid, sigma), grid, initial=0.0)
    edges = np.interp(np.linspace(0, 1, bins + 1)[1:-1] * cdf[-1], cdf, grid)
    expected = np.diff(np.interp(np.concatenate([[0.0], edges, [np.pi]]), grid, cdf))
    expected = expected / cdf[-1]
    gen = torch.Generator().manual_seed(int(sigma * 1000))
    u = torch.rand(n, generator=gen, dtype=torch.float64)
    omega = diffuser.so3.igso3.sample_angle(torch.full((n,), sigma, dtype=torch.float64), u).numpy()
    counts = np.bincount(np.searchsorted(edges, omega), minlength=bins)
    assert 0.0 <= omega.min() and omega.max() <= np.pi
    mean = n * expected
    assert np.all(np.abs(counts - mean) < 5.0 * np.sqrt(mean * (1 - expected)))
    chi2 = ((counts - mean) ** 2 / mean).sum()
    assert chi2 < stats.chi2.ppf(1 - 1e-3, bins - 1)


def test_igso3_sample_axis_is_isotropic(diffuser):
    gen = torch.Generator().manual_seed(3)
    n = 20000
    rotvec = diffuser.so3.igso3.sample(torch.full((n,), 0.7), torch.rand(n, generator=gen), torch.randn(n, 3, generator=gen))
    axis = rotvec / torch.linalg.norm(rotvec, dim=-1, keepdim=True)
    # a uniform unit vector has mean 0 and second moment I/3; each component's variance is 1/3
    assert bool((axis.mean(0).abs() < 5 * math.sqrt(1 / 3 / n)).all())
    second = (axis[:, :, None] * axis[:, None, :]).mean(0)
    assert torch.allclose(second, torch.eye(3) / 3, atol=5 * math.sqrt(4 / 45 / n))


def test_igso3_score_matches_finite_differences_of_log_density(diffuser):
    igso3 = diffuser.so3.igso3
    h = 1e-5
    for sigma in (0.1234, 0.31, 0.7, 1.05, 1.4987):  # off the sigma grid
        omega = np.linspace(0.02, min(3.1, 4.5 * sigma), 37)
        fd = (np.log(ref_f(omega + h, sigma)) - np.log(ref_f(omega - h, sigma))) / (2 * h)
        got = igso3.dlog_density(torch.tensor(omega), torch.full((37,), sigma, dtype=torch.float64)).numpy()
        assert np.allclose(got, fd, rtol=1e-3, atol=1e-3), sigma
    # far tail at sigma_min, where the series has no digits left: the k = 0 image is exact there
    omega = np.linspace(0.5, 3.1, 27)
    closed = -omega / 0.1**2 + 1 / omega - 0.5 / np.tan(omega / 2)
    got = igso3.dlog_density(torch.tensor(omega), torch.full((27,), 0.1, dtype=torch.float64)).numpy()
    assert np.allclose(got, closed, rtol=1e-6)
    assert torch.isfinite(igso3.dlog_f).all() and torch.isfinite(igso3.log_f).all()


def test_rotation_score_is_the_body_frame_gradient(diffuser):
    """score_k = d/dh log f(angle(R̂_0^T R_t exp(h e_k))) at h = 0, in float64."""
    gen = torch.Generator().manual_seed(11)
    rots_0 = so3.uniform_random_rotmat([N], generator=gen, dtype=torch.float64)
    rotvec = torch.randn(N, 3, generator=gen, dtype=torch.float64)
    rotvec = rotvec / torch.linalg.norm(rotvec, dim=-1, keepdim=True) * torch.linspace(0.1, 2.5, N, dtype=torch.float64)[:, None]
    rots_t = rots_0 @ expmap(rotvec)
    t = torch.tensor(0.6, dtype=torch.float64)
    sigma = float(diffuser.rot_sigma(t))
    score = diffuser.so3.score(rots_t, rots_0, t, torch.ones(N, dtype=torch.float64))
    h = 1e-6
    for k in range(3):
        e = torch.zeros(3, dtype=torch.float64)
        e[k] = h
        up = angle(rots_0.transpose(-1, -2) @ rots_t @ expmap(e)).numpy()
        down = angle(rots_0.transpose(-1, -2) @ rots_t @ expmap(-e)).numpy()
        fd = (np.log(ref_f(up, sigma)) - np.log(ref_f(down, sigma))) / (2 * h)
        assert np.allclose(score[:, k].numpy(), fd, rtol=1e-3, atol=1e-4)


# --- forward marginals ---------------------------------------------------------------------------
@pytest.mark.parametrize("t", [0.05, 0.4, 1.0])
def test_vp_sde_marginal_mean_and_variance(diffuser, t):
    """x_t = alpha x_0 + sqrt(var) eps with eps projected to zero mean: per-coordinate mean alpha x_0,
    variance var (1 - 1/N), covariance between residues -var/N; 5-sigma bounds."""
    gen = torch.Generator().manual_seed(int(t * 100))
    M = 4000
    rots_0, trans_0 = random_frames(gen, [N])
    torch.manual_seed(int(t * 100) + 1)
    tt = torch.full((M,), t)
    _, x = diffuser.forward_marginal(rots_0.expand(M, N, 3, 3), trans_0.expand(M, N, 3), tt)
    x = x.double()
    alpha = math.exp(-0.5 * (0.1 * t + 0.5 * (20.0 - 0.1) * t * t))
    var = 1 - alpha**2
    assert torch.allclose(x.mean(-2), torch.zeros(M, 3, dtype=torch.float64), atol=1e-5)  # centred
    dev = x - alpha * trans_0.double()
    assert bool((dev.mean(0).abs() < 5 * math.sqrt(var * (1 - 1 / N) / M)).all())
    target = var * (1 - 1 / N)
    assert bool(((dev.var(0) - target).abs() < 5 * target * math.sqrt(2 / (M - 1))).all())
    cross = (dev[:, 0, :] * dev[:, 3, :]).mean(0)  # residues 0 and 3, per component
    assert bool(((cross + var / N).abs() < 5 * var / math.sqrt(M)).all())


def test_rotation_marginal_right_multiplies_an_igso3_sample(diffuser):
    gen = torch.Generator().manual_seed(5)
    rots_0, trans_0 = random_frames(gen, [B, N])
    u, axis, z = torch.rand(B, N, generator=gen), torch.randn(B, N, 3, generator=gen), torch.randn(B, N, 3, generator=gen)
    t = torch.tensor([0.05, 0.2, 0.5, 0.8, 1.0])
    rots_t, _ = diffuser.forward_marginal_from_noise(rots_0, trans_0, t, u, axis, z)
    expected = diffuser.so3.igso3.sample(diffuser.rot_sigma(t)[:, None].expand(B, N), u, axis)
    assert torch.allclose(logmap(rots_0.transpose(-1, -2) @ rots_t), expected, atol=1e-4)


def test_forward_marginal_at_t_zero_is_the_identity(diffuser):
    gen = torch.Generator().manual_seed(6)
    rots_0, trans_0 = random_frames(gen, [B, N])
    torch.manual_seed(0)
    rots_t, trans_t = diffuser.forward_marginal(rots_0, trans_0, torch.zeros(B))
    assert torch.equal(rots_t, rots_0)
    assert torch.allclose(trans_t, trans_0, atol=1e-6)
    rots_t, trans_t = diffuser.forward_marginal(rots_0, trans_0, torch.tensor(0.0))  # 0-d t broadcasts
    assert torch.isfinite(rots_t).all() and torch.equal(rots_t, rots_0)


def test_mask_excludes_absent_residues(diffuser):
    gen = torch.Generator().manual_seed(7)
    rots_0, trans_0 = random_frames(gen, [B, N])
    trans_0 = trans_0 + 3.0  # not centred
    mask = torch.ones(B, N)
    mask[:, [2, 5]] = 0
    present = mask.bool()
    torch.manual_seed(1)
    rots_t, trans_t = diffuser.forward_marginal(rots_0, trans_0, torch.full((B,), 0.3), mask)
    assert torch.equal(rots_t[~present], rots_0[~present]) and torch.equal(trans_t[~present], trans_0[~present])
    assert torch.allclose(trans_t[:, [0, 1, 3, 4, 6]].mean(1), torch.zeros(B, 3), atol=1e-5)
    rot_s, trans_s = diffuser.scores(rots_t, trans_t, rots_0, trans_0, torch.full((B,), 0.3), mask)
    assert torch.all(rot_s[~present] == 0) and torch.all(trans_s[~present] == 0)
    rots_p, trans_p = diffuser.sample_prior([B, N], mask)
    assert torch.equal(rots_p[~present], torch.eye(3).expand(2 * B, 3, 3)) and torch.all(trans_p[~present] == 0)


def test_translation_score_is_minus_noise_over_std(diffuser):
    gen = torch.Generator().manual_seed(8)
    rots_0, trans_0 = random_frames(gen, [B, N])
    u, axis, z = torch.rand(B, N, generator=gen), torch.randn(B, N, 3, generator=gen), torch.randn(B, N, 3, generator=gen)
    t = torch.tensor([0.02, 0.1, 0.3, 0.6, 0.9])
    rots_t, trans_t = diffuser.forward_marginal_from_noise(rots_0, trans_0, t, u, axis, z)
    _, trans_s = diffuser.scores(rots_t, trans_t, rots_0, trans_0, t)
    eps = z - z.mean(-2, keepdim=True)
    expected = -eps * diffuser.trans_score_scaling(t)[:, None, None]
    assert torch.allclose(trans_s, expected, rtol=1e-3, atol=1e-3)


def test_trans_scale_per_nm_sets_the_diffusion_unit():
    """With 2 diffusion units per nm the prior has std 0.5 nm per coordinate (times sqrt(1 - 1/N)),
    and the score, per diffusion unit, is still -eps / sqrt(var)."""
    diffuser = SE3Diffuser(DiffusionConfig(trans_scale_per_nm=2.0, igso3_num_sigma=16))
    gen = torch.Generator().manual_seed(10)
    M = 4000
    _, trans = diffuser.prior_from_noise(torch.rand(M, N, generator=gen), torch.randn(M, N, 3, generator=gen),
                                         torch.randn(M, N, 3, generator=gen))
    target = 0.25 * (1 - 1 / N)
    assert bool(((trans.double().var(0) - target).abs() < 5 * target * math.sqrt(2 / (M - 1))).all())
    rots_0, trans_0 = random_frames(gen, [B, N])
    z = torch.randn(B, N, 3, generator=gen)
    t = torch.full((B,), 0.3)
    rots_t, trans_t = diffuser.forward_marginal_from_noise(rots_0, trans_0, t, torch.rand(B, N, generator=gen), z, z)
    _, trans_s = diffuser.scores(rots_t, trans_t, rots_0, trans_0, t)
    expected = -(z - z.mean(-2, keepdim=True)) * diffuser.trans_score_scaling(t)[:, None, None]
    assert torch.allclose(trans_s, expected, rtol=1e-3, atol=1e-3)


def test_rotation_score_scaling_is_the_score_rms(diffuser):
    """Monte Carlo E|score|^2 / 3 under the forward marginal vs the tabulated normaliser (5 sigma)."""
    gen = torch.Generator().manual_seed(9)
    M = 20000
    for t in (0.05, 0.5, 1.0):
        tt = torch.full((M,), t, dtype=torch.float64)
        rotvec = diffuser.so3.igso3.sample(diffuser.rot_sigma(tt), torch.rand(M, generator=gen, dtype=torch.float64),
                                           torch.randn(M, 3, generator=gen, dtype=torch.float64))
        sq = (diffuser.so3.igso3.score(rotvec, diffuser.rot_sigma(tt)) ** 2).sum(-1) / 3
        target = diffuser.rot_score_scaling(torch.tensor(t, dtype=torch.float64)) ** 2
        assert abs(sq.mean() - target) < 5 * sq.std() / math.sqrt(M)


# --- reverse sampler -----------------------------------------------------------------------------
def _oracle(rots_0, trans_0):
    return lambda rots_t, trans_t, t: (rots_0.expand_as(rots_t), trans_0.expand_as(trans_t))


def _em_translation_moments(ts, ode: bool, noise=lambda t: 1.0):
    """Exact per-coordinate recursion of the discretised translation sampler with an oracle x̂_0 = x_0:
    x' = a x + c x_0 + b z. Returns (A, C, V): x_final = A x_prior + C x_0 (+ noise of variance V).
    ``noise(t)``: the noise scale of the step from t."""
    A, C, V = 1.0, 0.0, 0.0
    for t, t_next in zip(ts[:-1], ts[1:]):
        dt = t - t_next
        beta = 0.1 + t * (20.0 - 0.1)
        big_b = 0.1 * t + 0.5 * (20.0 - 0.1) * t * t
        alpha, var = math.exp(-big_b / 2), -math.expm1(-big_b)
        k = 0.5 if ode else 1.0
        a = 1 + 0.5 * beta * dt - k * beta * dt / var
        c = k * beta * dt * alpha / var
        A, C, V = a * A, a * C + c, a * a * V + (0.0 if ode else noise(t) ** 2 * beta * dt)
    return A, C, V


def test_reverse_sde_with_oracle_reaches_the_t_min_marginal(diffuser):
    gen = torch.Generator().manual_seed(12)
    M = 48
    rots_0, trans_0 = random_frames(gen, [N])
    out = reverse_sample(diffuser, _oracle(rots_0, trans_0), [M, N], generator=gen)
    assert torch.equal(out.rots, rots_0.expand(M, N, 3, 3)) and torch.equal(out.trans, trans_0.expand(M, N, 3))  # last x̂_0
    # translations: mean C x_0 and variance (A^2 + V)(1 - 1/N) of the exact discrete recursion
    A, C, V = _em_translation_moments([float(t) for t in diffuser.timesteps(200)], ode=False)
    dev = out.trans_t.double() - C * trans_0.double()
    var = (A * A + V) * (1 - 1 / N)
    assert bool((dev.mean(0).abs() < 5 * math.sqrt(var / M)).all())
    assert abs(dev.var(0).mean() / var - 1) < 5 * math.sqrt(2 / (M - 1) / (3 * N))
    # ... which is the continuous-time marginal at t_min up to the Euler error near t_min
    t_min = torch.tensor(DiffusionConfig().t_min, dtype=torch.float64)
    assert 0.5 < var / (float(diffuser.trans_variance(t_min)) * (1 - 1 / N)) < 2.0
    # rotations: E[omega^2] of IGSO3(sigma(t_min)) within 25 % (Euler bias ~10 %, MC ~5 %)
    omega = angle(rots_0.transpose(-1, -2) @ out.rots_t).double()
    grid = np.linspace(1e-6, np.pi, 20001)
    pdf = ref_angle_pdf(grid, float(diffuser.rot_sigma(t_min)))
    mean_sq = integrate.trapezoid(grid**2 * pdf, grid)
    assert abs(float((omega**2).mean()) / mean_sq - 1) < 0.25
    assert float(omega.max()) < 0.8


def test_noise_switch_takes_the_exact_sde_above_it_and_the_noise_scale_below(diffuser):
    """``noise_switch_t`` τ: τ = 0 gives the exact SDE's frames, τ = 1 the plain noise scale's (same
    seed); with τ in between, the states the denoiser sees have the variances of the exact
    recursion with noise 1 from times above τ and the noise scale from the others."""
    gen = torch.Generator().manual_seed(15)
    rots_0, trans_0 = random_frames(gen, [N])
    oracle = _oracle(rots_0, trans_0)

    def run(seed, **kw):
        return reverse_sample(diffuser, oracle, [64, N], num_steps=50, generator=torch.Generator().manual_seed(seed), **kw)

    exact, low = run(1, noise_scale=1.0), run(1, noise_scale=0.25)
    assert torch.equal(run(1, noise_scale=0.25, noise_switch_t=0.0).trans_t, exact.trans_t)
    assert torch.equal(run(1, noise_scale=0.25, noise_switch_t=1.0).trans_t, low.trans_t)
    assert not torch.equal(exact.trans_t, low.trans_t)

    M, tau = 256, 0.4
    seen = []

    def recording(rots, trans, t):
        seen.append(trans.clone())
        return oracle(rots, trans, t)

    reverse_sample(diffuser, recording, [M, N], num_steps=50, noise_scale=0.25, noise_switch_t=tau, generator=gen)
    ts = [float(t) for t in diffuser.timesteps(50)]
    k = next(i for i, t in enumerate(ts) if t <= tau)  # the first state reached only by exact-SDE steps
    tolerance = 5 * math.sqrt(2 / (M - 1) / (3 * N))
    for i in (k, k + 8):
        var = {}
        for name, noise in (("switch", lambda t: 1.0 if t > tau else 0.25), ("low", lambda t: 0.25)):
            A, C, V = _em_translation_moments(ts[: i + 1], ode=False, noise=noise)
            var[name] = (A * A + V) * (1 - 1 / N)
        assert var["switch"] > 1.5 * var["low"]  # the check tells the two apart
        dev = seen[i].double() - C * trans_0.double()
        assert abs(dev.var(0).mean() / var["switch"] - 1) < tolerance
    with pytest.raises(ValueError, match="noise_switch_t"):
        run(1, noise_switch_t=1.5)


def test_reverse_ode_with_oracle_contracts_onto_x0(diffuser):
    gen = torch.Generator().manual_seed(13)
    M = 16
    rots_0, trans_0 = random_frames(gen, [N])
    torch.manual_seed(13)
    out = reverse_sample(diffuser, _oracle(rots_0, trans_0), [M, N], ode=True)
    torch.manual_seed(13)
    _, trans_prior = diffuser.sample_prior([M, N])
    A, C, _ = _em_translation_moments([float(t) for t in diffuser.timesteps(200)], ode=True)
    assert torch.allclose(out.trans_t, A * trans_prior + C * trans_0, atol=1e-5)
    assert abs(C - 1) < 0.01 and abs(A) < 0.06
    # rotations: the relative angle obeys d omega / dt = -g^2 (d log f / d omega) / 2 along a fixed
    # axis (probability flow); compare with that ODE solved accurately from the reference series
    torch.manual_seed(13)
    rots_prior, _ = diffuser.sample_prior([M, N])
    omega_1 = angle(rots_0.transpose(-1, -2) @ rots_prior).double().reshape(-1)[:6].numpy()
    omega_end = angle(rots_0.transpose(-1, -2) @ out.rots_t).double().reshape(-1)[:6].numpy()
    e_max, e_min = math.exp(1.5), math.exp(0.1)

    def rhs(t, w):
        sigma = math.log(t * e_max + (1 - t) * e_min)
        g2 = 2 * sigma * (e_max - e_min) * math.exp(-sigma)
        h = 1e-6
        dlog = (np.log(ref_f(w + h, sigma)) - np.log(ref_f(w - h, sigma))) / (2 * h)
        return -0.5 * g2 * dlog

    exact = integrate.solve_ivp(rhs, (1.0, 0.01), omega_1, rtol=1e-8, atol=1e-10).y[:, -1]
    assert np.allclose(omega_end, exact, rtol=0.05, atol=0.005)
    assert float(angle(rots_0.transpose(-1, -2) @ out.rots_t).max()) < 0.8


def test_ode_noise_keeps_the_marginals_that_a_lower_noise_scale_shrinks(diffuser):
    """With exact x̂_0 of Gaussian translations (sd 0.8 per coordinate) and of rotations at the
    identity, the states the denoiser sees keep the forward marginals for every ``ode_noise`` λ
    (0: the ODE, 1: the reverse SDE, which it then equals step for step), while the SDE with
    noise scale 0.25 samples a colder distribution: 6 % of the translation variance."""
    M, sd = 256, 0.8
    grid = np.linspace(1e-6, np.pi, 20001)

    def run(**kw):
        seen = []

        def gaussian_oracle(rots, trans, t):
            tt = torch.tensor(t, dtype=torch.float64)
            a, v = float(diffuser.r3.alpha(tt)), float(diffuser.r3.variance(tt))
            seen.append((t, rots.clone(), trans.clone()))
            return torch.eye(3).expand_as(rots), a * sd**2 / (a * a * sd**2 + v) * trans

        reverse_sample(diffuser, gaussian_oracle, [M, N], num_steps=200, generator=torch.Generator().manual_seed(3), **kw)
        ratios = []
        for target in (0.5, 0.1, 0.05):
            t, rots, trans = min(seen, key=lambda s: abs(s[0] - target))
            tt = torch.tensor(t, dtype=torch.float64)
            a, v = float(diffuser.r3.alpha(tt)), float(diffuser.r3.variance(tt))
            var = float((trans.double() * diffuser.r3.scale).var(0).mean()) / (1 - 1 / N)
            mean_sq = integrate.trapezoid(grid**2 * ref_angle_pdf(grid, float(diffuser.so3.sigma(tt))), grid)
            ratios.append((var / (a * a * sd**2 + v), float((angle(rots).double() ** 2).mean()) / mean_sq))
        return np.array(ratios), seen[-1][2]

    for lam in (0.0, 0.5, 1.0):
        ratios, _ = run(ode=True, ode_noise=lam)
        assert np.abs(ratios[:, 0] - 1).max() < 0.05, (lam, ratios)  # MC ~2 % on 5,376 coordinates
        assert np.abs(ratios[:, 1] - 1).max() < 0.10, (lam, ratios)  # MC ~4 % and the Euler bias
    assert torch.equal(run(ode=True, ode_noise=1.0)[1], run(ode=False, noise_scale=1.0)[1])
    cold, _ = run(ode=False, noise_scale=0.25)
    assert (cold[:, 0] < 0.1).all() and (cold[:, 1] < 0.7).all()
    with pytest.raises(ValueError, match="ode_noise"):
        run(ode=True, ode_noise=1.5)


def test_scripted_equals_eager(diffuser, scripted):
    gen = torch.Generator().manual_seed(14)
    rots_0, trans_0 = random_frames(gen, [B, N])
    u, axis, z = torch.rand(B, N, generator=gen), torch.randn(B, N, 3, generator=gen), torch.randn(B, N, 3, generator=gen)
    t = torch.tensor([0.0, 0.05, 0.3, 0.7, 1.0])
    for a, b in zip(diffuser.forward_marginal_from_noise(rots_0, trans_0, t, u, axis, z),
                    scripted.forward_marginal_from_noise(rots_0, trans_0, t, u, axis, z)):
        assert torch.equal(a, b)
    eager = diffuser.prior_from_noise(u, axis, z)
    script = scripted.prior_from_noise(u, axis, z)
    assert all(torch.equal(a, b) for a, b in zip(eager, script))
    ts = [float(x) for x in diffuser.timesteps(7)]
    for ode in (False, True):
        state_e, state_s = eager, script
        for i in range(6):
            z_rot, z_trans = torch.randn(B, N, 3, generator=gen), torch.randn(B, N, 3, generator=gen)
            dt = ts[i] - ts[i + 1]
            state_e = diffuser.reverse_step(*state_e, rots_0, trans_0, ts[i], dt, z_rot, z_trans, ode, 0.7)
            state_s = scripted.reverse_step(*state_s, rots_0, trans_0, ts[i], dt, z_rot, z_trans, ode, 0.7)
        assert all(torch.equal(a, b) for a, b in zip(state_e, state_s))
    tt = torch.full((B,), 0.4)
    assert all(torch.equal(a, b) for a, b in zip(diffuser.scores(*eager, rots_0, trans_0, tt),
                                                 scripted.scores(*script, rots_0, trans_0, tt)))
    torch.manual_seed(3)
    a = diffuser.sample_prior([B, N])
    torch.manual_seed(3)
    b = scripted.sample_prior([B, N])
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert torch.equal(scripted.timesteps(11, 1.0), diffuser.timesteps(11))
    assert torch.equal(scripted.timesteps(11, 2.0), diffuser.timesteps(11, 2.0))


def test_noise_scale_zero_removes_the_stochastic_term():
    diffuser = SE3Diffuser(fast())
    gen = torch.Generator().manual_seed(15)
    rots_0, trans_0 = random_frames(gen, [B, N])
    state = diffuser.prior_from_noise(torch.rand(B, N, generator=gen), torch.randn(B, N, 3, generator=gen),
                                      torch.randn(B, N, 3, generator=gen))
    z1 = [torch.randn(B, N, 3, generator=gen) for _ in range(2)]
    z2 = [torch.randn(B, N, 3, generator=gen) for _ in range(2)]
    quiet = [diffuser.reverse_step(*state, rots_0, trans_0, 0.5, 0.01, *z, False, 0.0) for z in (z1, z2)]
    assert all(torch.equal(a, b) for a, b in zip(*quiet))
    noisy = [diffuser.reverse_step(*state, rots_0, trans_0, 0.5, 0.01, *z, False, 1.0) for z in (z1, z2)]
    assert not torch.allclose(noisy[0][0], noisy[1][0]) and not torch.allclose(noisy[0][1], noisy[1][1])


def test_diffuser_has_no_state_and_keeps_float64_tables_under_dtype_casts():
    diffuser = SE3Diffuser(fast())
    assert list(diffuser.state_dict()) == [] and list(diffuser.parameters()) == []
    reference = diffuser.so3.igso3.cdf_flat.clone()
    diffuser.half()
    assert diffuser.so3.igso3.cdf_flat.dtype == torch.float64
    assert torch.equal(diffuser.so3.igso3.cdf_flat, reference)


# --- helpers and argument checks -----------------------------------------------------------------
def test_bad_inputs_raise_value_errors_naming_the_argument(diffuser):
    gen = torch.Generator().manual_seed(17)
    rots, trans = random_frames(gen, [B, N])
    with pytest.raises(ValueError, match="t must lie"):
        diffuser.forward_marginal(rots, trans, torch.full((B,), 1.5))
    with pytest.raises(ValueError, match="t must lie"):
        diffuser.scores(rots, trans, rots, trans, torch.zeros(B))
    with pytest.raises(ValueError, match="t must broadcast"):
        diffuser.forward_marginal(rots, trans, torch.full((B + 1,), 0.5))
    with pytest.raises(ValueError, match="rots_0"):
        diffuser.forward_marginal(rots[..., :2], trans, torch.full((B,), 0.5))
    with pytest.raises(ValueError, match="trans_0"):
        diffuser.forward_marginal(rots, trans[..., :2], torch.full((B,), 0.5))
    with pytest.raises(ValueError, match="mask"):
        diffuser.forward_marginal(rots, trans, torch.full((B,), 0.5), torch.ones(B, N + 1))
    with pytest.raises(ValueError, match="trans_0_hat"):
        diffuser.scores(rots, trans, rots[:1], trans[:1], torch.full((B,), 0.5))
    z = torch.randn(B, N, 3)
    with pytest.raises(ValueError, match="dt"):
        diffuser.reverse_step(rots, trans, rots, trans, 0.5, -0.1, z, z)
    with pytest.raises(ValueError, match="t must lie"):
        diffuser.reverse_step(rots, trans, rots, trans, 1.2, 0.1, z, z)
    with pytest.raises(ValueError, match="z_rot"):
        diffuser.reverse_step(rots, trans, rots, trans, 0.5, 0.1, z[:, :3], z)
    with pytest.raises(ValueError, match="u_rot"):
        diffuser.prior_from_noise(torch.rand(B, N, 1), z, z)
    with pytest.raises(ValueError, match="num_steps"):
        diffuser.timesteps(1)
    for bad in (0.0, -1.0, float("inf"), float("nan"), True):
        with pytest.raises(ValueError, match="time spacing must be a number > 0"):
            diffuser.timesteps(5, bad)
    with pytest.raises(ValueError, match="shape"):
        diffuser.sample_prior([B, 0])
    with pytest.raises(TypeError, match="t must be a torch.Tensor"):
        diffuser.forward_marginal(rots, trans, 0.5)
