"""`starmd simulate` and its system builder: energies, peptide geometry, chunked resume."""
from __future__ import annotations

import json
import os

import mdtraj
import numpy as np
import openmm
import pytest
from openmm import app, unit

from openmm_starmd.cli import main
from openmm_starmd.data.readers import find_sources
from openmm_starmd.data.structures import STRUCTURES, get_structure
from openmm_starmd.units import ANGSTROM_PER_NM
from openmm_starmd.openmm.md_setup import (
    MDConfig,
    build_peptide_backbone_pdb,
    create_implicit_system,
    heavy_protein_atom_indices,
    prepare_structure,
)

XTC_TOL_NM = 0.0006


def _energy_forces(system: openmm.System, positions) -> tuple[float, np.ndarray]:
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    context.setPositions(positions)
    state = context.getState(getEnergy=True, getForces=True)
    return (state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
            state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))


def test_native_obc2_equals_amber14_implicit_xml_on_villin():
    topology, positions = prepare_structure(get_structure("villin"))
    assert topology.getNumResidues() == 35
    config = MDConfig()
    native = create_implicit_system(topology, config)
    reference = app.ForceField("amber14-all.xml", "implicit/obc2.xml").createSystem(
        topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds, hydrogenMass=config.hydrogen_mass_amu * unit.amu)
    assert any(isinstance(f, openmm.GBSAOBCForce) for f in native.getForces())
    assert not any(isinstance(f, openmm.CustomGBForce) for f in native.getForces())
    e_native, f_native = _energy_forces(native, positions)
    e_reference, f_reference = _energy_forces(reference, positions)
    # Both computed in mixed/single precision on the CPU platform: agree to ~1e-6 relative.
    assert abs(e_native - e_reference) < 1e-5 * abs(e_reference) + 1e-2
    scale = np.abs(f_reference).max()
    assert np.abs(f_native - f_reference).max() < 1e-4 * scale
    # Hydrogen mass repartitioning: every H weighs hydrogen_mass_amu, total mass unchanged.
    masses = np.array([native.getParticleMass(i).value_in_unit(unit.amu) for i in range(native.getNumParticles())])
    is_h = np.array([a.element.symbol == "H" for a in topology.atoms()])
    np.testing.assert_allclose(masses[is_h], config.hydrogen_mass_amu)
    plain = app.ForceField("amber14-all.xml").createSystem(topology, nonbondedMethod=app.NoCutoff)
    plain_total = sum(plain.getParticleMass(i).value_in_unit(unit.amu) for i in range(plain.getNumParticles()))
    assert masses.sum() == pytest.approx(plain_total, rel=1e-12)


def test_peptide_backbone_has_ideal_geometry(tmp_path):
    sequence = "GYDPETG"
    path = tmp_path / "bb.pdb"
    path.write_text(build_peptide_backbone_pdb(sequence))
    traj = mdtraj.load(str(path))
    assert traj.n_residues == len(sequence) and traj.n_atoms == 4 * len(sequence)
    sel = {name: traj.topology.select(f"name {name}") for name in ("N", "CA", "C", "O")}
    xyz_a = traj.xyz[0] * ANGSTROM_PER_NM  # mdtraj gives nm; the builder works in Angstrom
    n, ca, c, o = (xyz_a[sel[k]] for k in ("N", "CA", "C", "O"))
    np.testing.assert_allclose(np.linalg.norm(ca - n, axis=1), 1.458, atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(c - ca, axis=1), 1.525, atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(n[1:] - c[:-1], axis=1), 1.329, atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(o - c, axis=1), 1.231, atol=2e-3)
    _, phi = mdtraj.compute_phi(traj)
    _, psi = mdtraj.compute_psi(traj)
    _, omega = mdtraj.compute_omega(traj)
    np.testing.assert_allclose(np.degrees(phi), -120.0, atol=0.1)
    np.testing.assert_allclose(np.degrees(psi), 130.0, atol=0.1)
    np.testing.assert_allclose(np.abs(np.degrees(omega)), 180.0, atol=0.1)


def test_prepared_peptide_is_complete_protein():
    topology, positions = prepare_structure(get_structure("seq:GYDPETGTWG"))
    names = [r.name for r in topology.residues()]
    assert names == ["GLY", "TYR", "ASP", "PRO", "GLU", "THR", "GLY", "THR", "TRP", "GLY"]
    atoms = {(a.residue.index, a.name) for a in topology.atoms()}
    assert (9, "OXT") in atoms and (0, "H3") in atoms and (1, "OH") in atoms and (8, "NE1") in atoms
    # amber14 must accept it as is (all templates match).
    create_implicit_system(topology, MDConfig())
    assert len(heavy_protein_atom_indices(topology)) == 77


def _simulate(out, ns: float, frame_ps: float = 0.04, extra: tuple[str, ...] = ()) -> int:
    return main(["simulate", "chignolin", "--out", str(out), "--ns", f"{ns:g}", "--chunk-ps", "0.12",
                 "--frame-ps", f"{frame_ps:g}", "--equilibration-ps", "0.04", *extra])


