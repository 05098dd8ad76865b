"""Write an evaluation's metrics.json, its PNG plots and one HTML page that shows them.

Plots are drawn on matplotlib ``Figure`` objects with the Agg canvas, so no pyplot state or
global backend is touched. Lengths are shown in Å (converted from the metrics' nm here, at the
display boundary); time in ns when the frame interval is known, else in frames.
"""
from __future__ import annotations

import html
import json
from datetime import date
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

from openmm_starmd.units import ANGSTROM_PER_NM

PERCENT = 100.0
STAMP_STRIP_PT = 11.0  # height of the strip at the bottom of every figure that holds the date/version stamp
PLOTS = {
    "validity": "validity.png",
    "dynamics": "rmsd_autocorr.png",
    "coverage": "coverage.png",
    "vamp2": "vamp2.png",
    "tica": "tica.png",
}
CAPTIONS = {
    "validity": "Per-frame Cα clash and break rates and MolProbity outlier rates of the generated trajectory "
    "(dashed: thresholds); bottom: which frames pass each validity criterion.",
    "dynamics": "Mean Cα RMSD between frames a lag apart, and autocorrelation on the reference PCs; "
    "generated solid, reference MD dashed.",
    "coverage": "Generated frames projected on the reference PC1/PC2 plane over the reference occupancy "
    "(grey, on the coverage bins).",
    "vamp2": "VAMP-2 score of the projection on the reference PCs vs lag; reference MD dashed.",
    "tica": "Correlation of per-residue tIC1/tIC2 loadings between generated and reference trajectories.",
}
_REF_STYLE = dict(color="black", linestyle="--", marker="o", markersize=3, label="reference MD")
_GEN_STYLE = dict(color="tab:blue", linestyle="-", marker="o", markersize=3, label="generated")


def stamp(figure: Figure, text: str) -> None:
    """Write ``text`` (date, version, inputs) small and grey in the figure's lower right corner, in a
    strip that a constrained layout keeps free of axes and labels."""
    strip = STAMP_STRIP_PT / 72.0 / figure.get_figheight()  # figure fraction
    engine = figure.get_layout_engine()
    if isinstance(engine, ConstrainedLayoutEngine):
        engine.set(rect=(0.0, strip, 1.0, 1.0 - strip))
    figure.text(0.995, strip * 0.2, text, ha="right", va="bottom", fontsize=6, color="0.45")


def _stamp_text(metrics: dict) -> str:
    from openmm_starmd import __version__

    inputs = metrics["inputs"]
    label = inputs.get("label") or Path(str(inputs["generated"])).name
    return f"{metrics.get('created', date.today().isoformat())} · openmm-starmd {__version__} · generated: {label}"


def _save(figure: Figure, path: Path, metrics: dict) -> None:
    stamp(figure, _stamp_text(metrics))
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=110)


def _time_axis(metrics: dict, n_frames: int) -> tuple[np.ndarray, str]:
    interval = metrics["inputs"].get("frame_interval_ns")
    frames = np.arange(n_frames)
    return (frames * interval, "time (ns)") if interval else (frames, "frame")


def _lag_axis(metrics: dict) -> tuple[np.ndarray, str]:
    dyn = metrics["dynamics"]
    if dyn.get("lag_ns"):
        return np.asarray(dyn["lag_ns"]), "lag time (ns)"
    return np.asarray(dyn["lags"]), "lag (frames)"


def _log_lag_axis(ax, label: str) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(label)


