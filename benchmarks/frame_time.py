"""Wall time to generate one frame (all diffusion steps) with the KV-cached core: eager PyTorch,
TorchScript, and torch.compile, for a protein of N residues.

    python benchmarks/frame_time.py [--preset small] [--num-res 35] [--steps 200] [--frames 3] [--threads 2]

Weights are random (speed does not depend on their values). Writes
benchmarks/results/frame_time_<preset>_N<N>.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402

from openmm_starmd.geometry.so3 import uniform_random_rotmat  # noqa: E402
from openmm_starmd.model import Rollout, StarMDCore, preset  # noqa: E402
from openmm_starmd.model.export import script_core  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def time_frames(core, num_res: int, steps: int, frames: int, device: str) -> list[float]:
    g = torch.Generator().manual_seed(0)
    aatype = torch.randint(0, 20, (num_res,), generator=g)
    resid = torch.arange(num_res)
    trans = torch.cumsum(0.38 * torch.nn.functional.normalize(torch.randn(num_res, 3, generator=g), dim=-1), 0)
    rots = uniform_random_rotmat([num_res], generator=g)
    r = Rollout(core, aatype, resid, 1.25, seed=0, num_steps=steps, capacity_frames=frames + 2)
    r.add_context(rots.to(device), (trans - trans.mean(0)).to(device))
    times = []
    for _ in range(frames):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        r.step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--num-res", type=int, default=35)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--modes", default="eager,script,compile")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = preset(args.preset)
    rows = ["| mode | s per frame (first) | s per frame (median of rest) | ms per diffusion step |", "|---|---:|---:|---:|"]
    for mode in args.modes.split(","):
        torch.manual_seed(0)
        core = StarMDCore(cfg).eval().to(args.device)
        if mode == "script":
            core = script_core(core)
        elif mode == "compile":
            core.net.forward_frames = torch.compile(core.net.forward_frames, dynamic=True)
        try:
            times = time_frames(core, args.num_res, args.steps, args.frames, args.device)
        except Exception as exc:  # report, do not hide, a mode that fails on this machine
            rows.append(f"| {mode} | failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]} | | |")
            continue
        rest = sorted(times[1:]) or times
        med = rest[len(rest) // 2]
        rows.append(f"| {mode} | {times[0]:.2f} | {med:.2f} | {med / args.steps * 1e3:.1f} |")
        print(rows[-1], flush=True)
    lines = [f"# Time per generated frame: preset `{args.preset}`, N = {args.num_res}, {args.steps} diffusion steps",
             "", machine_info(), f"device: {args.device}", ""] + rows
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"frame_time_{args.preset}_N{args.num_res}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
