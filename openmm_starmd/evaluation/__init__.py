"""Evaluation of generated trajectories against reference MD (STAR-MD paper, appendix D).

Judges mdtraj trajectories only; never imports the model or the diffusion code.

- :mod:`.validity`: Cα clash/break rates and validity per frame, on plain [F, N, 3] arrays (nm).
- :mod:`.molprobity`: Ramachandran/rotamer outliers through the optional cctbx-base.
- :mod:`.coverage`: JSD and recall in the reference PCA plane.
- :mod:`.dynamics`: RMSD, autocorrelation and VAMP-2 vs lag; tICA correlation.
- :mod:`.evaluator`: :func:`evaluate` (everything, as a JSON-ready dict).
- :mod:`.report`: :func:`write_report` (metrics.json, PNG plots, report.html).

The heavy entry points (deeptime, matplotlib) load on first use, so the Generator can import
the Cα validity gate cheaply.
"""
from openmm_starmd.evaluation.validity import (
    BREAK_DISTANCE_NM, CLASH_DISTANCE_NM, MAX_BREAK_RATE, MAX_CLASH_RATE, CaValidityConfig, ca_clash_break_rates, ca_valid,
)

_LAZY = {
    "evaluate": "openmm_starmd.evaluation.evaluator",
    "EvaluationConfig": "openmm_starmd.evaluation.evaluator",
    "write_report": "openmm_starmd.evaluation.report",
    "load_trajectory": "openmm_starmd.evaluation.loading",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'openmm_starmd.evaluation' has no attribute {name!r}")


__all__ = [
    "BREAK_DISTANCE_NM", "CLASH_DISTANCE_NM", "MAX_BREAK_RATE", "MAX_CLASH_RATE", "CaValidityConfig",
    "ca_clash_break_rates", "ca_valid", "evaluate", "EvaluationConfig", "write_report", "load_trajectory",
]
