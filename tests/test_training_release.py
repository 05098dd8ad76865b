"""Shipped weights: a released checkpoint loads with weights_only=True, its SHA-256 is checked,
and the package's default model (when present) builds and rolls out."""
import json

import pytest
import torch

from openmm_starmd.model.checkpoint import WEIGHTS_DIR, load_model, resolve_model_path, save_checkpoint
from openmm_starmd.model.config import tiny
from openmm_starmd.model.core import StarMDCore
from openmm_starmd.training.release import release_weights


def test_release_round_trip_and_sha_check(tmp_path, monkeypatch):
    cfg = tiny()
    core = StarMDCore(cfg)
    ema = {k: v + 0.01 if v.dtype.is_floating_point else v for k, v in core.net.state_dict().items()}
    save_checkpoint(tmp_path / "run.pt", cfg, core.net.state_dict(), ema, {"step": 7})
    manifest = release_weights(tmp_path / "run.pt", "default", tmp_path / "weights")
    assert manifest["optimiser_steps"] == 7
    payload = torch.load(tmp_path / "weights" / "default.pt", weights_only=True)
    assert "ema" not in payload and payload["meta"]["weights"] == "EMA"
    assert payload["meta"]["optimiser_steps"] == 7 and "step" not in payload["meta"]
    loaded = load_model(tmp_path / "weights" / "default.pt")
    for k, v in loaded.net.state_dict().items():  # the EMA weights, through float16
        assert torch.allclose(v, ema[k].float(), atol=2e-3, rtol=1e-3), k
    import openmm_starmd.model.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "WEIGHTS_DIR", tmp_path / "weights")
    assert load_model("default") is not None
    bad = json.loads((tmp_path / "weights" / "default.json").read_text())
    bad["sha256"] = "0" * 64
    (tmp_path / "weights" / "default.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="SHA-256"):
        load_model("default")


def test_release_from_a_training_state_takes_its_ema_and_records_the_card(tmp_path):
    from openmm_starmd.model.checkpoint import stride_card
    from openmm_starmd.training.campaign import pack_state

    cfg = tiny()
    core = StarMDCore(cfg)
    ema = {k: v + 0.01 if v.dtype.is_floating_point else v for k, v in core.net.state_dict().items()}
    state = {"model_config": cfg.to_dict(), "model": core.net.state_dict(), "ema": {"decay": 0.99, "updates": 5, "shadow": ema},
             "optimizer": {"state": {}, "param_groups": []}, "scheduler": {}, "step": 40, "wall_s": 3.0, "examples_seen": 160,
             "rng_cpu": torch.get_rng_state(),
             "train_config": json.dumps({"data": "/scratch/md_data", "holdout": ["trp_cage"], "preset": "tiny", "batch_size": 4})}
    torch.save(state, tmp_path / "run.pt.train.pt")
    pack_state(tmp_path / "run.pt.train.pt", tmp_path / "run.state.pt")
    trajectories = [{"key": "villin/R1", "frame_interval_ps": 10.0, "stride_frames": [1, 20]}]
    save_checkpoint(tmp_path / "run.pt", cfg, core.net.state_dict(), ema, {"step": 41, "trajectories": trajectories})
    card = {"validated_stride_ns": [0.1, 0.2], "recommended_stride_ns": 0.1, "recommended_num_steps": 30,
            "recommended_noise_scale": 0.25, "recommended_time_spacing": 2.0, "recommended_ode_from_stride_ns": 0.15,
            "stride_validation": "measured on a test"}
    manifest = release_weights(tmp_path / "run.state.pt", "v", tmp_path / "weights", card=card, parent_steps=(100,),
                               meta_from=tmp_path / "run.pt")
    assert manifest["optimiser_steps"] == 140 and manifest["recommended_noise_scale"] == 0.25
    payload = torch.load(tmp_path / "weights" / "v.pt", weights_only=True)
    meta = payload["meta"]
    assert meta["stage_steps"] == [100, 40] and meta["preset"] == "tiny" and meta["data"] == "md_data"
    assert meta["trajectories"] == trajectories and meta["weights"] == "EMA"
    for k, v in load_model(tmp_path / "weights" / "v.pt").net.state_dict().items():  # the EMA, through two float16 casts
        assert torch.allclose(v, ema[k].float(), atol=2e-3, rtol=1e-3), k
    got = stride_card(tmp_path / "weights" / "v.pt")
    assert got.validated == (0.1, 0.2) and got.recommended == 0.1 and (got.num_steps, got.noise_scale, got.time_spacing) == (30, 0.25, 2.0)
    assert got.trained == pytest.approx((0.01, 0.2))
    assert got.ode_from_stride_ns == 0.15
    with pytest.raises(ValueError, match="unknown keys"):
        release_weights(tmp_path / "run.pt", "w", tmp_path / "weights", card={"noise": 0.3})


def test_a_weights_file_by_path_takes_the_card_of_the_manifest_beside_it(tmp_path):
    """A file released before its manifest gained a key (here the context card) and used by path
    gets the manifest's key, as the shipped name does; a manifest of another file is ignored."""
    import shutil
    import warnings

    from openmm_starmd.model.checkpoint import stride_card

    cfg = tiny()
    core = StarMDCore(cfg)
    save_checkpoint(tmp_path / "run.pt", cfg, core.net.state_dict(), core.net.state_dict(), {"step": 3})
    release_weights(tmp_path / "run.pt", "old", tmp_path / "weights", card={"recommended_num_steps": 30})
    copy = tmp_path / "elsewhere"
    copy.mkdir()
    shutil.copy(tmp_path / "weights" / "old.pt", copy / "old.pt")
    assert stride_card(copy / "old.pt").context_window is None  # no manifest beside it: the meta alone
    manifest = json.loads((tmp_path / "weights" / "old.json").read_text())
    manifest.update(recommended_context_window=8, recommended_context_sink=1)  # recorded after the release
    (copy / "old.json").write_text(json.dumps(manifest))
    card = stride_card(copy / "old.pt")
    assert (card.num_steps, card.context_window, card.context_sink) == (30, 8, 1)
    manifest["sha256"] = "0" * 64  # the manifest of another file
    (copy / "old.json").write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="another file"):
        card = stride_card(copy / "old.pt")
    assert card.num_steps == 30 and card.context_window is None
    (copy / "old.json").write_text("not json")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert stride_card(copy / "old.pt").context_window is None


