"""The measurements of ``gpu_check.py``, one function per section.

Every section takes a :class:`Record` (it writes each figure as soon as it has it, so a section
killed at its time limit keeps what it measured), the :class:`Sizes` of the run and a deadline
(``time.monotonic()`` value) by which it stops starting new work. Timings on CUDA synchronise
the device before reading the clock.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECONDS_PER_DAY = 86400.0
# The paper's table 21: seconds for a 100 ns trajectory (80 frames at ~1.2 ns) on one H100, by residues.
PAPER_TABLE21_S = {"STAR-MD": {51: 766.3, 724: 1381.2}, "MD (OpenMM, Amber, implicit solvent)": {51: 6322.8, 724: 78451.4}}
# 51 residues: villin HP35 followed by the first 16 residues of Trp-cage (a chimera, built extended).
SEQ_51 = "LSDEDFKAVFGMTRSAFANLPLWKQQNLKKEKGLF" + "NLYIQWLKDGGPSSGR"


@dataclass
class Sizes:
    """Everything that differs between a GPU run and the CPU smoke run."""

    device: str = "cuda"
    platform: str = "CUDA"
    model_preset: str = "paper"
    residues: tuple = (51, 724)
    frames: int = 80
    steps: int = 200
    stride_ns: float = 1.25
    frame_box_s: float = 45.0  # real frames per size, then the rest is estimated
    max_real_frames: int = 10**6  # the smoke run stops earlier, so that the estimate is exercised too
    md_systems: tuple = (("51 residues", ("seq:" + SEQ_51,)),
                         ("724 residues", ("src_kinase", "src_kinase", "t4_lysozyme", "chignolin")))
    md_seconds: float = 10.0
    attention_shapes: tuple = ((51, 80, 4, 64), (724, 80, 4, 64))  # N, L, heads, head dim (paper: c_s 256 / 4 heads)
    train_presets: tuple = ("small", "paper_no_openfold")
    train_data: str = "md_data/villin"
    train_frames: int = 8
    train_crop: int = 256
    train_seconds: float = 30.0
    cuda_test_paths: tuple = ("tests",)
    md_many_systems: tuple = ()
    md_many_minutes: float = 0.0
    md_many_args: tuple = ("--chunk-ps", "100")

    @staticmethod
    def smoke(minimal: bool = False) -> "Sizes":
        """Tiny sizes on the CPU: the same code end to end in minutes (``minimal``: in seconds)."""
        return Sizes(device="cpu", platform="CPU", model_preset="tiny", residues=(7,) if minimal else (7, 14), frames=4,
                     steps=2, frame_box_s=10.0, max_real_frames=3,
                     md_systems=(("7 residues", ("seq:GSWTWEG",)),) if minimal else
                     (("7 residues", ("seq:GSWTWEG",)), ("14 residues", ("seq:GSWTWEG", "seq:GSWTWEG"))),
                     md_seconds=1.0, attention_shapes=((7, 3, 3, 8),), train_presets=("tiny",),
                     train_data="md_data/trpzip2", train_frames=3, train_crop=11, train_seconds=2.0,
                     cuda_test_paths=("tests/test_gpu_check.py",) if minimal else ("tests",),
                     md_many_args=("--chunk-ps", "1", "--frame-ps", "0.5", "--equilibration-ps", "0.4"))


class Record:
    """A section's results: a dict written to ``path`` (JSON) after every change."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.data: dict = {}

    def put(self, key: str, value) -> None:
        self.data[key] = value
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        os.replace(tmp, self.path)


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"


# --------------------------------------------------------------------------- environment
def environment(rec: Record, sizes: Sizes, deadline: float) -> None:
    """Versions, devices, OpenMM platforms (and why a plugin failed to load), flash-attn."""
    import platform as pyplatform

    import torch

    rec.put("python", pyplatform.python_version())
    rec.put("torch", torch.__version__)
    rec.put("cuda_available", torch.cuda.is_available())
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        rec.put("gpu", {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                        "multiprocessors": props.multi_processor_count, "capability": f"{props.major}.{props.minor}",
                        "torch_cuda": torch.version.cuda})
    try:
        import openmm

        names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
        rec.put("openmm", {"version": openmm.__version__, "platforms": names,
                           "plugin_load_failures": list(openmm.Platform.getPluginLoadFailures())})
    except Exception as exc:  # noqa: BLE001 - recorded, the other sections say what they cannot do
        rec.put("openmm", {"error": _error(exc)})
    try:
        import flash_attn

        rec.put("flash_attn", flash_attn.__version__)
    except Exception as exc:  # noqa: BLE001
        rec.put("flash_attn", f"not installed ({_error(exc)})")
    rec.put("cpu_count", os.cpu_count())


