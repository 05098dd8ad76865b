"""``starmd train``: train or fine-tune STAR-MD on MD trajectories.

    starmd train --data DIR --preset tiny|small|paper --steps N --out CKPT [--init CKPT|default] [--resume]

The same arguments run data-parallel under torchrun (one process per device; gloo on CPU, nccl
on CUDA): ``torchrun --nproc_per_node=K -m openmm_starmd.training --data DIR ...``. Rank 0 writes
the checkpoint, the log and the plot; each rank draws its own batches.
"""
from __future__ import annotations

import sys

from openmm_starmd.model.config import PRESETS


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="folder of topology + trajectory pairs (x.pdb + x.dcd), the "
                        "'starmd simulate' chunked layout, the ATLAS layout, or mdCATH .h5 files")
    parser.add_argument("--preset", default="small", choices=sorted(PRESETS), help="model size (ignored with --init)")
    parser.add_argument("--steps", type=int, default=1000, help="total optimiser steps of the run (default 1000)")
    parser.add_argument("--out", required=True, help="model checkpoint to write (CKPT); the resumable state goes to CKPT.train.pt")
    parser.add_argument("--init", help="start from these weights: 'default' (the shipped model) or a checkpoint path")
    parser.add_argument("--warm-start", help="with --preset: copy every weight of this model ('default' or a checkpoint) "
                        "whose name and shape match into the new network; new inputs keep their initialisation")
    parser.add_argument("--resume", action="store_true", help="continue from CKPT.train.pt when it exists")
    parser.add_argument("--lr", type=float, default=2e-4, help="peak learning rate (Adam; default 2e-4)")
    parser.add_argument("--warmup-steps", type=int, default=100, help="linear warm-up steps from 0.01 lr (default 100)")
    parser.add_argument("--min-lr-factor", type=float, default=0.1, help="cosine decay floor as a fraction of --lr (default 0.1)")
    parser.add_argument("--batch-size", type=int, default=4, help="examples per step and process (default 4)")
    parser.add_argument("--frames", type=int, default=8, help="frames per example, the context length L (default 8); "
                        "with --min-frames the largest L")
    parser.add_argument("--min-frames", type=int, default=0, help="draw L per batch in [--min-frames, --frames] after the "
                        "stride, so short trajectories give long-stride examples (0: L fixed at --frames)")
    parser.add_argument("--set", dest="model_overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="override one StarMDConfig field of the preset, e.g. --set template_pair=false (repeatable; "
                        "for ablations)")
    parser.add_argument("--holdout-file", help="a split file (one system name per line, '#' comments): these systems are "
                        "left out of training, e.g. md_data/validation_split.txt")
    parser.add_argument("--validate-every", type=int, default=0, help="every N steps score the --holdout-file systems with raw "
                        "rollouts (Cα validity, RMSD / MD, attractor); keeps CKPT.best.pt (0: never)")
    parser.add_argument("--validation-jumps", type=int, default=10, help="jumps per validation rollout (default 10)")
    parser.add_argument("--validation-num-steps", type=int, default=25, help="reverse-diffusion steps per validation jump (default 25)")
    parser.add_argument("--validation-noise-scale", type=float, default=0.5, help="reverse-SDE noise scale of the "
                        "validation jumps (default 0.5)")
    parser.add_argument("--validation-time-spacing", type=float, default=1.0, help="power of the reverse-diffusion "
                        "time spacing of the validation jumps (default 1: evenly spaced)")
    parser.add_argument("--validation-noise-switch-t", type=float, default=1.0, help="diffusion time above which the "
                        "validation's reverse steps take the exact SDE (default 1: --validation-noise-scale throughout)")
    parser.add_argument("--validation-ode-from-stride", type=float, default=None, metavar="NS",
                        help="validation strides from NS ns are sampled with the probability-flow ODE, as the Generator "
                        "does for weights that record it (default: the SDE at every stride)")
    parser.add_argument("--validation-context-window", type=int, default=0, help="frames each frame of the validation "
                        "rollouts attends to (default 0: the whole history)")
    parser.add_argument("--validation-context-sink", type=int, default=0, help="with --validation-context-window, the "
                        "first frames (the MD start) each frame of the validation rollouts attends to as well (default 0)")
    parser.add_argument("--trim-relaxation", action="store_true", help="drop each trajectory's relaxation from its start "
                        "structure (the frames before its Cα radius of gyration first reaches the median of its second half; "
                        "a peptide built extended collapses over its first 0.1-1 ns) before examples are cut")
    parser.add_argument("--crop", type=int, default=256, help="longer proteins are cropped to this many residues (default 256)")
    parser.add_argument("--min-stride-ns", type=float, default=0.01, help="shortest stride between frames (default 0.01 ns)")
    parser.add_argument("--max-stride-ns", type=float, default=10.0, help="longest stride; trajectories cap it at their length (default 10 ns)")
    parser.add_argument("--stride-first-fraction", type=float, default=0.0, help="fraction of batches that draw the "
                        "stride first, log-uniform over every stride some trajectory allows, then a trajectory that "
                        "allows it; the rest draw a trajectory, then a stride it allows, so long strides are as rare as "
                        "long trajectories (default 0)")
    parser.add_argument("--holdout", action="append", default=[], metavar="NAME",
                        help="leave this system (NAME) or one replica of it (NAME/R2) out of training (repeatable)")
    parser.add_argument("--ema-decay", type=float, default=0.999, help="EMA decay of the weights (default 0.999)")
    parser.add_argument("--grad-clip", type=float, default=1.0, help="gradient-norm clip (default 1.0)")
    parser.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints (default 100)")
    parser.add_argument("--ca-bond-weight", type=float, default=0.0, help="weight of the consecutive-Cα distance loss "
                        "at every diffusion time (Å²; 0 keeps the paper's losses)")
    parser.add_argument("--ca-clash-weight", type=float, default=0.0, help="weight of the Cα excluded-volume loss: pairs "
                        "|i - j| >= 2 predicted closer than min(3.8 Å, their true distance), at every diffusion time "
                        "(Å² per residue; 0: off)")
    parser.add_argument("--ca-rg-weight", type=float, default=0.0, help="weight of the Cα radius-of-gyration error "
                        "of each predicted frame, at every diffusion time (Å²; 0: off). Acts against rollouts that "
                        "compact beyond MD")
    parser.add_argument("--ca-x0-weight", type=float, default=0.0, help="weight of the squared Cα error of x̂₀ at every "
                        "diffusion time (Å²; 0: off). The translation score loss weighs the same error by the "
                        "signal-to-noise ratio, which is small above t ≈ 0.1; this puts a floor under that weight")
    parser.add_argument("--ca-bond-max-t", type=float, default=1.0, help="the Cα bond loss counts only at diffusion "
                        "times t <= this (default 1: every t). Above t ≈ 0.1 it outweighs the score loss, so x̂₀ there "
                        "is one valid chain near the context rather than the conditional mean")
    parser.add_argument("--ca-clash-max-t", type=float, default=1.0, help="the same for the Cα excluded-volume loss")
    parser.add_argument("--ca-rg-max-t", type=float, default=1.0, help="the same for the Cα radius-of-gyration loss")
    parser.add_argument("--fape-max-t", type=float, default=1.0, help="the backbone and side-chain FAPE losses count "
                        "only at diffusion times t <= this (default 1: every t, as in the paper)")
    parser.add_argument("--history-error-angstrom", type=float, default=0.0, help="train on history frames (context and "
                        "templates) with per-residue errors of RMS length up to this, as generated frames have; targets "
                        "stay clean (Å; 0: clean MD history)")
    parser.add_argument("--history-error-degrees", type=float, default=0.0, help="the same for the residue orientations "
                        "(RMS angle, degrees; 0: none)")
    parser.add_argument("--history-error-prob", type=float, default=0.75, help="fraction of examples that get history "
                        "errors (default 0.75)")
    parser.add_argument("--low-t-fraction", type=float, default=0.0, help="fraction of target frames whose diffusion time "
                        "is drawn log-uniformly in [t_min, 0.1] instead of U[t_min, 1] (the low-noise steps set the local "
                        "geometry; default 0)")
    parser.add_argument("--self-history-prob", type=float, default=0.0, help="fraction of steps whose history frames "
                        "are the network's own one-jump samples (no gradient; targets stay the MD frames; default 0)")
    parser.add_argument("--self-history-steps", type=int, default=6, help="reverse-diffusion steps of those samples "
                        "(default 6; each is one extra forward pass)")
    parser.add_argument("--self-history-noise", type=float, default=0.25, help="reverse-SDE noise scale of those samples "
                        "(default 0.25)")
    parser.add_argument("--self-history-levels", type=int, default=1, help="sample the history this many times, each "
                        "level conditioned on the previous level's samples, so that frame l carries min(l, levels) jumps' "
                        "errors (default 1: one jump from MD history)")
    parser.add_argument("--plot-every", type=int, default=100, help="steps between loss-plot updates (default 100)")
    parser.add_argument("--reindex-every", type=int, default=0, help="re-scan --data every N steps for new trajectory chunks (0: never)")
    parser.add_argument("--log", dest="log_path", help="loss log, JSON lines (default CKPT.log.jsonl)")
    parser.add_argument("--plot", dest="plot_path", help="loss plot PNG (default CKPT.loss.png)")
    parser.add_argument("--cache-dir", help="folder for the frames + torsions caches of the trajectories (default: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights, the batches and the noise")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA if available), 'cpu', 'cuda' (default auto)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads per process (0: torch's default)")
    parser.add_argument("--no-bf16", action="store_true", help="train in fp32 on CUDA (default: bf16 autocast on CUDA)")
    parser.add_argument("--max-wall-s", type=float, default=0.0, help="stop with a checkpoint after this many seconds (0: no limit)")
    parser.add_argument("--stop-at", type=int, default=0, help="stop with a checkpoint at this step; the learning-rate "
                        "schedule still runs to --steps (equal-step comparisons; 0: run to --steps)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_overrides(items: list[str]) -> dict:
    """``["template_pair=false", "skip_channels=0"]`` -> typed values for StarMDConfig fields."""
    import dataclasses

    from openmm_starmd.model.config import StarMDConfig

    types = {f.name: f.type for f in dataclasses.fields(StarMDConfig)}
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in types or key == "diffusion":
            raise ValueError(f"--set expects FIELD=VALUE with a StarMDConfig field, got {item!r}")
        kind = types[key] if isinstance(types[key], str) else types[key].__name__
        if kind == "bool":
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"--set {key}: expected true or false, got {value!r}")
            out[key] = value.lower() in ("true", "1")
        elif kind == "int":
            out[key] = int(value)
        elif kind == "float":
            out[key] = float(value)
        else:
            raise ValueError(f"--set cannot set {key} (type {kind})")
    return out


def config_from_args(args):
    from openmm_starmd.training.block_causal import HistoryErrors, SelfHistory
    from openmm_starmd.training.losses import LossConfig
    from openmm_starmd.training.trainer import TrainConfig
    from openmm_starmd.training.validation import read_split

    return TrainConfig(
        data=args.data, out=args.out, preset=args.preset, steps=args.steps, init=args.init, resume=args.resume, lr=args.lr,
        warmup_steps=args.warmup_steps, min_lr_factor=args.min_lr_factor, batch_size=args.batch_size, num_frames=args.frames,
        min_frames=args.min_frames, trim_relaxation=args.trim_relaxation, model_overrides=parse_overrides(args.model_overrides), warm_start=args.warm_start,
        crop_residues=args.crop, min_stride_ns=args.min_stride_ns, max_stride_ns=args.max_stride_ns,
        stride_first_fraction=args.stride_first_fraction, grad_clip=args.grad_clip,
        ema_decay=args.ema_decay, checkpoint_every=args.checkpoint_every, plot_every=args.plot_every, log_path=args.log_path,
        plot_path=args.plot_path, seed=args.seed, holdout=tuple(args.holdout) + read_split(args.holdout_file), reindex_every=args.reindex_every,
        cache_dir=args.cache_dir, device=args.device, bf16=not args.no_bf16, progress=not args.no_progress,
        loss=LossConfig(ca_bond_weight=args.ca_bond_weight, ca_clash_weight=args.ca_clash_weight,
                        ca_rg_weight=args.ca_rg_weight, ca_x0_weight=args.ca_x0_weight, ca_bond_max_t=args.ca_bond_max_t,
                        ca_clash_max_t=args.ca_clash_max_t, ca_rg_max_t=args.ca_rg_max_t, fape_max_t=args.fape_max_t),
        history_errors=HistoryErrors(args.history_error_angstrom, args.history_error_degrees, args.history_error_prob),
        low_t_fraction=args.low_t_fraction,
        self_history=SelfHistory(args.self_history_prob, args.self_history_steps, args.self_history_noise,
                                 args.self_history_levels),
        max_wall_s=args.max_wall_s, stop_at=args.stop_at, validate_every=args.validate_every, validation_split=args.holdout_file,
        validation_jumps=args.validation_jumps, validation_num_steps=args.validation_num_steps,
        validation_noise_scale=args.validation_noise_scale, validation_time_spacing=args.validation_time_spacing,
        validation_noise_switch_t=args.validation_noise_switch_t,
        validation_context_window=args.validation_context_window,
        validation_context_sink=args.validation_context_sink,
        validation_ode_from_stride_ns=args.validation_ode_from_stride,
    )


def run(args) -> int:
    import torch

    from openmm_starmd.training.distributed import init_distributed, shutdown
    from openmm_starmd.training.trainer import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        cfg = config_from_args(args).validate()
    except (TypeError, ValueError) as exc:
        print(f"starmd train: {exc}", file=sys.stderr)
        return 2
    ctx = init_distributed(cfg.device)
    try:
        trainer = Trainer(cfg, ctx)
        if ctx.is_main:
            print(trainer.dataset.describe(), file=sys.stderr)
        records = trainer.run()
    except (FileNotFoundError, ValueError) as exc:
        print(f"starmd train: {exc}", file=sys.stderr)
        return 2
    finally:
        shutdown(ctx)
    if ctx.is_main and records:
        last = records[-1]
        print(f"step {last['step']}: loss {last['total']:.4f}; checkpoint {cfg.out}; log {cfg.log_path}; plot {cfg.plot_path}")
        if trainer.interrupted:
            print(f"stopped by a signal at step {last['step']} of {cfg.steps}; resume with the same command and --resume")
    return 0
