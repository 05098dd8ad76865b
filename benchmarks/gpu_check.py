"""A GPU check in one command: CUDA tests, generator and MD speed against the paper's table 21,
FlashAttention vs SDPA, training speed, optionally many MD runs side by side.

    python benchmarks/gpu_check.py --out DIR                  # on a GPU, within --budget-s (480 s)
    python benchmarks/gpu_check.py --out DIR --md-minutes 2   # plus 2 min of MD of the training systems
    python benchmarks/gpu_check.py --smoke --out DIR          # the same code on the CPU at tiny sizes

Sections (each in its own process with its own time limit, so a crash, an out-of-memory error or a
hang loses that section only; whatever it measured before is kept):

* ``environment``  torch, GPU, OpenMM platforms and plugin load failures, flash-attn;
* ``cuda_tests``   ``pytest -m cuda`` (log in DIR/cuda_tests.log);
* ``generator``    one frame and a 100 ns rollout (80 frames × 200 steps at 1.25 ns, ``paper``
                   preset, random weights) at 51 and 724 residues; frames are generated for real
                   until the time box, the rest is estimated from the network-call time with 1 and
                   80 cached frames;
* ``md``           plain OpenMM MD (Amber ff14SB, native OBC2, HMR, 4 fs) on the CUDA platform of a
                   51-residue chain (villin HP35 + Trp-cage 1-16, built extended) and of 724 residues
                   (Src kinase ×2, T4 lysozyme, chignolin side by side: no single offline structure is
                   that large);
* ``attention``    one frame's queries against 80 frames of cached keys: SDPA with the model's pair
                   bias, SDPA per backend, flash-attn where installed;
* ``training``     optimiser steps per second, ``small`` and ``paper_no_openfold`` presets
                   (no OpenFold features exist for the training data), bf16;
* ``md_many``      (``--md-minutes`` > 0) ``starmd simulate`` of each training system in its own
                   process side by side; trajectories in DIR/md_many.tar.gz.

Writes DIR/gpu_check.md (report) and DIR/gpu_check.json (every figure).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_check_sections as sections  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ORDER = ("environment", "cuda_tests", "generator", "md", "attention", "training", "md_many")
# Time limit of each section on a GPU (s); the smoke run uses SMOKE_BOX_S.
BOX_S = {"environment": 30, "cuda_tests": 75, "generator": 130, "md": 90, "attention": 40, "training": 90}
SMOKE_BOX_S = {"environment": 30, "cuda_tests": 120, "generator": 60, "md": 60, "attention": 30, "training": 45}
PROCESS_START_S = 8.0  # importing torch and OpenMM in a fresh process, before the section's clock starts


def md_many_systems() -> tuple:
    """The training systems with MD in md_data/, as ``starmd simulate`` names them (folder pep_SEQ is
    seq:SEQ, bioemu_NAME is bioemu:NAME; the latter need the bioemu-benchmarks package)."""
    folder = ROOT / "md_data"
    names = sorted(d.name for d in folder.iterdir() if d.is_dir()) if folder.is_dir() else []
    prefixes = {"pep_": "seq:", "bioemu_": "bioemu:"}
    return tuple(next((new + n[len(old):] for old, new in prefixes.items() if n.startswith(old)), n) for n in names)


def sizes_for(args) -> sections.Sizes:
    sizes = sections.Sizes.smoke(args.minimal) if args.smoke else sections.Sizes()
    sizes.md_many_minutes = args.md_minutes
    if args.md_minutes > 0:
        sizes.md_many_systems = tuple(args.md_systems) if args.md_systems else (
            ("trpzip2",) if args.smoke else md_many_systems())
    return sizes


def run_section(name: str, sizes: sections.Sizes, work: Path, out: Path) -> None:
    """Run one section in this process (the child side of :func:`run_isolated`)."""
    rec = sections.Record(work / f"{name}.json")
    deadline = time.monotonic() + float(os.environ.get("GPU_CHECK_BOX_S", "60"))
    if name == "cuda_tests":
        sections.cuda_tests(rec, sizes, deadline, out / "cuda_tests.log")
    elif name == "md_many":
        sections.md_many(rec, sizes, deadline, out)
    else:
        getattr(sections, name)(rec, sizes, deadline)


def run_isolated(name: str, argv: list[str], box_s: float, work: Path) -> dict:
    """Run a section in a child process with a hard limit; returns its record plus status and wall time."""
    env = dict(os.environ, GPU_CHECK_BOX_S=str(box_s), PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--section", name, "--work", str(work)]
    t0 = time.monotonic()
    log = work / f"{name}.log"
    with open(log, "w") as f:
        try:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=box_s + PROCESS_START_S + 15, env=env,
                                cwd=ROOT).returncode
            status = "ok" if rc == 0 else f"failed (exit code {rc})"
        except subprocess.TimeoutExpired:
            status = f"timed out after {box_s + PROCESS_START_S + 15:.0f} s (partial results kept)"
    path = work / f"{name}.json"
    result = json.loads(path.read_text()) if path.is_file() else {}
    result["status"] = status
    result["wall_s"] = round(time.monotonic() - t0, 1)
    if status != "ok":
        result["log_tail"] = log.read_text()[-1500:]
    return result


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder of gpu_check.md and gpu_check.json")
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny sizes: checks the code end to end in < 5 min")
    ap.add_argument("--minimal", action="store_true", help="with --smoke: the smallest sizes, one test file (seconds)")
    ap.add_argument("--budget-s", type=float, default=480.0, help="wall seconds for all sections (default 480)")
    ap.add_argument("--md-minutes", type=float, default=0.0, help="minutes of MD of many training systems side by side (default 0: off)")
    ap.add_argument("--md-systems", nargs="+", help="systems for --md-minutes (default: every system in md_data/)")
    ap.add_argument("--sections", nargs="+", choices=ORDER, help="run only these sections")
    ap.add_argument("--section", choices=ORDER, help=argparse.SUPPRESS)  # child process: run one section
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.minimal and not args.smoke:
        raise ValueError("--minimal only applies to --smoke")
    if args.budget_s <= 0 or args.md_minutes < 0:
        raise ValueError(f"--budget-s must be > 0 and --md-minutes >= 0, got {args.budget_s} and {args.md_minutes}")
    sizes = sizes_for(args)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.section:
        run_section(args.section, sizes, args.work, args.out.resolve())
        return 0
    wanted = [s for s in ORDER if (args.sections is None or s in args.sections) and (s != "md_many" or args.md_minutes > 0)]
    boxes = dict(SMOKE_BOX_S if args.smoke else BOX_S, md_many=args.md_minutes * 60.0 + 30.0)
    started = time.monotonic()
    report = {"date": datetime.date.today().isoformat(), "command": "python benchmarks/gpu_check.py " + " ".join(argv),
              "mode": "smoke (CPU, tiny sizes)" if args.smoke else "GPU", "budget_s": args.budget_s, "sections": {}}
    child_argv = (["--out", str(args.out.resolve()), "--md-minutes", str(args.md_minutes)]
                  + (["--smoke"] if args.smoke else []) + (["--minimal"] if args.minimal else [])
                  + (["--md-systems", *args.md_systems] if args.md_systems else []))
    with tempfile.TemporaryDirectory() as tmp:
        for name in wanted:
            left = args.budget_s - (time.monotonic() - started)
            if name != "md_many" and left < 15:
                report["sections"][name] = {"status": f"skipped: {left:.0f} s of the budget left"}
                continue
            box = boxes[name] if name == "md_many" else min(boxes[name], left - PROCESS_START_S)
            print(f"[gpu_check] {name} (limit {box:.0f} s)", flush=True)
            report["sections"][name] = run_isolated(name, child_argv, box, Path(tmp))
            print(f"[gpu_check] {name}: {report['sections'][name]['status']} in {report['sections'][name]['wall_s']} s", flush=True)
            write(report, sizes, args.out)
    report["total_s"] = round(time.monotonic() - started, 1)
    write(report, sizes, args.out)
    print((args.out / "gpu_check.md").read_text())
    return 0


def write(report: dict, sizes: sections.Sizes, out: Path) -> None:
    from gpu_check_report import markdown

    s = report["sections"]
    report["generator_vs_md"] = sections.ratio_rows(s.get("generator", {}), s.get("md", {}))
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "gpu_check.md").write_text(markdown(report, sizes))


if __name__ == "__main__":
    raise SystemExit(main())
