"""Coverage in the reference PCA plane: JSD and recall with known answers; reference PCA."""
import numpy as np
import pytest

from openmm_starmd.evaluation.coverage import CoverageConfig, coverage, jensen_shannon_distance
from openmm_starmd.evaluation.pca import ReferencePCA


def grid_points(n_bins: int = 10) -> np.ndarray:
    """One point at the centre of each cell of an n x n grid on [0, 1]^2: [n*n, 2]."""
    centres = (np.arange(n_bins) + 0.5) / n_bins
    gx, gy = np.meshgrid(centres, centres, indexing="ij")
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def test_identical_sets_give_jsd_zero_and_full_recall():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(301, 5))
    result = coverage(reference, reference.copy())
    assert result.jsd == 0.0
    assert result.recall == 1.0 and result.precision == 1.0 and result.f1 == 1.0
    assert result.reference_counts.shape == (10, 10) and result.reference_counts.sum() == 301


def test_half_the_bins_gives_recall_one_half_and_the_analytic_jsd():
    reference = grid_points()  # 100 occupied cells, one point each
    generated = reference[reference[:, 0] < 0.5]  # the 50 cells with x < 0.5
    result = coverage(reference, generated)
    assert result.recall == pytest.approx(0.5)
    assert result.precision == pytest.approx(1.0)
    # p uniform on 100 cells, q uniform on 50 of them; m = (p + q) / 2:
    # KL(p||m) = 1/2 log2(2/3) + 1/2 log2(2), KL(q||m) = log2(4/3)
    js = 0.5 * (0.5 * np.log2(2 / 3) + 0.5) + 0.5 * np.log2(4 / 3)
    assert result.jsd == pytest.approx(np.sqrt(js), abs=1e-12)


def test_disjoint_sets_give_jsd_one_and_zero_recall():
    rng = np.random.default_rng(1)
    reference = rng.uniform(0.0, 1.0, size=(201, 2))
    generated = rng.uniform(5.0, 6.0, size=(53, 2))  # far outside: bins span both sets
    result = coverage(reference, generated)
    assert result.jsd == pytest.approx(1.0)
    assert result.recall == 0.0 and result.precision == 0.0 and result.f1 == 0.0


def test_no_generated_frames():
    result = coverage(grid_points(), np.zeros((0, 2)))
    assert result.jsd is None and result.recall == 0.0 and result.precision is None
    assert result.n_generated == 0


def test_one_component_and_bin_count():
    reference = np.linspace(0, 1, 97)[:, None]
    generated = np.linspace(0, 0.29, 13)[:, None]  # first 3 of 10 bins
    result = coverage(reference, generated, CoverageConfig(n_components=1, n_bins=10))
    assert result.recall == pytest.approx(0.3)


def test_jensen_shannon_distance_properties():
    rng = np.random.default_rng(2)
    p, q = rng.random(17), rng.random(17)
    assert jensen_shannon_distance(p, q) == pytest.approx(jensen_shannon_distance(q, p))
    assert 0.0 < jensen_shannon_distance(p, q) < 1.0
    assert jensen_shannon_distance(p, 3.0 * p) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="p, q"):
        jensen_shannon_distance(p, q[:5])


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="reference"):
        coverage(np.zeros((0, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="n_bins"):
        coverage(grid_points(), grid_points(), CoverageConfig(n_bins=0))
    with pytest.raises(ValueError, match="cells"):
        CoverageConfig(n_components=32, n_bins=10).validate()


def test_reference_pca_recovers_known_axes_and_variances():
    rng = np.random.default_rng(3)
    F, N = 4001, 7
    axes = np.linalg.qr(rng.normal(size=(3 * N, 3 * N)))[0][:, :3].T  # 3 orthonormal axes [3, 3N]
    sd = np.array([0.3, 0.2, 0.1])
    coords = (rng.normal(size=(F, 3)) * sd) @ axes + 1.5  # [F, 3N], rank 3
    pca = ReferencePCA.fit(coords.reshape(F, N, 3), n_components=5)
    assert pca.n_components == 3  # axes without variance are dropped
    np.testing.assert_allclose(np.sqrt(pca.variance), sd, rtol=0.05)
    np.testing.assert_allclose(np.abs(pca.components @ axes.T), np.eye(3), atol=0.05)
    projection = pca.transform(coords.reshape(F, N, 3))
    np.testing.assert_allclose(projection.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(projection.std(axis=0), np.sqrt(pca.variance), rtol=1e-9)
