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
    assert manifest["step"] == 7
    payload = torch.load(tmp_path / "weights" / "default.pt", weights_only=True)
    assert "ema" not in payload and payload["meta"]["weights"] == "EMA"
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
