"""Model checkpoints: save, load (``torch.load(weights_only=True)``) and the shipped default
(``starmd info`` describes one: :mod:`openmm_starmd.openmm.info`).

A checkpoint is a dict ``{"format", "version", "config", "model", "ema"?, "meta"?}``; ``model``
holds the state dict of :class:`StarMD` (the diffuser has no parameters). The shipped
``default`` weights live in ``openmm_starmd/weights/`` next to a JSON file with their SHA-256.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import NamedTuple, Optional

import torch

from openmm_starmd.model.config import StarMDConfig
from openmm_starmd.model.core import StarMDCore

FORMAT = "openmm-starmd-checkpoint"
VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
SHIPPED = {"default": "default"}  # name -> file stem in WEIGHTS_DIR


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(path: str | os.PathLike, cfg: StarMDConfig, state_dict: dict, ema_state_dict: Optional[dict] = None,
                    meta: Optional[dict] = None) -> None:
    """Write a checkpoint atomically (temporary file, then rename)."""
    payload = {"format": FORMAT, "version": VERSION, "config": cfg.to_dict(), "model": state_dict}
    if ema_state_dict is not None:
        payload["ema"] = ema_state_dict
    if meta is not None:
        payload["meta"] = meta
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Read and check a checkpoint file; errors name the path and say what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt/foreign files
        raise ValueError(f"cannot read model checkpoint {path}: the file is corrupt or not a PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an openmm-starmd checkpoint (missing format tag {FORMAT!r})")
    if payload.get("version") != VERSION:
        raise ValueError(f"{path} has checkpoint version {payload.get('version')}; this openmm-starmd reads version {VERSION}")
    for key in ("config", "model"):
        if key not in payload:
            raise ValueError(f"checkpoint {path} lacks its {key!r} entry")
    return payload


def resolve_model_path(name_or_path: str | os.PathLike) -> tuple[Path, Optional[str]]:
    """Map a shipped name or a path to (file, expected SHA-256 or None)."""
    name = str(name_or_path)
    if name in SHIPPED:
        stem = SHIPPED[name]
        weights = WEIGHTS_DIR / f"{stem}.pt"
        manifest = WEIGHTS_DIR / f"{stem}.json"
        if not weights.is_file() or not manifest.is_file():
            raise FileNotFoundError(
                f"the shipped {name!r} model is not part of this installation (looked for {weights}). "
                "Reinstall the package (pip install -e .) to restore it, or pass the path of a checkpoint "
                "written by 'starmd train'.")
        return weights, json.loads(manifest.read_text())["sha256"]
    return Path(name), None


def checkpoint_meta(name_or_path: str | os.PathLike = "default") -> dict:
    """The training meta stored in a checkpoint (``{}`` when it has none)."""
    path, _ = resolve_model_path(name_or_path)
    return dict(read_checkpoint(path).get("meta", {}))


def portable_meta(value):
    """A copy of checkpoint meta with every absolute path replaced by its file name, so shipped or
    exported files carry no paths of the machine they were built on."""
    if isinstance(value, dict):
        return {k: portable_meta(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable_meta(v) for v in value]
    if isinstance(value, str):
        for flavour in (PurePosixPath, PureWindowsPath):
            if flavour(value).is_absolute():
                return flavour(value).name
    return value


def stage_steps(meta: dict) -> list[int]:
    """Optimiser steps of each training stage behind a checkpoint, oldest first: ``meta["stage_steps"]``
    when recorded (a run started with ``--init`` adds its steps to its parent's), else ``[meta["step"]]``."""
    if "stage_steps" in meta:
        return [int(s) for s in meta["stage_steps"]]
    return [int(meta["step"])] if "step" in meta else []


def trained_stride_range(meta: dict) -> Optional[tuple[float, float]]:
    """(shortest, longest) stride in ns that the training examples could draw, from a checkpoint's
    meta: ``meta["trained_stride_ns"]`` when set, else the union over ``meta["trajectories"]`` of
    ``stride_frames x frame_interval_ps``. None when the meta does not say."""
    if "trained_stride_ns" in meta:
        lo, hi = meta["trained_stride_ns"]
        return float(lo), float(hi)
    ranges = []
    for traj in meta.get("trajectories", []):
        try:
            k_lo, k_hi = traj["stride_frames"]
            ranges.append((k_lo * traj["frame_interval_ps"] / 1000.0, k_hi * traj["frame_interval_ps"] / 1000.0))
        except (KeyError, TypeError, ValueError):
            continue
    if not ranges:
        return None
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


class StrideCard(NamedTuple):
    """What a checkpoint says about its strides (ns) and its sampler; None where it does not say.

    ``trained``: (shortest, longest) stride its training examples could draw; ``validated``:
    (shortest, longest) stride at which its validation passed; ``recommended``: the stride to use
    when the user names none; ``note``: where the validation figures come from; ``num_steps`` and
    ``noise_scale``, ``time_spacing``, ``noise_switch_t``: the reverse-diffusion sampler its validation
    used (meta keys ``recommended_num_steps``, ``recommended_noise_scale``, ``recommended_time_spacing``,
    ``recommended_noise_switch_t``), and ``context_window`` the frames each generated frame attended
    to there (``recommended_context_window``; 0: the whole history) with ``context_sink`` first
    frames kept in view besides (``recommended_context_sink``), which the Generator takes when the
    user names none. ``ode_from_stride_ns``: strides at or above it take the probability-flow ODE
    instead of the reverse SDE (``recommended_ode_from_stride_ns``; None: the SDE at every stride)."""

    trained: Optional[tuple[float, float]]
    validated: Optional[tuple[float, float]]
    recommended: Optional[float]
    note: str = ""
    num_steps: Optional[int] = None
    noise_scale: Optional[float] = None
    time_spacing: Optional[float] = None
    noise_switch_t: Optional[float] = None
    context_window: Optional[int] = None
    context_sink: Optional[int] = None
    ode_from_stride_ns: Optional[float] = None


def samples_with_ode(stride_ns: Optional[float], ode_from_stride_ns: Optional[float]) -> bool:
    """Whether ``stride_ns`` takes the probability-flow ODE under a card's ``ode_from_stride_ns``:
    at or above it (to a relative 1e-9); never when either is None."""
    return (ode_from_stride_ns is not None and stride_ns is not None
            and float(stride_ns) >= float(ode_from_stride_ns) * (1 - 1e-9))


def _pair(value) -> Optional[tuple[float, float]]:
    if value is None:
        return None
    lo, hi = value
    return float(lo), float(hi)


CARD_KEYS = ("validated_stride_ns", "recommended_stride_ns", "stride_validation", "recommended_num_steps",
             "recommended_noise_scale", "recommended_time_spacing", "recommended_noise_switch_t",
             "recommended_context_window", "recommended_context_sink", "recommended_ode_from_stride_ns")


def manifest_beside(path: str | os.PathLike) -> Optional[dict]:
    """The release manifest of a weights file given by path: ``NAME.json`` next to ``NAME.pt``, as
    ``training.release`` writes them, when its ``sha256`` is that of the file. None when there is no
    such file or it is not JSON; a manifest that names another file's SHA-256 (the weights were
    replaced after the release) is ignored with a warning, so that a stale card never applies."""
    path = Path(path)
    candidate = path.with_suffix(".json")
    if candidate == path or not candidate.is_file():
        return None
    try:
        manifest = json.loads(candidate.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(manifest, dict) or "sha256" not in manifest:
        return None
    if manifest["sha256"] != sha256_of(path):
        warnings.warn(f"{candidate} records the SHA-256 of another file than {path.name}; its sampler and "
                      "context card are not used", stacklevel=3)
        return None
    return manifest


def stride_card(name_or_path: str | os.PathLike = "default") -> StrideCard:
    """The :class:`StrideCard` of a shipped name or a checkpoint path.

    Read from the checkpoint's meta (``validated_stride_ns`` = [lo, hi], ``recommended_stride_ns``,
    ``stride_validation``, ``recommended_num_steps``, ``recommended_noise_scale``, ``recommended_time_spacing``,
    ``recommended_noise_switch_t``, ``recommended_context_window``, ``recommended_context_sink``,
    ``recommended_ode_from_stride_ns``) and
    from the release manifest, whose keys take precedence (the weights file is fixed by its
    SHA-256; the manifest can record a validation made after release): the shipped name's, or for a
    path the ``.json`` of the same name beside it when it records the file's SHA-256
    (:func:`manifest_beside`), so that a released file copied elsewhere with its manifest keeps its
    card. A checkpoint that records none of them gets None: older checkpoints stay loadable."""
    path, _ = resolve_model_path(name_or_path)
    meta = dict(read_checkpoint(path).get("meta", {}))
    if str(name_or_path) in SHIPPED:
        manifest = json.loads((WEIGHTS_DIR / f"{SHIPPED[str(name_or_path)]}.json").read_text())
    else:
        manifest = manifest_beside(path) or {}
    meta.update({k: manifest[k] for k in CARD_KEYS if k in manifest})
    recommended, steps, noise, spacing, switch, window, sink, ode_from = (meta.get(k) for k in (
        "recommended_stride_ns", "recommended_num_steps", "recommended_noise_scale", "recommended_time_spacing",
        "recommended_noise_switch_t", "recommended_context_window", "recommended_context_sink",
        "recommended_ode_from_stride_ns"))
    return StrideCard(trained_stride_range(meta), _pair(meta.get("validated_stride_ns")),
                      None if recommended is None else float(recommended), str(meta.get("stride_validation", "")),
                      None if steps is None else int(steps), None if noise is None else float(noise),
                      None if spacing is None else float(spacing), None if switch is None else float(switch),
                      None if window is None else int(window), None if sink is None else int(sink),
                      None if ode_from is None else float(ode_from))


def load_model(name_or_path: str | os.PathLike = "default", device: Optional[str | torch.device] = None,
               use_ema: bool = True, scripted: bool = False):
    """A ready :class:`StarMDCore` (eval mode) from a shipped name (``"default"``) or a checkpoint path.

    The shipped weights are verified against their SHA-256 before loading. ``scripted=True``
    returns the ``torch.jit.script``-compiled core (same methods and results, about 2× faster
    per diffusion step on a CPU; see benchmarks/results/frame_time_small_N35.md)."""
    path, expected_sha = resolve_model_path(name_or_path)
    if expected_sha is not None:
        got = sha256_of(path)
        if got != expected_sha:
            raise ValueError(f"{path} fails its SHA-256 check (expected {expected_sha}, got {got}): the file is damaged; reinstall openmm-starmd")
    payload = read_checkpoint(path)
    try:
        cfg = StarMDConfig.from_dict(payload["config"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint {path} has an incompatible config: {exc}") from exc
    core = StarMDCore(cfg)
    state = payload["ema"] if use_ema and "ema" in payload else payload["model"]
    missing, unexpected = core.net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"checkpoint {path} does not match this version's network: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
    core.eval()
    if device is not None:
        core.to(device)
    if scripted:
        from openmm_starmd.model.export import script_core

        return script_core(core)
    return core