# --------------------------------------------------------------------------- CUDA-marked tests
def cuda_tests(rec: Record, sizes: Sizes, deadline: float, log_path: Path) -> None:
    """``pytest -m cuda`` on the repository's tests; the log goes to ``log_path``."""
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "--continue-on-collection-errors",
           *sizes.cuda_test_paths]
    rec.put("command", " ".join(cmd))
    timeout = max(5.0, deadline - time.monotonic())
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        output, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        output, rc = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or ""), None
        rec.put("timed_out_after_s", round(timeout))
    log_path.write_text(output)
    summary = [line for line in output.strip().splitlines() if " in " in line and ("passed" in line or "skipped" in line
                                                                                   or "failed" in line or "deselected" in line
                                                                                   or "no tests ran" in line)]
    rec.put("returncode", rc)
    rec.put("summary", summary[-1].strip("= ") if summary else output.strip().splitlines()[-1:] or "")
    rec.put("meaning", {0: "all CUDA tests passed", 5: "no CUDA-marked test was collected"}.get(rc, "see the log"))


# --------------------------------------------------------------------------- generator timing
def _random_protein(num_res: int, device: str, seed: int = 0):
    """aatype [N], residue_index [N], frames (rots [N, 3, 3], trans [N, 3] nm) of a compact random chain."""
    import torch

    from openmm_starmd.geometry.so3 import uniform_random_rotmat

    g = torch.Generator().manual_seed(seed)
    aatype = torch.randint(0, 20, (num_res,), generator=g)
    steps = torch.randn(num_res, 3, generator=g)
    trans = torch.cumsum(0.38 * steps / steps.norm(dim=-1, keepdim=True), 0)  # 3.8 Å Cα–Cα
    rots = uniform_random_rotmat([num_res], generator=g)
    return aatype, torch.arange(1, num_res + 1), rots.to(device), (trans - trans.mean(0)).to(device)


def _denoise_call_s(core, context: int, device: str, repeats: int = 3) -> float:
    """Seconds of one network call for the next frame with ``context`` frames in the KV cache.

    The cache beyond the frames already there is filled with random keys and values (the cost depends
    on how many cached tokens are attended to, not on their values); restores the fill afterwards."""
    import torch

    B, N = core.aatype.shape
    fill, num_frames = core.fill, core.num_frames
    for k, v in zip(core.k_caches, core.v_caches):
        k[:, :, fill:context * N].normal_()
        v[:, :, fill:context * N].normal_()
    core.fill, core.num_frames = context * N, context
    rots = torch.eye(3, device=device).expand(B, N, 3, 3).contiguous()
    trans = torch.zeros(B, N, 3, device=device)
    ls = torch.zeros(B, device=device)
    core.denoise(rots, trans, 0.5, ls)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        core.denoise(rots, trans, 0.5, ls)
    _sync(device)
    core.fill, core.num_frames = fill, num_frames
    return (time.perf_counter() - t0) / repeats


