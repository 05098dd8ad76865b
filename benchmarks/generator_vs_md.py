"""ns/day of plain MD vs the STAR-MD Generator (without and with relaxation), same protein, one run.

    python benchmarks/generator_vs_md.py [--model default|PATH] [--pdb PDB] [--md-steps 2000] [--jumps 4]
                                         [--stride-ns 1.25] [--threads N]

Plain MD is the fastest set-up a user would pick on a CPU: Amber ff14SB with OpenMM's native
GBSAOBCForce (OBC2), hydrogen mass repartitioning (4 amu), HBond constraints and a 4 fs
LangevinMiddle step. The Generator runs on a copy of the same Simulation. When the shipped
weights are missing, a randomly initialised ``small`` model is used (say so in the results): its
frames are not physical, so the validity gate is opened (thresholds 1.0) to time the jump itself,
and relaxation of its frames is a pessimistic stand-in for relaxation of trained frames.
Writes benchmarks/results/generator_vs_md.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402

from openmm_starmd.openmm.command import build_implicit_simulation  # noqa: E402
from openmm_starmd.openmm.gate import GateConfig  # noqa: E402
from openmm_starmd.openmm.generator import GeneratorOptions, StarMDGenerator  # noqa: E402
from openmm_starmd.units import PS_PER_NS  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SECONDS_PER_DAY = 86400.0


def md_ns_per_day(pdb: str, steps: int, threads: int) -> float:
    sim = build_implicit_simulation(pdb, "CPU", threads)
    sim.step(100)  # warm-up
    t0 = time.perf_counter()
    sim.step(steps)
    wall = time.perf_counter() - t0
    dt_ps = sim.integrator.getStepSize()._value
    return steps * dt_ps / PS_PER_NS / wall * SECONDS_PER_DAY


def generator_ns_per_day(pdb: str, model, relax, jumps: int, stride_ns: float, threads: int, open_gate: bool,
                         num_steps: int) -> tuple[float, dict]:
    sim = build_implicit_simulation(pdb, "CPU", threads)
    gate = GateConfig(max_clash_rate=1.0, max_break_rate=1.0) if open_gate else GateConfig()
    gen = StarMDGenerator(sim, model=model, stride=stride_ns, relax=relax, seed=1,
                          options=GeneratorOptions(num_steps=num_steps, progress=False, gate=gate))
    gen.step(1)  # warm-up (first-call allocations, minimiser context)
    t0 = time.perf_counter()
    gen.step(jumps)
    wall = time.perf_counter() - t0
    return jumps * stride_ns / wall * SECONDS_PER_DAY, gen.statistics.as_dict()


def main() -> int:
    import openmm.app

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--pdb", default=os.path.join(os.path.dirname(openmm.app.__file__), "data", "test.pdb"))
    parser.add_argument("--md-steps", type=int, default=2000)
    parser.add_argument("--jumps", type=int, default=4)
    parser.add_argument("--stride-ns", type=float, default=1.25)
    parser.add_argument("--num-steps", type=int, default=50, help="reverse-diffusion steps per frame")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    note = f"model: {args.model}"
    model = args.model
    open_gate = False
    if args.model == "default":
        from openmm_starmd.model.checkpoint import WEIGHTS_DIR

        if not (WEIGHTS_DIR / "default.pt").is_file():
            from openmm_starmd.model.checkpoint import save_checkpoint
            from openmm_starmd.model.config import small
            from openmm_starmd.model.core import StarMDCore

            torch.manual_seed(0)
            model = os.path.join(tempfile.mkdtemp(), "small_random.pt")
            save_checkpoint(model, small(), StarMDCore(small()).net.state_dict())
            open_gate = True
            note = ("model: **randomly initialised `small`** (the shipped default weights are not installed yet); "
                    "validity gate opened to time the jump itself; its frames are unphysical, so minimisation "
                    "times are pessimistic")

    md = md_ns_per_day(args.pdb, args.md_steps, args.threads)
    print(f"plain MD: {md:.1f} ns/day")
    rows = [("plain MD (native OBC2, HMR, 4 fs)", md, None)]
    for label, relax in (("generator, no relaxation", None), ("generator + restrained minimisation", "minimize")):
        rate, stats = generator_ns_per_day(args.pdb, model, relax, args.jumps, args.stride_ns, args.threads, open_gate,
                                           args.num_steps)
        print(f"{label}: {rate:.1f} ns/day ({rate / md:.0f}x MD)  {stats['wall_s']}")
        rows.append((label, rate, stats))

    RESULTS.mkdir(exist_ok=True)
    lines = [f"# Generator vs plain MD: villin HP35, stride {args.stride_ns} ns, {args.num_steps} diffusion steps per frame",
             "", machine_info(), "", note, "",
             f"Command: `python benchmarks/generator_vs_md.py --md-steps {args.md_steps} --jumps {args.jumps} "
             f"--threads {args.threads}` (timed after one warm-up jump / 100 warm-up steps; the machine is shared, "
             "so absolute numbers are noisy).", "",
             "| propagator | ns/day | × plain MD | jumps / resamples / MD fallbacks | wall s per phase (warm-up jump + timed jumps) |",
             "|---|---:|---:|---|---|"]
    for label, rate, stats in rows:
        phases = "" if stats is None else ", ".join(f"{k} {v:.1f}" for k, v in stats["wall_s"].items() if v > 0)
        counts = "" if stats is None else f"{stats['jumps']} / {stats['resamples']} / {stats['fallbacks']}"
        lines.append(f"| {label} | {rate:,.1f} | {rate / md:,.1f} | {counts} | {phases} |")
    lines += ["", "Goal on this CPU with the shipped model: ≥ 1000× MD without relaxation, ≥ 100× with minimisation."]
    (RESULTS / "generator_vs_md.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
