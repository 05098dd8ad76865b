"""The training loop: tiny learns a small trajectory, resume equals an uninterrupted run, and two
DDP processes (gloo, CPU) keep identical parameters."""
import json
import os
import socket

import mdtraj
import numpy as np
import pytest
import torch

from openmm_starmd.training.trainer import TrainConfig, Trainer, read_log

NUM_FRAMES = 31


def _smooth_villin(folder, villin_pdb_path):
    """Villin heavy atoms moving smoothly: every atom on its own slow ellipse (0.03 nm) plus a
    slow rigid drift, 31 frames of 10 ps written as PDB + DCD + a sidecar with the interval."""
    traj = mdtraj.load(villin_pdb_path)
    traj = traj.atom_slice(traj.topology.select("protein and not element H"))
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, traj.n_atoms, 3))
    phase = np.linspace(0.0, 2.0 * np.pi, NUM_FRAMES)[:, None, None]
    xyz = traj.xyz[0] + 0.03 * (np.cos(phase) * a + np.sin(phase) * b) / np.sqrt(3.0)
    xyz = xyz + 0.05 * phase / (2 * np.pi) * np.array([1.0, -0.5, 0.2])
    moving = mdtraj.Trajectory(xyz.astype(np.float32), traj.topology)
    folder.mkdir(parents=True, exist_ok=True)
    moving[0].save_pdb(str(folder / "villin.pdb"))
    moving.save_dcd(str(folder / "villin.dcd"))
    (folder / "villin.json").write_text(json.dumps({"frame_interval_ps": 10.0}))
    return folder


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, villin_pdb_path_module):
    return _smooth_villin(tmp_path_factory.mktemp("train_data") / "villin", villin_pdb_path_module)


@pytest.fixture(scope="module")
def villin_pdb_path_module():
    import openmm.app

    return os.path.join(os.path.dirname(openmm.app.__file__), "data", "test.pdb")


def _config(data_dir, out, **kw):
    base = dict(data=data_dir, out=out, preset="tiny", steps=40, batch_size=2, num_frames=5, crop_residues=13, lr=2e-3,
                warmup_steps=5, checkpoint_every=1000, plot_every=1000, progress=False, seed=3, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def test_tiny_loss_decreases_and_files_are_written(data_dir, tmp_path):
    torch.set_num_threads(1)
    cfg = _config(data_dir, tmp_path / "m.pt", steps=60)
    records = Trainer(cfg).run()
    total = np.array([r["total"] for r in records])
    first, last = total[:15], total[-15:]
    # averaged windows, fixed seed: the last quarter sits well below the first
    assert last.mean() < first.mean() - 2.0 * np.sqrt(first.var() / 15 + last.var() / 15), (first.mean(), last.mean())
    assert cfg.out.is_file() and cfg.plot_path.is_file() and len(read_log(cfg.log_path)) == 60
    from openmm_starmd.model.checkpoint import load_model

    core = load_model(cfg.out)
    assert sum(p.numel() for p in core.net.parameters()) > 0
    state = torch.load(cfg.out, weights_only=True)
    assert state["meta"]["step"] == 60 and "ema" in state


def test_run_from_init_adds_its_steps_to_the_parents_stages(data_dir, tmp_path):
    torch.set_num_threads(1)
    Trainer(_config(data_dir, tmp_path / "a.pt", steps=3)).run()
    Trainer(_config(data_dir, tmp_path / "b.pt", steps=2, init=str(tmp_path / "a.pt"))).run()
    meta = torch.load(tmp_path / "b.pt", weights_only=True)["meta"]
    assert meta["stage_steps"] == [3, 2] and meta["step"] == 2


def test_resume_equals_uninterrupted_run(data_dir, tmp_path):
    torch.set_num_threads(1)
    straight = Trainer(_config(data_dir, tmp_path / "a.pt", steps=6)).run()
    Trainer(_config(data_dir, tmp_path / "b.pt", steps=3)).run()
    resumed = Trainer(_config(data_dir, tmp_path / "b.pt", steps=6, resume=True)).run()
    assert [r["step"] for r in resumed] == [4, 5, 6]
    log = read_log(tmp_path / "b.pt.log.jsonl")
    for a, b in zip(straight, log):
        assert a["step"] == b["step"]
        assert a["total"] == pytest.approx(b["total"], rel=1e-6, abs=1e-7)
    wa = torch.load(tmp_path / "a.pt", weights_only=True)
    wb = torch.load(tmp_path / "b.pt", weights_only=True)
    for k in wa["model"]:
        assert torch.allclose(wa["model"][k], wb["model"][k], atol=1e-6), k
        assert torch.allclose(wa["ema"][k], wb["ema"][k], atol=1e-6), k


def test_stop_at_keeps_the_schedule_and_resumes_like_an_uninterrupted_run_with_self_history(data_dir, tmp_path):
    """``stop_at`` ends a run early with the learning-rate schedule of ``steps``; resuming it equals the
    uninterrupted run, also when some steps train on the network's own samples as history."""
    from openmm_starmd.training.block_causal import SelfHistory

    torch.set_num_threads(1)
    history = SelfHistory(prob=0.5, num_steps=2)
    straight = Trainer(_config(data_dir, tmp_path / "a.pt", steps=6, self_history=history)).run()
    first = Trainer(_config(data_dir, tmp_path / "b.pt", steps=6, stop_at=3, self_history=history)).run()
    assert [r["step"] for r in first] == [1, 2, 3]
    assert torch.load(tmp_path / "b.pt", weights_only=True)["meta"]["step"] == 3
    Trainer(_config(data_dir, tmp_path / "b.pt", steps=6, resume=True, self_history=history)).run()
    log = read_log(tmp_path / "b.pt.log.jsonl")
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(straight, log):
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-12)
        assert a["total"] == pytest.approx(b["total"], rel=1e-6, abs=1e-7)
    unaided = Trainer(_config(data_dir, tmp_path / "c.pt", steps=6)).run()
    assert any(a["total"] != pytest.approx(b["total"], rel=1e-6) for a, b in zip(straight, unaided))