def generator(rec: Record, sizes: Sizes, deadline: float) -> None:
    """One frame and a 100 ns rollout (``frames`` × ``steps``) per size, random weights of the preset.

    Frames are generated for real until ``frame_box_s`` per size; the rest of the rollout is
    estimated from the network-call time with 1 and with ``frames`` frames in the KV cache (the
    context-dependent cost is linear in the number of cached frames)."""
    import torch

    from openmm_starmd.model import StarMDCore, preset

    cfg = preset(sizes.model_preset)
    torch.manual_seed(0)
    core = StarMDCore(cfg).eval().to(sizes.device)
    rec.put("preset", sizes.model_preset)
    rec.put("parameters", sum(p.numel() for p in core.parameters()))
    rec.put("weights", "random (the cost does not depend on their values); OpenFold inputs random where the preset takes them")
    rec.put("frames", sizes.frames)
    rec.put("steps", sizes.steps)
    rec.put("stride_ns", sizes.stride_ns)
    rows = []
    for num_res in sizes.residues:
        row = {"residues": num_res}
        rows.append(row)
        if time.monotonic() > deadline:
            row["error"] = "not started: the section's time was used up"
            rec.put("sizes", rows)
            continue
        try:
            _time_rollout(core, cfg, num_res, sizes, deadline, row, lambda: rec.put("sizes", rows))
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory at the larger size: keep the smaller one
            row["error"] = _error(exc)
        rec.put("sizes", rows)
        if sizes.device == "cuda":
            row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            torch.cuda.reset_peak_memory_stats()
            torch.cuda.empty_cache()
        rec.put("sizes", rows)


def _time_rollout(core, cfg, num_res: int, sizes: Sizes, deadline: float, row: dict, save) -> None:
    import torch

    from openmm_starmd.model.rollout import Rollout

    aatype, resid, rots, trans = _random_protein(num_res, sizes.device)
    extra = {}
    if cfg.openfold_single_dim:
        g = torch.Generator().manual_seed(1)
        extra = {"openfold_single": torch.randn(1, num_res, cfg.openfold_single_dim, generator=g).to(sizes.device),
                 "openfold_pair": torch.randn(1, num_res, num_res, cfg.openfold_pair_dim, generator=g).to(sizes.device)}
    rollout = Rollout(core, aatype, resid, sizes.stride_ns, num_steps=sizes.steps, seed=0,
                      capacity_frames=sizes.frames + 2, **extra)
    rollout.add_context(rots, trans)
    box_end = min(deadline, time.monotonic() + sizes.frame_box_s)
    per_frame = []
    with torch.no_grad():
        while len(per_frame) < min(sizes.frames, sizes.max_real_frames) and time.monotonic() < box_end:
            _sync(sizes.device)
            t0 = time.perf_counter()
            rollout.step()
            _sync(sizes.device)
            per_frame.append(time.perf_counter() - t0)
            row["measured_frame_s"] = [round(s, 4) for s in per_frame]
            save()
    row["first_frame_s_with_warmup"] = round(per_frame[0], 4)
    if len(per_frame) > 1:
        row["one_frame_s"] = round(per_frame[1], 4)
    if len(per_frame) == sizes.frames:
        row["rollout_s"] = round(sum(per_frame), 2)
        row["rollout_how"] = f"measured: all {sizes.frames} frames"
        save()
        return
    core = rollout.core
    with torch.no_grad():
        call_1 = _denoise_call_s(core, 1, sizes.device)
        call_full = _denoise_call_s(core, sizes.frames, sizes.device)
    row["network_call_s"] = {"context_1": round(call_1, 5), f"context_{sizes.frames}": round(call_full, 5)}
    # Frame k (0-based) is generated with k + 1 cached frames: steps network calls plus one clean pass to
    # append it, call time linear in the cached frames, plus the sampler's own work per frame (reverse
    # steps, prior, superposition), taken from the frames measured after the warm-up one.
    slope = (call_full - call_1) / max(sizes.frames - 1, 1)

    def calls_s(context: int) -> float:
        return (sizes.steps + 1) * (call_1 + slope * (context - 1))

    measured = per_frame[1:]
    overhead = max(0.0, sum(t - calls_s(k + 2) for k, t in enumerate(measured)) / len(measured)) if measured else 0.0
    row["sampler_overhead_s_per_frame"] = round(overhead, 4)
    row["rollout_s"] = round(sum(calls_s(L) + overhead for L in range(1, sizes.frames + 1)), 2)
    rest = sum(calls_s(L) + overhead for L in range(len(per_frame) + 1, sizes.frames + 1))
    row["rollout_s_measured_then_estimated"] = round(calls_s(1) + overhead + sum(measured) + rest, 2)
    row["rollout_how"] = (f"estimated: {len(per_frame)} of {sizes.frames} frames generated in the time box; "
                          f"(steps + 1) network calls per frame, linear in the cached frames, plus the measured sampler overhead")
    save()


