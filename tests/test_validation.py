"""Validation on unseen proteins: the split check by sequence, raw-rollout scores against MD,
training with validation (log, plot, best checkpoint), and variable context length."""
import json
import os

import numpy as np
import pytest
import torch

from openmm_starmd.data.dataset import DatasetConfig, TrajectoryDataset
from openmm_starmd.data.identity import identity, max_identity
from openmm_starmd.data.readers import find_sources
from openmm_starmd.model import StarMDCore
from openmm_starmd.model.config import tiny_v2
from openmm_starmd.training.command import parse_overrides
from openmm_starmd.training.trainer import TrainConfig, Trainer, draw_batch
from openmm_starmd.training.validation import check_split, compactness, radius_of_gyration, read_split, score_core
from test_training import _smooth_villin


@pytest.fixture(scope="module")
def two_systems(tmp_path_factory):
    import openmm.app

    pdb = os.path.join(os.path.dirname(openmm.app.__file__), "data", "test.pdb")
    root = tmp_path_factory.mktemp("val_data")
    for name in ("villin", "villin_copy"):
        folder = _smooth_villin(root / name, pdb)
        for suffix in ("pdb", "dcd", "json"):  # the reader pairs files by stem: rename to the folder's name
            (folder / f"villin.{suffix}").rename(folder / f"{name}.{suffix}")
    (root / "split.txt").write_text("# held out\nvillin_copy   # same sequence as villin\n")
    return root


def test_identity_of_known_pairs():
    assert identity("GYDPETGTWG", "GYDPETGTWG") == 1.0
    assert identity("GEWTYDDATKTFTVTE", "GEWTWDDATKTWTWTE") == pytest.approx(13 / 16)
    assert identity("KLVFFAEN", "NLYIQWLKDGGPSSGRPPPS") < 0.3  # a short peptide cannot make a long protein known
    assert max_identity("AAAA", ["CCCC", "AAAC"]) == (0.75, 1)
    with pytest.raises(ValueError):
        identity("", "A")


def test_split_check_flags_a_validation_system_that_shares_a_training_sequence(two_systems):
    assert read_split(two_systems / "split.txt") == ("villin_copy",)
    rows = check_split(two_systems, two_systems / "split.txt")
    assert rows == [{"system": "villin_copy", "residues": 35, "max_identity": 1.0, "nearest_training_system": "villin",
                     "unrelated": False}]
    (two_systems / "bad_split.txt").write_text("no_such_system\n")
    with pytest.raises(ValueError, match="no_such_system"):
        check_split(two_systems, two_systems / "bad_split.txt")


def test_raw_rollout_scores_against_md(two_systems):
    torch.manual_seed(0)
    core = StarMDCore(tiny_v2()).eval()  # untrained: every jump returns its context, a known answer
    report = score_core(core, two_systems, two_systems / "split.txt", strides_ns=(0.01, 0.5), jumps=3, num_steps=2)
    short, long = report["systems"]
    assert short["system"] == "villin_copy" and short["stride_ns"] == 0.01 and short["jumps"] == 3
    # the two starts are the farthest-apart frames of the smooth trajectory (ellipse phases 0 and π)
    assert abs(short["starts"][0] - short["starts"][1]) == 15
    assert 0.0 <= short["ca_valid"] <= 1.0 and short["finite"]
    assert len(short["ca_valid_per_jump"]) == 3 and np.mean(short["ca_valid_per_jump"]) == pytest.approx(short["ca_valid"])
    assert report["summary"]["0.01ns"]["ca_valid_first_20"] is None  # only rollouts longer than 20 jumps give it
    assert short["md_lag_rmsd_angstrom"] > 0 and short["rmsd_ratio"] == pytest.approx(
        short["per_jump_rmsd_angstrom"] / short["md_lag_rmsd_angstrom"])
    assert long["rmsd_ratio"] is None  # 0.5 ns is longer than the 0.3 ns of MD
    assert short["start_separation_angstrom"] > short["md_spread_angstrom"] > 0
    assert set(report["summary"]) == {"0.01ns", "0.5ns"}
    assert report["summary"]["0.5ns"]["rmsd_ratio_systems"] == 0
    assert short["md_relaxation_frames"] == [0] and short["rmsd_ratio_equilibrium"] == pytest.approx(short["rmsd_ratio"])
    causes = short["invalid_by"]
    assert causes["break_only"] + causes["clash_only"] + causes["both"] == pytest.approx(1.0 - short["ca_valid"])
    assert set(report["summary"]["0.01ns"]["invalid_by"]) == set(causes)
    compact = short["compactness"]
    assert 0 < compact["md_rg_p1_angstrom"] <= compact["md_rg_angstrom"] and 0.0 <= compact["below_md_p1"] <= 1.0
    assert compact["rg_ratio"] == pytest.approx(compact["rg_last_quarter_angstrom"] / compact["md_rg_angstrom"])
    assert report["summary"]["0.01ns"]["rg_ratio_median"] == pytest.approx(
        np.median([r["compactness"]["rg_ratio"] for r in report["systems"] if r["stride_ns"] == 0.01]))


