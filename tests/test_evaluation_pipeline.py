"""evaluate() on villin trajectories: known answers end to end, and bad input."""
import numpy as np
import pytest

from openmm_starmd.evaluation import evaluator
from openmm_starmd.evaluation.dynamics import DynamicsConfig
from openmm_starmd.evaluation.evaluator import EvaluationConfig, evaluate
from openmm_starmd.evaluation.molprobity import MolProbityConfig, unavailable_reason
from test_evaluation_data import ROTARAMA_DIR, ar1, move_ca, one_blas_thread, villin

NO_AA = EvaluationConfig(molprobity=MolProbityConfig(enabled=False))


@pytest.fixture(autouse=True)
def _single_threaded_blas():
    with one_blas_thread():
        yield


@pytest.fixture(scope="module")
def base():
    return villin()


def ar1_trajectory(base, n_frames, a, sigma_nm=0.003, seed=0):
    """Villin with every residue moved rigidly by an AR(1) displacement of its Cα.
    0.03 Å per coordinate keeps all Cα-Cα distances far from the clash/break cutoffs."""
    rng = np.random.default_rng(seed)
    return move_ca(base, ar1(rng, n_frames, (35, 3), a, sigma_nm))


def scale_frame(trajectory, frame, factor):
    """Scale all atoms of one frame about their centroid (0.7: Cα clashes, 1.2: chain breaks)."""
    xyz = trajectory.xyz[frame]
    centre = xyz.mean(axis=0)
    trajectory.xyz[frame] = centre + factor * (xyz - centre)


def test_md_against_itself(base):
    reference = ar1_trajectory(base, 301, a=0.9)
    m = evaluate(reference, reference, NO_AA)
    v, c, d = m["validity"], m["coverage"], m["dynamics"]
    assert v["ca"] == 1.0 and v["reference"]["ca"] == 1.0
    assert v["aa"] is None and v["ca_aa"] is None and "disabled" in v["aa_missing_reason"]
    assert c["jsd"] == 0.0 and c["recall"] == 1.0 and c["valid_frames"] == "ca"
    assert d["vamp2"]["generated"] == d["vamp2"]["reference"] and d["vamp2"]["mean_abs_diff"] == 0.0
    assert d["rmsd_lag"]["mean_abs_diff_nm"] == 0.0 and d["autocorr"]["mean_abs_diff"] == 0.0
    np.testing.assert_allclose(d["tica"]["correlation"], 1.0, atol=1e-9)
    assert d["n_pcs"] == 32 and d["lags"][0] == 1 and d["lags"][-1] == 150


def test_injected_clashes_and_breaks_lower_validity_by_exactly_their_fraction(base):
    reference = ar1_trajectory(base, 201, a=0.9)
    generated = ar1_trajectory(base, 101, a=0.9, seed=1)
    clash_frames, break_frames = [4, 30, 57, 88], [12, 13, 70]
    for f in clash_frames:
        scale_frame(generated, f, 0.7)
    for f in break_frames:
        scale_frame(generated, f, 1.2)
    m = evaluate(reference, generated, NO_AA)
    v = m["validity"]
    assert v["ca"] == pytest.approx(1 - 7 / 101)
    invalid = np.flatnonzero(~np.asarray(v["generated"]["ca_valid"]))
    assert sorted(invalid) == sorted(clash_frames + break_frames)
    assert m["coverage"]["n_generated"] == 101 - 7 and m["coverage"]["all_frames"]["n_generated"] == 101


def mode_trajectory(base, n_frames, a, n_modes=8, seed=0):
    """Villin moved along ``n_modes`` fixed orthonormal Cα patterns (random, [n_modes, 105]) with
    independent AR(1) amplitudes of decreasing SD (15 to 8 pm summed over the pattern): the
    reference PCs are these patterns, and any projection of the motion is AR(1) with coefficient a."""
    rng = np.random.default_rng(seed)
    patterns = np.linalg.qr(np.random.default_rng(99).normal(size=(105, n_modes)))[0].T  # same for all seeds
    sigma = 0.015 * (1.0 - 0.06 * np.arange(n_modes))  # nm
    amplitudes = ar1(rng, n_frames, (n_modes,), a, 1.0) * sigma  # [F, n_modes]
    return move_ca(base, (amplitudes @ patterns).reshape(n_frames, 35, 3)), sigma