# --------------------------------------------------------------------------- plain MD on the platform
def _prepared(name: str, cache: dict):
    from openmm_starmd.data.structures import get_structure
    from openmm_starmd.openmm.md_setup import prepare_structure

    if name not in cache:
        cache[name] = prepare_structure(get_structure(name))
    return cache[name]


def build_tiled(names, platform: str, seed: int = 1):
    """Minimised implicit-solvent Simulation of the named structures side by side (1 nm gaps along x),
    each prepared as ``starmd simulate`` prepares it; one structure gives that structure alone."""
    import numpy as np
    from openmm import app, unit

    from openmm_starmd.openmm.md_setup import MDConfig, create_implicit_system, create_simulation

    cache: dict = {}
    modeller, x_nm = None, 0.0
    for name in names:
        topology, positions = _prepared(name, cache)
        xyz = np.asarray(positions.value_in_unit(unit.nanometer))
        shift = np.array([x_nm - xyz[:, 0].min(), -xyz[:, 1].mean(), -xyz[:, 2].mean()])
        placed = (xyz + shift) * unit.nanometer
        if modeller is None:
            modeller = app.Modeller(topology, placed)
        else:
            modeller.add(topology, placed)
        x_nm += float(np.ptp(xyz[:, 0])) + 1.0
    config = MDConfig(platform=platform, threads=1)
    simulation = create_simulation(modeller.topology, create_implicit_system(modeller.topology, config), config, seed)
    simulation.context.setPositions(modeller.positions)
    simulation.minimizeEnergy(maxIterations=200)
    return simulation


def md(rec: Record, sizes: Sizes, deadline: float) -> None:
    """ns/day of plain OpenMM MD (Amber ff14SB, native OBC2, HMR, 4 fs) of each system on the platform."""
    rows = []
    for label, names in sizes.md_systems:
        row = {"system": label, "structures": list(names)}
        rows.append(row)
        if time.monotonic() > deadline:
            row["error"] = "not started: the section's time was used up"
            rec.put("systems", rows)
            continue
        try:
            t0 = time.perf_counter()
            simulation = build_tiled(names, sizes.platform)
            row["residues"] = simulation.topology.getNumResidues()
            row["atoms"] = simulation.topology.getNumAtoms()
            row["setup_s"] = round(time.perf_counter() - t0, 1)
            row["platform"] = simulation.context.getPlatform().getName()
            seconds = min(sizes.md_seconds, max(1.0, deadline - time.monotonic() - 2.0))
            simulation.step(100)  # warm-up
            dt_ps = simulation.integrator.getStepSize()._value
            steps, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                simulation.step(100)
                steps += 100
            simulation.context.getState(getEnergy=True)  # waits for the device
            wall = time.perf_counter() - t0
            row["steps"], row["wall_s"] = steps, round(wall, 2)
            row["ns_per_day"] = round(steps * dt_ps / 1000.0 / wall * SECONDS_PER_DAY, 1)
            row["s_per_100ns"] = round(100.0 / row["ns_per_day"] * SECONDS_PER_DAY, 1)
        except Exception as exc:  # noqa: BLE001
            row["error"] = _error(exc)
        rec.put("systems", rows)


