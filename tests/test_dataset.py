"""Trajectories -> frames + torsions -> L-frame examples: known answers, stride law, crops, cache."""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import mdtraj
import numpy as np
import pytest
import torch

from openmm_starmd.data import dataset as ds
from openmm_starmd.data.dataset import DatasetConfig, TrajectoryDataset, collate, frames_from_source, sample_stride, stride_range_frames
from openmm_starmd.data.readers import find_sources
from openmm_starmd.geometry.so3 import quat_to_rotmat

N_FRAMES = 41
INTERVAL_PS = 10.0
L = 5


def _villin_heavy() -> mdtraj.Trajectory:
    import openmm.app

    pdb = Path(openmm.app.__file__).parent / "data" / "test.pdb"
    traj = mdtraj.load(str(pdb))
    return traj.atom_slice(traj.topology.select("protein and not element H"))


@pytest.fixture(scope="module")
def villin_dir(tmp_path_factory) -> tuple[Path, mdtraj.Trajectory]:
    """41 frames of villin heavy atoms with 0.01 nm Gaussian jitter (DCD: float32 precision)."""
    folder = tmp_path_factory.mktemp("villin")
    base = _villin_heavy()
    rng = np.random.default_rng(11)
    xyz = base.xyz[0][None] + rng.normal(scale=0.01, size=(N_FRAMES, base.n_atoms, 3)).astype(np.float32)
    traj = mdtraj.Trajectory(xyz, base.topology)
    traj[0].save_pdb(str(folder / "villin.pdb"))
    traj.save_dcd(str(folder / "villin.dcd"))
    (folder / "villin.json").write_text(json.dumps({"frame_interval_ps": INTERVAL_PS}))
    return folder, mdtraj.load(str(folder / "villin.dcd"), top=str(folder / "villin.pdb"))


def _angle(sincos: np.ndarray) -> np.ndarray:
    return np.arctan2(sincos[..., 0], sincos[..., 1])