def test_chunked_run_resumes_where_it_stopped(tmp_path):
    # 3 frames of 10 steps (0.04 ps) per chunk; first run makes 2 chunks, the second 1 more.
    assert _simulate(tmp_path, ns=0.00024) == 0
    folder = tmp_path / "chignolin"
    first = {p.name: p.read_bytes() for p in folder.glob("*.xtc")}
    assert sorted(first) == ["chignolin_R1_c0000.xtc", "chignolin_R1_c0001.xtc"]
    state_xml = folder / "state" / "chignolin_R1_next_c0002.xml"
    assert state_xml.exists() and not (folder / "state" / "chignolin_R1.lock").exists()

    # The resume state is exactly the end of the last stored chunk.
    (source,) = find_sources(folder)
    assert source.frame_interval_ps == pytest.approx(0.04) and source.n_frames() == 6
    allatom = app.PDBFile(str(folder / "state" / "chignolin_allatom.pdb")).topology
    state = openmm.XmlSerializer.deserialize(state_xml.read_text())
    saved = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)[heavy_protein_atom_indices(allatom)]
    np.testing.assert_allclose(source.read()[-1], saved, atol=XTC_TOL_NM)
    assert state.getTime().value_in_unit(unit.picosecond) == pytest.approx(0.24)

    assert _simulate(tmp_path, ns=0.00036) == 0
    assert {p.name: p.read_bytes() for p in folder.glob("*_c000[01].xtc")} == first  # chunks are immutable
    (source,) = find_sources(folder)
    assert source.n_frames() == 9
    times = mdtraj.load(str(folder / "chignolin_R1_c0002.xtc"), top=str(folder / "chignolin.pdb")).time
    np.testing.assert_allclose(times, [0.28, 0.32, 0.36], atol=1e-4)
    xyz = source.read()
    step = np.linalg.norm(np.diff(xyz, axis=0), axis=-1).max(axis=-1)  # [8] max atom move per frame
    assert step[5] < 3.0 * step[:5].max()  # no jump at the resume boundary

    meta = json.loads((folder / "chignolin.json").read_text())
    assert meta["replicas"]["R1"]["n_chunks"] == 3
    assert meta["replicas"]["R1"]["ns"] == pytest.approx(0.00036)
    assert meta["settings"]["frame_interval_ps"] == 0.04 and meta["settings"]["timestep_fs"] == 4.0
    # ns run per platform (keyed by platform and thread count, e.g. "CPUx1") add up to the total;
    # ns/day is only listed once a platform's wall time rounds above 0.1 s, so it is not checked here
    per_platform = meta["replicas"]["R1"]["ns_by_platform"]
    assert sum(per_platform.values()) == pytest.approx(0.00036)
    assert meta["commands"][0].startswith("starmd simulate chignolin --out")

    with pytest.raises(ValueError, match="settings"):  # changing the frame interval needs a new folder
        _simulate(tmp_path, ns=0.00048, frame_ps=0.02)
    assert not (folder / "state" / "chignolin_R1.lock").exists()  # released after the failure


def test_an_interrupt_keeps_the_finished_chunks_and_resumes(tmp_path, monkeypatch, capsys):
    """Ctrl-C during a chunk: exit status 130, one clear line, the finished chunks and their resume
    state kept, the lock released; the same command then resumes at the dropped chunk."""
    from openmm_starmd.openmm import simulate

    real = simulate.ReplicaRun._run_frames

    def interrupted_second_chunk(self, k):
        if k == 1:
            raise KeyboardInterrupt
        return real(self, k)

    monkeypatch.setattr(simulate.ReplicaRun, "_run_frames", interrupted_second_chunk)
    assert _simulate(tmp_path, ns=0.00036) == simulate.INTERRUPTED == 130
    err = capsys.readouterr().err
    assert "stopped by an interrupt" in err and "chignolin R1 1" in err and "run the same command again" in err
    folder = tmp_path / "chignolin"
    assert [p.name for p in sorted(folder.glob("*.xtc"))] == ["chignolin_R1_c0000.xtc"]
    assert (folder / "state" / "chignolin_R1_next_c0001.xml").exists()
    assert not (folder / "state" / "chignolin_R1.lock").exists()
    monkeypatch.setattr(simulate.ReplicaRun, "_run_frames", real)
    assert _simulate(tmp_path, ns=0.00036) == 0
    assert len(list(folder.glob("*.xtc"))) == 3


def test_lock_refuses_a_second_live_process(tmp_path):
    state = tmp_path / "chignolin" / "state"
    state.mkdir(parents=True)
    (state / "chignolin_R1.lock").write_text(str(os.getppid()))
    with pytest.raises(ValueError, match="already being simulated"):
        _simulate(tmp_path, ns=0.00012)


def test_config_validation():
    with pytest.raises(ValueError, match="chunk_ps"):
        MDConfig(chunk_ps=15.0, frame_interval_ps=10.0).validate()
    with pytest.raises(ValueError, match="whole number of timesteps"):
        MDConfig(frame_interval_ps=0.01, timestep_fs=4.0).validate()
    with pytest.raises(ValueError, match="unknown structure"):
        get_structure("not_a_protein")
    with pytest.raises(ValueError, match="invalid letters"):
        get_structure("seq:ABZ")


