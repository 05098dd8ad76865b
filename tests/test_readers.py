"""Trajectory readers: every layout written here in the test, then read back (frames, order, units)."""
from __future__ import annotations

import importlib.util
import json
import warnings

import mdtraj
import numpy as np
import pytest

from openmm_starmd.data.readers import (
    ATLAS_FRAME_INTERVAL_PS,
    MDCATH_FRAME_INTERVAL_PS,
    FileTrajectorySource,
    find_sources,
    load_openfold_features,
)
from openmm_starmd.units import ANGSTROM_PER_NM

N_RES = 7  # residues
N_FRAMES = 5
XTC_TOL_NM = 0.0006  # XTC stores 0.001 nm precision


def _topology(n_res: int = N_RES) -> mdtraj.Topology:
    top = mdtraj.Topology()
    chain = top.add_chain()
    for i in range(n_res):
        res = top.add_residue("ALA", chain, resSeq=i + 1)
        for name, element in (("N", "N"), ("CA", "C"), ("C", "C"), ("O", "O"), ("CB", "C")):
            top.add_atom(name, mdtraj.element.get_by_symbol(element), res)
    return top


def _trajectory(n_frames: int = N_FRAMES, interval_ps: float = 20.0, seed: int = 0) -> mdtraj.Trajectory:
    top = _topology()
    rng = np.random.default_rng(seed)
    xyz = rng.uniform(0.5, 2.5, size=(n_frames, top.n_atoms, 3)).astype(np.float32)  # nm
    return mdtraj.Trajectory(xyz, top, time=np.arange(1, n_frames + 1) * interval_ps)


def _write_topology(traj: mdtraj.Trajectory, path) -> None:
    traj[0].save_pdb(str(path))


def test_xtc_stem_pair_frames_units_and_interval_from_timestamps(tmp_path):
    traj = _trajectory(interval_ps=20.0)
    _write_topology(traj, tmp_path / "prot.pdb")
    traj.save_xtc(str(tmp_path / "prot.xtc"))
    (source,) = find_sources(tmp_path)
    assert isinstance(source, FileTrajectorySource)
    assert source.key == "prot/R1"
    assert source.frame_interval_ps == pytest.approx(20.0)
    assert source.n_frames() == N_FRAMES
    xyz = source.read()
    assert xyz.shape == (N_FRAMES, 5 * N_RES, 3) and xyz.dtype == np.float32
    np.testing.assert_allclose(xyz, traj.xyz, atol=XTC_TOL_NM)
    assert source.topology().n_residues == N_RES


def test_dcd_needs_interval_from_sidecar_or_argument(tmp_path):
    traj = _trajectory()
    _write_topology(traj, tmp_path / "prot.pdb")
    traj.save_dcd(str(tmp_path / "prot.dcd"))
    with pytest.raises(ValueError, match="frame_interval_ps"):
        find_sources(tmp_path)
    (source,) = find_sources(tmp_path, frame_interval_ps=2.5)
    assert source.frame_interval_ps == 2.5
    (tmp_path / "prot.json").write_text(json.dumps({"frame_interval_ps": 7.0}))
    (source,) = find_sources(tmp_path)
    assert source.frame_interval_ps == 7.0
    # DCD stores Angstrom; the reader must return nm (DCD single precision).
    np.testing.assert_allclose(source.read(), traj.xyz, atol=1e-5)


def test_netcdf_stem_pair(tmp_path):
    traj = _trajectory(interval_ps=4.0)
    _write_topology(traj, tmp_path / "prot.pdb")
    traj.save_netcdf(str(tmp_path / "prot.nc"))
    (source,) = find_sources(tmp_path)
    assert source.frame_interval_ps == pytest.approx(4.0)
    assert source.n_frames() == N_FRAMES
    np.testing.assert_allclose(source.read(), traj.xyz, atol=1e-5)


def test_mdtraj_hdf5_self_contained(tmp_path):
    pytest.importorskip("tables", reason="mdtraj HDF5 needs PyTables")
    traj = _trajectory(interval_ps=3.0)
    traj.save_hdf5(str(tmp_path / "prot.h5"))
    (source,) = find_sources(tmp_path)
    assert source.frame_interval_ps == pytest.approx(3.0)
    np.testing.assert_allclose(source.read(), traj.xyz, atol=1e-6)


def test_chunked_layout_concatenates_in_chunk_order_and_stops_at_a_gap(tmp_path):
    traj = _trajectory(n_frames=8, interval_ps=10.0)
    _write_topology(traj, tmp_path / "prot.pdb")
    (tmp_path / "prot.json").write_text(json.dumps({"settings": {"frame_interval_ps": 10.0}}))
    bounds = [(0, 3), (3, 6), (6, 8)]
    for k, (a, b) in reversed(list(enumerate(bounds))):  # written out of order on purpose
        traj[a:b].save_xtc(str(tmp_path / f"prot_R1_c{k:04d}.xtc"))
    traj[:2].save_xtc(str(tmp_path / "prot_R2_c0000.xtc"))
    traj[:4].save_xtc(str(tmp_path / "prot_R2_c0002.xtc"))  # chunk 1 missing
    traj[:1].save_xtc(str(tmp_path / "prot_R1_c0003.tmp.xtc"))  # unfinished write: ignored
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sources = find_sources(tmp_path)
    assert [s.key for s in sources] == ["prot/R1", "prot/R2"]
    assert any("chunk 1 missing" in str(w.message) for w in caught)
    r1, r2 = sources
    assert r1.frame_interval_ps == 10.0
    assert r1.n_frames() == 8
    np.testing.assert_allclose(r1.read(), traj.xyz, atol=XTC_TOL_NM)
    assert r2.n_frames() == 2


