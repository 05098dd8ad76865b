"""The system-bound propagator (what the C++ plugin runs) equals the Python StarMDGenerator.

No compiler needed: the propagator file is driven from Python exactly as the C++ kernel drives it
(same seeds, same call order). tests/test_plugin.py checks the compiled plugin against the same
Python path. Helpers here are shared with it.
"""
import json
import sys
from pathlib import Path

import numpy as np
import openmm
import pytest
import torch
from openmm import app, unit

sys.path.insert(0, str(Path(__file__).parent))
from conftest import randomize_  # noqa: E402
from generator_helpers import villin_modeller  # noqa: E402
from openmm_starmd.model import StarMDCore, tiny  # noqa: E402
from openmm_starmd.model.export import export_core  # noqa: E402
from openmm_starmd.model.rollout import _derive_seed  # noqa: E402
from openmm_starmd.openmm.gate import GateConfig  # noqa: E402
from openmm_starmd.openmm.generator import FALLBACK_NOISE_SCALE, GeneratorOptions, StarMDGenerator  # noqa: E402
from openmm_starmd.plugin.propagator import export_propagator, log10_stride_tensor  # noqa: E402

SEED = 11
STRIDE_NS = 1.25
NUM_STEPS = 3  # reverse-diffusion steps per jump (small: a random tiny model)
NUM_JUMPS = 2  # the second jump runs with two frames in the KV cache
TOL_NM = 1e-5


def villin_system(constraints=None):
    """Villin HP35 (582 atoms with hydrogens) in vacuum, amber14."""
    mod = villin_modeller()
    system = app.ForceField("amber14-all.xml").createSystem(mod.topology, nonbondedMethod=app.NoCutoff, constraints=constraints)
    return mod, system


def write_model_files(folder: Path, topology, positions) -> tuple[Path, Path]:
    """A random-weights tiny core exported as by `starmd export`, and its propagator for the topology."""
    torch.manual_seed(0)
    core = randomize_(StarMDCore(tiny()), seed=0, std=0.05).eval()
    core_path = export_core(core, folder / "core.pt", {"preset": "tiny"})
    prop_path = export_propagator(topology, positions, folder / "propagator.pt", model=core_path)
    return Path(core_path), Path(prop_path)