def plot_validity(metrics: dict, path: Path) -> None:
    """Per-frame Cα clash/break rates, MolProbity outlier rates and validity flags over time."""
    validity, gen = metrics["validity"], metrics["validity"]["generated"]
    thresholds = validity["thresholds"]
    t, t_label = _time_axis(metrics, len(gen["clash_rate"]))
    figure = Figure(figsize=(8, 8.5), layout="constrained")
    axes = figure.subplots(4, 1, sharex=True, gridspec_kw={"height_ratios": [1, 1, 1, 0.55]})
    panels = [
        ("Cα clash rate (%)", [("clash rate", gen["clash_rate"], thresholds["max_clash_rate"], "tab:red")]),
        ("Cα break rate (%)", [("break rate", gen["break_rate"], thresholds["max_break_rate"], "tab:orange")]),
        ("MolProbity outliers (%)", [
            ("Ramachandran", gen["rama_outlier_rate"], thresholds["max_rama_outlier_rate"], "tab:purple"),
            ("rotamer", gen["rotamer_outlier_rate"], thresholds["max_rotamer_outlier_rate"], "tab:green"),
        ]),
    ]
    for ax, (ylabel, series) in zip(axes, panels):
        drawn = False
        for label, values, limit, color in series:
            if values is None:
                continue
            ax.plot(t, np.asarray(values) * PERCENT, color=color, lw=1, label=label)
            if limit is not None:
                ax.axhline(limit * PERCENT, color=color, ls="--", lw=1, label=f"{label} threshold")
            drawn = True
        if not drawn:
            ax.text(0.5, 0.5, validity.get("aa_missing_reason") or "not computed", ha="center", va="center",
                    transform=ax.transAxes, fontsize=8, wrap=True)
        ax.set_ylabel(ylabel)
        if drawn:
            ax.legend(fontsize=7, loc="upper right")
    rows = [("Cα", gen["ca_valid"]), ("AA", gen["aa_valid"]), ("Cα+AA", gen["ca_aa_valid"])]
    rows = [(name, flags) for name, flags in rows if flags is not None]
    strip = np.array([np.asarray(flags, dtype=float) for _, flags in rows])
    extent = (t[0], t[-1] if len(t) > 1 else t[0] + 1, len(rows) - 0.5, -0.5)
    axes[3].imshow(strip, aspect="auto", cmap="RdYlGn", vmin=0, vmax=1, interpolation="nearest", extent=extent)
    axes[3].set_yticks(range(len(rows)), [f"{n} {100 * np.mean(f):.0f}%" for n, f in rows], fontsize=8)
    axes[3].set_xlabel(t_label)
    axes[3].set_title("valid frames (green) / invalid (red)", fontsize=9)
    figure.suptitle("Structural validity of the generated trajectory")
    _save(figure, path, metrics)


def plot_dynamics(metrics: dict, path: Path) -> None:
    """Cα RMSD and autocorrelation vs lag, generated solid, reference dashed."""
    dyn = metrics["dynamics"]
    lags, lag_label = _lag_axis(metrics)
    figure = Figure(figsize=(10, 4), layout="constrained")
    ax_rmsd, ax_acf = figure.subplots(1, 2)
    ax_rmsd.plot(lags, np.asarray(dyn["rmsd_lag"]["reference_nm"]) * ANGSTROM_PER_NM, **_REF_STYLE)
    ax_rmsd.plot(lags, np.asarray(dyn["rmsd_lag"]["generated_nm"]) * ANGSTROM_PER_NM, **_GEN_STYLE)
    ax_rmsd.set_ylabel("mean Cα RMSD between frames (Å)")
    ax_rmsd.set_title("Cα RMSD vs lag")
    ax_acf.plot(lags, dyn["autocorr"]["reference"], **_REF_STYLE)
    ax_acf.plot(lags, dyn["autocorr"]["generated"], **_GEN_STYLE)
    ax_acf.axhline(0, color="gray", lw=0.5)
    ax_acf.set_ylabel("autocorrelation")
    ax_acf.set_title(f"Autocorrelation on top {dyn['n_pcs']} reference PCs")
    for ax in (ax_rmsd, ax_acf):
        _log_lag_axis(ax, lag_label)
        ax.legend(fontsize=8)
    _save(figure, path, metrics)


def plot_vamp2(metrics: dict, path: Path) -> None:
    """VAMP-2 score vs lag, generated solid, reference dashed."""
    dyn = metrics["dynamics"]
    lags, lag_label = _lag_axis(metrics)
    figure = Figure(figsize=(5.5, 4), layout="constrained")
    ax = figure.subplots()
    ax.plot(lags, dyn["vamp2"]["reference"], **_REF_STYLE)
    ax.plot(lags, dyn["vamp2"]["generated"], **_GEN_STYLE)
    _log_lag_axis(ax, lag_label)
    ax.set_ylabel(f"VAMP-2 (top {dyn['n_pcs']} reference PCs)")
    ax.set_title("VAMP-2 vs lag")
    ax.legend(fontsize=8)
    _save(figure, path, metrics)