# --------------------------------------------------------------------------- attention kernels
def attention(rec: Record, sizes: Sizes, deadline: float) -> None:
    """One frame's queries against L·N cached keys, as in a space×time layer: torch SDPA (with the
    additive pair bias the model uses, and without it, per backend) and flash-attn where installed."""
    import torch
    import torch.nn.functional as F

    try:
        from flash_attn import flash_attn_func
    except Exception as exc:  # noqa: BLE001
        flash_attn_func = None
        rec.put("flash_attn", f"not installed ({_error(exc)})")
    backends = {}
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        backends = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
    except Exception as exc:  # noqa: BLE001
        rec.put("sdpa_backends", f"unavailable ({_error(exc)})")
    rows = []
    for N, L, H, D in sizes.attention_shapes:
        if time.monotonic() > deadline:
            break
        row = {"N": N, "L": L, "heads": H, "head_dim": D, "ms": {}, "max_abs_diff_vs_math_bf16": {}}
        rows.append(row)
        g = torch.Generator().manual_seed(0)
        q32, k32, v32 = (torch.randn(1, H, n, D, generator=g).to(sizes.device) for n in (N, L * N, L * N))
        bias = torch.randn(1, H, N, L * N, generator=g).to(sizes.device)
        low = torch.bfloat16
        q, k, v = q32.to(low), k32.to(low), v32.to(low)
        variants = {"sdpa fp32 + pair bias (the model's call)": lambda: F.scaled_dot_product_attention(q32, k32, v32, attn_mask=bias),
                    "sdpa fp32, no bias": lambda: F.scaled_dot_product_attention(q32, k32, v32),
                    "sdpa bf16, no bias (default backend)": lambda: F.scaled_dot_product_attention(q, k, v)}
        for name, backend in backends.items():
            variants[f"sdpa bf16, no bias, {name} backend"] = (
                lambda backend=backend: _with_backend(sdpa_kernel, backend, lambda: F.scaled_dot_product_attention(q, k, v)))
        if flash_attn_func is not None and sizes.device == "cuda":
            variants["flash-attn bf16, no bias"] = lambda: flash_attn_func(q.transpose(1, 2), k.transpose(1, 2),
                                                                           v.transpose(1, 2)).transpose(1, 2)
        reference = None
        if "math" in backends:
            try:
                reference = _with_backend(sdpa_kernel, backends["math"], lambda: F.scaled_dot_product_attention(q, k, v)).float()
            except Exception:  # noqa: BLE001
                reference = None
        for name, fn in variants.items():
            if time.monotonic() > deadline:
                row["ms"][name] = "not run: time used up"
                continue
            try:
                row["ms"][name] = round(_time_call(fn, sizes.device) * 1e3, 4)
                if reference is not None and "bf16" in name:
                    row["max_abs_diff_vs_math_bf16"][name] = round(float((fn().float() - reference).abs().max()), 5)
            except Exception as exc:  # noqa: BLE001 - a backend that does not take these shapes on this device
                row["ms"][name] = f"failed: {_error(exc)}"
            rec.put("shapes", rows)
        rec.put("shapes", rows)


def _with_backend(sdpa_kernel, backend, fn):
    with sdpa_kernel(backend):
        return fn()


def _time_call(fn, device: str, min_s: float = 0.2, max_repeats: int = 50) -> float:
    for _ in range(2):
        fn()
    _sync(device)
    n, t0 = 0, time.perf_counter()
    while n < max_repeats and (n < 3 or time.perf_counter() - t0 < min_s):
        fn()
        n += 1
        _sync(device)
    return (time.perf_counter() - t0) / n


# --------------------------------------------------------------------------- training speed
def training(rec: Record, sizes: Sizes, deadline: float) -> None:
    """Optimiser steps per second per preset on the training data (bf16 on CUDA)."""
    import torch

    from openmm_starmd.training.trainer import TrainConfig, Trainer

    rows = []
    for name in sizes.train_presets:
        row = {"preset": name, "data": sizes.train_data, "batch_size": 4, "frames": sizes.train_frames}
        rows.append(row)
        if time.monotonic() > deadline:
            row["error"] = "not started: the section's time was used up"
            rec.put("presets", rows)
            continue
        try:
            with tempfile.TemporaryDirectory() as tmp:
                cfg = TrainConfig(data=ROOT / sizes.train_data, out=Path(tmp) / "m.pt", preset=name, steps=100000,
                                  batch_size=4, num_frames=sizes.train_frames, crop_residues=sizes.train_crop,
                                  warmup_steps=1, checkpoint_every=10**9, plot_every=10**9, progress=False,
                                  device=sizes.device, bf16=sizes.device == "cuda", seed=0)
                trainer = Trainer(cfg)
                trainer.train_step()  # warm-up (allocations, kernels)
                _sync(sizes.device)
                box_end = min(deadline, time.monotonic() + sizes.train_seconds)
                steps, t0 = 0, time.perf_counter()
                while steps < 2 or time.monotonic() < box_end:
                    record = trainer.train_step()
                    steps += 1
                _sync(sizes.device)
                wall = time.perf_counter() - t0
                row.update({"steps": steps, "wall_s": round(wall, 2), "steps_per_s": round(steps / wall, 3),
                            "residues": record["residues"], "last_total_loss": round(record["total"], 4),
                            "bf16": cfg.bf16})
                if sizes.device == "cuda":
                    row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
                    torch.cuda.reset_peak_memory_stats()
                del trainer
        except Exception as exc:  # noqa: BLE001
            row["error"] = _error(exc)
        rec.put("presets", rows)