def python_generator_frames(mod, system, core_path, num_jumps=NUM_JUMPS, seed=SEED, time_spacing=1.0,
                            noise_scale=None, noise_switch_t=None) -> list[np.ndarray]:
    """Positions ``[A, 3]`` nm after each jump of the Python StarMDGenerator: no relaxation, every frame accepted."""
    sim = app.Simulation(mod.topology, system, openmm.VerletIntegrator(0.002), openmm.Platform.getPlatformByName("CPU"),
                         {"Threads": "1"})
    sim.context.setPositions(mod.positions)
    options = GeneratorOptions(num_steps=NUM_STEPS, noise_scale=noise_scale, time_spacing=time_spacing,
                               noise_switch_t=noise_switch_t, reassign_velocities=False, progress=False,
                               gate=GateConfig(max_attempts=1, max_clash_rate=1.0, max_break_rate=1.0))
    gen = StarMDGenerator(sim, model=torch.jit.load(str(core_path)), stride=STRIDE_NS, relax=None, seed=seed, options=options)
    frames = []
    for _ in range(num_jumps):
        gen.step(1)
        frames.append(sim.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    return frames


@pytest.fixture(scope="module")
def villin_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plugin_model")
    mod, system = villin_system()
    core_path, prop_path = write_model_files(folder, mod.topology, mod.positions)
    return mod, system, core_path, prop_path


@pytest.mark.parametrize("time_spacing, noise_switch_t", [(1.0, 1.0), (2.0, 1.0), (1.0, 0.5)])
def test_propagator_driven_like_the_kernel_equals_generator(villin_files, tmp_path, time_spacing, noise_switch_t):
    mod, system, core_path, prop_path = villin_files
    if (time_spacing, noise_switch_t) != (1.0, 1.0):  # the spacing and the switch are fixed in the file at export
        prop_path = export_propagator(mod.topology, mod.positions, tmp_path / "spaced.pt", model=core_path, time_spacing=time_spacing,
                                      noise_switch_t=noise_switch_t)
    prop = torch.jit.load(str(prop_path))
    assert prop.time_spacing == time_spacing and prop.noise_switch_t == noise_switch_t
    assert prop.num_atoms == system.getNumParticles() == 582 and prop.num_residues == 35
    x = torch.as_tensor(np.asarray(mod.positions.value_in_unit(unit.nanometer)), dtype=torch.float64)
    start = x.clone()
    stride = log10_stride_tensor(STRIDE_NS)
    prop.start(8)
    ours = []
    for j in range(NUM_JUMPS):  # the C++ kernel's call sequence (ReferenceGeneratorKernels.cpp, execute)
        rots, trans = prop.coarse(x)
        torch.manual_seed(_derive_seed(SEED, j, 0))
        prop.append(rots, trans, stride)
        torch.manual_seed(_derive_seed(SEED, j + 1, 1))
        x = prop.rebuild(x, *prop.sample(stride, NUM_STEPS, False, FALLBACK_NOISE_SCALE))  # a loaded core has no card
        ours.append(x.numpy())
    reference = python_generator_frames(mod, system, core_path, time_spacing=time_spacing, noise_switch_t=noise_switch_t)
    for j in range(NUM_JUMPS):
        assert np.abs(ours[j] - reference[j]).max() < TOL_NM
    assert np.abs(ours[-1] - start.numpy()).max() > 0.1  # the jumps moved the protein


def test_export_records_the_weights_sampler_for_the_cpp_integrator(villin_files, tmp_path):
    """The propagator file carries the sampler the C++ GeneratorIntegrator falls back to: the card's for
    shipped weights, the Generator's fallbacks for a bare exported core, or what the caller gives."""
    from openmm_starmd.model.checkpoint import stride_card

    mod, _, core_path, prop_path = villin_files
    bare = torch.jit.load(str(prop_path))
    assert (bare.num_steps, bare.noise_scale, bare.time_spacing) == (50, FALLBACK_NOISE_SCALE, 1.0)
    card = stride_card("default")
    path = export_propagator(mod.topology, mod.positions, tmp_path / "shipped.pt", model="default")
    shipped = torch.jit.load(path)
    assert (shipped.num_steps, shipped.noise_scale, shipped.time_spacing) == (card.num_steps, card.noise_scale, card.time_spacing or 1.0)
    extra = {"system.json": ""}
    torch.jit.load(path, _extra_files=extra)
    recorded = json.loads(extra["system.json"])
    assert (recorded["num_steps"], recorded["noise_scale"]) == (card.num_steps, card.noise_scale)
    assert recorded["context_window"] == shipped.core.window_frames == (card.context_window or 0)
    core = torch.jit.load(str(core_path))
    windowed = torch.jit.load(export_propagator(mod.topology, mod.positions, tmp_path / "w.pt", model=core, context_window=6))
    assert windowed.core.window_frames == 6 and core.window_frames == 0  # the caller's core keeps its own window
    sunk = torch.jit.load(export_propagator(mod.topology, mod.positions, tmp_path / "s.pt", model=core, context_window=6,
                                            context_sink=1))
    assert (sunk.core.window_frames, sunk.core.sink_frames, core.sink_frames) == (6, 1, 0)
    with pytest.raises(ValueError, match="context_sink: expected a whole number"):
        export_propagator(mod.topology, mod.positions, tmp_path / "p.pt", model=core_path, context_sink=-1)
    with pytest.raises(ValueError, match="context_window: expected 0"):
        export_propagator(mod.topology, mod.positions, tmp_path / "p.pt", model=core_path, context_window=1)
    given = torch.jit.load(export_propagator(mod.topology, mod.positions, tmp_path / "given.pt", model=core_path, num_steps=7,
                                             noise_scale=1.0))
    assert (given.num_steps, given.noise_scale) == (7, 1.0)
    with pytest.raises(ValueError, match="num_steps: expected a whole number >= 1"):
        export_propagator(mod.topology, mod.positions, tmp_path / "p.pt", model=core_path, num_steps=0)
    with pytest.raises(ValueError, match="noise_scale: expected a number >= 0"):
        export_propagator(mod.topology, mod.positions, tmp_path / "p.pt", model=core_path, noise_scale=-0.5)


def test_propagator_rejects_wrong_atom_count(villin_files):
    _, _, _, prop_path = villin_files
    prop = torch.jit.load(str(prop_path))
    with pytest.raises(Exception, match="exported for a system of 582 atoms"):
        prop.coarse(torch.zeros(581, 3, dtype=torch.float64))


def test_export_propagator_bad_input(villin_files, tmp_path):
    mod, _, core_path, _ = villin_files
    positions = np.asarray(mod.positions.value_in_unit(unit.nanometer))
    with pytest.raises(ValueError, match=r"positions: expected shape \(582, 3\)"):
        export_propagator(mod.topology, positions[:-1], tmp_path / "p.pt", model=core_path)
    with pytest.raises(TypeError, match="model"):
        export_propagator(mod.topology, positions, tmp_path / "p.pt", model=3.5)
    with pytest.raises(ValueError, match="time_spacing: expected a number > 0"):
        export_propagator(mod.topology, positions, tmp_path / "p.pt", model=core_path, time_spacing=0.0)


def solvated_villin():
    """Villin in its crystal water and ions (test.pdb: 8867 atoms, rectangular 4.9 x 4.6 x 3.9 nm box)."""
    from generator_helpers import VILLIN

    pdb = app.PDBFile(VILLIN)
    return pdb.topology, pdb.positions


def test_propagator_rebuild_carries_solvent_like_rebuild_positions(villin_files, tmp_path):
    from generator_helpers import rigid_turn, shift_chi1
    from openmm_starmd.openmm.coarse_grain import map_topology
    from openmm_starmd.openmm.rebuild import coarse_grain, rebuild_positions

    _, _, core_path, _ = villin_files
    topology, positions = solvated_villin()
    x = np.asarray(positions.value_in_unit(unit.nanometer))
    prop = torch.jit.load(export_propagator(topology, positions, tmp_path / "solvated.pt", model=core_path))
    pmap = map_topology(topology, x)
    assert prop.num_other_atoms == pmap.other_atoms.size > 8000
    frame = rigid_turn(shift_chi1(coarse_grain(pmap, x), 0.7), 0.9)
    residue_of_atom = np.array([a.residue.index for a in topology.atoms()])
    box = np.asarray(topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer))
    xt = torch.as_tensor(x)
    periodic = prop.rebuild_periodic(xt, torch.as_tensor(box), *frame).numpy()
    plain = prop.rebuild(xt, *frame).numpy()
    assert np.abs(periodic - rebuild_positions(pmap, x, frame, residue_of_atom, box)).max() < 1e-9
    assert np.abs(plain - rebuild_positions(pmap, x, frame, residue_of_atom, None)).max() < 1e-9
    water_moved = np.abs(periodic - x).max(axis=1)[pmap.other_atoms] > 1e-6
    assert 0 < water_moved.sum() < pmap.other_atoms.size  # a shell moves, bulk solvent stays


def test_export_propagator_checks_the_structure(villin_files, tmp_path):
    from openmm_starmd.openmm.coarse_grain import ChainGapWarning

    mod, _, core_path, _ = villin_files
    positions = np.asarray(mod.positions.value_in_unit(unit.nanometer))
    bad = positions.copy()
    bad[7, 2] = np.inf
    with pytest.raises(ValueError, match=r"positions: 1 atom\(s\) have NaN or infinite coordinates: \w+ of LEU 1 \(chain 0\) \(atom index 7\)"):
        export_propagator(mod.topology, bad, tmp_path / "p.pt", model=core_path)
    with pytest.raises(ValueError, match="D-configured Cα"):
        export_propagator(mod.topology, positions * np.array([1.0, -1.0, 1.0]), tmp_path / "p.pt", model=core_path)
    gap = villin_modeller()
    gap.delete(list(gap.topology.residues())[20:22])
    with pytest.warns(ChainGapWarning, match="pdbfixer"):
        export_propagator(gap.topology, gap.positions, tmp_path / "gap.pt", model=core_path)