def plot_coverage(metrics: dict, path: Path) -> None:
    """Reference occupancy on the coverage grid (grey) with the generated frames on top."""
    cov = metrics["coverage"]
    ref = np.asarray(cov["reference_projection_nm"]) * ANGSTROM_PER_NM
    gen = np.asarray(cov["generated_projection_nm"]) * ANGSTROM_PER_NM
    valid = np.asarray(cov["generated_valid"], dtype=bool)
    edges = [np.asarray(e) * ANGSTROM_PER_NM for e in cov["edges_nm"]]
    figure = Figure(figsize=(6.5, 5.5), layout="constrained")
    ax = figure.subplots()
    jsd = "n/a" if cov["jsd"] is None else f"{cov['jsd']:.2f}"
    ax.set_title(f"Coverage (valid frames): JSD {jsd}, recall {cov['recall']:.2f}", fontsize=10)
    if len(edges) >= 2:
        counts, _, _ = np.histogram2d(ref[:, 0], ref[:, 1], bins=edges[:2])
        mesh = ax.pcolormesh(edges[0], edges[1], np.ma.masked_equal(counts.T, 0), cmap="Greys",
                             norm=LogNorm(vmin=1, vmax=max(1, counts.max())), alpha=0.8)
        figure.colorbar(mesh, ax=ax, label="reference frames per bin")
        order = np.arange(len(gen))
        sc = ax.scatter(gen[valid, 0], gen[valid, 1], c=order[valid], cmap="viridis", s=12, label="generated (valid)")
        if (~valid).any():
            ax.scatter(gen[~valid, 0], gen[~valid, 1], marker="x", color="tab:red", s=14, label="generated (invalid)")
        if valid.any():
            figure.colorbar(sc, ax=ax, label="generated frame index")
        ax.set_xticks(edges[0], minor=True)
        ax.set_yticks(edges[1], minor=True)
        ax.grid(which="minor", color="lightgray", lw=0.4)
        ax.set_xlabel("PC1 (Å)")
        ax.set_ylabel("PC2 (Å)")
    else:
        ax.hist(ref[:, 0], bins=edges[0], color="gray", alpha=0.6, density=True, label="reference MD")
        ax.hist(gen[valid, 0], bins=edges[0], histtype="step", color="tab:blue", density=True, label="generated (valid)")
        ax.set_xlabel("PC1 (Å)")
        ax.set_ylabel("density")
    ax.legend(fontsize=8, loc="best")
    _save(figure, path, metrics)


def plot_tica(metrics: dict, path: Path) -> None:
    """tICA loading-score correlation per lag (tIC1, tIC2 and their mean)."""
    tica = metrics["dynamics"]["tica"]
    figure = Figure(figsize=(5.5, 4), layout="constrained")
    ax = figure.subplots()
    x = np.arange(len(tica["lags"]))
    for offset, key, label in ((-0.25, "pc1", "tIC1"), (0.0, "pc2", "tIC2"), (0.25, "correlation", "mean")):
        values = [np.nan if v is None else v for v in tica[key]]
        ax.bar(x + offset, values, width=0.25, label=label)
    ax.set_xticks(x, [str(t) for t in tica["lags"]])
    ax.set_xlabel("tICA lag (frames)")
    ax.set_ylabel("|Pearson r| of per-residue loadings")
    ax.set_ylim(0, 1)
    ax.set_title("tICA correlation (missing bar: too few valid pairs)", fontsize=9)
    if all(v is None for v in tica["correlation"]):
        pairs = ", ".join(str(p) for p in tica.get("valid_pairs", []))
        ax.text(0.5, 0.5, f"not computed at any lag: too few valid lagged pairs\n(valid pairs per lag: {pairs})",
                ha="center", va="center", transform=ax.transAxes, fontsize=9)
    ax.legend(fontsize=8)
    _save(figure, path, metrics)


def _fmt(value, percent: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value * PERCENT:.1f} %" if percent else f"{value:.3g}"