def _perturbed_core():
    """An untrained tiny core moved off "return the context" (which it does untrained), so that
    the sampler's noise shows in its rollouts; the same weights on every call."""
    torch.manual_seed(0)
    core = StarMDCore(tiny_v2()).eval()
    with torch.no_grad():
        for p in core.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return core


def test_several_rollouts_per_start_are_independent_and_scored_together(two_systems):
    from openmm_starmd.training.validation import _systems, far_pair_rollouts

    core = _perturbed_core()
    trajectories = _systems(two_systems, ["villin_copy"])["villin_copy"]
    by_start, (a, b, _) = far_pair_rollouts(core, trajectories, 0.01, 2, 2, 0.5, seed=0, rollouts_per_start=3)
    assert [len(r) for r in by_start] == [3, 3]
    for start, rollouts in zip((a, b), by_start):
        md_start = torch.from_numpy(np.concatenate([t.trans for t in trajectories])[start]).double()
        for g in rollouts:
            assert g.shape == (3, 35, 3) and torch.equal(g[0], md_start)
        assert (rollouts[0][1:] - rollouts[1][1:]).abs().max() > 1e-4  # replicas draw their own noise
    report = score_core(core, two_systems, two_systems / "split.txt", strides_ns=(0.01,), jumps=2, num_steps=2,
                        noise_scale=0.5, rollouts_per_start=3)
    row = report["systems"][0]
    assert report["settings"]["rollouts_per_start"] == 3 and row["rollouts"] == 6
    assert len(row["ca_valid_per_rollout"]) == 6 and np.mean(row["ca_valid_per_rollout"]) == pytest.approx(row["ca_valid"])
    assert np.mean(row["ca_valid_per_jump"]) == pytest.approx(row["ca_valid"])
    one = score_core(core, two_systems, two_systems / "split.txt", strides_ns=(0.01,), jumps=2, num_steps=2, noise_scale=0.5)
    assert "rollouts_per_start" not in one["settings"] and one["systems"][0]["rollouts"] == 2
    with pytest.raises(ValueError, match="rollouts_per_start"):
        far_pair_rollouts(core, trajectories, 0.01, 2, 2, 0.5, seed=0, rollouts_per_start=0)


def test_ode_rollouts_ignore_the_noise_scale_and_are_reported_as_the_ode(two_systems):
    """The probability-flow ODE injects no noise in its reverse steps: the same seed gives the same
    rollouts whatever the noise scale, where the SDE's differ; the report names the sampler."""
    from openmm_starmd.training.validation import _systems, far_pair_rollouts

    core = _perturbed_core()
    trajectories = _systems(two_systems, ["villin_copy"])["villin_copy"]

    def run(noise, ode):
        by_start, _ = far_pair_rollouts(core, trajectories, 0.01, 2, 3, noise, seed=0, ode=ode)
        return torch.stack([g for rollouts in by_start for g in rollouts])

    assert torch.equal(run(0.1, True), run(1.0, True))
    assert (run(0.1, False) - run(1.0, False)).abs().max() > 1e-4
    assert (run(1.0, True) - run(1.0, False)).abs().max() > 1e-4
    report = score_core(core, two_systems, two_systems / "split.txt", strides_ns=(0.01,), jumps=2, num_steps=3, ode=True)
    assert report["settings"]["sampler"] == "ode" and report["systems"][0]["finite"]
    assert score_core(core, two_systems, two_systems / "split.txt", strides_ns=(0.01,), jumps=1, num_steps=2)["settings"]["sampler"] == "sde"


