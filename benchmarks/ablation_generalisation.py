"""Ablation of the inputs that decide generalisation to unseen proteins (one row per change).

Every row trains the same number of steps on the training systems under ``--data`` (the
validation proteins of ``--split`` held out), from the same seed, and is then scored on the
validation proteins with raw rollouts (gate open, no resampling, no relaxation; see
``openmm_starmd.training.validation``). Resumable: a finished row's checkpoint and score are
reused; a row whose training was interrupted continues from its ``.train.pt`` state.

    python benchmarks/ablation_generalisation.py --data md_data --split md_data/validation_split.txt \
        --steps 400 --runs runs/ablation --out benchmarks/results/ablation_generalisation

Writes ``OUT.json`` (every figure) and ``OUT.md`` (the table).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# name, preset, extra `starmd train` arguments, what the row changes
ROWS = [
    ("first", "small", ["--frames", "8"], "first architecture: absolute index, no template, τ 0.05/0.1, L = 8"),
    ("first_warm", "default", ["--frames", "8"], "the shipped default weights trained on (first architecture)"),
    ("generalising_warm", "small_v2", ["--frames", "8", "--min-frames", "2", "--warm-start", "default"],
     "all changes on (small_v2), matching weights from the shipped default"),
    ("no_template_start_warm", "small_v2", ["--frames", "8", "--min-frames", "2", "--set", "start_from_template=false",
                                            "--warm-start", "default"],
     "warm start, structure module from the noisy frame (not the last context frame)"),
    ("no_template_pair_warm", "small_v2", ["--frames", "8", "--min-frames", "2", "--set", "template_pair=false",
                                           "--warm-start", "default"], "warm start, without template pair features"),
    ("absolute_index_warm", "small_v2", ["--frames", "8", "--min-frames", "2", "--set", "absolute_index=true",
                                         "--warm-start", "default"], "warm start, with the absolute residue index"),
    ("old_context_noise_warm", "small_v2", ["--frames", "8", "--min-frames", "2", "--set", "context_noise_t=0.05",
                                            "--set", "context_noise_max_t=0.1", "--warm-start", "default"],
     "warm start, context noise τ 0.05 / U[0, 0.1]"),
    ("generalising", "small_v2", ["--frames", "8", "--min-frames", "2"], "all changes on (small_v2, L = 2..8)"),
    ("no_template", "small_v2", ["--frames", "8", "--min-frames", "2", "--set", "template_pair=false"], "without template pair features"),
    ("absolute_index", "small_v2", ["--frames", "8", "--min-frames", "2", "--set", "absolute_index=true"], "with the absolute residue index"),
    ("old_context_noise", "small_v2", ["--frames", "8", "--min-frames", "2", "--set", "context_noise_t=0.05",
                                       "--set", "context_noise_max_t=0.1"], "context noise τ 0.05 (inference) / U[0, 0.1] (training)"),
    ("no_aatype_dropout", "small_v2", ["--frames", "8", "--min-frames", "2", "--set", "aatype_dropout=0"], "without amino-acid dropout"),
    ("fixed_L8", "small_v2", ["--frames", "8"], "L fixed at 8 (no variable context length)"),
    ("review_fixes_off", "small_v2", ["--frames", "8", "--min-frames", "2", "--set", "detach_rotations=false",
                                      "--set", "skip_channels=0", "--set", "last_edge_transition=true"],
     "without detached rotations, skip and the dropped EdgeTransition"),
]


def _steps_done(log: Path) -> int:
    lines = log.read_text().splitlines() if log.is_file() else []
    return json.loads(lines[-1])["step"] if lines else 0


def train_row(name: str, preset: str, extra: list[str], args) -> Path:
    ckpt = args.runs / f"{name}.pt"
    done = _steps_done(args.runs / f"{name}.pt.log.jsonl")
    if ckpt.is_file() and done >= args.steps:
        return ckpt
    model = ["--init", "default"] if preset == "default" else ["--preset", preset]
    cmd = [sys.executable, "-m", "openmm_starmd.cli", "train", "--data", str(args.data), "--holdout-file", str(args.split),
           *model, "--steps", str(args.steps), "--out", str(ckpt), "--resume", "--seed", str(args.seed),
           "--threads", str(args.threads), "--cache-dir", str(args.runs / "cache"), "--checkpoint-every", "50",
           "--plot-every", "100000", "--no-progress", *extra]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return ckpt


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("md_data"))
    parser.add_argument("--split", type=Path, default=Path("md_data/validation_split.txt"))
    parser.add_argument("--steps", type=int, default=400, help="training steps per row (equal for all rows)")
    parser.add_argument("--runs", type=Path, default=Path("runs/ablation"), help="folder of the rows' checkpoints")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ablation_generalisation"))
    parser.add_argument("--rows", nargs="*", help="only these rows (default: all)")
    parser.add_argument("--train-only", action="store_true", help="train the rows, score nothing")
    parser.add_argument("--score-only", action="store_true", help="score the rows whose training has finished, train nothing "
                        "(run beside a --train-only process)")
    parser.add_argument("--jumps", type=int, default=10, help="jumps per validation rollout")
    parser.add_argument("--num-steps", type=int, default=25, help="reverse-diffusion steps per jump in validation")
    parser.add_argument("--strides", type=float, nargs="+", default=[0.1, 1.25], help="validation strides (ns)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    args.runs.mkdir(parents=True, exist_ok=True)
    rows = [r for r in ROWS if not args.rows or r[0] in args.rows]
    results_path = args.out.with_suffix(".json")
    results = json.loads(results_path.read_text()) if results_path.is_file() else {"rows": {}}
    for name, preset, extra, what in rows:
        if args.score_only:
            ckpt = args.runs / f"{name}.pt"
            if _steps_done(args.runs / f"{name}.pt.log.jsonl") < args.steps or not ckpt.is_file():
                continue
        else:
            ckpt = train_row(name, preset, extra, args)
        if args.train_only:
            continue
        key = f"{name}@{args.steps}:{args.jumps}x{args.num_steps}"
        if key in results["rows"]:
            continue
        from openmm_starmd.training.validation import score_checkpoint

        start = time.monotonic()
        score = score_checkpoint(ckpt, args.data, args.split, strides_ns=args.strides, jumps=args.jumps,
                                 num_steps=args.num_steps, seed=args.seed)
        score.update({"row": name, "preset": preset, "train_args": extra, "what": what, "steps": args.steps,
                      "score_wall_s": round(time.monotonic() - start, 1)})
        results["rows"][key] = score
        args.out.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=1) + "\n")
        print(json.dumps(score["summary"]), flush=True)
    if not args.train_only:
        from openmm_starmd.training.validation import ablation_table

        header = (f"# Ablation: inputs for unseen proteins ({time.strftime('%Y-%m-%d')}, {os.cpu_count()}-core CPU, one thread)\n\n"
                  f"Command: `python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:] if argv is None else argv)}`\n\n"
                  f"Each row: `starmd train` for the same number of steps on the training systems (validation "
                  f"proteins held out), then raw rollouts on the validation split (gate open, no relaxation): "
                  f"{args.jumps} jumps per rollout, {args.num_steps} reverse steps, noise scale 0.5, two rollouts per "
                  f"protein and stride from the MD frames farthest apart. RMSD ratio: median over proteins of the "
                  f"per-jump Cα RMSD over the MD's at the same lag (n/a: MD shorter than the lag). Attractor: "
                  f"final separation of the two rollouts over the MD ensemble spread.\n\n")
        args.out.with_suffix(".md").write_text(header + ablation_table(results, args) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
