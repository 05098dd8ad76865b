"""Compare a generated trajectory with a reference MD trajectory: the paper's metrics as a dict.

``evaluate(reference, generated)`` returns a JSON-ready dict with

- ``validity``: ``ca``, ``aa``, ``ca_aa`` (fractions of generated frames), per-frame rates and
  flags for both trajectories, thresholds, residues left out and why;
- ``coverage``: ``jsd``, ``recall`` (on valid generated frames), ``precision``, ``f1``, the same on
  all frames, and the PCA projections and histograms behind them;
- ``dynamics``: ``rmsd_lag``, ``autocorr``, ``vamp2`` (reference and generated curves and their mean
  absolute difference) and ``tica`` (correlation per lag);
- ``warnings``: one message per metric that rests on too few frames or lagged pairs (each also
  issued as a :class:`~openmm_starmd.evaluation.sample_size.SampleSizeWarning`).

Both trajectories must hold the same protein residues; atoms beyond those (hydrogens,
solvent) may differ. Lags are in frames of the (strided) trajectories.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import mdtraj
import numpy as np

from openmm_starmd.evaluation import dynamics as dyn
from openmm_starmd.evaluation.coverage import CoverageConfig, CoverageResult, coverage
from openmm_starmd.evaluation.molprobity import (
    ROTARAMA_DIR_ENV, MolProbityConfig, aa_thresholds, aa_valid, molprobity_scores, unavailable_reason,
)
from openmm_starmd.evaluation.pca import ReferencePCA, superposed_ca
from openmm_starmd.evaluation.sample_size import SampleSizeWarning, sample_size_warnings
from openmm_starmd.evaluation.structure import check_frames, check_same_protein, protein_residues
from openmm_starmd.evaluation.validity import CaValidityConfig, ca_clash_break_rates, valid_from_rates
from openmm_starmd.internal import warn_at_caller

SCHEMA = "openmm-starmd/evaluation/1"


@dataclass(frozen=True)
class EvaluationConfig:
    """Everything :func:`evaluate` can be told.

    Attributes:
        reference_stride: keep every k-th reference frame (to match the generated stride).
        frame_interval_ns: time between (strided) frames, for plots and ``lag_ns``; None: unknown.
        ca: Cα validity thresholds. molprobity: all-atom validity options.
        coverage: PCA coverage options. dynamics: lag-time metric options.
    """

    reference_stride: int = 1
    frame_interval_ns: float | None = None
    ca: CaValidityConfig = field(default_factory=CaValidityConfig)
    molprobity: MolProbityConfig = field(default_factory=MolProbityConfig)
    coverage: CoverageConfig = field(default_factory=CoverageConfig)
    dynamics: dyn.DynamicsConfig = field(default_factory=dyn.DynamicsConfig)

    def validate(self) -> None:
        if int(self.reference_stride) != self.reference_stride or self.reference_stride < 1:
            raise ValueError(f"EvaluationConfig.reference_stride: expected an integer >= 1, got {self.reference_stride}")
        if self.frame_interval_ns is not None and not self.frame_interval_ns > 0:
            raise ValueError(f"EvaluationConfig.frame_interval_ns: expected > 0 or None, got {self.frame_interval_ns}")
        for part in (self.ca, self.molprobity, self.coverage, self.dynamics):
            part.validate()


def _lists(array: np.ndarray | None):
    return None if array is None else np.asarray(array).tolist()


def _fraction(flags: np.ndarray | None) -> float | None:
    return None if flags is None else float(np.mean(flags))


def _validity(trajectories, residue_sets, names, config: EvaluationConfig) -> tuple[dict, list[dict]]:
    """CA and MolProbity validity of reference (index 0) and generated (index 1).

    Returns the metrics dict and, per trajectory, the per-frame arrays.
    """
    per = []
    for trajectory, residues in zip(trajectories, residue_sets):
        clash, brk = ca_clash_break_rates(trajectory.xyz[:, residues.ca_indices], residues.neighbours, config.ca)
        per.append({"clash_rate": clash, "break_rate": brk, "ca_valid": valid_from_rates(clash, brk, config.ca)})
    reason, thresholds, not_evaluated, checks, partial = None, (None, None), {}, [], None
    if not config.molprobity.enabled:
        reason = "MolProbity checks disabled by the caller"
    else:
        reason = unavailable_reason()
    if reason is None:
        scores = [
            molprobity_scores(t, r, config.molprobity, n) for t, r, n in zip(trajectories, residue_sets, names)
        ]
        not_evaluated = scores[1].not_evaluated
        checks = [c for c, s in (("ramachandran", scores[1].rama_labels), ("rotamer", scores[1].rotamer_labels)) if s]
        if "rotamer" not in checks and not scores[1].rotarama_dir:
            partial = (f"AA covers Ramachandran outliers only: no rotamer grids (rota8000-*.data) were found; "
                       f"set ${ROTARAMA_DIR_ENV} or MolProbityConfig.rotarama_dir")
        if not checks:
            reason = f"{names[1]}: no residue could be scored by MolProbity (backbone or side-chain atoms missing)"
        else:
            thresholds = aa_thresholds(scores[0], config.molprobity)
            for entry, score in zip(per, scores):
                entry["rama_outlier_rate"], entry["rotamer_outlier_rate"] = score.rama_rate, score.rotamer_rate
                entry["aa_valid"] = aa_valid(score, *thresholds)
                entry["ca_aa_valid"] = entry["aa_valid"] & entry["ca_valid"]
    summary = {}
    for role, entry in zip(("reference", "generated"), per):
        summary[role] = {
            "ca": _fraction(entry["ca_valid"]), "aa": _fraction(entry.get("aa_valid")),
            "ca_aa": _fraction(entry.get("ca_aa_valid")),
            **{key: _lists(entry.get(key)) for key in (
                "clash_rate", "break_rate", "rama_outlier_rate", "rotamer_outlier_rate",
                "ca_valid", "aa_valid", "ca_aa_valid")},
        }
    gen = summary["generated"]
    return {
        "ca": gen["ca"], "aa": gen["aa"], "ca_aa": gen["ca_aa"],
        "aa_missing_reason": reason,
        "aa_checks": checks,
        "aa_partial_reason": partial,
        "thresholds": {
            **asdict(config.ca),
            "max_rama_outlier_rate": thresholds[0], "max_rotamer_outlier_rate": thresholds[1],
            "aa_percentile": config.molprobity.percentile,
        },
        "not_evaluated": not_evaluated,
        "generated": gen,
        "reference": summary["reference"],
    }, per


def _coverage_dict(result: CoverageResult) -> dict:
    return {
        "jsd": result.jsd, "recall": result.recall, "precision": result.precision, "f1": result.f1,
        "n_reference": result.n_reference, "n_generated": result.n_generated,
    }


def _check_lengths(n_frames: dict[str, int], lags: tuple[int, ...]) -> None:
    need = max(lags) + 2  # VAMP needs two lagged pairs at the largest lag
    for name, count in n_frames.items():
        if count < need:
            raise ValueError(
                f"{name}: {count} frames is shorter than the largest lag {max(lags)} needs "
                f"(at least {need} frames); pass shorter lags or a longer trajectory"
            )


ROUNDING_NOISE = 1e-9  # relative to a curve's scale: differences below this are float rounding, reported as 0


def _curve(reference: np.ndarray, generated: np.ndarray, unit: str = "") -> dict:
    suffix = f"_{unit}" if unit else ""
    diff = float(np.mean(np.abs(reference - generated)))
    scale = float(max(np.abs(reference).max(initial=0.0), np.abs(generated).max(initial=0.0)))
    return {
        f"reference{suffix}": reference.tolist(), f"generated{suffix}": generated.tolist(),
        f"mean_abs_diff{suffix}": 0.0 if diff <= ROUNDING_NOISE * scale else diff,
    }


def evaluate(
    reference: mdtraj.Trajectory,
    generated: mdtraj.Trajectory,
    config: EvaluationConfig | None = None,
    *,
    reference_name: str = "reference",
    generated_name: str = "generated",
) -> dict:
    """Compute validity, coverage and dynamics metrics of ``generated`` against ``reference``.

    Args:
        reference: reference MD trajectory (positions in nm).
        generated: generated trajectory of the same protein.
        config: options (defaults: the paper's).
        reference_name / generated_name: names used in messages (usually the file paths).

    Returns:
        A JSON-serialisable dict (see the module docstring).

    Raises:
        ValueError: no protein, zero frames, different proteins, or a trajectory shorter than
            the largest lag; the message names the trajectory.
    """
    config = config or EvaluationConfig()
    config.validate()
    for trajectory, name in ((reference, reference_name), (generated, generated_name)):
        if not isinstance(trajectory, mdtraj.Trajectory):
            raise TypeError(f"{name}: expected an mdtraj.Trajectory, got {type(trajectory).__name__}")
        check_frames(trajectory, name)
    if config.reference_stride > 1:
        reference = reference[:: config.reference_stride]
    ref_res = protein_residues(reference.topology, reference_name)
    gen_res = protein_residues(generated.topology, generated_name)
    check_same_protein(ref_res, gen_res, reference_name, generated_name)
    names = (reference_name, generated_name)
    lags = config.dynamics.lags or dyn.default_lags(min(reference.n_frames, generated.n_frames))
    _check_lengths({reference_name: reference.n_frames, generated_name: generated.n_frames}, lags)

    validity, per = _validity((reference, generated), (ref_res, gen_res), names, config)
    gen_valid = per[1].get("ca_aa_valid", per[1]["ca_valid"])
    mask_name = "ca_aa" if "ca_aa_valid" in per[1] else "ca"

    target = reference.xyz[0, ref_res.ca_indices]
    ref_ca = superposed_ca(reference, ref_res.ca_indices, target)  # [Fr, N, 3]
    gen_ca = superposed_ca(generated, gen_res.ca_indices, target)  # [Fg, N, 3]
    pca = ReferencePCA.fit(ref_ca, max(config.dynamics.n_pcs, config.coverage.n_components))
    if pca.n_components == 0:
        raise ValueError(f"{reference_name}: all frames are identical after superposition; coverage and dynamics need motion")
    ref_proj, gen_proj = pca.transform(ref_ca), pca.transform(gen_ca)

    cov_config = CoverageConfig(min(config.coverage.n_components, pca.n_components), config.coverage.n_bins)
    cov_valid = coverage(ref_proj, gen_proj[gen_valid], cov_config)
    cov_all = coverage(ref_proj, gen_proj, cov_config)
    k = min(config.dynamics.n_pcs, pca.n_components)
    interval = config.frame_interval_ns
    dynamics = {
        "lags": list(lags),
        "lag_ns": [round(t * interval, 12) for t in lags] if interval else None,  # 3 x 0.1 -> 0.3
        "n_pcs": k,
        "rmsd_lag": _curve(dyn.rmsd_vs_lag(ref_ca, lags), dyn.rmsd_vs_lag(gen_ca, lags), "nm"),
        "autocorr": _curve(dyn.autocorrelation_vs_lag(ref_proj[:, :k], lags), dyn.autocorrelation_vs_lag(gen_proj[:, :k], lags)),
        "vamp2": _curve(
            dyn.vamp2_vs_lag(ref_proj[:, :k], lags, config.dynamics.epsilon),
            dyn.vamp2_vs_lag(gen_proj[:, :k], lags, config.dynamics.epsilon),
        ),
        "tica": dyn.tica_correlation(
            ref_ca, gen_ca, config.dynamics.tica_lags, gen_valid, config.dynamics.epsilon, config.dynamics.tica_min_pairs
        ),
    }
    notes = sample_size_warnings(
        reference.n_frames, generated.n_frames, int(gen_valid.sum()), lags, k, cov_config.n_bins,
        cov_config.n_components, dynamics["tica"]["lags"], dynamics["tica"]["correlation"], config.dynamics.tica_min_pairs)
    for note in notes:
        warn_at_caller(note, SampleSizeWarning)
    return {
        "schema": SCHEMA,
        "warnings": notes,
        "inputs": {
            "reference": reference_name, "generated": generated_name, "n_residues": gen_res.n_residues,
            "reference_frames": reference.n_frames, "generated_frames": generated.n_frames,
            "reference_stride": config.reference_stride, "frame_interval_ns": interval,
        },
        "validity": validity,
        "coverage": {
            **_coverage_dict(cov_valid),
            "valid_frames": mask_name,
            "all_frames": _coverage_dict(cov_all),
            "n_components": cov_config.n_components, "n_bins": cov_config.n_bins,
            "edges_nm": [e.tolist() for e in cov_valid.edges],
            "explained_variance_nm2": pca.variance[: cov_config.n_components].tolist(),
            "reference_projection_nm": ref_proj[:, : cov_config.n_components].tolist(),
            "generated_projection_nm": gen_proj[:, : cov_config.n_components].tolist(),
            "generated_valid": gen_valid.tolist(),
        },
        "dynamics": dynamics,
    }
