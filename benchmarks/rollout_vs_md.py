"""A generated rollout against MD on a training protein: Cα RMSD to the start over time, and the
Cα validity of every generated frame.

    python benchmarks/rollout_vs_md.py [--data md_data/villin] [--model default] [--stride-ns 0.1]
                                       [--jumps 13] [--seeds 0 1 2] [--num-steps 50] [--noise-scale X]
                                       [--noise-switch-t T]

From the first frame of the system's first MD trajectory, the model rolls out ``--jumps`` frames per
seed (:func:`openmm_starmd.training.heldout.evaluate`: KV-cached rollout, each frame superposed on
the previous one). The MD curve is the same trajectory's Cα RMSD to that frame (superposed), frame
by frame. The defaults are the Generator's sampler (50 reverse steps, the noise scale and noise switch the weights record) at the shipped
weights' recommended stride; 13 jumps of 0.1 ns cover villin's 1.3 ns of MD.
Writes benchmarks/results/rollout_vs_md.{json,md} and the figure docs/rollout_vs_md.png.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
FIGURE = ROOT / "docs" / "rollout_vs_md.png"


def md_rmsd_to_start(data: str, start_frame: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(time ns, Cα RMSD Å to frame ``start_frame``) of the first MD trajectory under ``data``."""
    from openmm_starmd.data.dataset import load_or_convert
    from openmm_starmd.data.readers import find_sources
    from openmm_starmd.geometry.superpose import rmsd
    from openmm_starmd.units import ANGSTROM_PER_NM, PS_PER_NS

    first = load_or_convert(find_sources(data)[0], None)
    ca = torch.from_numpy(first.trans[start_frame:]).double()  # [F, N, 3] nm; the frame origin is the Cα
    values = rmsd(ca, ca[:1].expand_as(ca)).numpy() * ANGSTROM_PER_NM
    times = np.arange(ca.shape[0]) * first.frame_interval_ps / PS_PER_NS
    return times, values


def weights_label(model: str) -> str:
    """'default (6,865 steps, sha256 f9827a3a)' for a shipped model, else the path."""
    from openmm_starmd.model.checkpoint import SHIPPED, WEIGHTS_DIR

    if model in SHIPPED:
        manifest = json.loads((WEIGHTS_DIR / f"{SHIPPED[model]}.json").read_text())
        steps = f"{manifest['optimiser_steps']:,} steps, " if "optimiser_steps" in manifest else ""
        return f"{model} ({steps}sha256 {manifest['sha256'][:8]})"
    return str(model)


