"""The common look of the benchmark figures: a constrained layout, readable log axes, and a stamp
in the lower right corner with the date of the measurement and the weights it used.

Every benchmark that draws a figure stores its numbers in JSON with ``date`` and ``weights``, and
can redraw the figure from that JSON alone (``--replot``), without measuring again.
"""
from __future__ import annotations

import json
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

from openmm_starmd.evaluation.report import stamp


def new_figure(width_in: float, height_in: float) -> Figure:
    """A matplotlib Figure (no pyplot state) with a constrained layout."""
    return Figure(figsize=(width_in, height_in), layout="constrained")


def plain_log_ticks(axis, values) -> None:
    """Put major ticks of a log ``axis`` (``ax.xaxis``/``ax.yaxis``) at ``values``, labelled as plain
    numbers (12, 35, 400), and no minor labels: no overlapping '2 × 10¹'-style labels."""
    axis.set_major_locator(FixedLocator(sorted(values)))
    formatter = ScalarFormatter()
    formatter.set_scientific(False)
    axis.set_major_formatter(formatter)
    axis.set_minor_formatter(NullFormatter())


def weights_label(model: str) -> str:
    """'default (sha256 f9827a3a)' for a shipped model name, else the name or path as given."""
    from openmm_starmd.model.checkpoint import SHIPPED, WEIGHTS_DIR

    if model in SHIPPED:
        manifest = json.loads((WEIGHTS_DIR / f"{SHIPPED[model]}.json").read_text())
        return f"{model} (sha256 {manifest['sha256'][:8]})"
    return str(model)


def save(figure: Figure, path: Path, date: str, weights: str) -> None:
    """Stamp ``figure`` with the measurement's date and weights and write it as a PNG."""
    stamp(figure, f"measured {date} · weights: {weights}")
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=110)