@pytest.mark.skipif(not (WEIGHTS_DIR / "default.pt").is_file(), reason="no shipped default weights in this tree")
def test_shipped_default_loads_and_rolls_out():
    from openmm_starmd.model.rollout import Rollout

    path, sha = resolve_model_path("default")
    assert sha is not None and path.stat().st_size < 20_000_000
    core = load_model("default")
    torch.manual_seed(0)
    N = 9
    aatype = torch.arange(N) % 20
    rollout = Rollout(core, aatype, torch.arange(N), 0.05, seed=1, num_steps=3, capacity_frames=4)
    trans = torch.stack([0.38 * torch.arange(N, dtype=torch.float32), torch.zeros(N), torch.zeros(N)], -1)
    rollout.add_context(torch.eye(3).expand(N, 3, 3), trans - trans.mean(0))
    frame = rollout.step()
    assert frame.trans.shape == (1, N, 3) and torch.isfinite(frame.trans).all()


def test_shipped_meta_strips_machine_paths_and_keeps_one_step_count():
    from openmm_starmd.training.release import shipped_meta

    meta = shipped_meta({"step": 300, "steps": 300, "examples_seen": 1200, "wall_s": 9.5, "stage_steps": [100, 50, 300],
                         "init": "/home/someone/runs/stage2/model.pt", "data": "/scratch/md_data",
                         "trajectories": [{"key": "villin/R1", "source": "C:\\md\\villin.dcd"}]})
    assert meta["optimiser_steps"] == 450 and meta["stage_steps"] == [100, 50, 300]
    assert "step" not in meta and "steps" not in meta and "examples_seen" not in meta
    assert meta["last_stage_examples_seen"] == 1200 and meta["last_stage_wall_s"] == 9.5
    assert meta["init"] == "model.pt" and meta["data"] == "md_data"
    assert meta["trajectories"] == [{"key": "villin/R1", "source": "villin.dcd"}]


def _strings(value):
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


@pytest.mark.skipif(not (WEIGHTS_DIR / "default.pt").is_file(), reason="no shipped default weights in this tree")
def test_shipped_default_describes_itself_consistently():
    import re
    import subprocess
    import sys
    from pathlib import Path, PurePosixPath, PureWindowsPath

    from openmm_starmd.model.checkpoint import checkpoint_meta
    from openmm_starmd.openmm.generator import GeneratorOptions

    meta = checkpoint_meta("default")
    assert not [s for s in _strings(meta) if PurePosixPath(s).is_absolute() or PureWindowsPath(s).is_absolute()]
    manifest = json.loads((WEIGHTS_DIR / "default.json").read_text())
    assert manifest["optimiser_steps"] == meta["optimiser_steps"] == sum(meta["stage_steps"])
    info = subprocess.run([sys.executable, "-m", "openmm_starmd.cli", "info"], capture_output=True, text=True,
                          check=True).stdout
    summary = info.split("config:")[0]
    assert "weights:     EMA" in summary and "False" not in summary
    steps = f"{meta['optimiser_steps']:,} optimiser steps"
    assert steps in summary
    card = (Path(__file__).resolve().parents[1] / "docs" / "model_card.md").read_text()
    assert re.search(rf"= {steps}", card), "docs/model_card.md gives another step count"
    from openmm_starmd.model.checkpoint import stride_card

    options = GeneratorOptions().with_sampler_of(stride_card("default"))
    assert (options.num_steps, options.noise_scale) == (manifest["recommended_num_steps"], manifest["recommended_noise_scale"])
    assert options.noise_switch_t == manifest.get("recommended_noise_switch_t", 1.0)
    assert options.context_window == manifest.get("recommended_context_window", 0)
    assert options.context_sink == manifest.get("recommended_context_sink", 0)
    assert options.ode is False  # no stride named: the SDE
    ode_from = manifest.get("recommended_ode_from_stride_ns")
    if ode_from is not None:
        assert GeneratorOptions().with_sampler_of(stride_card("default"), ode_from).ode is True
        assert f"at strides of {ode_from:g} ns and more, the probability-flow ODE instead" in summary
    switch = f" below diffusion time {options.noise_switch_t:g} (the exact SDE above it)" if options.noise_switch_t < 1 else ""
    assert (f"use {options.num_steps} reverse-diffusion steps per frame, noise scale {options.noise_scale:g}{switch} "
            f"and time spacing {options.time_spacing:g}") in summary