def test_an_old_bioemu_benchmarks_names_the_version_to_install(monkeypatch):
    import openmm_starmd.data.structures as structures
    monkeypatch.setattr(structures, "bioemu_names", lambda: ["1ENH", "2JWS"])
    monkeypatch.setattr(structures, "_bioemu_version", lambda: "0.0.1")
    with pytest.raises(ValueError, match=r"0\.0\.1 ships only 2 of the 97 .*bioemu-benchmarks==0\.0\.2\.post1"):
        get_structure("bioemu:5Z2S")
    assert get_structure("bioemu:1ENH").name == "bioemu_1ENH"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_every_offline_structure_prepares(name):
    source = get_structure(name)
    if source.package:
        pytest.importorskip(source.package)  # er1 ships with cctbx-base (the 'validate' extra)
    topology, positions = prepare_structure(source)
    assert topology.getNumResidues() == source.n_residues
    create_implicit_system(topology, MDConfig())


@pytest.mark.parametrize("order, expected", [
    ("round-robin", ["chignolin", "trpzip2", "chignolin", "trpzip2"]),
    ("sequential", ["chignolin", "chignolin", "trpzip2", "trpzip2"]),
])
def test_order_of_chunks_over_structures(tmp_path, monkeypatch, order, expected):
    """Round-robin runs one chunk of each structure in turn; sequential brings each to --ns before
    the next starts (chunks recorded, not run: the order is what is tested)."""
    from openmm_starmd.openmm import simulate

    ran = []

    def record(self):  # the real run_chunk starts the replica first
        self.started = True
        ran.append(self.name)
        self.n_chunks_done += 1

    monkeypatch.setattr(simulate.ReplicaRun, "run_chunk", record)
    monkeypatch.setattr(simulate.ReplicaRun, "progress_line", lambda self, n: "")
    assert main(["simulate", "chignolin", "trpzip2", "--out", str(tmp_path), "--ns", "0.00024", "--chunk-ps", "0.12",
                 "--frame-ps", "0.04", "--order", order]) == 0
    assert ran == expected
    assert not list(tmp_path.glob("*/state/*.lock"))  # every lock released


def test_sequential_order_locks_each_replica_when_it_starts(tmp_path, monkeypatch, capsys):
    """In sequential order a replica is locked only when it starts: the first structure runs while
    another live process holds the second, which is then skipped with a message (not an error)."""
    from openmm_starmd.openmm import simulate

    ran = []

    def record(self):  # the real run_chunk starts (and so locks) the replica first; no MD here
        if not self.locked:
            self._acquire_lock()
        self.started = True
        ran.append(self.name)
        self.n_chunks_done += 1

    monkeypatch.setattr(simulate.ReplicaRun, "run_chunk", record)
    monkeypatch.setattr(simulate.ReplicaRun, "progress_line", lambda self, n: "")
    state = tmp_path / "trpzip2" / "state"
    state.mkdir(parents=True)
    (state / "trpzip2_R1.lock").write_text(str(os.getppid()))  # a live process holds trpzip2
    args = ["simulate", "chignolin", "trpzip2", "--out", str(tmp_path), "--ns", "0.00024", "--chunk-ps", "0.12",
            "--frame-ps", "0.04", "--order", "sequential"]
    assert main(args) == 0
    assert ran == ["chignolin", "chignolin"]
    assert "skipping trpzip2 R1" in capsys.readouterr().out
    assert (state / "trpzip2_R1.lock").read_text() == str(os.getppid())  # the other process's lock is left alone
    assert not (tmp_path / "chignolin" / "state" / "chignolin_R1.lock").exists()
    with pytest.raises(ValueError, match="already being simulated"):  # round-robin locks all at once: one name, one error
        main(["simulate", "trpzip2", *args[3:-2]])


def test_sequential_order_leaves_a_replica_another_process_finished(tmp_path, monkeypatch):
    """A replica that another process brought to --ns while this one ran the structures before it
    gets no extra chunk, and a structure this process never locks gets no state folder."""
    from openmm_starmd.openmm import simulate

    ran = []

    def record(self):  # no MD: count the chunk, and let "another process" finish trpzip2 meanwhile
        if not self.locked:
            self._acquire_lock()
        self.started = True
        ran.append(self.name)
        self.n_chunks_done += 1
        for k in range(2):
            (tmp_path / "trpzip2" / f"trpzip2_R1_c{k:04d}.xtc").write_bytes(b"")

    monkeypatch.setattr(simulate.ReplicaRun, "run_chunk", record)
    monkeypatch.setattr(simulate.ReplicaRun, "progress_line", lambda self, n: "")
    (tmp_path / "trpzip2").mkdir()
    args = ["simulate", "chignolin", "trpzip2", "--out", str(tmp_path), "--ns", "0.00024", "--chunk-ps", "0.12",
            "--frame-ps", "0.04", "--order", "sequential"]
    assert main(args) == 0
    assert ran == ["chignolin", "chignolin"]
    assert (tmp_path / "chignolin" / "state").is_dir() and not (tmp_path / "trpzip2" / "state").exists()
