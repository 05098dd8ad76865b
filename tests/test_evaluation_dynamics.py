"""Lag-time metrics against analytic answers: white noise vs AR(1), slow collective modes."""
import numpy as np
import pytest

from openmm_starmd.evaluation.dynamics import (
    DynamicsConfig, autocorrelation_vs_lag, default_lags, rmsd_vs_lag, tica_correlation, tica_loading_scores,
    vamp2_vs_lag,
)
from test_evaluation_data import ar1, one_blas_thread

LAGS = [1, 2, 5, 10]


@pytest.fixture(autouse=True)
def _single_threaded_blas():
    with one_blas_thread():
        yield


def test_autocorrelation_of_ar1_is_a_to_the_lag_and_of_white_noise_zero():
    rng = np.random.default_rng(0)
    T, K, a = 3001, 7, 0.8
    x = ar1(rng, T, (K,), a, sigma=1.0)
    w = rng.normal(size=(T, K))
    # sampling SD of these estimates is ~0.01 at T=3000 (measured over 20 seeds): 5 sigma bounds
    np.testing.assert_allclose(autocorrelation_vs_lag(x, LAGS), a ** np.array(LAGS), atol=0.05)
    np.testing.assert_allclose(autocorrelation_vs_lag(w, LAGS), 0.0, atol=0.04)


def test_vamp2_of_ar1_is_dim_times_a_to_twice_the_lag_and_of_white_noise_its_bias():
    rng = np.random.default_rng(1)
    T, d, a = 3001, 8, 0.8
    x = ar1(rng, T, (d,), a, sigma=1.0)
    w = rng.normal(size=(T, d))
    # Analytic: whitened Koopman matrix a^tau I_d -> VAMP-2 = d a^(2 tau); white noise -> 0.
    # The estimator adds a positive bias ~ d^2 / T_eff, T_eff = T (1 - a^2) / (1 + a^2).
    t_eff = T * (1 - a * a) / (1 + a * a)
    np.testing.assert_allclose(vamp2_vs_lag(x, LAGS), d * a ** (2 * np.array(LAGS)), atol=2 * d * d / t_eff)
    white = vamp2_vs_lag(w, LAGS)
    np.testing.assert_array_less(white, 3 * d * d / T)
    assert vamp2_vs_lag(x, [1])[0] > 100 * white[0]


def test_rmsd_vs_lag_of_ar1_positions():
    rng = np.random.default_rng(2)
    T, N, a, s = 2001, 35, 0.9, 0.05
    x = ar1(rng, T, (N, 3), a, sigma=s)
    # E|x_{t+tau} - x_t|^2 per atom = 3 * 2 s^2 (1 - a^tau); RMSD over 35 atoms ~ its square root
    expected = np.sqrt(6 * s * s * (1 - a ** np.array(LAGS)))
    np.testing.assert_allclose(rmsd_vs_lag(x, LAGS), expected, rtol=0.03)


def two_slow_modes(rng, T, n_residues=13):
    """[T, N, 3] Cα displacements (nm): white noise (0.05 nm) on every coordinate plus two
    collective AR(1) modes, residues 2-4 along x (a = 0.98, 0.1 nm) and residues 8-10 along
    (0, 0.6, 0.8) (a = 0.8, 0.05 nm). Their tICA eigenvalues at lag τ are about 0.92 * 0.98^τ and
    0.75 * 0.8^τ; the noise directions have 0, so tIC1 and tIC2 are these modes for small τ."""
    x = rng.normal(size=(T, n_residues, 3)) * 0.05
    modes = ((0.98, 0.1, slice(2, 5), [1.0, 0.0, 0.0]), (0.8, 0.05, slice(8, 11), [0.0, 0.6, 0.8]))
    for a, sigma, residues, direction in modes:
        amplitude = ar1(rng, T, (1,), a, sigma)  # [T, 1]
        x[:, residues, :] += amplitude[:, :, None] * np.asarray(direction)
    return x


def test_tica_loadings_find_the_slow_residues():
    rng = np.random.default_rng(3)
    x = two_slow_modes(rng, 2001)
    scores = tica_loading_scores(x, lag=2)
    assert scores.shape == (2, 13)
    assert set(np.argsort(scores[0])[-3:]) == {2, 3, 4}
    assert set(np.argsort(scores[1])[-3:]) == {8, 9, 10}


def test_tica_correlation_same_process_high_white_noise_low():
    rng = np.random.default_rng(4)
    lags = (1, 2)  # where the second mode stands well above the estimation noise (~sqrt(d/T))
    reference = two_slow_modes(rng, 2001)
    same = two_slow_modes(rng, 1001)  # an independent realisation of the same process
    noise = rng.normal(size=(1001, 13, 3)) * 0.05
    good = tica_correlation(reference, same, lags)
    bad = tica_correlation(reference, noise, lags)
    assert good["lags"] == [1, 2]
    assert min(good["correlation"]) > 0.9
    assert bad["mean"] < 0.5  # white noise: loadings unrelated to the reference (~0.2 typical)
    itself = tica_correlation(reference, reference, (1, 5, 10, 20))
    np.testing.assert_allclose(itself["correlation"], 1.0, atol=1e-9)


def test_tica_uses_only_valid_pairs_and_needs_thirty():
    rng = np.random.default_rng(5)
    reference = two_slow_modes(rng, 401)
    generated = two_slow_modes(rng, 201)
    valid = np.zeros(201, dtype=bool)
    valid[:40] = True  # 39 valid pairs at lag 1, 35 at lag 5, 30 at lag 10, 20 at lag 20
    out = tica_correlation(reference, generated, generated_valid=valid)
    assert out["valid_pairs"] == [39, 35, 30, 20]
    assert out["correlation"][3] is None and out["pc1"][3] is None
    assert all(c is not None for c in out["correlation"][:3])
    none_valid = tica_correlation(reference, generated, generated_valid=np.zeros(201, dtype=bool))
    assert none_valid["mean"] is None


def test_lags_longer_than_the_trajectory_raise():
    x = np.zeros((9, 4))
    with pytest.raises(ValueError, match="largest lag 9"):
        autocorrelation_vs_lag(x, [1, 9])
    with pytest.raises(ValueError, match="lags"):
        rmsd_vs_lag(np.zeros((9, 3, 3)), [0, 2])


def test_default_lags_and_config_validation():
    lags = default_lags(200)
    assert lags[0] == 1 and lags[-1] == 100 and list(lags) == sorted(set(lags))
    assert default_lags(3) == (1,)
    with pytest.raises(ValueError, match="tica_lags"):
        DynamicsConfig(tica_lags=(1, 0)).validate()


def test_motion_below_epsilon_gives_zero_vamp2_and_no_tica():
    rng = np.random.default_rng(6)
    tiny = rng.normal(size=(101, 5, 3)) * 1e-4  # variance 1e-8 nm^2 < epsilon = 1e-6
    np.testing.assert_array_equal(vamp2_vs_lag(tiny.reshape(101, -1), [1, 3]), 0.0)
    assert tica_loading_scores(tiny, lag=1) is None
