"""KV-cache memory of STAR-MD (singles only) beside a pair cache, and time per frame vs context length L.

Memory: the core's caches are allocated on torch's ``meta`` device (shapes and dtypes, no storage),
so the byte counts are read from the real tensor shapes for sizes that would not fit in RAM.
Timing: one denoiser call (one diffusion step) of the frame being generated with L frames in the
cache (filled with random keys/values: the cost depends on their number, not their values), for the ``small`` preset on this machine; a least-squares line
time = a + b·L is fitted and the log-log slope of the L-dependent part reported.

    python benchmarks/kv_cache_memory.py [--preset paper] [--quick]
    python benchmarks/kv_cache_memory.py --replot     # redraw the figure from kv_cache_time_vs_L.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402

from openmm_starmd.model import StarMDCore, preset  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def cache_bytes_meta(cfg, num_res: int, num_frames: int) -> int:
    """Bytes of the K and V caches of every S×T layer, from tensors allocated on the meta device."""
    shape = [1, cfg.st_heads, num_frames * num_res, cfg.st_head_dim]
    tensors = [torch.empty(shape, device="meta", dtype=torch.float32) for _ in range(2 * cfg.st_layers)]
    return sum(t.numel() * t.element_size() for t in tensors)


def pair_cache_bytes(cfg, num_res: int, num_frames: int) -> int:
    """Same cache if pair tokens were cached too (ConfRover-style): (N + N²)·L·d per K and V per layer."""
    return 2 * cfg.st_layers * (num_res + num_res**2) * num_frames * cfg.c_s * 4


def memory_table(cfg) -> list[str]:
    rows = ["| N | L | singles cache (all layers, K+V) | pair cache estimate | ratio |", "|---:|---:|---:|---:|---:|"]
    for n in (50, 200, 500, 1000):
        for L in (80, 400, 1000):
            s = cache_bytes_meta(cfg, n, L)
            p = pair_cache_bytes(cfg, n, L)
            rows.append(f"| {n} | {L} | {s / 2**20:,.1f} MiB | {p / 2**30:,.1f} GiB | {p / s:,.0f}× |")
    per_layer = cache_bytes_meta(cfg, 200, 32) / (2 * cfg.st_layers)
    per_layer_pair = (200 + 200**2) * 32 * cfg.c_s * 4
    rows.append("")
    rows.append(f"Paper check (one layer, one of K/V, N=200, L=32, d={cfg.c_s}, fp32): singles {per_layer / 1e6:.2f} MB "
                f"vs pairs {per_layer_pair / 1e9:.2f} GB = {per_layer_pair / per_layer:.0f}× "
                "(paper: 6.6 MB vs 1.3 GB, '196×' from its rounded figures; exact ratio N+1 = 201).")
    return rows


def time_vs_length(cfg, num_res: int, lengths: list[int], repeats: int) -> tuple[np.ndarray, np.ndarray]:
    from openmm_starmd.geometry.so3 import uniform_random_rotmat

    torch.manual_seed(0)
    core = StarMDCore(cfg).eval()
    aatype = torch.randint(0, 20, (1, num_res))
    resid = torch.arange(num_res)[None]
    rots = uniform_random_rotmat([1, num_res])
    trans = torch.randn(1, num_res, 3)
    ls = torch.zeros(1)
    core.start(aatype, resid, torch.zeros_like(resid), max(lengths) + 1)
    core.append_frame(rots, trans, ls, 0.0)
    times = []
    for L in lengths:
        # The cost of a denoiser call depends on how many cached tokens it attends to, not on their
        # values: fill the cache with random keys/values instead of running L clean passes.
        for k, v in zip(core.k_caches, core.v_caches):
            k[:, :, num_res:L * num_res].normal_()
            v[:, :, num_res:L * num_res].normal_()
        core.fill, core.num_frames = L * num_res, L
        core.denoise(rots, trans, 0.5, ls)  # warm-up
        t0 = time.perf_counter()
        for _ in range(repeats):
            core.denoise(rots, trans, 0.5, ls)
        times.append((time.perf_counter() - t0) / repeats)
        print(f"L = {L}: {times[-1] * 1e3:.2f} ms per diffusion step", flush=True)
    return np.array(lengths, dtype=float), np.array(times)


def plot(res: dict, path: Path) -> None:
    """Time per denoiser call vs L with its least-squares line, from the dict stored in kv_cache_time_vs_L.json."""
    from plotting import new_figure, save

    L, t_ms = np.asarray(res["L"], dtype=float), np.asarray(res["s_per_step"]) * 1e3
    b, a = np.polyfit(L, t_ms, 1)
    fig = new_figure(5.5, 3.9)
    ax = fig.subplots()
    ax.plot(L, t_ms, "o", color="black", label="measured")
    ax.plot(L, a + b * L, "-", color="tab:orange", label=f"least-squares line: {a:.0f} ms + {b * 1e3:.0f} µs per cached frame")
    ax.set_xlabel("cached context frames L")
    ax.set_ylabel("ms per reverse-diffusion step")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Denoiser call vs context length: `{res['preset']}`, N = {res['num_res']} residues", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    save(fig, path, res["date"], res["weights"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small", help="model preset for the timing (memory uses 'paper' sizes too)")
    ap.add_argument("--num-res", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="fewer lengths and repeats")
    ap.add_argument("--replot", action="store_true", help="redraw kv_cache_time_vs_L.png from its JSON without measuring")
    args = ap.parse_args()
    if args.replot:
        plot(json.loads((RESULTS / "kv_cache_time_vs_L.json").read_text()), RESULTS / "kv_cache_time_vs_L.png")
        return
    torch.set_num_threads(max(1, torch.get_num_threads()))
    lines = [f"# KV-cache memory and time per frame vs L", "", machine_info(), ""]
    for name in ("paper", args.preset):
        cfg = preset(name)
        lines += [f"## Cache memory, preset `{name}` ({cfg.st_layers} S×T layers, d = {cfg.c_s})", ""] + memory_table(cfg) + [""]
    lengths = [1, 50, 100, 200] if args.quick else [1, 100, 200, 400, 600, 800, 1000]
    repeats = 3 if args.quick else 5
    L, t = time_vs_length(preset(args.preset), args.num_res, lengths, repeats)
    b, a = np.polyfit(L, t, 1)
    pred = a + b * L
    r2 = 1 - ((t - pred) ** 2).sum() / ((t - t.mean()) ** 2).sum()
    extra = np.clip(t - t[0], 1e-12, None)
    mask = L > L[0]
    slope = np.polyfit(np.log(L[mask]), np.log(extra[mask]), 1)[0] if mask.sum() >= 2 else float("nan")
    lines += [f"## Time per denoiser call vs cached frames L (preset `{args.preset}`, N = {args.num_res})", "",
              "| L | ms per diffusion step | ms per frame at 200 steps |", "|---:|---:|---:|"]
    lines += [f"| {int(l)} | {x * 1e3:.2f} | {x * 200 * 1e3:.0f} |" for l, x in zip(L, t)]
    lines += ["", f"Linear fit: t = {a * 1e3:.2f} ms + {b * 1e6:.2f} µs · L (R² = {r2:.3f}); "
              f"log-log slope of the L-dependent part t(L) − t(1): {slope:.2f} (1 = linear)."]
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "kv_cache_memory.md"
    out.write_text("\n".join(lines) + "\n")
    res = {"date": time.strftime("%Y-%m-%d", time.gmtime()), "weights": f"random ({args.preset} preset)",
           "preset": args.preset, "num_res": args.num_res, "machine": machine_info(), "L": L.tolist(),
           "s_per_step": t.tolist()}
    (RESULTS / "kv_cache_time_vs_L.json").write_text(json.dumps(res, indent=1) + "\n")
    plot(res, RESULTS / "kv_cache_time_vs_L.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