def test_atlas_layout(tmp_path):
    traj = _trajectory(interval_ps=10.0)
    _write_topology(traj, tmp_path / "1abc_A.pdb")
    for r in (1, 2, 3):
        _trajectory(seed=r).save_xtc(str(tmp_path / f"1abc_A_prod_R{r}_fit.xtc"))
    sources = find_sources(tmp_path)
    assert [s.key for s in sources] == ["1abc_A/R1", "1abc_A/R2", "1abc_A/R3"]
    assert all(s.frame_interval_ps == ATLAS_FRAME_INTERVAL_PS for s in sources)
    np.testing.assert_allclose(sources[2].read(), _trajectory(seed=3).xyz, atol=XTC_TOL_NM)


def test_atom_subset_and_recursive_search(tmp_path):
    for name, seed in (("a", 1), ("b", 2)):
        folder = tmp_path / name
        folder.mkdir()
        traj = _trajectory(seed=seed)
        _write_topology(traj, folder / f"{name}.pdb")
        traj.save_xtc(str(folder / f"{name}.xtc"))
    (folder / "state").mkdir()
    _write_topology(traj, folder / "state" / "b_allatom.pdb")  # topology without trajectory: ignored
    sources = find_sources(tmp_path)
    assert [s.key for s in sources] == ["a/R1", "b/R1"]
    ca = sources[1].topology().select("name CA")
    assert len(ca) == N_RES
    np.testing.assert_allclose(sources[1].read(ca), _trajectory(seed=2).xyz[:, ca], atol=XTC_TOL_NM)


def test_openfold_features_next_to_system(tmp_path):
    traj = _trajectory()
    _write_topology(traj, tmp_path / "prot.pdb")
    traj.save_xtc(str(tmp_path / "prot.xtc"))
    rng = np.random.default_rng(5)
    single, pair = rng.normal(size=(N_RES, 384)), rng.normal(size=(N_RES, N_RES, 128))
    (source,) = find_sources(tmp_path)
    assert source.openfold_features() is None
    np.save(tmp_path / "prot_single.npy", single)
    np.save(tmp_path / "prot_pair.npy", pair)
    (source,) = find_sources(tmp_path)
    feats = source.openfold_features()
    np.testing.assert_allclose(feats.single, single, rtol=1e-6)
    np.testing.assert_allclose(feats.pair, pair, rtol=1e-6)
    np.save(tmp_path / "prot_pair.npy", pair[:, :-1])
    with pytest.raises(ValueError, match="pair"):
        load_openfold_features(tmp_path / "prot")


def test_mdcath_layout(tmp_path):
    h5py = pytest.importorskip("h5py", reason="mdCATH files need h5py")
    traj = _trajectory(n_frames=N_FRAMES)
    pdb_path = tmp_path / "top.pdb"
    _write_topology(traj, pdb_path)
    path = tmp_path / "mdcath_dataset_1abcA00.h5"
    with h5py.File(path, "w") as h5:
        h5.attrs["layout"] = "mdcath-only-protein-v1.0"
        dom = h5.create_group("1abcA00")
        dom.create_dataset("pdbProteinAtoms", data=pdb_path.read_bytes())
        dom.attrs["numResidues"] = N_RES
        for temp in (320, 450):
            for rep in (0, 1):
                g = dom.create_group(f"{temp}/{rep}")
                xyz_a = (traj.xyz + 0.01 * rep + temp * 1e-4) * ANGSTROM_PER_NM
                g.create_dataset("coords", data=xyz_a.astype(np.float32))
                g.attrs["numFrames"] = N_FRAMES
    sources = find_sources(tmp_path / "mdcath_dataset_1abcA00.h5")
    assert [s.key for s in sources] == ["1abcA00/320K_0", "1abcA00/320K_1"]
    assert sources[1].frame_interval_ps == MDCATH_FRAME_INTERVAL_PS
    np.testing.assert_allclose(sources[1].read(), traj.xyz + 0.01 + 0.032, atol=1e-5)
    assert sources[0].topology().n_residues == N_RES
    assert len(find_sources(path, mdcath_temperatures=(320, 450))) == 4


def test_nothing_readable_raises(tmp_path):
    (tmp_path / "notes.txt").write_text("no data")
    with pytest.raises(ValueError, match="no readable trajectories"):
        find_sources(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        find_sources(tmp_path / "missing")


def test_h5py_absent_gives_install_message(tmp_path, monkeypatch):
    if importlib.util.find_spec("h5py") is not None:
        pytest.skip("h5py is installed")
    from openmm_starmd.data import readers

    with pytest.raises(ImportError, match="pip install h5py"):
        readers._import_h5py()
