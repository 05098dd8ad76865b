"""``starmd info [MODEL]``: what a model checkpoint is, and how the Generator samples with it.

Prints a summary (file, SHA-256, parameters, which weights, training steps over all stages,
trained strides, the sampler settings ``StarMDGenerator`` applies), then the network config and the
training meta as JSON.
"""
from __future__ import annotations

import argparse
import json
import sys

from openmm_starmd.model.checkpoint import (
    SHIPPED, read_checkpoint, resolve_model_path, sha256_of, stage_steps, stride_card, trained_stride_range,
)
from openmm_starmd.model.config import StarMDConfig
from openmm_starmd.units import PS_PER_NS


def describe(model: str = "default") -> str:
    """The summary lines of ``starmd info`` for a shipped name or a checkpoint path."""
    from openmm_starmd.openmm.generator import GeneratorOptions

    path, _ = resolve_model_path(model)
    payload = read_checkpoint(path)
    cfg = StarMDConfig.from_dict(payload["config"])
    meta = payload.get("meta", {})
    n_params = sum(v.numel() for v in payload["model"].values())
    if "weights" in meta:  # a released file stores the EMA weights as its only ("model") entry
        weights = meta["weights"]
    else:
        weights = "EMA (the checkpoint also holds the raw weights)" if "ema" in payload else "raw (no EMA in this file)"
    if weights == "EMA":
        weights = "EMA (exponential moving average of the training weights)"
    if "stored_dtype" in meta:
        weights += f", stored as {meta['stored_dtype']}, loaded as float32"
    lines = [f"checkpoint:  {path}" + (" (the shipped weights)" if str(model) in SHIPPED else ""),
             f"sha256:      {sha256_of(path)}", f"parameters:  {n_params:,}", f"weights:     {weights}"]
    stages = stage_steps(meta)
    if stages:
        split = f" ({' + '.join(f'{s:,}' for s in stages)} in {len(stages)} stages)" if len(stages) > 1 else ""
        lines.append(f"training:    {sum(stages):,} optimiser steps{split}"
                     + (f", batch {meta['batch_size']}" if "batch_size" in meta else "")
                     + (f", held out: {', '.join(meta['holdout'])}" if meta.get("holdout") else ""))
    strides = trained_stride_range(meta)
    if strides is not None:
        lines.append(f"strides:     trained at {strides[0] * PS_PER_NS:g}-{strides[1] * PS_PER_NS:g} ps "
                     "(StarMDGenerator warns outside them)")
    card = stride_card(model)
    if card.validated is not None or card.recommended is not None:
        lines.append("validated:   " + ("" if card.validated is None else f"strides {card.validated[0]:g}-{card.validated[1]:g} ns")
                     + ("" if card.recommended is None else f"{'; ' if card.validated else ''}recommended stride {card.recommended:g} ns"))
    options = GeneratorOptions().with_sampler_of(card)
    recorded = any(v is not None for v in (card.num_steps, card.noise_scale, card.time_spacing, card.noise_switch_t,
                                           card.context_window, card.context_sink, card.ode_from_stride_ns))
    source = "recorded with these weights" if recorded else "GeneratorOptions' fallbacks"
    if recorded and card.context_window is None:
        source += ", the window excepted"
    lines.append(f"sampling:    StarMDGenerator and 'starmd generate' use {options.num_steps} reverse-diffusion steps "
                 f"per frame, noise scale {options.noise_scale:g}"
                 + (f" below diffusion time {options.noise_switch_t:g} (the exact SDE above it)" if options.noise_switch_t < 1 else "")
                 + f" and time spacing {options.time_spacing:g}"
                 + ("" if card.ode_from_stride_ns is None else
                    f" (at strides of {card.ode_from_stride_ns:g} ns and more, the probability-flow ODE instead)")
                 + ", each frame attending to "
                 + (f"the last {options.context_window} frames" if options.context_window else "the whole history")
                 + (f" and the first {options.context_sink} (the start)" if options.context_window and options.context_sink else "")
                 + f" ({source}; "
                 "GeneratorOptions overrides them); the config's "
                 f"diffusion.num_steps {cfg.diffusion.num_steps} and noise_scale {cfg.diffusion.noise_scale:g} are "
                 "the defaults of the lower-level sampler only")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", default="default",
                        help="'default' (the shipped weights) or a checkpoint path")


def run(args) -> int:
    try:
        print(describe(args.model))
    except (FileNotFoundError, ValueError) as exc:
        print(f"starmd info: {exc}", file=sys.stderr)
        return 2
    path, _ = resolve_model_path(args.model)
    payload = read_checkpoint(path)
    print("config:\n" + json.dumps(StarMDConfig.from_dict(payload["config"]).to_dict(), indent=2))
    if "meta" in payload:
        print("meta:\n" + json.dumps(payload["meta"], indent=2, default=str))
    return 0