def test_a_signal_stops_after_the_step_with_a_checkpoint_there_and_resumes_exactly(data_dir, tmp_path):
    """SIGINT in the middle of a run: the step in progress finishes, the checkpoint and the state
    are written at that step (although the next scheduled checkpoint is far away), the handlers are
    restored, and resuming gives the uninterrupted run."""
    import signal

    torch.set_num_threads(1)
    straight = Trainer(_config(data_dir, tmp_path / "a.pt", steps=6)).run()
    trainer = Trainer(_config(data_dir, tmp_path / "b.pt", steps=6, checkpoint_every=1000))
    step = trainer.train_step

    def interrupted_step():
        record = step()
        if trainer.step == 2:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # the same request, also forwarded by a launcher
        return record

    trainer.train_step = interrupted_step
    previous = signal.getsignal(signal.SIGINT)
    records = trainer.run()
    assert trainer.interrupted and [r["step"] for r in records] == [1, 2]
    assert signal.getsignal(signal.SIGINT) is previous
    assert torch.load(tmp_path / "b.pt", weights_only=True)["meta"]["step"] == 2
    assert torch.load(tmp_path / "b.pt.train.pt", weights_only=True)["step"] == 2
    resumed = Trainer(_config(data_dir, tmp_path / "b.pt", steps=6, resume=True))
    assert [r["step"] for r in resumed.run()] == [3, 4, 5, 6] and not resumed.interrupted
    for a, b in zip(straight, read_log(tmp_path / "b.pt.log.jsonl")):
        assert a["total"] == pytest.approx(b["total"], rel=1e-6, abs=1e-7)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, data_dir, out_dir):
    import torch.distributed as dist

    from openmm_starmd.training.distributed import DistributedContext

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        cfg = _config(data_dir, out_dir / "ddp.pt", steps=3)
        trainer = Trainer(cfg, DistributedContext(rank, world, torch.device("cpu")))
        records = trainer.run()
        flat = torch.cat([p.detach().flatten() for p in trainer.net.parameters()])
        grads = torch.cat([p.grad.flatten() for p in trainer.net.parameters() if p.grad is not None])
        torch.save({"params": flat, "grads": grads, "keys": [r["key"] for r in records]}, out_dir / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_two_processes_keep_identical_parameters(data_dir, tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, _free_port(), data_dir, tmp_path), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert torch.equal(r0["params"], r1["params"])
    assert torch.allclose(r0["grads"], r1["grads"], atol=1e-7)  # all-reduced gradients of the last step
    assert (tmp_path / "ddp.pt").is_file() and not (tmp_path / "rank1.pt.log.jsonl").exists()
    single = Trainer(_config(data_dir, tmp_path / "single.pt", steps=3))
    init = torch.cat([p.detach().flatten() for p in single.net.parameters()])
    assert not torch.equal(init, r0["params"])  # the ranks did train


def test_heldout_report_measures_the_rollout_against_its_md(data_dir, tmp_path):
    """The held-out report of the model card: lag RMSD of the MD, validity in [0, 1], start frame."""
    from generator_helpers import tiny_checkpoint
    from openmm_starmd.geometry.superpose import rmsd
    from openmm_starmd.training.heldout import evaluate

    torch.set_num_threads(1)
    path = tiny_checkpoint(tmp_path / "tiny.pt")
    report = evaluate(path, str(data_dir), stride_ns=0.02, jumps=3, num_steps=4, seed=0, noise_scale=0.5, start_frame=-1)
    traj = mdtraj.load(str(data_dir / "villin.dcd"), top=str(data_dir / "villin.pdb"))
    ca = torch.from_numpy(traj.xyz[:, traj.topology.select("name CA")]).double()
    expected = float(rmsd(ca[2:], ca[:-2]).mean()) * 10.0
    assert report["md_ca_rmsd_at_same_lag_angstrom"] == pytest.approx(expected, rel=1e-3)
    assert report["start_frame"] == NUM_FRAMES - 1 and report["jumps"] == 3 and report["noise_scale"] == 0.5
    assert 0.0 <= report["ca_validity"] <= 1.0 and report["model_per_jump_ca_rmsd_angstrom"] > 0.0
    assert len(report["ca_valid_per_jump"]) == 3 and np.mean(report["ca_valid_per_jump"]) == pytest.approx(report["ca_validity"])
    drift = report["ca_rmsd_to_start_per_jump_angstrom"]
    assert len(drift) == 3 and drift[-1] == pytest.approx(report["model_rmsd_to_start_final_angstrom"], abs=1e-3)
    with pytest.raises(ValueError, match="start_frame 31 is outside"):
        evaluate(path, str(data_dir), 0.02, 1, 2, 0, start_frame=NUM_FRAMES)
    from openmm_starmd.data.readers import find_sources

    label = find_sources(str(data_dir))[0].replica
    same = evaluate(path, str(data_dir), stride_ns=0.02, jumps=3, num_steps=4, seed=0, noise_scale=0.5, start_frame=-1,
                    replica=label)
    assert same["replica"] == label and same["ca_rmsd_to_start_per_jump_angstrom"] == drift
    unswitched = evaluate(path, str(data_dir), 0.02, 3, 4, 0, noise_scale=0.5, start_frame=-1, noise_switch_t=1.0)
    assert unswitched["ca_rmsd_to_start_per_jump_angstrom"] == drift and report["noise_switch_t"] == 1.0
    switched = evaluate(path, str(data_dir), 0.02, 3, 4, 0, noise_scale=0.5, start_frame=-1, noise_switch_t=0.0)
    assert switched["noise_switch_t"] == 0.0 and switched["ca_rmsd_to_start_per_jump_angstrom"] != drift  # the exact SDE
    with pytest.raises(ValueError, match="no replica 'R9'"):
        evaluate(path, str(data_dir), 0.02, 1, 2, 0, replica="R9")


def test_holdout_takes_a_system_or_one_replica(data_dir, tmp_path):
    from openmm_starmd.data.readers import find_sources
    from openmm_starmd.training.trainer import build_dataset

    source = find_sources(str(data_dir))[0]
    kept = build_dataset(_config(data_dir, tmp_path / "a.pt", holdout=(f"{source.name}/other",)))
    assert [s.key for s in kept.sources] == [source.key]
    for holdout in (source.name, source.key):
        with pytest.raises(ValueError, match="no training trajectories left"):
            build_dataset(_config(data_dir, tmp_path / "b.pt", holdout=(holdout,)))
