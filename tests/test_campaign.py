"""The campaign's compact training state: packed to float16, unpacked, and resumed."""
import torch

from openmm_starmd.training.campaign import commands, pack_state, unpack_state
from openmm_starmd.training.trainer import TrainConfig, Trainer
from test_training import NUM_FRAMES  # noqa: F401  (the data fixture below is test_training's)
from test_training import data_dir, villin_pdb_path_module  # noqa: F401


def test_packed_state_is_small_and_resumes_from_the_ema_weights(data_dir, tmp_path):  # noqa: F811
    torch.set_num_threads(1)
    cfg = dict(data=data_dir, preset="tiny_v2", batch_size=2, num_frames=4, min_frames=2, crop_residues=11,
               warmup_steps=1, checkpoint_every=1000, plot_every=1000, progress=False, device="cpu", seed=5)
    Trainer(TrainConfig(out=tmp_path / "a.pt", steps=2, **cfg)).run()
    state = tmp_path / "a.pt.train.pt"
    packed = tmp_path / "packed.state.pt"
    size = pack_state(state, packed)
    assert size < 0.35 * state.stat().st_size  # float16 EMA weights only: no raw weights, no Adam moments
    resumed_state = tmp_path / "b.pt.train.pt"
    unpack_state(packed, resumed_state)
    full = torch.load(state, weights_only=True)
    back = torch.load(resumed_state, weights_only=True)
    assert back["step"] == 2 and torch.equal(back["rng_cpu"], full["rng_cpu"])
    for k, v in full["ema"]["shadow"].items():
        assert back["model"][k].dtype == torch.float32
        assert torch.allclose(back["model"][k], v, rtol=1e-3, atol=1e-4)  # the EMA weights, float16 rounding only
        assert torch.equal(back["model"][k], back["ema"]["shadow"][k])
    assert back["optimizer"]["state"] == {} and back["scheduler"] == full["scheduler"]
    trainer = Trainer(TrainConfig(out=tmp_path / "b.pt", steps=3, resume=True, **cfg))
    assert trainer.step == 2
    assert len(trainer.run()) == 1 and trainer.step == 3


def test_campaign_commands_run_md_and_training_on_one_core_each():
    campaign = {"name": "x", "simulate": {"structures": ["bioemu:1ENH"], "args": ["--ns", "5"]},
                "train": {"args": ["--preset", "small_v2"]}}
    (simulate,), train, ckpt = commands(campaign, 1.5)
    assert simulate[3:5] == ["simulate", "bioemu:1ENH"] and "--max-hours" in simulate and "--ns" in simulate
    assert train[3] == "train" and "--resume" in train and train[train.index("--threads") + 1] == "1"
    assert train[train.index("--max-wall-s") + 1] == "5400" and ckpt.name == "x.pt"


def test_the_long_md_stage_runs_first_and_hands_the_core_on(monkeypatch, capsys):
    """``simulate.long`` extends its systems first; when it ends (its systems at their length) the
    broad round-robin starts with the hours left; a stop request starts no further stage."""
    import signal
    import sys

    import pytest

    from openmm_starmd.training import campaign as campaign_module
    from openmm_starmd.training.campaign import MDStages, md_stages

    campaign = {"name": "x", "simulate": {"structures": ["bioemu:1ENH"], "args": ["--ns", "1000"],
                                          "long": {"structures": ["trpzip2", "seq:GYDPETGTWG"], "args": ["--ns", "10"]}},
                "train": {"args": []}}
    stages = md_stages(campaign)
    assert stages == [(["trpzip2", "seq:GYDPETGTWG"], ["--ns", "10"]), (["bioemu:1ENH"], ["--ns", "1000"])]
    long_cmd, broad_cmd = commands(campaign, 2.0)[0]
    assert long_cmd[4:6] == ["trpzip2", "seq:GYDPETGTWG"] and long_cmd[long_cmd.index("--ns") + 1] == "10"
    assert broad_cmd[4] == "bioemu:1ENH"
    bad = {"name": "x", "simulate": {"structures": ["a"], "long": {"structures": ["b"], "args": []}}, "train": {"args": []}}
    with pytest.raises(ValueError, match="simulate.long.*--ns"):
        md_stages(bad)
    # stages listed under simulate.stages run before the long one, in their order
    campaign["simulate"]["stages"] = [{"structures": ["seq:RPKPQQFFGLM", "bioemu:all"], "args": ["--ns", "0.5", "--order", "sequential"]}]
    assert md_stages(campaign) == [(["seq:RPKPQQFFGLM", "bioemu:all"], ["--ns", "0.5", "--order", "sequential"]), *stages]
    campaign["simulate"]["stages"].append({"structures": ["a"], "args": ["--chunk-ps", "100"]})
    with pytest.raises(ValueError, match=r"simulate.stages\[1\].*--ns"):
        md_stages(campaign)
    del campaign["simulate"]["stages"]

    started = []

    def fake_command(structures, args, hours):  # a stage that records its hours and ends at once
        started.append((structures, hours))
        return [sys.executable, "-c", "import time; time.sleep(0.2)"]

    monkeypatch.setattr(campaign_module, "simulate_command", fake_command)
    job = MDStages(stages, 1.0, env=None)
    assert job.wait() == 0
    assert [s for s, _ in started] == [["trpzip2", "seq:GYDPETGTWG"], ["bioemu:1ENH"]]
    assert 0.999 < started[0][1] <= 1.0 and 0.99 < started[1][1] < started[0][1]  # the broad stage gets the hours left

    started.clear()
    job = MDStages(stages, 1.0, env=None)
    job.send_signal(signal.SIGINT)  # stopped during the long stage: the broad one never starts
    job.wait()
    assert [s for s, _ in started] == [["trpzip2", "seq:GYDPETGTWG"]]
    started.clear()
    assert MDStages(stages, 1.0 / 60.0, env=None).wait() == 0 and started == []  # under two minutes: nothing starts