def test_white_noise_vs_ar1(base):
    a, lags, k = 0.9, (1, 2, 5, 10), 8
    reference, sigma = mode_trajectory(base, 1501, a, k, seed=2)
    white, _ = mode_trajectory(base, 1501, 0.0, k, seed=3)
    config = EvaluationConfig(molprobity=MolProbityConfig(enabled=False), dynamics=DynamicsConfig(n_pcs=k, lags=lags))
    m = evaluate(reference, white, config)
    d = m["dynamics"]
    taus = np.asarray(lags)
    # AR(1): autocorrelation a^tau, VAMP-2 k a^(2 tau) (plus the estimator's ~k^2/T_eff bias);
    # white noise: 0 and ~k^2/T. Sampling SD of the autocorrelation here is ~0.03.
    np.testing.assert_allclose(d["autocorr"]["reference"], a**taus, atol=0.1)
    np.testing.assert_allclose(d["autocorr"]["generated"], 0.0, atol=0.05)
    t_eff = 1501 * (1 - a * a) / (1 + a * a)
    np.testing.assert_allclose(d["vamp2"]["reference"], k * a ** (2 * taus), atol=3 * k * k / t_eff)
    np.testing.assert_array_less(d["vamp2"]["generated"], 3 * k * k / 1501)
    # Cα RMSD between frames tau apart: sqrt(2 (1 - a^tau) sum(sigma^2) / N) for the AR(1) motion,
    # the tau -> infinity value for white noise (superposition removes a few % of the motion)
    plateau = np.sqrt(2 * np.sum(sigma**2) / 35)
    np.testing.assert_allclose(d["rmsd_lag"]["reference_nm"], plateau * np.sqrt(1 - a**taus), rtol=0.12)
    np.testing.assert_allclose(d["rmsd_lag"]["generated_nm"], plateau, rtol=0.12)


def test_aa_missing_says_why_and_ca_still_works(base, monkeypatch):
    monkeypatch.setattr(evaluator, "unavailable_reason", lambda: "cctbx-base is not installed; pip install cctbx-base")
    reference = ar1_trajectory(base, 41, a=0.5)
    m = evaluate(reference, reference, EvaluationConfig(dynamics=DynamicsConfig(lags=(1, 2))))
    v = m["validity"]
    assert v["ca"] == 1.0 and v["aa"] is None and v["ca_aa"] is None
    assert "pip install cctbx-base" in v["aa_missing_reason"]
    assert m["coverage"]["valid_frames"] == "ca"


@pytest.mark.skipif(unavailable_reason() is not None, reason="needs cctbx-base")
def test_aa_validity_with_molprobity(base):
    import os

    if not os.path.isdir(ROTARAMA_DIR):
        pytest.skip(f"needs the MolProbity rotamer grids in {ROTARAMA_DIR}")
    from test_evaluation_molprobity import rotate_chi1

    rng = np.random.default_rng(7)
    reference = move_ca(base, rng.normal(size=(13, 35, 3)) * 1e-4)  # 1 mÅ: no outliers, but PCs exist
    generated = move_ca(base, rng.normal(size=(11, 35, 3)) * 1e-4)
    phe10 = 9
    for f in (2, 5, 6):
        rotate_chi1(generated, f, phe10, 0.0)  # eclipsed χ1: a rotamer outlier
    config = EvaluationConfig(
        molprobity=MolProbityConfig(rotarama_dir=ROTARAMA_DIR), dynamics=DynamicsConfig(lags=(1, 2), tica_lags=(1,))
    )
    m = evaluate(reference, generated, config)
    v = m["validity"]
    assert v["reference"]["aa"] == 1.0 and v["aa_checks"] == ["ramachandran", "rotamer"] and v["aa_partial_reason"] is None
    assert v["aa"] == pytest.approx(8 / 11) and v["ca_aa"] == pytest.approx(8 / 11) and v["ca"] == 1.0
    assert v["thresholds"]["max_rotamer_outlier_rate"] == 0.0
    assert "rota8000-lys.data" in v["not_evaluated"]["LYS7:0"]
    assert m["coverage"]["valid_frames"] == "ca_aa"


def test_reference_without_hydrogens_is_matched_by_residue(base):
    generated = ar1_trajectory(base, 31, a=0.5)
    heavy = generated.atom_slice(generated.topology.select("not element H"))
    m = evaluate(heavy, generated, EvaluationConfig(molprobity=MolProbityConfig(enabled=False), dynamics=DynamicsConfig(lags=(1, 3))))
    assert m["coverage"]["jsd"] == 0.0 and m["dynamics"]["rmsd_lag"]["mean_abs_diff_nm"] == pytest.approx(0.0, abs=1e-7)


def test_bad_input_names_the_trajectory(base):
    reference = ar1_trajectory(base, 31, a=0.5)
    with pytest.raises(ValueError, match="gen.xtc.*zero|gen.xtc.*got 0"):
        evaluate(reference, reference[:0], NO_AA, generated_name="gen.xtc")
    shorter = reference.atom_slice(reference.topology.select("resid 0 to 33"))
    with pytest.raises(ValueError, match="gen.xtc: protein residues do not match ref.xtc"):
        evaluate(reference, shorter, NO_AA, reference_name="ref.xtc", generated_name="gen.xtc")
    long_lags = EvaluationConfig(molprobity=MolProbityConfig(enabled=False), dynamics=DynamicsConfig(lags=(1, 50)))
    with pytest.raises(ValueError, match="ref.xtc: 31 frames is shorter than the largest lag 50"):
        evaluate(reference, reference, long_lags, reference_name="ref.xtc")
    water = __import__("mdtraj").load(__import__("test_evaluation_data").VILLIN_PDB)
    water = water.atom_slice(water.topology.select("water")[:90])
    with pytest.raises(ValueError, match="water.pdb: expected a protein"):
        evaluate(water, water, NO_AA, reference_name="water.pdb")
    with pytest.raises(TypeError, match="generated"):
        evaluate(reference, reference.xyz, NO_AA)
    with pytest.raises(ValueError, match="reference_stride"):
        evaluate(reference, reference, EvaluationConfig(reference_stride=0))