def _collapsing_trajectory(relax_frames: int = 20, frames: int = 200, residues: int = 10):
    """A chain fluctuating about its extended start for ``relax_frames`` frames, then about a
    compact structure (Cα nm, 10 ps apart): the shape of a peptide MD started extended."""
    from openmm_starmd.data.dataset import FramesTrajectory

    rng = np.random.default_rng(1)
    extended = np.zeros((residues, 3))
    extended[:, 0] = 0.38 * np.arange(residues)
    compact = np.cumsum(rng.normal(0, 0.22, (residues, 3)), axis=0)
    weight = (np.arange(frames) < relax_frames)[:, None, None].astype(float)
    trans = weight * extended + (1 - weight) * compact + rng.normal(0, 0.03, (frames, residues, 3))
    quats = np.tile([1.0, 0.0, 0.0, 0.0], (frames, residues, 1))
    return FramesTrajectory(key="collapse/R1", frame_interval_ps=10.0, aatype=np.zeros(residues, np.int64),
                            residue_index=np.arange(residues), chain_index=np.zeros(residues, np.int64),
                            quats=quats.astype(np.float32), trans=trans.astype(np.float32),
                            torsions=np.zeros((frames, residues, 7, 2), np.float32),
                            torsion_mask=np.zeros((residues, 7), np.float32), residue_mask=np.ones(residues, np.float32))


def test_equilibrium_md_lag_leaves_out_the_collapse_from_an_extended_start():
    from openmm_starmd.data.dataset import relaxation_frames, trimmed
    from openmm_starmd.training.validation import _md_lag_rmsd_nm, add_equilibrium_ratios

    traj = _collapsing_trajectory()
    skip = relaxation_frames(traj.trans)
    assert skip == 20
    plain = _md_lag_rmsd_nm([traj], 0.5)
    equilibrium = _md_lag_rmsd_nm([traj], 0.5, equilibrium=True)
    assert equilibrium == pytest.approx(_md_lag_rmsd_nm([trimmed(traj, skip)], 0.5))
    assert plain > 1.5 * equilibrium  # the collapse counts as motion in the plain reference
    # noise of 0.3 Å per coordinate about a fixed structure: between two frames, superposed (6 of the
    # 3N degrees of freedom fitted away), the mean square deviation is 2 · 0.3² · (3N - 6) / N Å²
    assert 10 * equilibrium == pytest.approx(np.sqrt(2 * 0.09 * 24 / 10), rel=0.1)
    assert _md_lag_rmsd_nm([traj], 1.9, equilibrium=True) is None  # what remains is shorter than the lag
    report = {"settings": {"strides_ns": [0.5, 1.9]},
              "systems": [{"system": "collapse", "stride_ns": s, "per_jump_rmsd_angstrom": 0.4, "rmsd_ratio": None,
                           "ca_valid": 1.0, "attractor": None} for s in (0.5, 1.9)]}
    out = add_equilibrium_ratios(report, {"collapse": [traj]})
    short, long = out["systems"]
    assert short["md_relaxation_frames"] == [skip]
    assert short["rmsd_ratio_equilibrium"] == pytest.approx(0.4 / (10 * equilibrium))
    assert long["rmsd_ratio_equilibrium"] is None
    assert out["summary"]["0.5ns"]["rmsd_ratio_equilibrium_median"] == pytest.approx(short["rmsd_ratio_equilibrium"])
    assert out["summary"]["1.9ns"]["rmsd_ratio_equilibrium_systems"] == 0
    assert "rmsd_ratio_equilibrium" not in report["systems"][0]  # the input report is left as it was
    with pytest.raises(ValueError, match="no MD for 'collapse'"):
        add_equilibrium_ratios(report, {})


