"""Seconds per 50-step villin sample as the Generator draws it, by torch thread count and core kind.

    python benchmarks/sample_time.py [--model default] [--threads 1 2] [--samples 4] [--num-steps 50]
                                     [--busy 0 1] [--out benchmarks/results/sample_time.md]

Each setting runs in a fresh Python process (``torch.set_num_threads`` cannot be undone inside a
process once its OpenMP pool exists): villin (``openmm/app/data/test.pdb``) is coarse-grained as
the Generator does it, a :class:`~openmm_starmd.model.rollout.Rollout` with the given weights and
the Generator's defaults (noise scale 0.5) is started from it, one sample warms up, then
``--samples`` samples are timed (wall and process CPU seconds). ``--busy K`` starts K
single-threaded busy loops of this script beside the measurement, to reproduce a machine loaded by
other jobs on purpose; the load average before each setting is recorded as well, since other
users' jobs load a shared machine too.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MODES = ("eager", "script")


def _busy_loop(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x += 1


def measure(model: str, mode: str, threads: int, samples: int, num_steps: int) -> dict:
    """Per-sample wall and CPU seconds in this process (call once per process)."""
    import torch
    from openmm import app

    from openmm_starmd.model.checkpoint import load_model
    from openmm_starmd.model.rollout import Rollout
    from openmm_starmd.openmm.coarse_grain import map_topology
    from openmm_starmd.openmm.rebuild import coarse_grain

    torch.set_num_threads(threads)
    pdb = app.PDBFile(os.path.join(os.path.dirname(app.__file__), "data", "test.pdb"))
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.delete([r for r in modeller.topology.residues() if r.name in ("HOH", "Cl", "CL", "NA", "Na")])
    import numpy as np
    from openmm import unit

    xyz = np.asarray(modeller.getPositions().value_in_unit(unit.nanometer))
    pmap = map_topology(modeller.topology, xyz)
    frame = coarse_grain(pmap, xyz)
    t0 = time.perf_counter()
    core = load_model(model, device="cpu", scripted=(mode == "script"))
    load_s = time.perf_counter() - t0
    rollout = Rollout(core, pmap.aatype, pmap.residue_index, 0.05, seed=1, num_steps=num_steps, noise_scale=0.5,
                      chain_index=pmap.chain_index, capacity_frames=samples + 4)
    rollout.add_context(frame.rots, frame.trans)
    wall, cpu, warmup_s = [], [], 0.0
    for k in range(samples + 1):
        w0, c0 = time.perf_counter(), time.process_time()
        sampled = rollout.sample(attempt=0)
        w1, c1 = time.perf_counter(), time.process_time()
        rollout.accept(sampled)
        if k == 0:  # the first sample warms up (TorchScript profiles and optimises its graph on the first calls)
            warmup_s = w1 - w0
        else:
            wall.append(w1 - w0)
            cpu.append(c1 - c0)
    return {"mode": mode, "threads": threads, "num_steps": num_steps, "load_s": load_s, "warmup_s": warmup_s,
            "wall_s": wall, "cpu_s": cpu, "median_wall_s": statistics.median(wall), "median_cpu_s": statistics.median(cpu)}


def run_setting(model: str, mode: str, threads: int, samples: int, num_steps: int, busy: int) -> dict:
    """One setting in a child process, with ``busy`` busy loops beside it."""
    stop_at = time.time() + 3600.0
    loops = [multiprocessing.Process(target=_busy_loop, args=(stop_at,), daemon=True) for _ in range(busy)]
    for p in loops:
        p.start()
    try:
        with open("/proc/loadavg") as f:
            load = f.read().split()[0]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        cmd = [sys.executable, __file__, "--worker", "--model", model, "--modes", mode, "--threads", str(threads),
               "--samples", str(samples), "--num-steps", str(num_steps)]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
    finally:
        for p in loops:
            p.terminate()
            p.join()
    result.update(busy_loops=busy, load_average_before=float(load))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--busy", nargs="+", type=int, default=[0], help="busy loops started beside each setting")
    parser.add_argument("--samples", type=int, default=4, help="timed samples per setting (after one warm-up)")
    parser.add_argument("--num-steps", type=int, default=50)
    parser.add_argument("--out", type=Path, default=RESULTS / "sample_time.md")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args.model, args.modes[0], args.threads[0], args.samples, args.num_steps)))
        return 0
    command = "python benchmarks/sample_time.py " + " ".join(sys.argv[1:] if argv is None else argv)
    rows = []
    for busy in args.busy:
        for mode in args.modes:
            for threads in args.threads:
                r = run_setting(args.model, mode, threads, args.samples, args.num_steps, busy)
                rows.append(r)
                print(f"busy {busy} {mode} threads {threads}: median {r['median_wall_s']:.2f} s wall, "
                      f"{r['median_cpu_s']:.2f} s CPU per sample (load {r['load_average_before']})", flush=True)
    lines = [f"# Seconds per {args.num_steps}-step villin sample (model `{args.model}`, noise scale 0.5)", "",
             f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. {machine_info()}.", "",
             f"Command: `{command}`", "",
             "| busy loops beside | core | torch threads | median s per sample (wall) | CPU s per sample | all wall s | "
             "load average before | load s | warm-up s |",
             "|---:|---|---:|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['busy_loops']} | {r['mode']} | {r['threads']} | {r['median_wall_s']:.2f} | "
                     f"{r['median_cpu_s']:.2f} | {', '.join(f'{w:.2f}' for w in r['wall_s'])} | "
                     f"{r['load_average_before']:.2f} | {r['load_s']:.1f} | {r['warmup_s']:.1f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps({"machine": machine_info(), "command": command, "rows": rows},
                                                        indent=1) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
