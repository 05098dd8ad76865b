"""The compiled C++ plugin: GeneratorIntegrator as a Simulation's integrator, the ctest, XML, bad input.
(tests/test_plugin_systems.py: explicit solvent and the Langevin relaxation.)

The session fixture builds the plugin (``build_plugin``: cmake + swig + the C++ compiler) into the
cache folder keyed by the sources and the torch/OpenMM versions, reusing a finished build; the
tests skip with the reason when a build tool is missing.
"""
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import openmm
import pytest
from openmm import app, unit

sys.path.insert(0, str(Path(__file__).parent))
from test_plugin_propagator import (  # noqa: E402
    NUM_JUMPS, NUM_STEPS, SEED, STRIDE_NS, TOL_NM, python_generator_frames, villin_system, write_model_files)
from openmm_starmd.plugin import build as plugin_build  # noqa: E402
from openmm_starmd.units import PS_PER_NS  # noqa: E402

BOLTZ = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)


@pytest.fixture(scope="session")
def plugin():
    """The loaded plugin module (built first if needed) and its install prefix."""
    missing = plugin_build.missing_tools()
    if missing:
        pytest.skip("cannot build the C++ plugin, missing: " + ", ".join(missing))
    prefix = plugin_build.build_plugin(jobs=min(2, os.cpu_count() or 1))
    from openmm_starmd.plugin import load_plugin

    return load_plugin(prefix), prefix


@pytest.fixture(scope="module")
def villin(tmp_path_factory):
    """Villin (no constraints), a random tiny core, its propagator and the Python Generator's frames."""
    folder = tmp_path_factory.mktemp("plugin")
    mod, system = villin_system()
    core_path, prop_path = write_model_files(folder, mod.topology, mod.positions)
    return mod, system, core_path, prop_path, python_generator_frames(mod, system, core_path)


class FrameReporter:
    """Keeps every reported frame: positions (nm), time (ps), step, temperature from velocities."""

    def __init__(self):
        self.positions, self.times_ps, self.steps, self.kinetic = [], [], [], []

    def describeNextReport(self, simulation):  # noqa: N802 (OpenMM API)
        return {"steps": 1, "periodic": False, "include": ["positions", "velocities", "energy"]}

    def report(self, simulation, state):
        self.positions.append(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
        self.times_ps.append(state.getTime().value_in_unit(unit.picosecond))
        self.steps.append(state.getStepCount())
        self.kinetic.append(state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole))