def _html(metrics: dict) -> str:
    v, c, d = metrics["validity"], metrics["coverage"], metrics["dynamics"]
    rows = [
        ("CA validity", _fmt(v["ca"], True), _fmt(v["reference"]["ca"], True)),
        ("AA validity (MolProbity)", _fmt(v["aa"], True), _fmt(v["reference"]["aa"], True)),
        ("CA+AA validity", _fmt(v["ca_aa"], True), _fmt(v["reference"]["ca_aa"], True)),
        (f"Coverage JSD ({c['valid_frames']}-valid frames)", _fmt(c["jsd"]), ""),
        (f"Coverage recall ({c['valid_frames']}-valid frames)", _fmt(c["recall"]), ""),
        ("Coverage JSD / recall (all frames)", f"{_fmt(c['all_frames']['jsd'])} / {_fmt(c['all_frames']['recall'])}", ""),
        ("Cα RMSD vs lag, mean |gen - ref| (Å)", _fmt(d["rmsd_lag"]["mean_abs_diff_nm"] * ANGSTROM_PER_NM), ""),
        ("Autocorrelation, mean |gen - ref|", _fmt(d["autocorr"]["mean_abs_diff"]), ""),
        ("VAMP-2, mean |gen - ref|", _fmt(d["vamp2"]["mean_abs_diff"]), ""),
        ("tICA correlation (mean over lags)", _fmt(d["tica"]["mean"]), ""),
    ]
    table = "\n".join(
        f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td><td>{html.escape(r)}</td></tr>" for a, b, r in rows
    )
    notes = []
    if metrics.get("warnings"):
        items = "".join(f"<li>{html.escape(w)}</li>" for w in metrics["warnings"])
        notes.append(f"<p><b>Too few frames for some metrics:</b></p><ul>{items}</ul>")
    if v["aa_missing_reason"]:
        notes.append(f"<p><b>AA validity missing:</b> {html.escape(v['aa_missing_reason'])}</p>")
    if v["not_evaluated"]:
        items = "".join(f"<li>{html.escape(k)}: {html.escape(r)}</li>" for k, r in v["not_evaluated"].items())
        notes.append(f"<details><summary>Residues left out of MolProbity checks ({len(v['not_evaluated'])})</summary><ul>{items}</ul></details>")
    thresholds = html.escape(json.dumps(_finite(v["thresholds"]), indent=1))
    inputs = metrics["inputs"]
    figures = "\n".join(
        f'<figure><img src="{name}" alt="{key}"><figcaption>{html.escape(CAPTIONS[key])}</figcaption></figure>'
        for key, name in PLOTS.items()
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>STAR-MD evaluation</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}} td,th{{padding:2px 10px;border-bottom:1px solid #ddd}}
img{{max-width:100%}} figure{{margin:1em 0}}</style></head><body>
<h1>STAR-MD evaluation</h1>
<p>Reference: <code>{html.escape(str(inputs['reference']))}</code> ({inputs['reference_frames']} frames, stride {inputs['reference_stride']});
generated: <code>{html.escape(str(inputs['generated']))}</code> ({inputs['generated_frames']} frames); {inputs['n_residues']} residues.</p>
<table><tr><th>metric</th><th>generated</th><th>reference MD</th></tr>
{table}
</table>
{''.join(notes)}
<details><summary>Validity thresholds</summary><pre>{thresholds}</pre></details>
{figures}
<p>All numbers: <a href="metrics.json">metrics.json</a>.</p>
</body></html>
"""


JSON_DIGITS = 12  # significant digits kept: 0.1 * 3 is written 0.3, not 0.30000000000000004


def _finite(value):
    """Replace NaN/inf floats by None and round floats to ``JSON_DIGITS`` significant digits,
    recursively, so metrics.json is strict JSON and free of float-representation noise."""
    if isinstance(value, float):
        return float(f"{value:.{JSON_DIGITS}g}") if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_report(metrics: dict, out_dir) -> dict[str, Path]:
    """Write metrics.json, the PNG plots and report.html into ``out_dir`` (created if needed).

    Returns:
        name -> path of every file written ("metrics", "html" and the keys of ``PLOTS``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = {**metrics, "created": metrics.get("created", date.today().isoformat())}
    written = {"metrics": out / "metrics.json"}
    written["metrics"].write_text(json.dumps(_finite(metrics), indent=1, allow_nan=False))
    drawers = {"validity": plot_validity, "dynamics": plot_dynamics, "coverage": plot_coverage,
               "vamp2": plot_vamp2, "tica": plot_tica}
    for key, name in PLOTS.items():
        drawers[key](metrics, out / name)
        written[key] = out / name
    written["html"] = out / "report.html"
    written["html"].write_text(_html(metrics))
    return written
