"""Time per generated frame vs context length L and vs protein size N, with log-log slopes.

    python benchmarks/scaling.py [--preset small] [--steps 50] [--threads 1] [--quick]
    python benchmarks/scaling.py --replot          # redraw scaling.png from scaling.json

One denoiser call (one reverse-diffusion step) of the frame being generated is timed with L
frames in the KV cache; a frame costs ``steps`` such calls (plus one clean pass to append it,
negligible at 50 steps), so "s per frame" = steps × the call time. The weights are random (the
cost does not depend on their values) and the cache is filled with random keys/values (the cost
depends on how many cached tokens are attended to, not on their values). TorchScript core, as
``load_model(..., scripted=True)`` runs it. Slopes: least squares of log t on log N (all points)
and of log(t(L) - t(1)) on log L (the context-dependent part). Writes
benchmarks/results/scaling.{md,json,png}.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def loglog_slope(x, y) -> float:
    """Least-squares slope of log y on log x (x, y > 0; at least two points)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.size < 2 or (x <= 0).any() or (y <= 0).any():
        raise ValueError(f"loglog_slope: expected >= 2 positive (x, y) pairs of equal length, got {x.tolist()}, {y.tolist()}")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def context_slope(lengths, seconds) -> float:
    """Log-log slope of the context-dependent part: log(t(L) - t(L_min)) on log(L - L_min), L > L_min.

    1 for a cost a + b·L, 2 for a + b·L²-like growth at large L."""
    L, t = np.asarray(lengths, dtype=float), np.asarray(seconds, dtype=float)
    order = np.argsort(L)
    L, t = L[order], t[order]
    extra = t[1:] - t[0]
    keep = extra > 0
    if keep.sum() < 2:
        return float("nan")
    return loglog_slope((L[1:] - L[0])[keep], extra[keep])


class DenoiserTimer:
    """One core of the preset (random weights) reused for every (N, L): start() resizes the cache."""

    def __init__(self, preset_name: str, scripted: bool, capacity: int):
        from openmm_starmd.model import StarMDCore, preset
        from openmm_starmd.model.export import script_core

        torch.manual_seed(0)
        core = StarMDCore(preset(preset_name)).eval()
        self.core = script_core(core) if scripted else core
        self.capacity = capacity

    def seconds_per_call(self, num_res: int, context: int, repeats: int) -> float:
        from openmm_starmd.geometry.so3 import uniform_random_rotmat

        g = torch.Generator().manual_seed(num_res)
        core = self.core
        aatype = torch.randint(0, 20, (1, num_res), generator=g)
        resid = torch.arange(num_res)[None]
        rots = uniform_random_rotmat([1, num_res], generator=g)
        trans = torch.randn(1, num_res, 3, generator=g)
        ls = torch.zeros(1)
        core.start(aatype, resid, torch.zeros_like(resid), max(context, 1) + 1)
        core.append_frame(rots, trans, ls, 0.0)
        if context > 1:
            for k, v in zip(core.k_caches, core.v_caches):
                k[:, :, num_res:context * num_res].normal_()
                v[:, :, num_res:context * num_res].normal_()
            core.fill, core.num_frames = context * num_res, context
        if int(core.num_frames) != context:
            raise RuntimeError(f"could not set the cache to {context} frames (core has {int(core.num_frames)})")
        with torch.no_grad():
            for _ in range(3):  # warm-up (TorchScript profiles and optimises on the first calls of a shape)
                core.denoise(rots, trans, 0.5, ls)
            t0 = time.perf_counter()
            for _ in range(repeats):
                core.denoise(rots, trans, 0.5, ls)
        return (time.perf_counter() - t0) / repeats


