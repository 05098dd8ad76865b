"""Checkpoints, load_model, the CLI, and bad input to the rollout."""
import math
import subprocess
import sys
import warnings

import pytest
import torch

from conftest import randomize_, random_protein
from openmm_starmd import load_model
from openmm_starmd.model import Rollout, StarMDConfig, StarMDCore, tiny
from openmm_starmd.model.checkpoint import save_checkpoint

N = 7


@pytest.fixture
def ckpt(tmp_path):
    torch.manual_seed(0)
    core = randomize_(StarMDCore(tiny()), std=0.05)
    path = tmp_path / "m.pt"
    save_checkpoint(path, tiny(), core.net.state_dict(), meta={"note": "test"})
    return core, path


def test_checkpoint_round_trip_gives_same_frames(ckpt):
    core, path = ckpt
    loaded = load_model(str(path))
    aatype, resid, rots, trans = random_protein(N, 2)
    out = []
    for c in (core.eval(), loaded):
        r = Rollout(c, aatype, resid, 1.0, seed=4, num_steps=4)
        r.add_context(rots, trans)
        out.append(r.run(2).trans)
    assert torch.equal(out[0], out[1])


def test_bad_model_files_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_model(str(tmp_path / "nope.pt"))
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="corrupt.pt"):
        load_model(str(bad))
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(ValueError, match="not an openmm-starmd checkpoint"):
        load_model(str(foreign))
    wrong = tmp_path / "wrong.pt"
    cfg = tiny()
    cfg.c_s = 30  # config of another network
    save_checkpoint(wrong, cfg, StarMDCore(tiny()).net.state_dict())
    with pytest.raises(ValueError, match="wrong.pt"):
        load_model(str(wrong))


def test_config_rejects_contradictions():
    with pytest.raises(ValueError, match="st_heads"):
        StarMDConfig(c_s=30, st_heads=4).validate()
    with pytest.raises(ValueError, match="unknown StarMDConfig keys"):
        StarMDConfig.from_dict({"c_s": 8, "typo_key": 1})


def test_rollout_bad_input():
    core = StarMDCore(tiny()).eval()
    aatype, resid, rots, trans = random_protein(N)
    with pytest.raises(ValueError, match="N = 0"):
        Rollout(core, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), 1.0)
    with pytest.raises(ValueError, match="aatype.*unknown codes \\[20\\]"):
        Rollout(core, torch.full((N,), 20), resid, 1.0)
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="stride_ns"):
            Rollout(core, aatype, resid, bad)
    with pytest.raises(TypeError, match="stride_ns"):
        Rollout(core, aatype, resid, "1ns")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        Rollout(core, aatype, resid, 50.0)
    assert [x.filename for x in w if "outside the trained range" in str(x.message)] == [__file__]
    r = Rollout(core, aatype, resid, 1.0, num_steps=2)
    with pytest.raises(ValueError, match="residues"):
        r.add_context(rots[:5], trans[:5])
    with pytest.raises(ValueError, match="rots"):
        r.add_context(rots[..., :2], trans)
    bad_trans = trans.clone()
    bad_trans[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        r.add_context(rots, bad_trans)
    with pytest.raises(RuntimeError, match="add_context"):
        r.step()
    with pytest.raises(ValueError, match="num_frames"):
        r.run(-1)


def test_rollout_is_reproducible_and_resumable(ckpt):
    core, _ = ckpt
    core.eval()
    aatype, resid, rots, trans = random_protein(N, 5)
    full = Rollout(core, aatype, resid, 2.0, replicas=2, seed=9, num_steps=3)
    full.add_context(rots, trans)
    a = full.run(4)
    part = Rollout(core, aatype, resid, 2.0, replicas=2, seed=9, num_steps=3)
    part.add_context(rots, trans)
    b1 = part.run(2)
    state = part.state_dict()
    resumed = Rollout.from_state(core, state)
    b2 = resumed.run(2)
    assert torch.allclose(a.trans, torch.cat([b1.trans, b2.trans], 1), atol=1e-6)
    # replicas differ from each other, and aligned frames stay near the start structure's scale
    assert (a.trans[0] - a.trans[1]).abs().max() > 1e-4
    assert torch.isfinite(a.trans).all()


def test_rollout_context_noise_defaults_to_the_weights_and_survives_resume(ckpt):
    """``context_noise_t``: None is the core's own τ (the same frames), another τ gives other
    frames, 0 a clean history; it is kept across state_dict / from_state; outside [0, 1] it fails."""
    core, _ = ckpt
    core.eval()
    aatype, resid, rots, trans = random_protein(N, 3)

    def run(**kw):
        r = Rollout(core, aatype, resid, 1.0, seed=2, num_steps=3, **kw)
        r.add_context(rots, trans)
        return r, r.run(3).trans

    own = float(core.context_noise_t)
    assert own > 0
    default, a = run()
    assert default.context_noise_t == own
    assert torch.equal(a, run(context_noise_t=own)[1])
    clean, c = run(context_noise_t=0.0)
    assert (a - c).abs().max() > 1e-4
    resumed = Rollout.from_state(core, clean.state_dict())
    assert resumed.context_noise_t == 0.0
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="context_noise_t"):
            Rollout(core, aatype, resid, 1.0, context_noise_t=bad)


def test_cli_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "openmm_starmd.cli", "--help"], capture_output=True, text=True, check=True).stdout
    for name in ("generate", "train", "evaluate", "export", "simulate"):
        assert name in out


def test_cli_export_and_info(ckpt, tmp_path):
    _, path = ckpt
    out = tmp_path / "core.pt"
    subprocess.run([sys.executable, "-m", "openmm_starmd.cli", "export", "--model", str(path), "--out", str(out)], check=True)
    scripted = torch.jit.load(str(out))
    assert hasattr(scripted, "step")
    info = subprocess.run([sys.executable, "-m", "openmm_starmd.cli", "info", str(path)], capture_output=True, text=True, check=True).stdout
    assert "parameters" in info and "sha256" in info


def test_default_model_missing_says_how_to_restore_it(monkeypatch, tmp_path):
    import openmm_starmd.model.checkpoint as ck

    monkeypatch.setattr(ck, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"Reinstall the package .*starmd train"):
        load_model("default")
