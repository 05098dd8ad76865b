"""Turn a training checkpoint into shipped weights: ``openmm_starmd/weights/<name>.pt`` + ``<name>.json``.

    python -m openmm_starmd.training.release CKPT [--name default] [--fp32]

The shipped file is a regular checkpoint (``load_model`` reads it) holding only the EMA weights
(as ``model``), stored in float16 unless ``--fp32`` (they are cast back to the network's float32
on loading), and the training meta. The JSON manifest records its SHA-256, which ``load_model``
checks before loading.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

import torch

from openmm_starmd.model.checkpoint import (
    WEIGHTS_DIR, load_model, portable_meta, read_checkpoint, save_checkpoint, sha256_of, stage_steps,
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


def release_weights(checkpoint: str | Path, name: str = "default", weights_dir: Path = WEIGHTS_DIR, half: bool = True,
                    extra_meta: Optional[dict] = None) -> dict:
    """Write ``weights_dir/name.pt`` (EMA weights, fp16 by default) and ``name.json``; returns the manifest."""
    payload = read_checkpoint(checkpoint)
    cfg = StarMDConfig.from_dict(payload["config"])
    state = payload.get("ema", payload["model"])
    if half:
        state = {k: (v.half() if v.dtype.is_floating_point else v) for k, v in state.items()}
    meta = shipped_meta({**payload.get("meta", {}), **(extra_meta or {})})
    meta["weights"] = "EMA" if "ema" in payload else "raw"
    meta["stored_dtype"] = "float16" if half else "float32"
    weights_dir = Path(weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    path = weights_dir / f"{name}.pt"
    save_checkpoint(path, cfg, state, None, meta)
    manifest = {"name": name, "file": path.name, "sha256": sha256_of(path), "bytes": path.stat().st_size,
                "parameters": int(sum(v.numel() for v in state.values())), "optimiser_steps": meta.get("optimiser_steps"),
                "source_checkpoint": Path(checkpoint).name}
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
    args = parser.parse_args(argv)
    print(json.dumps(release_weights(args.checkpoint, args.name, Path(args.weights_dir), half=not args.fp32), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