def _wrapped(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(np.angle(np.exp(1j * (a - b))))


def test_frames_and_torsions_match_mdtraj_dihedrals(villin_dir):
    folder, traj = villin_dir
    (source,) = find_sources(folder)
    frames = frames_from_source(source)
    assert frames.num_frames == N_FRAMES and frames.num_residues == 35
    ca = traj.topology.select("name CA")
    np.testing.assert_allclose(frames.trans, traj.xyz[:, ca], atol=1e-6)
    rots = quat_to_rotmat(torch.from_numpy(frames.quats)).numpy()
    np.testing.assert_allclose(rots @ np.swapaxes(rots, -1, -2), np.broadcast_to(np.eye(3), rots.shape), atol=1e-5)
    c = traj.topology.select("name C")
    e1 = (traj.xyz[:, c] - traj.xyz[:, ca]) / np.linalg.norm(traj.xyz[:, c] - traj.xyz[:, ca], axis=-1, keepdims=True)
    np.testing.assert_allclose(rots[..., :, 0], e1, atol=1e-5)  # x axis along CA -> C (AF2)
    tors = _angle(frames.torsions)  # [F, N, 7]
    _, omega = mdtraj.compute_omega(traj)  # residues 1..N-1
    _, phi = mdtraj.compute_phi(traj)  # residues 1..N-1
    chi1_idx, chi1 = mdtraj.compute_chi1(traj)
    assert _wrapped(tors[:, 1:, 0], omega).max() < 1e-3
    assert _wrapped(tors[:, 1:, 1], phi).max() < 1e-3
    chi1_res = [traj.topology.atom(int(i[1])).residue.index for i in chi1_idx]
    assert _wrapped(tors[:, chi1_res, 3], chi1).max() < 1e-3
    assert frames.torsion_mask[0, :2].sum() == 0 and frames.torsion_mask[1:, :3].min() == 1  # no omega/phi at residue 0
    assert frames.residue_mask.min() == 1


def test_stride_range_limits():
    config = DatasetConfig(num_frames=L)
    assert stride_range_frames(N_FRAMES, INTERVAL_PS, config) == (1, 10)
    assert stride_range_frames(N_FRAMES, INTERVAL_PS, DatasetConfig(num_frames=L, min_stride_ns=0.03, max_stride_ns=0.05)) == (3, 5)
    assert stride_range_frames(4, INTERVAL_PS, config) is None
    assert stride_range_frames(10_001, INTERVAL_PS, DatasetConfig(num_frames=8)) == (1, 1000)  # ATLAS-like: 10 ns cap


def test_sampled_strides_follow_the_binned_log_uniform_law():
    k_min, k_max, n = 2, 13, 20_000
    rng = np.random.default_rng(3)
    counts = np.bincount([sample_stride(k_min, k_max, rng) for _ in range(n)], minlength=k_max + 1)[k_min:]
    k = np.arange(k_min, k_max + 1)
    p = np.log((k + 1) / k) / math.log((k_max + 1) / k_min)
    assert p.sum() == pytest.approx(1.0)
    sigma = np.sqrt(n * p * (1 - p))
    assert np.all(np.abs(counts - n * p) < 5 * sigma)


def test_examples_are_windows_of_the_trajectory(villin_dir):
    folder, traj = villin_dir
    data = TrajectoryDataset(find_sources(folder), DatasetConfig(num_frames=L, seed=7), examples_per_epoch=200)
    ca = traj.topology.select("name CA")
    strides = []
    for i in range(0, 200, 9):
        ex = data[i]
        index = ex.start_frame + ex.stride_frames * np.arange(L)
        assert index[-1] <= N_FRAMES - 1 and 1 <= ex.stride_frames <= 10
        assert ex.stride_ns == pytest.approx(ex.stride_frames * INTERVAL_PS / 1000.0)
        assert ex.rots.shape == (L, 35, 3, 3) and ex.torsions.shape == (L, 35, 7, 2)
        np.testing.assert_allclose(ex.trans.numpy(), traj.xyz[index][:, ca], atol=1e-6)
        strides.append(ex.stride_frames)
    assert len(set(strides)) > 3
    again = data[9]
    assert again.start_frame == data[9].start_frame and torch.equal(again.rots, data[9].rots)  # deterministic in index


def test_crop_and_alternative_torsions(villin_dir):
    folder, _ = villin_dir
    full = TrajectoryDataset(find_sources(folder), DatasetConfig(num_frames=L), examples_per_epoch=1)
    crop = TrajectoryDataset(find_sources(folder), DatasetConfig(num_frames=L, crop_residues=11), examples_per_epoch=1)
    a = crop.example(0, np.random.default_rng(5))
    b = full.example(0, np.random.default_rng(5), crop_start=0)
    assert a.trans.shape == (L, 11, 3)
    offset = int(a.residue_index[0] - b.residue_index[0])
    assert torch.equal(a.residue_index, torch.arange(11) + a.residue_index[0])
    np.testing.assert_allclose(a.trans.numpy(), b.trans[:, offset:offset + 11].numpy())
    # alt torsions: chi2 of PHE/ASP/TYR (pi-periodic) is shifted by pi, everything else equal
    periodic = np.isin(b.aatype.numpy(), [ds.residue_constants.restype_index(n) for n in ("ASP", "PHE", "TYR", "GLU")])
    assert periodic.sum() >= 4
    chi_last = {"ASP": 4, "PHE": 4, "TYR": 4, "GLU": 5}
    for i in np.flatnonzero(periodic):
        name = ds.residue_constants.RESTYPE_1TO3[ds.residue_constants.RESTYPES[int(b.aatype[i])]]
        t = chi_last[name]
        torch.testing.assert_close(b.torsions_alt[:, i, t], -b.torsions[:, i, t])
        others = [j for j in range(7) if j != t]
        torch.testing.assert_close(b.torsions_alt[:, i, others], b.torsions[:, i, others])


def test_cache_round_trip_and_invalidation(villin_dir, tmp_path, monkeypatch):
    folder, _ = villin_dir
    config = DatasetConfig(num_frames=L, cache_dir=tmp_path / "cache")
    first = TrajectoryDataset(find_sources(folder), config, examples_per_epoch=1).trajectories[0]
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1

    def fail(source):
        raise AssertionError("cache not used")

    monkeypatch.setattr(ds, "frames_from_source", fail)
    second = TrajectoryDataset(find_sources(folder), config, examples_per_epoch=1).trajectories[0]
    for name in ("aatype", "residue_index", "quats", "trans", "torsions", "torsion_mask", "residue_mask"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    (folder / "villin.json").write_text(json.dumps({"frame_interval_ps": 2 * INTERVAL_PS}))
    try:
        with pytest.raises(AssertionError, match="cache not used"):  # frame interval changed: fingerprint differs
            TrajectoryDataset(find_sources(folder), config, examples_per_epoch=1)
    finally:
        (folder / "villin.json").write_text(json.dumps({"frame_interval_ps": INTERVAL_PS}))


def test_short_trajectories_are_skipped(villin_dir):
    folder, _ = villin_dir
    with warnings.catch_warnings(record=True), pytest.raises(ValueError, match="long enough"):
        warnings.simplefilter("always")
        TrajectoryDataset(find_sources(folder), DatasetConfig(num_frames=N_FRAMES + 1))


def test_collate_stacks_equal_sizes(villin_dir):
    folder, _ = villin_dir
    data = TrajectoryDataset(find_sources(folder), DatasetConfig(num_frames=L, crop_residues=13), examples_per_epoch=3)
    batch = collate([data[0], data[1], data[2]])
    assert batch.rots.shape == (3, L, 13, 3, 3) and batch.stride_ns.shape == (3,)
    assert batch.openfold_single is None
    small = TrajectoryDataset(find_sources(folder), DatasetConfig(num_frames=L, crop_residues=7), examples_per_epoch=1)
    with pytest.raises(ValueError, match="equal residue counts"):
        collate([data[0], small[0]])


def test_training_data_and_generator_number_residues_alike(tmp_path):
    """The network embeds the absolute residue_index: a structure must reach it with the same numbers
    from a trajectory (training) and from a Simulation's topology (the Generator), whatever the
    file's own numbering, with a SEGMENT_GAP jump and a new chain index at a chain break."""
    import sys

    from openmm import app

    from openmm_starmd.geometry.residue_constants import FIRST_RESIDUE_INDEX, SEGMENT_GAP
    from openmm_starmd.openmm.coarse_grain import map_topology

    sys.path.insert(0, str(Path(__file__).parent))
    from generator_helpers import villin_modeller

    mod = villin_modeller()
    mod.delete([a for a in mod.topology.atoms() if a.element.symbol == "H"])
    mod.delete([list(mod.topology.residues())[17]])  # residue 18 missing: a chain break (no C-N bond)
    for residue in mod.topology.residues():
        residue.id = str(int(residue.id) + 41)  # the file numbers villin 42-76, as UniProt does
    with open(tmp_path / "villin.pdb", "w") as handle:
        app.PDBFile.writeFile(mod.topology, mod.positions, handle, keepIds=True)
    traj = mdtraj.load(str(tmp_path / "villin.pdb"))
    assert [r.resSeq for r in traj.topology.residues][:2] == [42, 43]
    traj.save_dcd(str(tmp_path / "villin.dcd"))
    (tmp_path / "villin.json").write_text(json.dumps({"frame_interval_ps": INTERVAL_PS}))
    frames = frames_from_source(find_sources(tmp_path)[0])
    expected = np.r_[np.arange(17), np.arange(17) + 16 + SEGMENT_GAP] + FIRST_RESIDUE_INDEX
    np.testing.assert_array_equal(frames.residue_index, expected)
    np.testing.assert_array_equal(frames.chain_index, [0] * 17 + [1] * 17)
    pmap = map_topology(mod.topology)
    np.testing.assert_array_equal(pmap.residue_index.numpy(), frames.residue_index)
    np.testing.assert_array_equal(pmap.chain_index.numpy(), frames.chain_index)


def test_relaxation_from_an_extended_start_is_trimmed_and_a_settled_start_is_kept(villin_dir, tmp_path):
    """Villin blown up to 1.6× its size and shrinking linearly back over 10 frames, then jittering
    about its structure: the first 10 frames are the relaxation and training drops them (examples
    are windows of what follows); the jittered villin alone loses nothing."""
    folder, settled = villin_dir
    base = _villin_heavy()
    rng = np.random.default_rng(3)
    centre = base.xyz[0].mean(0)
    scale = np.concatenate([1.0 + 0.6 * (1.0 - np.arange(10) / 10.0), np.ones(N_FRAMES)])
    xyz = centre + scale[:, None, None] * (base.xyz[0] - centre)[None]
    xyz = (xyz + rng.normal(scale=0.01, size=xyz.shape)).astype(np.float32)
    relaxing = tmp_path / "relax"
    relaxing.mkdir()
    traj = mdtraj.Trajectory(xyz, base.topology)
    traj[0].save_pdb(str(relaxing / "villin.pdb"))
    traj.save_dcd(str(relaxing / "villin.dcd"))
    (relaxing / "villin.json").write_text(json.dumps({"frame_interval_ps": INTERVAL_PS}))
    ca = traj.topology.select("name CA")
    assert ds.relaxation_frames(xyz[:, ca]) == 10
    assert ds.relaxation_frames(settled.xyz[:, settled.topology.select("name CA")]) == 0
    assert ds.relaxation_frames(xyz[:15, ca]) == 0  # too short to tell: kept whole
    data = TrajectoryDataset(find_sources(relaxing), DatasetConfig(num_frames=L, seed=1, trim_relaxation=True))
    assert data.trajectories[0].num_frames == N_FRAMES and data.trimmed_frames == [10]
    assert json.loads(data.describe())["relaxation_frames_dropped"] == 10
    for i in range(0, 60, 7):
        ex = data[i]
        index = 10 + ex.start_frame + ex.stride_frames * np.arange(L)
        np.testing.assert_allclose(ex.trans.numpy(), traj.xyz[index][:, ca], atol=1e-6)
    whole = TrajectoryDataset(find_sources(relaxing), DatasetConfig(num_frames=L, seed=1))
    assert whole.trajectories[0].num_frames == N_FRAMES + 10 and whole.trimmed_frames == [0]


@pytest.fixture(scope="module")
def short_and_long(villin_dir, tmp_path_factory):
    """Three short trajectories (41 frames every 10 ps: strides up to 0.4 ns) and one long one (the
    same 41 frames read as every 250 ps: strides up to 10 ns)."""
    folder, _ = villin_dir
    root = tmp_path_factory.mktemp("short_and_long")
    for name, interval in (("short_a", INTERVAL_PS), ("short_b", INTERVAL_PS), ("short_c", INTERVAL_PS), ("long", 250.0)):
        (root / name).mkdir()
        for suffix in ("pdb", "dcd"):
            (root / name / f"{name}.{suffix}").write_bytes((folder / f"villin.{suffix}").read_bytes())
        (root / name / f"{name}.json").write_text(json.dumps({"frame_interval_ps": interval}))
    return find_sources(root)


def test_stride_first_draws_are_log_uniform_over_all_strides_and_fit_their_trajectory(short_and_long):
    config = dict(num_frames=8, min_frames=2, min_stride_ns=0.01, max_stride_ns=10.0)
    first = TrajectoryDataset(short_and_long, DatasetConfig(**config, stride_first_fraction=1.0))
    plain = TrajectoryDataset(short_and_long, DatasetConfig(**config))
    keys = [f.key for f in first.trajectories]
    long_index = keys.index("long/R1")
    assert first.stride_support_ns(long_index) == pytest.approx((0.25, 10.25))
    assert first.stride_support_ns(keys.index("short_a/R1")) == pytest.approx((0.01, 0.41))
    n = 4000
    draws = [first.draw_trajectory_window(np.random.default_rng([3, i])) for i in range(n)]
    strides = []
    for t, (k, length) in draws:
        frames, (k_min, k_max) = first.trajectories[t], first.stride_ranges[t]
        assert k_min <= k <= k_max and 2 <= length <= 8 and (length - 1) * k <= frames.num_frames - 1
        stride = k * frames.frame_interval_ps / 1000.0
        if stride < 0.25:
            assert t != long_index  # only the short trajectories allow it
        if stride >= 0.41:
            assert t == long_index  # only the long one does
        strides.append(stride)
    strides = np.array(strides)
    span = math.log(10.25 / 0.01)

    def within(count, p):  # a binomial count within 4 sigma of n·p
        return abs(count - n * p) < 4 * math.sqrt(n * p * (1 - p))

    assert within(int((strides >= 1.0).sum()), math.log(10.25 / 1.0) / span)  # every decade its share: ~1/3 at >= 1 ns
    assert within(int((strides < 0.1).sum()), math.log(0.1 / 0.01) / span)
    # trajectory first: the long trajectory a quarter of the time, and >= 1 ns in 63 % of its strides
    plain_strides = []
    for i in range(n):
        t, (k, _) = plain.draw_trajectory_window(np.random.default_rng([3, i]))
        plain_strides.append(k * plain.trajectories[t].frame_interval_ps / 1000.0)
    assert within(int((np.array(plain_strides) >= 1.0).sum()), 0.25 * math.log(10.25 / 1.0) / math.log(10.25 / 0.25))


def test_stride_first_fraction_zero_draws_as_before(short_and_long):
    dataset = TrajectoryDataset(short_and_long, DatasetConfig(num_frames=8, min_frames=2))
    for i in range(50):
        rng = np.random.default_rng([5, i])
        t = int(rng.integers(len(dataset.trajectories)))  # the draw without the option: trajectory, then its stride
        before = (t, dataset.draw_window(t, rng))
        assert dataset.draw_trajectory_window(np.random.default_rng([5, i])) == before
    example = dataset[7]
    assert example.stride_ns == pytest.approx(example.stride_frames * 0.01) or example.key == "long/R1"
    with pytest.raises(ValueError, match="stride_first_fraction"):
        DatasetConfig(stride_first_fraction=1.5).validate()
    with pytest.raises(ValueError, match="min_stride_ns"):
        DatasetConfig(min_stride_ns=0.0).validate()  # checked again (the check had become unreachable)
