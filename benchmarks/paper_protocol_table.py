"""Pure helpers of paper_protocol.py: mean ± std over seeds, the paper-style Markdown table, curve plots."""
from __future__ import annotations

from pathlib import Path

import numpy as np

# (key, column header, scale for display, decimals); percentages are stored as fractions.
METRICS = (
    ("jsd", "JSD ↓", 1.0, 2), ("recall", "Rec ↑", 1.0, 2), ("tica", "tICA ↑", 1.0, 2),
    ("rmsd", "RMSD (nm) ↓", 1.0, 2), ("autocorr", "AutoCor ↓", 1.0, 2), ("vamp2", "VAMP-2 ↓", 1.0, 2),
    ("ca", "CA% ↑", 100.0, 2), ("aa", "AA% ↑", 100.0, 2), ("ca_aa", "CA+AA% ↑", 100.0, 2),
)


UNFILTERED = (("jsd_all", "JSD (all frames) ↓", 1.0, 2), ("recall_all", "Rec (all frames) ↑", 1.0, 2))


def aggregate(rows: list[dict], metrics=METRICS) -> dict:
    """Per metric: (mean, std, n) over the seeds whose value is not None; (None, None, 0) if none.

    ``std`` is the sample standard deviation (ddof 1) when n >= 2, else None."""
    out = {}
    for key, *_ in metrics:
        values = np.array([r[key] for r in rows if r.get(key) is not None], dtype=float)
        if values.size == 0:
            out[key] = (None, None, 0)
        else:
            std = float(values.std(ddof=1)) if values.size >= 2 else None
            out[key] = (float(values.mean()), std, int(values.size))
    return out


def format_cell(mean, std, scale: float, decimals: int) -> str:
    """``0.43 ± 0.01``, ``0.43`` (one value) or ``–`` (not computed)."""
    if mean is None:
        return "–"
    text = f"{mean * scale:.{decimals}f}"
    return text if std is None else f"{text} ± {std * scale:.{decimals}f}"


def markdown_table(rows: list[tuple[str, dict]], metrics=METRICS) -> str:
    """The paper's table layout: Cov Valid (JSD, Rec) | Dynamic fidelity | Validity, one row per model."""
    head = "| Model | " + " | ".join(h for _, h, _, _ in metrics) + " | seeds |"
    sep = "|---|" + "---:|" * len(metrics) + "---:|"
    lines = [head, sep]
    for label, agg in rows:
        n = max((agg[k][2] for k, *_ in metrics), default=0)
        cells = [format_cell(agg[k][0], agg[k][1], scale, dec) for k, _, scale, dec in metrics]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {n} |")
    return "\n".join(lines)


def _save(fig, path: Path, date: str, weights: str) -> None:
    """Stamp (date, weights) and write ``path`` (folders made)."""
    from plotting import save

    path.parent.mkdir(parents=True, exist_ok=True)
    save(fig, path, date, weights)


def plot_curves(curves: dict[str, dict], path: Path, interval_ns: float, date: str = "date not recorded",
                weights: str = "not recorded") -> None:
    """RMSD, autocorrelation and VAMP-2 vs lag: the reference dashed, every other curve solid.

    ``curves`` maps a label to an :func:`evaluate` ``dynamics`` dict; the label containing
    "reference" draws the dict's reference curve, the others its generated curve."""
    from plotting import new_figure

    fig = new_figure(13, 4.4)
    axes = fig.subplots(1, 3)
    panels = (("rmsd_lag", "_nm", "Cα RMSD between frames a lag apart", "mean Cα RMSD (nm)"),
              ("autocorr", "", "Autocorrelation on the top reference PCs", "autocorrelation"),
              ("vamp2", "", "VAMP-2 score on the top reference PCs", "VAMP-2 score"))
    for label, dyn in curves.items():
        lag_ns = np.array(dyn["lags"], dtype=float) * interval_ns
        is_ref = "reference" in label
        for ax, (key, suffix, _, _) in zip(axes, panels):
            y = dyn[key][("reference" if is_ref else "generated") + suffix]
            ax.plot(lag_ns, y, "k--" if is_ref else "-", marker=None if is_ref else ".", label=label)
    for ax, (_, _, title, ylabel) in zip(axes, panels):
        ax.set_xscale("log")
        ax.set_xlabel("lag (ns)")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle("Dynamics vs lag: generated rollouts and MD against the reference MD (R1)", fontsize=11)
    _save(fig, path, date, weights)


def plot_rates(series: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, interval_ns: float,
               date: str = "date not recorded", weights: str = "not recorded") -> None:
    """Cα clash and break rates per generated frame over time (paper figure 3, right), one line per run.

    ``series`` maps a label to (clash_rate ``[F]``, break_rate ``[F]``) fractions."""
    from plotting import new_figure

    fig = new_figure(11, 4.0)
    axes = fig.subplots(1, 2, sharex=True)
    for label, (clash, brk) in series.items():
        w = max(1, len(clash) // 50)  # running mean over w frames, so long runs do not hide short ones
        kernel = np.ones(w) / w
        t = interval_ns * (np.arange(len(clash) - w + 1) + (w + 1) / 2)
        for ax, y in zip(axes, (clash, brk)):
            ax.plot(t, 100 * np.convolve(np.asarray(y, dtype=float), kernel, mode="valid"), lw=1.0,
                    label=f"{label} (running mean of {w} frames)" if w > 1 else label)
    for ax, name in zip(axes, ("Cα clash rate", "Cα break rate")):
        ax.set_xlabel("generated time (ns)")
        ax.set_ylabel(f"{name} (%)")
        ax.set_title(f"{name} per generated frame", fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle("Chain geometry of the generated frames over time", fontsize=11)
    _save(fig, path, date, weights)