def _simulation(plugin_module, mod, system, prop_path, **setters):
    integrator = plugin_module.GeneratorIntegrator(str(prop_path), STRIDE_NS * unit.nanoseconds, NUM_STEPS, SEED)
    for name, value in setters.items():
        getattr(integrator, name)(value)
    sim = app.Simulation(mod.topology, system, integrator, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    sim.context.setPositions(mod.positions)
    return sim


def test_simulation_with_reporters_equals_python_generator(plugin, villin, tmp_path):
    module, _ = plugin
    mod, system, _, prop_path, reference = villin
    # a KV cache of 2 frames is full at the second jump: it is grown by replaying the history (same frames)
    sim = _simulation(module, mod, system, prop_path, setCacheCapacity=2)
    assert isinstance(sim.integrator, openmm.Integrator)
    frames, log = FrameReporter(), io.StringIO()
    sim.reporters += [frames, app.StateDataReporter(log, 1, step=True, time=True, temperature=True),
                      app.DCDReporter(str(tmp_path / "jumps.dcd"), 1)]
    sim.step(NUM_JUMPS)
    stride_ps = STRIDE_NS * PS_PER_NS
    assert frames.steps == list(range(1, NUM_JUMPS + 1)) and sim.currentStep == NUM_JUMPS
    assert np.allclose(frames.times_ps, stride_ps * np.arange(1, NUM_JUMPS + 1))
    for j in range(NUM_JUMPS):
        assert np.abs(frames.positions[j] - reference[j]).max() < TOL_NM
    assert sim.integrator.getNumJumps() == NUM_JUMPS
    # velocities are drawn at 300 K after each jump: kinetic temperature within 5 sigma
    dof = 3 * system.getNumParticles() - system.getNumConstraints() - 3  # CMMotionRemover
    temperatures = 2 * np.array(frames.kinetic) / (dof * BOLTZ)
    assert np.all(np.abs(temperatures - 300.0) < 5 * 300.0 * np.sqrt(2.0 / dof))
    assert len(set(temperatures.round(6))) == NUM_JUMPS  # a new draw each jump
    assert len(log.getvalue().strip().splitlines()) == NUM_JUMPS + 1  # header + one line per jump
    import mdtraj

    assert mdtraj.load_dcd(str(tmp_path / "jumps.dcd"), top=mdtraj.Topology.from_openmm(mod.topology)).n_frames == NUM_JUMPS


def test_ctest_jump_matches_python_path(plugin, villin):
    """The C++ test program, run by ctest, loads the exported model and reproduces the Python frames."""
    _, prefix = plugin
    mod, system, _, prop_path, reference = villin
    info = json.loads((prefix / "build-info.json").read_text())
    data = Path(info["test_data"])
    data.mkdir(parents=True, exist_ok=True)
    (data / "propagator.pt").write_bytes(Path(prop_path).read_bytes())
    masses = [system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.getNumParticles())]
    rows = [f"{system.getNumParticles()} {SEED} {STRIDE_NS * PS_PER_NS!r} {NUM_STEPS} {NUM_JUMPS}", " ".join(map(repr, masses))]
    for frame in [np.asarray(mod.positions.value_in_unit(unit.nanometer))] + reference:
        rows += [" ".join(repr(float(v)) for v in xyz) for xyz in frame]
    (data / "reference.txt").write_text("\n".join(rows) + "\n")
    ctest = plugin_build._tool("ctest")
    done = subprocess.run([ctest, "--output-on-failure", "-V"], cwd=info["build_dir"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:]
    assert "100% tests passed" in done.stdout and "Skipped" not in done.stdout, done.stdout[-2000:]
    assert f"CPU jump {NUM_JUMPS}: max |C++ - Python|" in done.stdout


def test_default_sampler_is_the_one_the_model_file_records(plugin, villin, tmp_path):
    """Left at its defaults (0 diffusion steps, noise -1), the integrator samples with the steps and
    noise scale that export_propagator wrote into the file (the weights' card): the same frames as
    the Python Generator given them."""
    from openmm_starmd.plugin.propagator import export_propagator

    module, _ = plugin
    mod, system, core_path, _, _ = villin
    prop_path = export_propagator(mod.topology, mod.positions, tmp_path / "recorded.pt", model=core_path, num_steps=NUM_STEPS,
                                  noise_scale=0.25)
    integrator = module.GeneratorIntegrator(str(prop_path), STRIDE_NS * unit.nanoseconds)
    assert integrator.getNumDiffusionSteps() == 0 and integrator.getNoiseScale() == -1.0
    integrator.setRandomNumberSeed(SEED)
    sim = app.Simulation(mod.topology, system, integrator, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    sim.context.setPositions(mod.positions)
    reference = python_generator_frames(mod, system, core_path, num_jumps=2, noise_scale=0.25)
    other_noise = python_generator_frames(mod, system, core_path, num_jumps=2, noise_scale=0.5)
    for j in range(2):
        sim.step(1)
        x = sim.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        assert np.abs(x - reference[j]).max() < TOL_NM
    assert np.abs(other_noise[1] - reference[1]).max() > 10 * TOL_NM  # the noise scale matters


def test_xml_round_trip(plugin):
    module, _ = plugin
    integ = module.GeneratorIntegrator("model.pt", 2.5 * unit.nanoseconds, 9, 21)
    integ.setTemperature(310 * unit.kelvin)
    integ.setFriction(0.5 / unit.picosecond)
    integ.setRelaxationSteps(13)
    integ.setRelaxationStepSize(1.5 * unit.femtoseconds)
    integ.setUseODE(True)
    integ.setNoiseScale(0.7)
    integ.setCacheCapacity(19)
    xml = openmm.XmlSerializer.serialize(integ)
    copy = module.GeneratorIntegrator.cast(openmm.XmlSerializer.deserialize(xml))
    assert copy is not None and openmm.XmlSerializer.serialize(copy) == xml
    assert copy.getModelFile() == "model.pt" and copy.getStride() == 2500 * unit.picosecond
    assert (copy.getNumDiffusionSteps(), copy.getRandomNumberSeed(), copy.getRelaxationSteps(), copy.getCacheCapacity()) == (9, 21, 13, 19)
    assert copy.getTemperature() == 310 * unit.kelvin and copy.getFriction() == 0.5 / unit.picosecond
    assert abs(copy.getRelaxationStepSize().value_in_unit(unit.picosecond) - 0.0015) < 1e-15
    assert copy.getUseODE() and copy.getNoiseScale() == 0.7
    assert module.GeneratorIntegrator.cast(openmm.VerletIntegrator(0.001)) is None


def test_bad_input_raises_openmm_exception(plugin, villin, tmp_path):
    module, _ = plugin
    mod, system, core_path, prop_path, _ = villin
    with pytest.raises(openmm.OpenMMException, match="model file '.*missing.pt' not found"):
        _simulation(module, mod, system, tmp_path / "missing.pt")
    bigger = openmm.System()
    for _ in range(system.getNumParticles() + 3):
        bigger.addParticle(12.0)
    with pytest.raises(openmm.OpenMMException, match="exported for a system of 582 atoms, but this System has 585"):
        openmm.Context(bigger, module.GeneratorIntegrator(str(prop_path), 1000.0, NUM_STEPS, SEED),
                       openmm.Platform.getPlatformByName("Reference"))
    with pytest.raises(openmm.OpenMMException, match="is not a STAR-MD propagator"):
        _simulation(module, mod, system, core_path)  # the bare core of `starmd export`
    with pytest.raises(openmm.OpenMMException, match="numDiffusionSteps must be >= 1 \\(or 0: the model file's\\)"):
        module.GeneratorIntegrator(str(prop_path), 1000.0, -1, SEED)
    with pytest.raises(openmm.OpenMMException, match="noise scale must be >= 0 \\(or -1: the model file's\\)"):
        module.GeneratorIntegrator(str(prop_path), 1000.0).setNoiseScale(-0.5)
    # the platform without kernels is covered by the ctest (a platform registered after the plugin)


def test_cli_reuses_build_exports_and_import_error_without_one(plugin, villin, tmp_path, capsys):
    import torch

    from openmm_starmd import cli
    from openmm_starmd.plugin import load_plugin

    _, prefix = plugin
    mod, _, core_path, _, _ = villin
    with open(tmp_path / "villin.pdb", "w") as f:
        app.PDBFile.writeFile(mod.topology, mod.positions, f)
    out = tmp_path / "villin_propagator.pt"
    assert cli.main(["build-plugin", "--prefix", str(prefix), "--export", str(tmp_path / "villin.pdb"), str(out),
                     "--model", str(core_path)]) == 0
    assert "installed in" in capsys.readouterr().out
    assert torch.jit.load(str(out)).num_atoms == mod.topology.getNumAtoms()
    with pytest.raises(ImportError, match="starmd build-plugin"):
        load_plugin(tmp_path / "empty")


def test_nan_positions_name_the_atoms_and_a_failed_step_leaves_the_integrator_usable(plugin, villin):
    module, _ = plugin
    mod, system, _, prop_path, reference = villin
    sim = _simulation(module, mod, system, prop_path)
    clean = np.asarray(mod.positions.value_in_unit(unit.nanometer))
    ca = next(a.index for a in list(mod.topology.residues())[4].atoms() if a.name == "CA")
    bad = clean.copy()
    bad[ca, 1] = np.nan
    sim.context.setPositions(bad * unit.nanometer)
    before = sim.context.getState(getPositions=True, getVelocities=True)
    with pytest.raises(openmm.OpenMMException, match=rf"1 atom\(s\) have NaN or infinite coordinates: CA of ASP 5 \(chain 0\) "
                       rf"\(atom index {ca}\); set finite positions"):
        sim.step(1)
    after = sim.context.getState(getPositions=True, getVelocities=True)
    assert np.array_equal(after.getPositions(asNumpy=True), before.getPositions(asNumpy=True), equal_nan=True)
    assert np.array_equal(after.getVelocities(asNumpy=True), before.getVelocities(asNumpy=True))
    assert after.getTime() == before.getTime() and sim.currentStep == 0 and sim.integrator.getNumJumps() == 0
    # clean positions again: the same jumps as a run that never failed
    sim.context.setPositions(mod.positions)
    frames = FrameReporter()
    sim.reporters.append(frames)
    sim.step(NUM_JUMPS)
    for j in range(NUM_JUMPS):
        assert np.abs(frames.positions[j] - reference[j]).max() < TOL_NM
