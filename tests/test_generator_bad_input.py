"""Odd use of StarMDGenerator and ``starmd generate``: a clear error or correct behaviour, and a failed
call leaves the Simulation exactly as it was (positions, velocities, time, step count)."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import openmm
import pytest
import torch
from openmm import app, unit

from generator_helpers import VILLIN, BypassGenerator, positions_nm, tiny_checkpoint, vacuum_simulation, villin_modeller
from openmm_starmd.openmm.coarse_grain import ChainGapWarning
from openmm_starmd.openmm.generator import GeneratorOptions, StarMDGenerator

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")


def _state(sim):
    state = sim.context.getState(getPositions=True, getVelocities=True)
    return (state.getPositions(asNumpy=True).value_in_unit(unit.nanometer),
            state.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond),
            state.getTime().value_in_unit(unit.picosecond), sim.currentStep)


def _assert_same(before, after):
    assert np.array_equal(before[0], after[0], equal_nan=True) and np.array_equal(before[1], after[1])
    assert before[2] == after[2] and before[3] == after[3]


def _fails_untouched(sim, exc, match, fn):
    before = _state(sim)
    with pytest.raises(exc, match=match):
        fn()
    _assert_same(before, _state(sim))


def _atom(topology, residue_index: int, name: str) -> int:
    return next(a.index for a in list(topology.residues())[residue_index].atoms() if a.name == name)


# --- non-finite positions -------------------------------------------------------------------------
def test_nan_positions_name_the_atoms_and_the_generator_stays_usable(tiny_path):
    mod = villin_modeller()
    sim = vacuum_simulation(mod)
    clean = positions_nm(sim)
    ca, h = _atom(mod.topology, 4, "CA"), _atom(mod.topology, 9, "H")
    bad = clean.copy()
    bad[ca, 1] = np.nan
    bad[h, 0] = np.inf
    sim.context.setPositions(bad * unit.nanometer)
    _fails_untouched(sim, ValueError, rf"2 atom\(s\) have NaN or infinite coordinates: CA of ASP 5 \(chain 0\) \(atom index {ca}\), "
                     rf"H of .* \(atom index {h}\)", lambda: StarMDGenerator(sim, tiny_path, stride=0.01, relax=None))
    sim.context.setPositions(clean * unit.nanometer)
    gen = BypassGenerator(sim, tiny_path, stride=0.01, relax=None, seed=1, options=GeneratorOptions(num_steps=2))
    sim.context.setPositions(bad * unit.nanometer)
    _fails_untouched(sim, ValueError, "NaN or infinite coordinates: CA of ASP 5", lambda: gen.step(1))
    sim.context.setPositions(clean * unit.nanometer)  # a failed step leaves the generator usable
    gen.step(1)
    assert gen.statistics.jumps == 1 and np.isfinite(positions_nm(sim)).all()


# --- integrators without a fixed step --------------------------------------------------------------
def test_variable_step_integrator_is_refused(tiny_path):
    mod = villin_modeller()
    system = app.ForceField("amber14-all.xml").createSystem(mod.topology, nonbondedMethod=app.NoCutoff)
    sim = app.Simulation(mod.topology, system, openmm.VariableLangevinIntegrator(300, 1, 1e-4),
                         openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(mod.positions)
    _fails_untouched(sim, TypeError, r"VariableLangevinIntegrator\) has no fixed step size.*LangevinMiddleIntegrator",
                     lambda: StarMDGenerator(sim, tiny_path, stride=0.01))


# --- D amino acids under L names ------------------------------------------------------------------
def test_d_amino_acids_are_refused(tiny_path):
    mod = villin_modeller()
    mirrored = np.asarray(mod.positions.value_in_unit(unit.nanometer)) * np.array([-1.0, 1.0, 1.0])
    sim = vacuum_simulation(mod)
    sim.context.setPositions(mirrored * unit.nanometer)
    _fails_untouched(sim, ValueError, r"33 residue\(s\) have a D-configured Cα under an L amino-acid name: LEU 1 \(chain 0\), "
                     r"SER 2 .* and 28 more", lambda: StarMDGenerator(sim, tiny_path, stride=0.01))
    sim.context.setPositions(mod.positions)  # the L structure is accepted
    StarMDGenerator(sim, tiny_path, stride=0.01, relax=None)


# --- chain gaps -----------------------------------------------------------------------------------
def test_chain_gap_warns_and_names_pdbfixer(tiny_path):
    mod = villin_modeller()
    mod.delete(list(mod.topology.residues())[17:19])
    system = openmm.System()
    for atom in mod.topology.atoms():
        system.addParticle(atom.element.mass)
    sim = app.Simulation(mod.topology, system, openmm.VerletIntegrator(0.002), openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(mod.positions)
    with pytest.warns(ChainGapWarning, match=r"1 chain gap\(s\) without a peptide bond: PHE 17 \(chain 0\) - LEU 20 \(chain 0\) "
                      r"\(C-N \d\.\d\d nm\).*pdbfixer's findMissingResidues\(\) then addMissingAtoms\(\)") as record:
        StarMDGenerator(sim, tiny_path, stride=0.01, relax=None)
    assert {w.filename for w in record} == {__file__}
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChainGapWarning)
        StarMDGenerator(vacuum_simulation(villin_modeller()), tiny_path, stride=0.01, relax=None)  # a whole chain: no warning


# --- a protein wrapped per residue across the periodic box ----------------------------------------
def test_protein_wrapped_per_residue_is_made_whole(tiny_path):
    mod = villin_modeller()
    box_nm = 2.6
    mod.topology.setPeriodicBoxVectors(np.eye(3) * box_nm * unit.nanometer)
    system = app.ForceField("amber14-all.xml").createSystem(mod.topology, nonbondedMethod=app.CutoffPeriodic,
                                                            nonbondedCutoff=1.0, constraints=app.HBonds)
    sim = app.Simulation(mod.topology, system, openmm.LangevinMiddleIntegrator(300, 1, 0.002),
                         openmm.Platform.getPlatformByName("Reference"))
    whole = np.asarray(mod.positions.value_in_unit(unit.nanometer))
    wrapped = whole.copy()
    for res in mod.topology.residues():  # every residue's centroid into the box, as per-residue wrapping writes it
        idx = [a.index for a in res.atoms()]
        wrapped[idx] -= np.floor(whole[idx].mean(0) / box_nm) * box_nm
    ca = [_atom(mod.topology, k, "CA") for k in range(35)]
    assert np.linalg.norm(np.diff(wrapped[ca], axis=0), axis=-1).max() > 1.5  # some residues were moved a box away
    sim.context.setPositions(wrapped * unit.nanometer)
    gen = BypassGenerator(sim, tiny_path, stride=0.01, relax=None, seed=2, options=GeneratorOptions(num_steps=2))
    context_ca = gen.rollout.history_trans[0][0].cpu().numpy()  # the model's first context frame [N, 3]
    assert np.linalg.norm(np.diff(context_ca, axis=0), axis=-1).max() < 0.42
    made_whole = gen._positions()
    assert np.allclose(made_whole, whole - np.floor(whole[0] / box_nm) * box_nm + (wrapped[0] - whole[0]), atol=1e-9)
    gen.step(1)
    after = positions_nm(sim)
    assert gen.statistics.fallbacks == 0
    assert np.linalg.norm(np.diff(after[ca], axis=0), axis=-1).max() < 0.42  # the jumped protein is whole


# --- relaxation follows the System ----------------------------------------------------------------
def test_relaxation_uses_forces_added_after_the_first_jump(tiny_path):
    mod = villin_modeller()
    sim = vacuum_simulation(mod)
    gen = BypassGenerator(sim, tiny_path, stride=0.01, relax="minimize", seed=3, options=GeneratorOptions(num_steps=2))
    gen.step(1)  # the private minimisation Context exists now
    nz = _atom(mod.topology, 29, "NZ")
    pin = positions_nm(sim)[nz] + np.array([0.1, 0.0, 0.0])
    restraint = openmm.CustomExternalForce("5e4*((x-x0)^2+(y-y0)^2+(z-z0)^2)")
    for name in ("x0", "y0", "z0"):
        restraint.addPerParticleParameter(name)
    restraint.addParticle(nz, pin.tolist())
    sim.system.addForce(restraint)
    sim.context.reinitialize(preserveState=True)
    gen.step(1)
    assert np.linalg.norm(positions_nm(sim)[nz] - pin) < 0.02


# --- checkpoints ----------------------------------------------------------------------------------
def test_checkpoint_stride_is_adopted_with_its_step_count(tiny_path, tmp_path):
    sim = vacuum_simulation(villin_modeller())
    gen = BypassGenerator(sim, tiny_path, stride=0.1, relax=None, seed=4, options=GeneratorOptions(num_steps=2))
    gen.step(1)
    gen.saveCheckpoint(tmp_path / "run.chk")
    other = BypassGenerator(sim, tiny_path, stride=0.05, relax=None, seed=4, options=GeneratorOptions(num_steps=2))
    with pytest.warns(UserWarning, match=r"stride 0.1 ns replaces this generator's 0.05 ns \(steps_per_jump 50000 instead of 25000"):
        other.loadCheckpoint(tmp_path / "run.chk")
    assert other.stride_ns == 0.1 and other.steps_per_jump == gen.steps_per_jump == 50000
    other.step(1)
    dt_ps = sim.integrator.getStepSize().value_in_unit(unit.picosecond)
    time_ps = sim.context.getState().getTime().value_in_unit(unit.picosecond)
    assert time_ps == pytest.approx(200.0) and sim.currentStep * dt_ps == pytest.approx(time_ps)


def test_checkpoint_to_a_directory_is_refused_and_leaves_no_file(tiny_path, tmp_path):
    sim = vacuum_simulation(villin_modeller())
    gen = StarMDGenerator(sim, tiny_path, stride=0.01, relax=None)
    folder = tmp_path / "isdir.chk"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match=r"isdir.chk is a directory; give a file path such as .*generator.chk"):
        gen.saveCheckpoint(folder)
    with pytest.raises(FileNotFoundError, match="the folder .*nowhere does not exist"):
        gen.saveCheckpoint(tmp_path / "nowhere" / "run.chk")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["isdir.chk"] and not any(folder.iterdir())


# --- memory: no preallocation of the whole run -----------------------------------------------------
class StopAfter:
    """A reporter that raises at its ``n``-th report (a run stopped from outside)."""

    def __init__(self, n):
        self.n, self.seen = n, 0

    def describeNextReport(self, simulation):  # noqa: N802 (OpenMM API)
        return {"steps": 1, "periodic": False, "include": []}

    def report(self, simulation, state):
        self.seen += 1
        if self.seen == self.n:
            raise KeyboardInterrupt("stopped")


def test_step_grows_the_cache_as_it_goes(tiny_path):
    sim = vacuum_simulation(villin_modeller())
    gen = BypassGenerator(sim, tiny_path, stride=0.01, relax=None, seed=5,
                          options=GeneratorOptions(num_steps=2, capacity_frames=2))
    sim.reporters.append(StopAfter(3))
    before = _state(sim)
    with pytest.raises(KeyboardInterrupt):  # 10**12 jumps: no memory is asked for up front
        gen.step(10**12)
    _assert_same(before, _state(sim))
    assert gen.rollout.capacity_frames <= 8 and gen.rollout.num_frames == 1 and gen.statistics.jumps == 0
    sim.reporters.clear()
    gen.step(3)
    assert gen.rollout.num_frames == 4 and gen.rollout.capacity_frames == 8 and len(gen.history) == 3


def test_a_cache_larger_than_memory_gives_the_estimate(tiny_path):
    sim = vacuum_simulation(villin_modeller())
    _fails_untouched(sim, MemoryError, r"10000000000 frames of 35 residues need about [\d.]+ GiB of KV cache .* GiB free\)",
                     lambda: StarMDGenerator(sim, tiny_path, stride=0.01,
                                                             options=GeneratorOptions(capacity_frames=10**10)))


# --- messages speak to users ----------------------------------------------------------------------
def test_messages_carry_no_internal_references(monkeypatch, tmp_path):
    from openmm_starmd.model import checkpoint

    monkeypatch.setattr(checkpoint, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        checkpoint.resolve_model_path("default")
    assert "pip install" in str(info.value) and "starmd train" in str(info.value)
    internal = re.compile(r"\(#\d+\)|\bissue #?\d+|\bsession \d+", re.IGNORECASE)
    package = Path(checkpoint.__file__).parents[1]
    sources = list(package.rglob("*.py")) + [p for p in (package.parent / "plugin_src").rglob("*") if p.suffix in (".cpp", ".h", ".i")]
    found = [f"{p.name}:{n}" for p in sources for n, line in enumerate(p.read_text().splitlines(), 1) if internal.search(line)]
    assert found == []


# --- starmd generate: arguments checked before the set-up -----------------------------------------
def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def _water_pdb(tmp_path) -> str:
    water = app.PDBFile(str(Path(app.__file__).parent / "data" / "tip3p.pdb"))
    mod = app.Modeller(water.topology, water.positions)
    mod.delete(list(mod.topology.residues())[3:])
    with open(tmp_path / "water.pdb", "w") as handle:
        app.PDBFile.writeFile(mod.topology, mod.positions, handle)
    return str(tmp_path / "water.pdb")


@pytest.mark.parametrize("case, args, message", [
    ("empty", lambda t, m: [_write(t / "empty.pdb", ""), "--model", m], r"empty.pdb is empty"),
    ("txt", lambda t, m: [_write(t / "notes.txt", "hello\n"), "--model", m], r"expected a PDB .* got .*notes.txt"),
    ("json", lambda t, m: [_write(t / "s.json", "{}"), "--model", m], r"expected a PDB .* got .*s.json"),
    ("header only", lambda t, m: [_write(t / "h.pdb", "HEADER    PROTEIN\nREMARK   1 nothing\nEND\n"), "--model", m],
     r"h.pdb has no atoms"),
    ("water only", lambda t, m: [_water_pdb(t), "--model", m], r"water.pdb: no protein residue found"),
    ("threads 0", lambda t, m: [VILLIN, "--threads", "0", "--model", m], r"--threads: expected an int >= 1, got 0"),
    ("stride 0", lambda t, m: [VILLIN, "--stride", "0ns", "--model", m], r"--stride: expected a positive time, got 0 ns"),
    ("stride -1ns", lambda t, m: [VILLIN, "--stride", "-1ns", "--model", m], r"--stride: expected a positive time, got -1 ns"),
    ("stride=-1ns", lambda t, m: [VILLIN, "--stride=-1ns", "--model", m], r"--stride: expected a positive time, got -1 ns"),
    ("out", lambda t, m: [VILLIN, "--out", str(t / "traj.mp4"), "--model", m], r"--out: expected a .xtc or .dcd file"),
    ("relax", lambda t, m: [VILLIN, "--relax", "foo", "--model", m], r"--relax: expected 'minimize', 'none' or a number"),
    ("model", lambda t, m: [VILLIN, "--model", str(t / "missing.pt")], r"--model: no such checkpoint file: .*missing.pt"),
    ("platform", lambda t, m: [VILLIN, "--platform", "Quantum", "--model", m], r"--platform: expected one of .*Reference"),
    ("num steps", lambda t, m: [VILLIN, "--num-steps", "1", "--model", m], r"--num-steps: expected an int >= 2, got 1"),
])
def test_generate_checks_arguments_before_the_set_up(tmp_path, tiny_path, monkeypatch, capsys, case, args, message):
    from openmm_starmd.cli import main
    from openmm_starmd.openmm import command

    def no_set_up(*a, **k):
        raise AssertionError("the set-up started before the arguments were checked")

    monkeypatch.setattr(command, "build_implicit_simulation", no_set_up)
    assert main(["generate", *args(tmp_path, tiny_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("starmd generate: "), err
    assert re.search(message, err), err


def test_generate_refuses_d_amino_acids_and_ligands_before_the_set_up(tmp_path, tiny_path, monkeypatch, capsys):
    from openmm_starmd.cli import main
    from openmm_starmd.openmm import command

    monkeypatch.setattr(command, "build_implicit_simulation", None)  # never reached
    mod = villin_modeller()
    mirrored = np.asarray(mod.positions.value_in_unit(unit.nanometer)) * np.array([-1.0, 1.0, 1.0])
    with open(tmp_path / "d.pdb", "w") as handle:
        app.PDBFile.writeFile(mod.topology, mirrored * unit.nanometer, handle)
    assert main(["generate", str(tmp_path / "d.pdb"), "--model", tiny_path]) == 2
    assert "D-configured Cα" in capsys.readouterr().err
    list(mod.topology.residues())[-1].name = "LIG"  # an unbonded ligand (the last residue, renamed)
    mod.delete([b for b in mod.topology.bonds() if (b[0].residue.name == "LIG") != (b[1].residue.name == "LIG")])
    with open(tmp_path / "lig.pdb", "w") as handle:
        app.PDBFile.writeFile(mod.topology, mod.positions, handle)
    assert main(["generate", str(tmp_path / "lig.pdb"), "--model", tiny_path]) == 2
    assert "['LIG'] are not amino acids, caps, water or ions" in capsys.readouterr().err