def plot(res: dict, path: Path) -> None:
    """Both panels from the result dict (as stored in scaling.json): measured points, the log-log fits."""
    from plotting import new_figure, plain_log_ticks, save

    fig = new_figure(10, 4.2)
    ax_n, ax_l = fig.subplots(1, 2)
    n, tn = np.array(res["vs_N"]["N"]), np.array(res["vs_N"]["s_per_frame"])
    ax_n.loglog(n, tn, "o", color="black", label="measured")
    fits = [(n, res["vs_N"]["slope"], "--", "all N")]
    if res["vs_N"].get("slope_N_ge_50"):
        fits.append((n[n >= 50], res["vs_N"]["slope_N_ge_50"], ":", "N ≥ 50"))
    for xs, slope, style, what in fits:
        ys = tn[np.isin(n, xs)]
        scale = np.exp(np.mean(np.log(ys) - slope * np.log(xs)))  # the least-squares line's intercept at this slope
        ax_n.loglog(xs, scale * xs ** slope, style, label=f"fit over {what}: t ∝ N^{slope:.2f}")
    plain_log_ticks(ax_n.xaxis, n)
    ax_n.set_xlabel("residues N")
    ax_n.set_title(f"vs protein size ({res['vs_N']['L']} cached frame)", fontsize=10)
    L, tl = np.array(res["vs_L"]["L"]), np.array(res["vs_L"]["s_per_frame"])
    ax_l.loglog(L, tl, "o-", color="black",
                label=f"measured (t(L) − t(1) ∝ (L − 1)^{res['vs_L']['context_slope']:.2f})")
    plain_log_ticks(ax_l.xaxis, L)
    ax_l.set_xlabel("cached context frames L")
    ax_l.set_title(f"vs context length (N = {res['vs_L']['N']} residues)", fontsize=10)
    for ax in (ax_n, ax_l):
        ax.set_ylabel(f"s per frame ({res['steps']} reverse-diffusion steps)")
        ax.legend(fontsize=8, loc="upper left")
    core = "TorchScript" if res.get("scripted", True) else "eager"
    fig.suptitle(f"Time per generated frame: STAR-MD `{res['preset']}`, {core}, CPU, {res['threads']} torch thread(s)",
                 fontsize=11)
    save(fig, path, res.get("date", "date not recorded"), res.get("weights", f"random ({res['preset']} preset)"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--steps", type=int, default=50, help="reverse-diffusion steps per frame (default 50)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eager", action="store_true", help="time the eager core instead of TorchScript")
    ap.add_argument("--quick", action="store_true", help="fewer sizes and repeats (smoke test)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--replot", action="store_true", help="redraw scaling.png from scaling.json without measuring")
    args = ap.parse_args(argv)
    if args.replot:
        plot(json.loads((args.out / "scaling.json").read_text()), args.out / "scaling.png")
        return 0
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    sizes = [12, 35] if args.quick else [12, 20, 35, 50, 89, 162, 276, 400]
    lengths = [1, 8, 32] if args.quick else [1, 10, 32, 100, 320, 1000]
    n_for_l, l_for_n = (20, 1) if args.quick else (50, 1)
    repeats = 2 if args.quick else 3
    timer = DenoiserTimer(args.preset, not args.eager, max(lengths) + 1)
    t_n = []
    for n in sizes:
        t_n.append(timer.seconds_per_call(n, l_for_n, repeats) * args.steps)
        print(f"N = {n}, L = {l_for_n}: {t_n[-1]:.2f} s per frame", flush=True)
    t_l = []
    for L in lengths:
        t_l.append(timer.seconds_per_call(n_for_l, L, repeats) * args.steps)
        print(f"N = {n_for_l}, L = {L}: {t_l[-1]:.2f} s per frame", flush=True)
    res = {"preset": args.preset, "steps": args.steps, "threads": args.threads, "scripted": not args.eager,
           "machine": machine_info(), "uptime_before": load, "date": time.strftime("%Y-%m-%d", time.gmtime()),
           "weights": f"random ({args.preset} preset)",
           "vs_N": {"L": l_for_n, "N": sizes, "s_per_frame": t_n, "slope": loglog_slope(sizes, t_n),
                    "slope_N_ge_50": loglog_slope([n for n in sizes if n >= 50], [t for n, t in zip(sizes, t_n) if n >= 50])
                    if sum(n >= 50 for n in sizes) >= 2 else None},
           "vs_L": {"N": n_for_l, "L": lengths, "s_per_frame": t_l, "slope": loglog_slope(lengths, t_l),
                    "context_slope": context_slope(lengths, t_l)},
           "seconds": time.perf_counter() - t_start}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaling.json").write_text(json.dumps(res, indent=1))
    plot(res, args.out / "scaling.png")
    core = "eager" if args.eager else "TorchScript"
    lines = [f"# Time per generated frame vs N and vs L: preset `{args.preset}` (random weights), {core}, "
             f"{args.steps} steps per frame", "", machine_info(), "",
             f"Load before the run (`uptime`): `{load}`.", "",
             f"torch threads {args.threads}; no GPU is lent to this task. s per frame = {args.steps} × one timed "
             f"denoiser call (mean of {repeats}, after three warm-up calls).", "",
             f"## vs N (L = {l_for_n} cached frame)", "", "| N | s per frame | ms per step |", "|---:|---:|---:|"]
    lines += [f"| {n} | {t:.3f} | {t / args.steps * 1e3:.1f} |" for n, t in zip(sizes, t_n)]
    lines += ["", f"log-log slope over all N: **{res['vs_N']['slope']:.2f}**"
              + (f"; over N ≥ 50: **{res['vs_N']['slope_N_ge_50']:.2f}**" if res['vs_N']['slope_N_ge_50'] else ""),
              "", f"## vs L (N = {n_for_l})", "", "| L | s per frame | ms per step |", "|---:|---:|---:|"]
    lines += [f"| {L} | {t:.3f} | {t / args.steps * 1e3:.1f} |" for L, t in zip(lengths, t_l)]
    lines += ["", f"log-log slope of t(L): {res['vs_L']['slope']:.2f}; of the context-dependent part t(L) − t(1) on L − 1: "
              f"**{res['vs_L']['context_slope']:.2f}** (1 = linear in L, as a singles-only KV cache predicts).", "",
              f"Took {res['seconds']:.0f} s.", "", "![scaling](scaling.png)"]
    (args.out / "scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