def sampler_text(num_steps: int, noise_scale: float, noise_switch_t: float) -> str:
    """The sampler in words, for the figure's title and the report."""
    switch = f", exact SDE above t = {noise_switch_t:g}" if noise_switch_t < 1 else ""
    return f"{num_steps} steps, noise {noise_scale:g}{switch}"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, axv) = plt.subplots(2, 1, figsize=(7.5, 5.2), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    ax.plot(result["md"]["time_ns"], result["md"]["ca_rmsd_to_start_angstrom"], color="black", lw=1.4,
            label="MD (implicit solvent, 300 K)")
    colors = plt.cm.viridis(np.linspace(0.15, 0.75, len(result["rollouts"])))
    for color, run in zip(colors, result["rollouts"]):
        t = [result["stride_ns"] * (k + 1) for k in range(run["jumps"])]
        ax.plot([0.0] + t, [0.0] + run["ca_rmsd_to_start_per_jump_angstrom"], "o-", ms=3, lw=1, color=color,
                label=f"STAR-MD, seed {run['seed']} ({100 * run['ca_validity']:.0f} % Cα-valid)")
        axv.scatter(t, [run["seed"]] * len(t), c=["tab:green" if v else "tab:red" for v in run["ca_valid_per_jump"]],
                    marker="s", s=22)
    ax.set_ylabel("Cα RMSD to the start (Å)")
    ax.set_title(f"{result['system']}: generated rollout vs MD, Δt = {result['stride_ns']:g} ns per jump, "
                 + sampler_text(result["num_steps"], result["noise_scale"], result.get("noise_switch_t", 1.0)), fontsize=9.5)
    ax.legend(fontsize=7.5, loc="upper left")
    ax.grid(alpha=0.3)
    axv.set_yticks([run["seed"] for run in result["rollouts"]])
    axv.set_yticklabels([f"seed {run['seed']}" for run in result["rollouts"]], fontsize=7.5)
    axv.set_ylim(min(r["seed"] for r in result["rollouts"]) - 0.7, max(r["seed"] for r in result["rollouts"]) + 0.7)
    axv.set_xlabel("simulated time (ns)")
    axv.set_title("Cα validity per generated frame (green: passes the clash/break gate, red: fails)", fontsize=8)
    fig.text(0.99, 0.005, f"{result['date']} · weights {result['weights']}", ha="right", va="bottom", fontsize=7, color="0.35")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    from openmm_starmd.training.heldout import evaluate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "md_data" / "villin"))
    ap.add_argument("--model", default="default")
    ap.add_argument("--stride-ns", type=float, default=0.1)
    ap.add_argument("--jumps", type=int, default=13)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--num-steps", type=int, default=50)
    ap.add_argument("--noise-scale", type=float, default=None, help="default: the one the weights record (the Generator's)")
    ap.add_argument("--noise-switch-t", type=float, default=None,
                    help="exact SDE above this diffusion time; default: the one the weights record (the Generator's)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder of rollout_vs_md.{json,md}")
    ap.add_argument("--figure", type=Path, default=FIGURE)
    args = ap.parse_args(argv)
    if args.noise_scale is None or args.noise_switch_t is None:
        from openmm_starmd.model.checkpoint import stride_card
        from openmm_starmd.openmm.generator import GeneratorOptions

        sampler = GeneratorOptions().with_sampler_of(stride_card(args.model))
        args.noise_scale = sampler.noise_scale if args.noise_scale is None else args.noise_scale
        args.noise_switch_t = sampler.noise_switch_t if args.noise_switch_t is None else args.noise_switch_t
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    times, md = md_rmsd_to_start(args.data)
    runs = []
    for seed in args.seeds:
        runs.append(evaluate(args.model, args.data, args.stride_ns, args.jumps, args.num_steps, seed,
                             noise_scale=args.noise_scale, noise_switch_t=args.noise_switch_t))
        print(f"seed {seed}: {100 * runs[-1]['ca_validity']:.0f} % Cα-valid, final RMSD to start "
              f"{runs[-1]['model_rmsd_to_start_final_angstrom']:.2f} Å, {runs[-1]['wall_s']:.0f} s", flush=True)
    result = {"date": datetime.date.today().isoformat(), "machine": machine_info(), "weights": weights_label(args.model),
              "system": Path(args.data).name, "stride_ns": args.stride_ns, "num_steps": args.num_steps,
              "noise_scale": args.noise_scale, "noise_switch_t": args.noise_switch_t, "command": "python benchmarks/rollout_vs_md.py " + " ".join(argv or sys.argv[1:]),
              "md": {"time_ns": times.round(3).tolist(), "ca_rmsd_to_start_angstrom": md.round(3).tolist()},
              "rollouts": runs, "seconds": round(time.perf_counter() - t0, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rollout_vs_md.json").write_text(json.dumps(result, indent=1))
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    plot(result, args.figure)
    md_end = float(np.interp(args.stride_ns * args.jumps, times, md))
    lines = [f"# Generated rollout vs MD: {result['system']}", "", f"{result['date']}; {result['machine']}", "",
             f"Command: `{result['command'].strip()}`; weights {result['weights']}; took {result['seconds']:.0f} s.", "",
             f"Sampler: {sampler_text(args.num_steps, args.noise_scale, args.noise_switch_t)}.", "",
             "| seed | Cα-valid frames | RMSD to start at the end (Å) | per-jump RMSD / MD at the same lag |",
             "|---:|---:|---:|---:|"]
    lines += [f"| {r['seed']} | {100 * r['ca_validity']:.0f} % | {r['model_rmsd_to_start_final_angstrom']:.2f} | "
              f"{r['rmsd_ratio_model_over_md']:.2f} |" if r["rmsd_ratio_model_over_md"] else
              f"| {r['seed']} | {100 * r['ca_validity']:.0f} % | {r['model_rmsd_to_start_final_angstrom']:.2f} | — |" for r in runs]
    lines += ["", f"MD's Cα RMSD to the same start at {args.stride_ns * args.jumps:g} ns: {md_end:.2f} Å.", "",
              f"![rollout vs MD](../../docs/{args.figure.name})"]
    (args.out / "rollout_vs_md.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