def test_compactness_measures_rollouts_shrinking_against_md():
    """Rollouts made of MD frames: Rg ratio = their last quarter's mean over MD's mean, and about 1 %
    of frames below MD's 1st percentile; the same frames shrunk to 60 % about their centre: ratio
    0.6 and every frame below it."""
    rng = np.random.default_rng(0)
    chain = np.cumsum(rng.normal(0, 0.22, (12, 3)), axis=0)  # one random chain, nm
    md = chain + rng.normal(0, 0.03, (400, 12, 3))  # MD-like fluctuations about it
    rg = 10 * radius_of_gyration(md)  # Å
    same = compactness([md[:200], md[200:]], md)
    assert same["md_rg_angstrom"] == pytest.approx(rg.mean())
    assert same["rg_last_quarter_angstrom"] == pytest.approx((rg[150:200].mean() + rg[350:].mean()) / 2)
    assert same["below_md_p1"] == pytest.approx(0.01, abs=0.005)
    shrunk = [0.6 * (g - g.mean(1, keepdims=True)) + 1.0 for g in (md[:200], md[200:])]
    small = compactness(shrunk, md)
    assert small["rg_ratio"] == pytest.approx(0.6 * same["rg_ratio"])
    assert small["below_md_p1"] == 1.0


def test_failure_causes_tell_breaks_from_local_and_long_range_clashes():
    from openmm_starmd.training.validation import failure_causes

    chain = np.zeros((4, 8, 3))
    chain[:, :, 0] = np.arange(8) * 0.38  # a straight chain, 3.8 Å steps: valid
    # a regular heptagon of 3.8 Å sides: residue 7 comes back onto residue 0, lifted 1 Å out of the plane
    radius = 0.38 / (2 * np.sin(np.pi / 7))
    angle = 2 * np.pi * np.arange(8) / 7
    chain[1] = np.stack([radius * np.cos(angle), radius * np.sin(angle), np.zeros(8)], -1)
    chain[1, 7, 2] = 0.1  # 1 Å from residue 0, 3.93 Å from residue 6: a long-range clash, no break
    chain[2, 4:, 0] += 0.1  # a 4.8 Å gap between residues 3 and 4: a break only
    chain[3, 2] = chain[3, 0] + [0.0, 0.25, 0.0]  # residue 2 folded back onto 0: a local clash, and breaks
    causes = failure_causes(chain)
    assert causes["break_only"] == pytest.approx(0.25) and causes["clash_only"] == pytest.approx(0.25)
    assert causes["both"] == pytest.approx(0.25)
    assert causes["clash_pairs_long_range"] == 1 and causes["clash_pairs_local"] == 1


