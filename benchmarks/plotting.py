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


def retitle_png(path: Path, title: str, stamp_text: str, replace_title: bool = True) -> None:
    """Give a figure whose numbers were not kept (so it cannot be redrawn) a new title and a stamp.

    With ``replace_title`` the image rows above the first axes frame (where an old one-line title
    sits) are blanked and ``title`` is written there; otherwise (panel titles worth keeping) a strip
    for ``title`` is added on top. ``stamp_text`` goes into a strip added at the bottom right. The
    plotted pixels are not touched."""
    import matplotlib.image
    import numpy as np

    image = matplotlib.image.imread(path)[..., :3].copy()
    top_px = 0 if replace_title else 22
    if replace_title:
        dark = (image.mean(axis=-1) < 0.25).mean(axis=1)  # fraction of near-black pixels per row
        image[: max(int(np.argmax(dark > 0.4)) - 1, 0)] = 1.0  # rows above the first axes frame's top edge
    dpi, bottom_px = 100, 16
    height, width = image.shape[:2]
    total = height + top_px + bottom_px
    figure = Figure(figsize=(width / dpi, total / dpi), dpi=dpi)
    ax = figure.add_axes((0, bottom_px / total, 1, height / total))
    ax.imshow(image, interpolation="nearest")
    ax.set_axis_off()
    figure.text(0.5, 1 - 5 / total, title, ha="center", va="top", fontsize=10)
    figure.text(0.995, 3 / total, stamp_text, ha="right", va="bottom", fontsize=6, color="0.45")
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=dpi)
