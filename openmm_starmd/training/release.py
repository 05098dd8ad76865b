"""Turn a training checkpoint into shipped weights: ``openmm_starmd/weights/<name>.pt`` + ``<name>.json``.

    python -m openmm_starmd.training.release CKPT [--name default] [--fp32]
    python -m openmm_starmd.training.release md_data/training/small_v3.state.pt --meta-from runs/campaign/small_v3.pt \
        --parent-steps 6900 --validated-stride 0.1 1.25 --recommended-stride 0.1 --num-steps 50 --noise-scale 0.25 \
        --stride-validation "..."

CKPT is a checkpoint written by ``starmd train`` or a training state (the live ``*.train.pt`` or a
campaign's packed ``*.state.pt``, whose EMA weights are taken). The shipped file is a regular
checkpoint (``load_model`` reads it) holding only the EMA weights (as ``model``), stored in float16
unless ``--fp32`` (they are cast back to the network's float32 on loading), and the training meta.
The JSON manifest records its SHA-256, which ``load_model`` checks before loading, and the weights'
card: the strides and the sampler their validation used (``stride_card``), which
``StarMDGenerator`` takes when the user names none.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

import torch

from openmm_starmd.model.checkpoint import (
    CARD_KEYS, WEIGHTS_DIR, load_model, portable_meta, read_checkpoint, save_checkpoint, sha256_of, stage_steps,
)
from openmm_starmd.model.config import StarMDConfig


def shipped_meta(meta: dict) -> dict:
    """Training meta as shipped: no absolute paths of the training machine, and one step count.

    ``optimiser_steps`` is the total over all training stages (``stage_steps``: a run started from
    earlier weights adds its steps to theirs); the trainer's per-run counters (``step``, ``steps``)
    are dropped, and when there were several stages ``examples_seen``/``wall_s`` are renamed
    ``last_stage_*`` so that no per-run figure reads as a total."""
    meta = portable_meta(dict(meta))
    stages = stage_steps(meta)
    for key in ("step", "steps"):
        meta.pop(key, None)
    if stages:
        meta["stage_steps"], meta["optimiser_steps"] = stages, sum(stages)
    if len(stages) > 1:
        for key in ("examples_seen", "wall_s"):
            if key in meta:
                meta[f"last_stage_{key}"] = meta.pop(key)
    return meta


TRAIN_CONFIG_META = ("data", "holdout", "preset", "batch_size")  # what a training state's config tells the meta


def read_source(path: str | Path) -> tuple[dict, dict, dict, bool]:
    """(config dict, weights, meta, whether the weights are the EMA) of a checkpoint or a training state.

    A training state (the trainer's ``*.train.pt`` or a campaign's packed ``*.state.pt``) gives its
    EMA weights and a meta of its step, wall time, examples seen and the data/holdout/preset/batch
    of its training config; anything else is read as a checkpoint."""
    path = Path(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None
    except Exception:  # read_checkpoint below gives the error that names the problem
        raw = None
    if isinstance(raw, dict) and "model_config" in raw and isinstance(raw.get("ema"), dict) and "shadow" in raw["ema"]:
        train_config = json.loads(raw.get("train_config", "{}"))
        meta = {k: train_config[k] for k in TRAIN_CONFIG_META if k in train_config}
        meta.update({k: raw[k] for k in ("step", "examples_seen", "wall_s") if k in raw})
        meta["stage_steps"] = [int(raw["step"])]
        return raw["model_config"], {k: v.float() if v.is_floating_point() else v for k, v in raw["ema"]["shadow"].items()}, meta, True
    payload = read_checkpoint(path)
    return payload["config"], payload.get("ema", payload["model"]), dict(payload.get("meta", {})), "ema" in payload


def release_weights(checkpoint: str | Path, name: str = "default", weights_dir: Path = WEIGHTS_DIR, half: bool = True,
                    extra_meta: Optional[dict] = None, card: Optional[dict] = None, parent_steps: tuple[int, ...] = (),
                    meta_from: Optional[str | Path] = None) -> dict:
    """Write ``weights_dir/name.pt`` (EMA weights, fp16 by default) and ``name.json``; returns the manifest.

    ``card``: keys of :data:`~openmm_starmd.model.checkpoint.CARD_KEYS` (validated strides, the
    recommended stride and sampler), written to the meta and the manifest. ``parent_steps``: optimiser
    steps of earlier stages whose weights this run started from, prepended to its ``stage_steps``.
    ``meta_from``: a checkpoint of the same run whose ``trajectories`` (the data it trained on) the
    meta takes, for a source that does not record them (a training state)."""
    config, state, source_meta, is_ema = read_source(checkpoint)
    cfg = StarMDConfig.from_dict(config)
    unknown = sorted(set(card or {}) - set(CARD_KEYS))
    if unknown:
        raise ValueError(f"card: unknown keys {unknown}; expected some of {list(CARD_KEYS)}")
    if meta_from is not None:
        source_meta.setdefault("trajectories", read_checkpoint(meta_from).get("meta", {}).get("trajectories", []))
    if parent_steps:
        source_meta["stage_steps"] = [*map(int, parent_steps), *stage_steps(source_meta)]
    if half:
        state = {k: (v.half() if v.dtype.is_floating_point else v) for k, v in state.items()}
    meta = shipped_meta({**source_meta, **(extra_meta or {}), **(card or {})})
    meta["weights"] = "EMA" if is_ema else "raw"
    meta["stored_dtype"] = "float16" if half else "float32"
    weights_dir = Path(weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    path = weights_dir / f"{name}.pt"
    save_checkpoint(path, cfg, state, None, meta)
    manifest = {"name": name, "file": path.name, "sha256": sha256_of(path), "bytes": path.stat().st_size,
                "parameters": int(sum(v.numel() for v in state.values())), "optimiser_steps": meta.get("optimiser_steps"),
                "source_checkpoint": Path(checkpoint).name, **(card or {})}
    (weights_dir / f"{name}.json").write_text(json.dumps(manifest, indent=2) + "\n")
    load_model(path)  # loads with weights_only=True and matches this version's network
    return manifest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openmm_starmd.training.release", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="checkpoint written by 'starmd train'")
    parser.add_argument("--name", default="default", help="shipped name (default 'default')")
    parser.add_argument("--weights-dir", default=str(WEIGHTS_DIR), help="target folder (default: the package's weights/)")
    parser.add_argument("--fp32", action="store_true", help="store float32 instead of float16")
    parser.add_argument("--meta-from", help="checkpoint of the same run whose 'trajectories' the meta takes (for a training state)")
    parser.add_argument("--parent-steps", type=int, nargs="+", default=(), metavar="N",
                        help="optimiser steps of the earlier stages this run was warm-started from")
    parser.add_argument("--validated-stride", type=float, nargs=2, metavar=("LO", "HI"), help="ns range the validation covered")
    parser.add_argument("--recommended-stride", type=float, help="ns; the Generator's stride=None")
    parser.add_argument("--num-steps", type=int, help="reverse-diffusion steps the validation used (the Generator's default)")
    parser.add_argument("--noise-scale", type=float, help="noise scale the validation used (the Generator's default)")
    parser.add_argument("--time-spacing", type=float, help="time spacing the validation used (the Generator's default)")
    parser.add_argument("--noise-switch-t", type=float, help="noise switch the validation used (the Generator's default)")
    parser.add_argument("--context-window", type=int,
                        help="context window the validation used, in frames (0: the whole history; the Generator's default)")
    parser.add_argument("--context-sink", type=int,
                        help="sink frames the validation used with its window (the Generator's default)")
    parser.add_argument("--ode-from-stride", type=float, metavar="NS",
                        help="strides at or above this take the probability-flow ODE, shorter ones the SDE above "
                             "(ns; the Generator's default; unset: the SDE at every stride)")
    parser.add_argument("--stride-validation", help="one line: what the validation measured, and where the figures are")
    args = parser.parse_args(argv)
    card = {key: value for key, value in (("validated_stride_ns", args.validated_stride), ("recommended_stride_ns", args.recommended_stride),
                                          ("recommended_num_steps", args.num_steps), ("recommended_noise_scale", args.noise_scale),
                                          ("recommended_time_spacing", args.time_spacing),
                                          ("recommended_noise_switch_t", args.noise_switch_t),
                                          ("recommended_context_window", args.context_window),
                                          ("recommended_context_sink", args.context_sink),
                                          ("recommended_ode_from_stride_ns", args.ode_from_stride),
                                          ("stride_validation", args.stride_validation)) if value is not None}
    try:
        manifest = release_weights(args.checkpoint, args.name, Path(args.weights_dir), half=not args.fp32, card=card,
                                   parent_steps=tuple(args.parent_steps), meta_from=args.meta_from)
    except (ValueError, FileNotFoundError) as exc:
        print(f"release: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(manifest, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