def test_training_validates_logs_plots_and_keeps_the_best_checkpoint(two_systems, tmp_path):
    torch.set_num_threads(1)
    cfg = TrainConfig(data=two_systems, out=tmp_path / "m.pt", preset="tiny_v2", steps=4, batch_size=2, num_frames=4,
                      min_frames=2, crop_residues=11, warmup_steps=1, checkpoint_every=1000, plot_every=1000, progress=False,
                      device="cpu", holdout=read_split(two_systems / "split.txt"), validate_every=2,
                      validation_split=two_systems / "split.txt", validation_jumps=2, validation_num_steps=2,
                      validation_strides_ns=(0.02, 0.05), validation_ode_from_stride_ns=0.04)
    trainer = Trainer(cfg)
    assert [t.key for t in trainer.dataset.trajectories] == ["villin/R1"]  # the validation system is held out
    trainer.run()
    log = [json.loads(line) for line in (tmp_path / "m.pt.val.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4]
    assert log[0]["best"] and set(log[0]["summary"]) == {"0.02ns", "0.05ns"}
    assert log[0]["samplers"] == {"0.02ns": "sde", "0.05ns": "ode"}  # the ODE from 0.04 ns, as a card may ask
    assert sorted(r["stride_ns"] for r in log[0]["systems"]) == [0.02, 0.05]
    assert (tmp_path / "m.best.pt").is_file() and (tmp_path / "m.pt.val.png").stat().st_size > 10_000


def test_variable_context_length_draws_long_strides_from_short_trajectories(two_systems):
    sources = [s for s in find_sources(two_systems) if s.name == "villin"]
    fixed = TrajectoryDataset(sources, DatasetConfig(num_frames=8, min_stride_ns=0.01, max_stride_ns=10.0))
    variable = TrajectoryDataset(sources, DatasetConfig(num_frames=8, min_frames=2, min_stride_ns=0.01, max_stride_ns=10.0))
    assert fixed.stride_ranges[0] == (1, 4)  # 31 frames hold 8 frames at most 4 snapshots apart
    assert variable.stride_ranges[0] == (1, 30)  # and 2 frames up to 30 apart
    shapes = set()
    for step in range(60):
        batch = draw_batch(variable, step, 0, 2, seed=1)
        k = round(float(batch.stride_ns[0]) * 100)  # snapshots of 10 ps
        L = batch.trans.shape[1]
        assert 2 <= L <= 8 and (L - 1) * k <= 30 and torch.all(batch.stride_ns == batch.stride_ns[0])
        shapes.add((L, k))
    assert max(k for _, k in shapes) > 4 and len({L for L, _ in shapes}) > 3
    with pytest.raises(ValueError, match="min_frames"):
        DatasetConfig(num_frames=4, min_frames=5).validate()


def test_model_overrides_are_typed_and_checked():
    assert parse_overrides(["template_pair=false", "skip_channels=0", "context_noise_t=0.02"]) == {
        "template_pair": False, "skip_channels": 0, "context_noise_t": 0.02}
    for bad in (["nonsense=1"], ["template_pair=maybe"], ["diffusion=1"], ["template_pair"]):
        with pytest.raises(ValueError):
            parse_overrides(bad)


def test_committed_validation_split_is_unrelated_to_every_training_system():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "md_data"
    rows = check_split(root, root / "validation_split.txt")
    assert len(rows) >= 10 and all(r["unrelated"] for r in rows), [r for r in rows if not r["unrelated"]]


def test_scoring_in_two_processes_equals_one_and_merges_and_plots(two_systems, tmp_path):
    """Each system's rollouts are seeded by the system, so dealing the systems over processes gives
    the rows of one process; the merged report, the --merge route and the validity plot agree."""
    import matplotlib.image

    from openmm_starmd.model.checkpoint import save_checkpoint
    from openmm_starmd.training.validation import main, merge_reports, plot_validity_along_rollouts, score_in_processes

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m.pt", tiny_v2(), StarMDCore(tiny_v2()).net.state_dict())
    split = tmp_path / "split.txt"
    split.write_text("villin_copy\nvillin\n")
    options = dict(strides_ns=(0.01,), jumps=2, num_steps=2, noise_scale=0.5)
    one = score_in_processes(tmp_path / "m.pt", two_systems, split, workers=1, **options)
    two = score_in_processes(tmp_path / "m.pt", two_systems, split, workers=2, **options)
    assert [r["system"] for r in two["systems"]] == ["villin_copy", "villin"]
    assert two["systems"] == one["systems"] and two["summary"] == one["summary"]
    halves = [score_in_processes(tmp_path / "m.pt", two_systems, split, workers=1, only=[name], **options)
              for name in ("villin_copy", "villin")]
    assert merge_reports(halves)["summary"] == one["summary"]
    with pytest.raises(ValueError, match="more than one report"):
        merge_reports([halves[0], halves[0]])
    for k, half in enumerate(halves):
        (tmp_path / f"h{k}.json").write_text(json.dumps(half))
    assert main(["--merge", str(tmp_path / "h0.json"), str(tmp_path / "h1.json"), "--out", str(tmp_path / "all.json"),
                 "--plot", str(tmp_path / "v.png")]) == 0
    assert json.loads((tmp_path / "all.json").read_text())["summary"] == one["summary"]
    assert matplotlib.image.imread(tmp_path / "v.png").ndim == 3
    plot_validity_along_rollouts(one, tmp_path / "w.png")
    assert (tmp_path / "w.png").stat().st_size > 0
    ode = {**one, "settings": {**one["settings"], "sampler": "ode"}}  # a second stride's report with another sampler
    plot_validity_along_rollouts([one, ode], tmp_path / "two.png")
    assert matplotlib.image.imread(tmp_path / "two.png").ndim == 3


def test_a_stopped_run_resumes_from_its_finished_cells_and_equals_an_uninterrupted_one(two_systems, tmp_path, monkeypatch):
    """With ``--out``, every finished cell goes to OUT.partial.jsonl; after a stop the same command
    scores only the missing cells, the report equals one run straight through, and the file goes.
    Cells of other settings or other weights in the file are not reused."""
    from openmm_starmd.model.checkpoint import save_checkpoint
    from openmm_starmd.training import validation

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m.pt", tiny_v2(), StarMDCore(tiny_v2()).net.state_dict())
    split = tmp_path / "split.txt"
    split.write_text("villin_copy\nvillin\n")
    common = ["--model", str(tmp_path / "m.pt"), "--data", str(two_systems), "--split", str(split), "--strides", "0.01", "0.02",
              "--jumps", "2", "--num-steps", "2", "--noise-scale", "0.5", "--time-spacing", "1", "--noise-switch-t", "1"]
    assert validation.main(common + ["--out", str(tmp_path / "straight.json")]) == 0
    straight = json.loads((tmp_path / "straight.json").read_text())
    assert not (tmp_path / "straight.json.partial.jsonl").exists()

    scored = []
    real = validation.validate_system

    def stop_at_the_third_cell(core, trajectories, stride_ns, *args):
        if len(scored) == 2:
            raise KeyboardInterrupt
        scored.append(stride_ns)
        return real(core, trajectories, stride_ns, *args)

    monkeypatch.setattr(validation, "validate_system", stop_at_the_third_cell)
    out = tmp_path / "resumed.json"
    with pytest.raises(KeyboardInterrupt):
        validation.main(common + ["--out", str(out)])
    partial = tmp_path / "resumed.json.partial.jsonl"
    assert len(partial.read_text().splitlines()) == 2 and not out.exists()
    # a cell of other settings in the file is not taken
    foreign = json.loads(partial.read_text().splitlines()[0])
    foreign["run"]["settings"]["seed"] = 99
    foreign["row"]["system"] = "villin"
    with open(partial, "a") as f:
        f.write(json.dumps(foreign) + "\n" + '{"run": {"sett')  # and a line cut short by the kill
    scored.clear()
    monkeypatch.setattr(validation, "validate_system", lambda *a: (scored.append(a[2]), real(*a))[1])
    assert validation.main(common + ["--out", str(out)]) == 0
    assert len(scored) == 2  # villin at both strides; villin_copy's two cells came from the file
    resumed = json.loads(out.read_text())
    assert resumed["systems"] == straight["systems"] and resumed["summary"] == straight["summary"]
    assert not partial.exists()


def test_pool_workers_exit_when_the_run_that_started_them_is_killed(tmp_path):
    """A ``--workers`` run killed from outside leaves no worker computing on."""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "run.py"
    script.write_text(
        "import multiprocessing, os, sys, time\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from openmm_starmd.training.validation import exit_with_parent\n"
        "def work(path):\n"
        "    open(path, 'w').write(str(os.getpid()))\n"
        "    time.sleep(120)\n"
        "if __name__ == '__main__':\n"
        "    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('spawn'), initializer=exit_with_parent,\n"
        "                             initargs=(os.getpid(),)) as pool:\n"
        "        pool.submit(work, sys.argv[1]).result()\n")
    pid_file = tmp_path / "worker.pid"
    parent = subprocess.Popen([sys.executable, str(script), str(pid_file)])
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.2)
        worker = int(pid_file.read_text())
        os.kill(worker, 0)  # running
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 15
        alive = True
        while alive and time.monotonic() < deadline:
            try:
                os.kill(worker, 0)
                time.sleep(0.2)
            except ProcessLookupError:
                alive = False
        assert not alive, "the worker outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