# --------------------------------------------------------------------------- many MD runs side by side
def md_many(rec: Record, sizes: Sizes, deadline: float, out: Path) -> None:
    """``starmd simulate`` of each training system in its own process, side by side, until the minutes
    are up; the trajectories are packed into ``out/md_many.tar.gz``."""
    folder = out / "md_many"
    folder.mkdir(parents=True, exist_ok=True)
    minutes = sizes.md_many_minutes
    procs = []
    for name in sizes.md_many_systems:
        cmd = [sys.executable, "-m", "openmm_starmd.cli", "simulate", name, "--out", str(folder), "--ns", "1000",
               "--platform", sizes.platform, "--max-hours", f"{minutes / 60.0:.6f}", *sizes.md_many_args]
        log = open(folder / f"{name.replace(':', '_')}.log", "w")
        procs.append((name, subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True), log))
    rec.put("command", " ".join(cmd[:4] + ["NAME"] + cmd[5:]) if procs else "")
    stop_at = min(deadline, time.monotonic() + minutes * 60.0 + 5.0)
    while time.monotonic() < stop_at and any(p.poll() is None for _, p, _ in procs):
        time.sleep(1.0)
    for _, p, _ in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for name, p, log in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        log.close()
    rows = []
    for name, p, _ in procs:
        stem = name.split(":", 1)[-1]  # seq:SEQ is folder pep_SEQ, bioemu:NAME is bioemu_NAME
        sub = next((d for d in folder.iterdir() if d.is_dir() and d.name.endswith(stem)), None)
        meta = {}
        if sub is not None and (sub / f"{sub.name}.json").is_file():
            meta = json.loads((sub / f"{sub.name}.json").read_text())
        chunks = sorted(sub.glob("*.xtc")) if sub is not None else []
        replicas = meta.get("replicas", {})
        rows.append({"system": name, "returncode": p.returncode, "residues": meta.get("n_residues"), "chunks": len(chunks),
                     "ns": round(sum(r.get("ns", 0.0) for r in replicas.values()), 4),
                     "ns_per_day": [r.get("ns_per_day_by_platform") for r in replicas.values()]})
    rec.put("minutes", minutes)
    rec.put("systems", rows)
    archive = out / "md_many.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="md_many")
    rec.put("archive", archive.name)
    rec.put("archive_mib", round(archive.stat().st_size / 2**20, 2))
    _remove_tree(folder)


def _remove_tree(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def ratio_rows(generator_rec: dict, md_rec: dict) -> list[dict]:
    """Generator vs MD and vs the paper's table 21, matched by residues."""
    md_by_res = {r.get("residues"): r for r in md_rec.get("systems", []) if "ns_per_day" in r}
    rows = []
    for g in generator_rec.get("sizes", []):
        if "rollout_s" not in g:
            continue
        n = g["residues"]
        row = {"residues": n, "rollout_s": g["rollout_s"], "rollout_how": g.get("rollout_how", ""),
               "paper_star_md_s": PAPER_TABLE21_S["STAR-MD"].get(n),
               "paper_md_s": PAPER_TABLE21_S["MD (OpenMM, Amber, implicit solvent)"].get(n)}
        md_row = md_by_res.get(n)
        if md_row:
            row["md_s_per_100ns"] = md_row["s_per_100ns"]
            row["generator_over_md"] = round(md_row["s_per_100ns"] / g["rollout_s"], 2) if g["rollout_s"] > 0 else math.nan
        if row["paper_star_md_s"]:
            row["paper_over_this"] = round(row["paper_star_md_s"] / g["rollout_s"], 2)
        rows.append(row)
    return rows
