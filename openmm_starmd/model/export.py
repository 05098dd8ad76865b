"""``starmd export``: the STAR-MD core (denoiser, KV-cache update, sampler loop) as one TorchScript file.

The file runs with ``torch.jit.load`` alone (no openmm-starmd needed). Its methods::

    core.start(aatype [B,N], residue_index [B,N], chain_index [B,N], capacity_frames, None, None)
    core.append_frame(rots [B,N,3,3], trans [B,N,3] nm, log10_stride_ns [B], noise_t)
    core.sample_frame(log10_stride_ns [B], num_steps, ode, noise_scale, time_spacing, noise_switch_t) -> (rots, trans, torsions)
    core.step(log10_stride_ns [B], num_steps, ode, noise_scale, time_spacing, noise_switch_t) -> sample + append

The model config travels inside the file as the extra file ``config.json``.

torch 2.13 deprecates ``torch.jit.script``; the exported boundary is kept to these few tensor-only
methods so that ``torch.export`` can replace TorchScript later.
"""
from __future__ import annotations

import json
import os
import warnings

import torch

from openmm_starmd.model.core import StarMDCore


def script_core(core: StarMDCore) -> torch.jit.ScriptModule:
    """``torch.jit.script`` the core, silencing torch's deprecation warning for TorchScript."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*TorchScript.*", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*torch.jit.*", category=DeprecationWarning)
        return torch.jit.script(core.eval())


def export_core(core: StarMDCore, path: str | os.PathLike, config: dict | None = None) -> str:
    """Script ``core`` and save it to ``path``; returns the path."""
    scripted = script_core(core)
    extra = {"config.json": json.dumps(config or {}, indent=1)}
    scripted.save(str(path), _extra_files=extra)
    return str(path)


def load_exported(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """``torch.jit.load`` an exported core (for symmetry; plain ``torch.jit.load`` works too)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"exported STAR-MD core not found: {path}")
    return torch.jit.load(str(path), map_location=device)


def add_arguments(parser) -> None:
    parser.add_argument("--model", default="default", help="'default' or a checkpoint path written by 'starmd train'")
    parser.add_argument("--out", required=True, help="output TorchScript file (e.g. starmd_core.pt)")


def run(args) -> int:
    from openmm_starmd.model.checkpoint import load_model, read_checkpoint, resolve_model_path

    core = load_model(args.model)
    config = read_checkpoint(resolve_model_path(args.model)[0])["config"]
    export_core(core, args.out, config)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB)")
    return 0
