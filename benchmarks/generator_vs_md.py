"""ns/day of plain MD vs the STAR-MD Generator, same machine, same protein, same process, for
offline proteins of increasing size.

    python benchmarks/generator_vs_md.py [--structures trpzip2 trp_cage villin 1ap4 t4_lysozyme src_kinase]
                                         [--model default] [--stride-ns S] [--jumps 2] [--threads 1]
                                         [--name generator_vs_md]

Plain MD is the fastest set-up a user would pick on a CPU: Amber ff14SB with OpenMM's native
GBSAOBCForce (OBC2), hydrogen mass repartitioning (4 amu), HBond constraints and a 4 fs
LangevinMiddle step, built exactly as ``starmd simulate`` builds it (PDBFixer preparation of the
offline structure, :mod:`openmm_starmd.openmm.md_setup`). The Generator runs on a second
Simulation of the same system. Per structure it measures

* eager core (what ``StarMDGenerator(sim, model="default")`` loads), 50 reverse-diffusion steps, no relaxation;
* TorchScript core (``load_model(..., scripted=True)``), 50 steps: no relaxation, then (new
  jumps) restrained minimisation (at most 2000 iterations, :class:`RelaxConfig`);
* TorchScript core, 200 steps, no relaxation.

and, with the real validity gate (paper thresholds, 3 samples, MD fallback as a user gets it):

* eager core (the Generator's default), 50 steps, no relaxation; and with restrained minimisation.

Every row starts from the same prepared structure with a freshly loaded core.

In the first four rows the validity gate is opened (Cα clash/break thresholds 1.0), to time the jump
itself; how many of the timed frames the real gate would have accepted is reported beside. Two
rates are reported per row: the clock's ns/day (every jump counts a stride) and the **valid-frame
ns/day**, which counts only frames from the model that pass the real gate (a rejected frame or an
MD-fallback interval counts 0 ns; the wall time of resamples and fallback MD still counts). The
stride defaults to the one the model's checkpoint recommends (``stride_card``). One warm-up jump
(no relaxation) per core precedes its timed jumps. Writes benchmarks/results/NAME.{md,json} and .png.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402
from plotting import weights_label  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SECONDS_PER_DAY = 86400.0
PHASES = ("sample", "rebuild", "relax", "report", "context")


def ns_per_day(simulated_ns: float, wall_s: float) -> float:
    """Simulated nanoseconds per day of wall time."""
    if not wall_s > 0:
        raise ValueError(f"wall_s: expected > 0, got {wall_s}")
    return simulated_ns / wall_s * SECONDS_PER_DAY


def phase_seconds_per_jump(before: dict, after: dict, jumps: int) -> dict:
    """Mean seconds per jump of each phase between two ``GeneratorStatistics.as_dict()['wall_s']``."""
    if jumps < 1:
        raise ValueError(f"jumps: expected >= 1, got {jumps}")
    return {k: (after.get(k, 0.0) - before.get(k, 0.0)) / jumps for k in after}


def build_simulation(name: str, threads: int, seed: int = 1):
    """Minimised implicit-solvent Simulation of an offline structure, as ``starmd simulate`` builds it."""
    from openmm_starmd.data.structures import get_structure
    from openmm_starmd.openmm.md_setup import MDConfig, create_implicit_system, create_simulation, prepare_structure

    topology, positions = prepare_structure(get_structure(name))
    config = MDConfig(threads=threads)
    simulation = create_simulation(topology, create_implicit_system(topology, config), config, seed)
    simulation.context.setPositions(positions)
    simulation.minimizeEnergy(maxIterations=200)
    return simulation


def time_md(simulation, min_seconds: float) -> tuple[float, int, float]:
    """(ns/day, steps, seconds): MD in blocks of 100 steps until ``min_seconds`` have passed (after 100 warm-up steps)."""
    simulation.step(100)
    dt_ps = simulation.integrator.getStepSize()._value
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_seconds:
        simulation.step(100)
        steps += 100
    wall = time.perf_counter() - t0
    return ns_per_day(steps * dt_ps / 1000.0, wall), steps, wall


def valid_frame_ns(stride_ns: float, jumps: int, fallbacks: int, real_gate_valid: int, real_gate: bool) -> float:
    """ns of model frames that pass the real gate: with the real gate every non-fallback interval
    passed it; with the gate opened only the frames the real gate would have accepted count."""
    if real_gate:
        return (jumps - fallbacks) * stride_ns
    return real_gate_valid * stride_ns


def time_generator(simulation, core, stride_ns: float, num_steps: int, relax, jumps: int, warmup: bool,
                   noise_scale: float = 1.0, real_gate: bool = False) -> dict:
    """Per-jump phase seconds, real-gate acceptance and valid-frame ns of ``jumps`` timed jumps."""
    from openmm_starmd.evaluation.validity import ca_valid
    from openmm_starmd.openmm.gate import GateConfig
    from openmm_starmd.openmm.generator import GeneratorOptions, StarMDGenerator

    # the real gate keeps its defaults except the fallback-fraction limit: a benchmark measures, it does not stop
    gate = GateConfig(max_fallback_fraction=1.0) if real_gate else GateConfig(max_clash_rate=1.0, max_break_rate=1.0)
    gen = StarMDGenerator(simulation, model=core, stride=stride_ns, relax=relax, seed=1,
                          options=GeneratorOptions(num_steps=num_steps, noise_scale=noise_scale, progress=False, gate=gate,
                                                   history="protein"))
    if warmup:
        gen.step(1)
    before = dict(gen.statistics.wall_s)
    fallbacks_before, resamples_before = gen.statistics.fallbacks, gen.statistics.resamples
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fallbacks are counted below
        gen.step(jumps)
    wall = time.perf_counter() - t0
    phases = phase_seconds_per_jump(before, gen.statistics.wall_s, jumps)
    history = gen.history
    ca_index = [a.index for a in history.topology.atoms if a.name == "CA"]
    valid = ca_valid(history.xyz[-jumps:, ca_index], gen.pmap.neighbours)
    fallbacks = gen.statistics.fallbacks - fallbacks_before
    valid_ns = valid_frame_ns(stride_ns, jumps, fallbacks, int(valid.sum()), real_gate)
    passed = jumps - fallbacks if real_gate else int(valid.sum())  # model frames that pass the real gate
    return {"per_jump_s": wall / jumps, "wall_s": wall, "phases_s": phases, "real_gate_valid": passed,
            "jumps": jumps, "real_gate": real_gate, "resamples": gen.statistics.resamples - resamples_before,
            "fallbacks": fallbacks, "valid_ns": valid_ns, "valid_ns_per_day": valid_ns / wall * SECONDS_PER_DAY}


def bench_structure(name: str, model: str, stride_ns: float, jumps: int, threads: int, md_seconds: float,
                    minimize: bool = True, noise_scale: float = 1.0, only: tuple = ()) -> dict:
    """Every measurement of one structure (see the module docstring)."""
    from openmm_starmd.model.checkpoint import load_model

    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    t0 = time.perf_counter()
    sim_md = build_simulation(name, threads)
    n_res = sim_md.topology.getNumResidues()
    md, steps, md_wall = time_md(sim_md, md_seconds)
    print(f"{name}: {n_res} residues, {sim_md.topology.getNumAtoms()} atoms; MD {md:.1f} ns/day", flush=True)
    out = {"structure": name, "residues": n_res, "atoms": sim_md.topology.getNumAtoms(),
           "md": {"ns_per_day": md, "steps": steps, "wall_s": md_wall}, "uptime_before": load, "noise_scale": noise_scale}
    runs = (("eager_50", False, 50, None, True, False), ("script_50", True, 50, None, True, False),
            ("script_50_min", True, 50, "minimize", False, False), ("script_200", True, 200, None, False, False),
            ("gate_50", False, 50, None, False, True), ("gate_50_min", False, 50, "minimize", False, True))
    for key, scripted, steps, relax, warmup, real_gate in runs:
        if (relax and not minimize) or (only and key not in only):
            continue
        # every row starts from the same prepared structure with a core of its own: a row left unrelaxed frames
        # in its Simulation, and a TorchScript core started a second time gives wrong frames (GeneratorOptions.scripted)
        sim = build_simulation(name, threads, seed=2)
        core = load_model(model, scripted=scripted)
        try:
            out[key] = time_generator(sim, core, stride_ns, steps, relax, jumps, warmup, noise_scale, real_gate)
        except Exception as exc:  # e.g. the minimiser meets NaN on a badly clashing frame: report it, go on
            out[key] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"}
            print(f"  {key}: failed: {out[key]['error']}", flush=True)
            continue
        print(f"  {key}: {out[key]['per_jump_s']:.2f} s/jump (relax {out[key]['phases_s']['relax']:.2f}), "
              f"valid-frame {out[key]['valid_ns_per_day']:,.0f} ns/day", flush=True)
    out["seconds"] = time.perf_counter() - t0
    return out


ROWS = (("eager_50", "eager, 50 steps, no relaxation"), ("script_50", "TorchScript, 50 steps, no relaxation"),
        ("script_50_min", "TorchScript, 50 steps + restrained minimisation"),
        ("script_200", "TorchScript, 200 steps, no relaxation"),
        ("gate_50", "real gate (as a user runs it): eager, 50 steps, no relaxation"),
        ("gate_50_min", "real gate (as a user runs it): eager, 50 steps + restrained minimisation"))


def rows_for(result: dict, stride_ns: float) -> list[tuple[str, float | None, dict | None]]:
    """(label, seconds per jump or None if not measured, measurement) of one structure's generator rows."""
    return [(label, result[key].get("per_jump_s") if key in result else None, result.get(key)) for key, label in ROWS]


