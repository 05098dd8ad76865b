"""``starmd evaluate``: compare a generated trajectory with reference MD and write a report.

    starmd evaluate --reference REF --generated GEN --topology TOP --out DIR

writes DIR/metrics.json, PNG plots and DIR/report.html (see
:mod:`openmm_starmd.evaluation.report`).
"""
from __future__ import annotations

import argparse
import sys

from openmm_starmd.evaluation.coverage import CoverageConfig
from openmm_starmd.evaluation.dynamics import PAPER_TICA_LAGS, DynamicsConfig
from openmm_starmd.evaluation.molprobity import MolProbityConfig


def _lag_list(text: str) -> tuple[int, ...]:
    try:
        lags = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integer frame lags, got {text!r}") from None
    if not lags or min(lags) < 1:
        raise argparse.ArgumentTypeError(f"expected positive frame lags, got {text!r}")
    return lags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reference", required=True, help="reference MD trajectory (XTC, DCD, HDF5, PDB, ...)")
    parser.add_argument("--generated", required=True, help="generated trajectory of the same protein")
    parser.add_argument("--topology", help="topology (PDB) of the generated trajectory, and of the reference "
                        "unless --reference-topology is given")
    parser.add_argument("--reference-topology", help="topology of the reference when it differs (e.g. no hydrogens)")
    parser.add_argument("--out", required=True, help="output directory for metrics.json, plots and report.html")
    parser.add_argument("--reference-stride", type=int, default=1, help="keep every k-th reference frame (default 1)")
    parser.add_argument("--generated-stride", type=int, default=1, help="keep every k-th generated frame (default 1)")
    parser.add_argument("--frame-interval-ns", type=float, help="time between (strided) frames in ns, for plots")
    parser.add_argument("--lags", type=_lag_list, help="lags in frames for RMSD/autocorrelation/VAMP-2, e.g. 1,2,5,10 "
                        "(default: log-spaced up to half the shorter trajectory)")
    parser.add_argument("--tica-lags", type=_lag_list, default=PAPER_TICA_LAGS, help="tICA lags in frames (default 1,5,10,20)")
    parser.add_argument("--pcs", type=int, default=32, help="reference PCs for autocorrelation and VAMP-2 (default 32)")
    parser.add_argument("--coverage-pcs", type=int, default=2, help="PCs binned jointly for coverage (default 2)")
    parser.add_argument("--bins", type=int, default=10, help="bins per PC for coverage (default 10)")
    parser.add_argument("--no-molprobity", action="store_true", help="skip the MolProbity (all-atom) checks")
    parser.add_argument("--rotarama-dir", help="directory with MolProbity rota8000-*.data rotamer grids")
    parser.add_argument("--label", help="what made the generated trajectory (e.g. 'default weights f9827a3a, 0.05 ns'), "
                        "printed on every plot (default: the generated file's name)")
    parser.add_argument("--aa-percentile", type=float, default=99.0,
                        help="reference percentile that sets the MolProbity outlier-rate thresholds (default 99)")


def run(args: argparse.Namespace) -> int:
    from openmm_starmd.evaluation.evaluator import EvaluationConfig, evaluate
    from openmm_starmd.evaluation.loading import load_trajectory
    from openmm_starmd.evaluation.report import write_report

    config = EvaluationConfig(
        reference_stride=args.reference_stride,
        frame_interval_ns=args.frame_interval_ns,
        molprobity=MolProbityConfig(
            enabled=not args.no_molprobity, rotarama_dir=args.rotarama_dir, percentile=args.aa_percentile
        ),
        coverage=CoverageConfig(n_components=args.coverage_pcs, n_bins=args.bins),
        dynamics=DynamicsConfig(n_pcs=args.pcs, lags=args.lags, tica_lags=tuple(args.tica_lags)),
    )
    try:
        config.validate()
        reference = load_trajectory(args.reference, args.reference_topology or args.topology)
        generated = load_trajectory(args.generated, args.topology, stride=args.generated_stride)
        metrics = evaluate(reference, generated, config, reference_name=args.reference, generated_name=args.generated)
        metrics["inputs"]["label"] = args.label
    except ValueError as error:
        print(f"starmd evaluate: error: {error}", file=sys.stderr)
        return 2
    written = write_report(metrics, args.out)
    v, c = metrics["validity"], metrics["coverage"]
    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    print(f"validity CA {fmt(v['ca'])}  AA {fmt(v['aa'])}  CA+AA {fmt(v['ca_aa'])}"
          + (f"  (AA: {v['aa_missing_reason']})" if v["aa_missing_reason"] else "")
          + (f"  ({v['aa_partial_reason']})" if v.get("aa_partial_reason") else ""))
    print(f"coverage JSD {fmt(c['jsd'])}  recall {fmt(c['recall'])}  (on {c['valid_frames']}-valid frames)")
    print(f"report: {written['html']}")
    return 0
