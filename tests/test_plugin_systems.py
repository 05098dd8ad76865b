"""The compiled C++ plugin on more systems: explicit solvent in a periodic box, and the Langevin
relaxation after a jump against OpenMM's own LangevinMiddleIntegrator (with and without constraints)."""
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import openmm
import pytest
from openmm import app, unit

sys.path.insert(0, str(Path(__file__).parent))
from test_plugin import _simulation, plugin  # noqa: E402,F401  (plugin: the session fixture that builds and loads it)
from test_plugin_propagator import (  # noqa: E402
    STRIDE_NS, TOL_NM, python_generator_frames, solvated_villin, villin_system, write_model_files)
from openmm_starmd.plugin import export_propagator  # noqa: E402
from openmm_starmd.units import PS_PER_NS  # noqa: E402


@pytest.fixture(scope="module")
def villin(tmp_path_factory):
    """Villin (no constraints), a random tiny core and its propagator (same layout as test_plugin's fixture)."""
    mod, system = villin_system()
    core_path, prop_path = write_model_files(tmp_path_factory.mktemp("plugin_systems"), mod.topology, mod.positions)
    return mod, system, core_path, prop_path, None


def _periodic_system(topology) -> openmm.System:
    """Masses and one periodic force (all charges and epsilons zero): a jump computes no forces."""
    system = openmm.System()
    system.setDefaultPeriodicBoxVectors(*topology.getPeriodicBoxVectors())
    periodic = openmm.NonbondedForce()
    periodic.setNonbondedMethod(openmm.NonbondedForce.CutoffPeriodic)
    for atom in topology.atoms():
        system.addParticle(atom.element.mass)
        periodic.addParticle(0.0, 0.1, 0.0)
    system.addForce(periodic)
    assert system.usesPeriodicBoundaryConditions()
    return system


def test_explicit_solvent_jump_equals_python_generator(plugin, villin):
    """Solvated villin in a periodic box: the kernel takes the minimum-image solvent-shell path."""
    module, _ = plugin
    _, _, core_path, _, _ = villin
    topology, positions = solvated_villin()
    system = _periodic_system(topology)
    solvated = SimpleNamespace(topology=topology, positions=positions)
    reference = python_generator_frames(solvated, system, core_path, num_jumps=1)[0]
    prop_path = export_propagator(topology, positions, Path(core_path).parent / "solvated_propagator.pt", model=core_path)
    sim = _simulation(module, solvated, system, prop_path)
    sim.step(1)
    ours = sim.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    assert np.abs(ours - reference).max() < TOL_NM
    water = np.array([a.index for a in topology.atoms() if a.residue.name == "HOH"])
    assert np.abs(ours - np.asarray(positions.value_in_unit(unit.nanometer)))[water].max() > 0.1  # water moved with the protein


@pytest.mark.parametrize("constraints", [None, app.HBonds])
def test_relaxation_is_langevin_middle(plugin, villin, constraints):
    """The kernel's relaxation steps equal OpenMM's LangevinMiddleIntegrator (friction 0: deterministic) started
    from the jump's positions and velocities: with the forces (tiny steps: a random model's frames clash), and
    with HBonds constraints in free flight (integration force group without forces)."""
    module, _ = plugin
    mod, system, _, prop_path, _ = villin
    if constraints is None:
        step_ps, steps, groups = 1e-8, 4, 0xFFFFFFFF - 2**32  # all groups (-1 as a signed int)
    else:
        system = villin_system(constraints)[1]
        step_ps, steps, groups = 0.002, 3, 1 << 30
    jumped = _simulation(module, mod, system, prop_path)
    jumped.step(1)
    start = jumped.context.getState(getPositions=True, getVelocities=True)
    relaxed = _simulation(module, mod, system, prop_path, setRelaxationSteps=steps, setRelaxationStepSize=step_ps,
                          setFriction=0.0, setIntegrationForceGroups=groups)
    relaxed.step(1)
    ours = relaxed.context.getState(getPositions=True, getVelocities=True)
    assert ours.getTime().value_in_unit(unit.picosecond) == STRIDE_NS * PS_PER_NS
    verlet = openmm.LangevinMiddleIntegrator(300.0, 0.0, step_ps)
    verlet.setIntegrationForceGroups(groups)
    verlet.setConstraintTolerance(relaxed.integrator.getConstraintTolerance())
    context = openmm.Context(system, verlet, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    context.setState(start)
    verlet.step(steps)
    theirs = context.getState(getPositions=True, getVelocities=True)
    x0, x1, x2 = (s.getPositions(asNumpy=True).value_in_unit(unit.nanometer) for s in (start, ours, theirs))
    moved = np.abs(x2 - x0).max()
    assert moved > 1e-7  # the relaxation did move atoms
    assert np.abs(x1 - x2).max() < 1e-6 * moved
    v1, v2 = (s.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond) for s in (ours, theirs))
    assert np.abs(v1 - v2).max() < 1e-6 * np.abs(v2).max()


def test_protein_wrapped_per_residue_is_made_whole_as_the_python_generator_does(plugin, villin):
    """Solvated villin moved to the box corner and wrapped residue by residue: the kernel makes the protein
    whole along its bonds before coarse-graining and jumps exactly as the Python Generator does."""
    module, _ = plugin
    _, _, core_path, _, _ = villin
    topology, positions = solvated_villin()
    box = np.diag(np.asarray(topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer)))
    x = np.asarray(positions.value_in_unit(unit.nanometer))
    protein = [[a.index for a in r.atoms()] for r in topology.residues() if r.name != "HOH" and len(list(r.atoms())) > 1]
    ca = [a.index for a in topology.atoms() if a.name == "CA"]
    x = x - x[ca].mean(0)  # the protein's centre at the box corner
    for idx in [[a.index for a in r.atoms()] for r in topology.residues()]:
        x[idx] -= np.floor(x[idx].mean(0) / box) * box  # every residue's centroid into the box
    assert np.linalg.norm(np.diff(x[ca], axis=0), axis=-1).max() > 1.5 and len(protein) >= 35
    wrapped = SimpleNamespace(topology=topology, positions=x * unit.nanometer)
    system = _periodic_system(topology)
    reference = python_generator_frames(wrapped, system, core_path, num_jumps=1)[0]
    prop_path = export_propagator(topology, wrapped.positions, Path(core_path).parent / "wrapped_propagator.pt", model=core_path)
    sim = _simulation(module, wrapped, system, prop_path)
    sim.step(1)
    ours = sim.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    assert np.abs(ours - reference).max() < TOL_NM
    # the sampled frame is superposed on the whole protein: its Cα centroid is the whole structure's, far from the wrapped one's
    from openmm_starmd.openmm.coarse_grain import make_whole, protein_bond_tree

    whole = make_whole(x, np.diag(box), protein_bond_tree(topology))
    assert np.linalg.norm(ours[ca].mean(0) - whole[ca].mean(0)) < 1e-3 < 1.0 < np.linalg.norm(x[ca].mean(0) - whole[ca].mean(0))