def markdown(results: list[dict], stride_ns: float) -> list[str]:
    lines = ["| protein (residues, atoms) | propagator | s per jump | sample s | relax s | fallback MD s | clock ns/day | "
             "× plain MD | valid / timed | fallbacks | **valid-frame ns/day** | **valid × plain MD** |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        md = r["md"]["ns_per_day"]
        head = f"{r['structure']} ({r['residues']}, {r['atoms']})"
        lines.append(f"| {head} | plain MD (native OBC2, HMR, 4 fs) | | | | | {md:,.1f} | 1 | | | {md:,.1f} | 1 |")
        for label, per_jump, m in rows_for(r, stride_ns):
            if m is None or "error" in m:
                if m is not None:
                    lines.append(f"| {head} | {label} | failed: {m['error']} | | | | | | | | | |")
                continue
            rate = ns_per_day(stride_ns, per_jump)
            valid_rate = m.get("valid_ns_per_day")
            valid_cells = "| | " if valid_rate is None else f"| {valid_rate:,.0f} | {valid_rate / md:,.1f} "
            lines.append(f"| {head} | {label} | {per_jump:.2f} | {m['phases_s']['sample']:.2f} | "
                         f"{m['phases_s']['relax']:.2f} | {m['phases_s'].get('fallback_md', 0.0):.2f} | {rate:,.0f} | "
                         f"{rate / md:,.0f} | {m['real_gate_valid']} / {m['jumps']} | {m.get('fallbacks', 0)} "
                         f"{valid_cells}|")
    return lines


def plot(results: list[dict], stride_ns: float, path: Path, date: str = "date not recorded",
         weights: str = "not recorded") -> None:
    """Simulated ns per day of wall time, plain MD and each generator row, by protein (from the JSON's results)."""
    from matplotlib.ticker import NullFormatter

    from plotting import new_figure, save

    if len(results) == 1:
        _plot_one(results[0], stride_ns, path, date, weights)
        return
    fig = new_figure(7.5, 4.8)
    ax = fig.subplots()
    n = [r["residues"] for r in results]
    ax.plot(n, [r["md"]["ns_per_day"] for r in results], "ks--", label="plain MD (OBC2, HMR, 4 fs)")
    for key, label in ROWS:
        pts = [(r["residues"], ns_per_day(stride_ns, r[key]["per_jump_s"])) for r in results if "per_jump_s" in r.get(key, {})]
        if pts:
            line, = ax.plot(*zip(*pts), "o-", label=label)
            valid = [(r["residues"], r[key]["valid_ns_per_day"]) for r in results
                     if r.get(key, {}).get("valid_ns_per_day", 0) > 0]
            if valid:
                ax.plot(*zip(*valid), "o:", mfc="none", color=line.get_color(), label=f"{label}: valid frames only")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(n, [f"{r['structure']}\n{r['residues']}" for r in results])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("protein (residues)")
    ax.set_ylabel("simulated ns per day of wall time")
    ax.set_title(f"Generator vs plain MD on a CPU: {stride_ns:g} ns per jump\n(rows not marked 'real gate' time the jump "
                 "with the validity gate opened)", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    save(fig, path, date, weights)


def _plot_one(result: dict, stride_ns: float, path: Path, date: str, weights: str) -> None:
    """One protein: a bar per propagator, the clock's ns/day and, where measured, the valid-frame ns/day."""
    from plotting import new_figure, save

    bars = [("plain MD (OBC2, HMR, 4 fs)", result["md"]["ns_per_day"], None)]
    for key, label in ROWS:
        if "per_jump_s" in result.get(key, {}):
            bars.append((label, ns_per_day(stride_ns, result[key]["per_jump_s"]), result[key].get("valid_ns_per_day")))
    fig = new_figure(9, max(3.0, 1.2 + 0.45 * len(bars)))
    ax = fig.subplots()
    y = np.arange(len(bars))[::-1]
    ax.barh(y + 0.18, [b[1] for b in bars], height=0.36, color="tab:blue", label="clock: every jump counts a stride")
    valid = [np.nan if b[2] is None or b[2] <= 0 else b[2] for b in bars]
    ax.barh(y - 0.18, valid, height=0.36, color="tab:green", label="valid frames only (model frames passing the real gate)")
    ax.set_yticks(y, [b[0] for b in bars], fontsize=8)
    ax.set_ylim(-0.6, len(bars) - 0.4)
    ax.set_xscale("log")
    ax.set_xlabel("simulated ns per day of wall time")
    for yi, b in zip(y, bars):
        if b[2] is not None and b[2] <= 0:
            ax.text(ax.get_xlim()[0], yi - 0.18, " 0: no model frame passed", va="center", fontsize=7)
    ax.set_title(f"Generator vs plain MD on a CPU: {result['structure']} ({result['residues']} residues),\n"
                 f"{stride_ns:g} ns per jump", fontsize=10)
    ax.legend(fontsize=7, loc="upper right")
    save(fig, path, date, weights)


def replot(json_path: Path) -> int:
    """Redraw the figure beside ``json_path`` from the numbers stored in it, without measuring."""
    doc = json.loads(json_path.read_text())
    weights = doc.get("weights") or weights_label(doc["model"])
    plot(doc["results"], doc["stride_ns"], json_path.with_suffix(".png"), doc.get("date", "date not recorded"), weights)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--structures", nargs="+", default=["trpzip2", "trp_cage", "villin", "1ap4", "t4_lysozyme", "src_kinase"])
    parser.add_argument("--model", default="default")
    parser.add_argument("--stride-ns", type=float, default=None,
                        help="ns per jump (default: the model's recommended stride, from its checkpoint)")
    parser.add_argument("--name", default="generator_vs_md", help="result file stem (default generator_vs_md)")
    parser.add_argument("--only", nargs="+", default=[], choices=[key for key, _ in ROWS],
                        help="measure only these generator rows (default all)")
    parser.add_argument("--jumps", type=int, default=2, help="timed jumps per configuration (default 2)")
    parser.add_argument("--md-seconds", type=float, default=10.0, help="wall seconds of timed MD (default 10)")
    parser.add_argument("--threads", type=int, default=1, help="torch and OpenMM CPU threads (default 1)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)")
    parser.add_argument("--no-minimize", action="store_true", help="skip the minimisation row (slow for large proteins)")
    parser.add_argument("--noise-scale", type=float, default=None,
                        help="GeneratorOptions.noise_scale (default: the Generator's, i.e. the one the weights record)")
    parser.add_argument("--merge", action="store_true", help="add to the structures already in generator_vs_md.json")
    parser.add_argument("--replot", action="store_true", help="redraw NAME.png from NAME.json without measuring")
    args = parser.parse_args(argv)
    if args.replot:
        return replot(args.out / f"{args.name}.json")
    if args.stride_ns is None:
        from openmm_starmd.model.checkpoint import stride_card

        args.stride_ns = stride_card(args.model).recommended
        if args.stride_ns is None:
            parser.error(f"--stride-ns: the checkpoint {args.model} records no recommended stride; give one")
    if args.noise_scale is None:
        from openmm_starmd.model.checkpoint import stride_card
        from openmm_starmd.openmm.generator import GeneratorOptions

        args.noise_scale = GeneratorOptions().with_sampler_of(stride_card(args.model)).noise_scale
    torch.set_num_threads(args.threads)
    command = "python benchmarks/generator_vs_md.py " + " ".join(sys.argv[1:] if argv is None else argv)
    json_path = args.out / f"{args.name}.json"
    old = json.loads(json_path.read_text())["results"] if args.merge and json_path.is_file() else []
    t0 = time.perf_counter()
    new = [bench_structure(s, args.model, args.stride_ns, args.jumps, args.threads, args.md_seconds, not args.no_minimize,
                           args.noise_scale, tuple(args.only)) for s in args.structures]
    results = sorted({r["structure"]: r for r in old + new}.values(), key=lambda r: r["residues"])
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    json_path.write_text(json.dumps({"machine": machine_info(), "date": date, "command": command, "stride_ns": args.stride_ns,
                                     "model": args.model, "noise_scale": args.noise_scale, "threads": args.threads,
                                     "results": results}, indent=1))
    plot(results, args.stride_ns, out / f"{args.name}.png", date, weights_label(args.model))
    lines = [f"# Generator vs plain MD by protein size: stride {args.stride_ns:g} ns per jump", "",
             f"{date}; {machine_info()}", "", f"Command: `{command}`", "",
             f"Model `{args.model}`, noise scale {args.noise_scale:g}; torch threads {args.threads}, OpenMM CPU threads {args.threads}. "
             "Valid-frame ns/day counts only model frames that pass the real validity gate (fallback intervals "
             "count 0 ns).", ""] + markdown(results, args.stride_ns)
    lines += ["", "Load (`uptime`) before each structure's run: " + "; ".join(f"{r['structure']}: `{r['uptime_before']}` ({r['seconds']:.0f} s)" for r in results)]
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"generator_vs_md.py took {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