def test_warm_start_copies_every_matching_weight_and_keeps_the_new_inputs(tmp_path):
    from openmm_starmd.model import StarMDCore
    from openmm_starmd.model.checkpoint import save_checkpoint
    from openmm_starmd.model.config import tiny, tiny_v2
    from openmm_starmd.training.trainer import warm_start

    torch.manual_seed(0)
    parent = StarMDCore(tiny())
    for p in parent.net.parameters():
        torch.nn.init.normal_(p)
    save_checkpoint(tmp_path / "parent.pt", tiny(), parent.net.state_dict())
    child = StarMDCore(tiny_v2())
    fresh = {k: v.clone() for k, v in child.net.state_dict().items()}
    counts = warm_start(child, str(tmp_path / "parent.pt"))
    state, source = child.net.state_dict(), parent.net.state_dict()
    copied = [k for k in state if k in source and source[k].shape == state[k].shape]
    assert counts["copied"] == len(copied) > 0 and counts["kept"] == len(state) - len(copied) > 0
    assert all(torch.equal(state[k], source[k]) for k in copied)
    assert torch.equal(state["pair_embed.template.weight"], fresh["pair_embed.template.weight"])  # new input: initialised
    assert "seq_embed.index.weight" not in state  # no absolute index in the new network


def test_a_backgrounded_job_still_stops_on_sigint():
    """A shell starts background jobs (``nohup cmd &``) with SIGINT ignored; the long jobs restore it,
    so ``kill -INT`` stops them with KeyboardInterrupt."""
    import signal
    import subprocess
    import sys
    import time

    code = ("import signal, time; from openmm_starmd.internal import restore_interrupt; "
            "assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN; restore_interrupt(); print('ready', flush=True); time.sleep(60)")
    job = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert job.stdout.readline().strip() == "ready"
    start = time.monotonic()
    job.send_signal(signal.SIGINT)
    _, err = job.communicate(timeout=30)
    assert time.monotonic() - start < 30 and job.returncode != 0 and "KeyboardInterrupt" in err


def test_campaign_keeps_the_table_of_systems_up_to_date(tmp_path, capsys):
    from openmm_starmd.data.inventory import README_BEGIN
    from openmm_starmd.training.campaign import update_inventory
    from test_data_inventory import _system

    _system(tmp_path, "a", ["GLY", "TRP"], {"R1": 0.7})
    (tmp_path / "validation_split.txt").write_text("a  # held out\n")
    (tmp_path / "README.md").write_text("# data\n")
    update_inventory(tmp_path)
    text = (tmp_path / "README.md").read_text()
    assert README_BEGIN in text and "| a | 2 | R1 0.7 | 0.70 | 1 | validation |" in text
    (tmp_path / "a" / "a.json").write_text("{")
    update_inventory(tmp_path)  # reported, not raised; the old table stays
    assert "not updated" in capsys.readouterr().err and (tmp_path / "README.md").read_text() == text
