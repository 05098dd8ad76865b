"""Bad input to StarMDGenerator: a clear error and the Simulation untouched."""
from __future__ import annotations

import numpy as np
import openmm
import pytest
import torch
from openmm import app, unit

from generator_helpers import positions_nm, tiny_checkpoint, vacuum_simulation, villin_modeller
from openmm_starmd.openmm.coarse_grain import SEGMENT_GAP, map_topology
from openmm_starmd.openmm.generator import GeneratorOptions, StarMDGenerator

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")


def _bare_simulation(topology, positions) -> app.Simulation:
    """A Simulation over any topology (particles with masses, no forces) for topology-level checks."""
    system = openmm.System()
    for atom in topology.atoms():
        system.addParticle(atom.element.mass if atom.element is not None else 1.0)
    sim = app.Simulation(topology, system, openmm.VerletIntegrator(0.002), openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(positions)
    return sim


def _untouched(sim, make_call):
    state = sim.context.getState(getPositions=True, getVelocities=True)
    step = sim.currentStep
    make_call()
    after = sim.context.getState(getPositions=True, getVelocities=True)
    assert np.array_equal(after.getPositions(asNumpy=True), state.getPositions(asNumpy=True))
    assert np.array_equal(after.getVelocities(asNumpy=True), state.getVelocities(asNumpy=True))
    assert after.getTime() == state.getTime() and sim.currentStep == step


def test_no_protein(tiny_path):
    water = app.PDBFile(str(app.__file__).replace("__init__.py", "data/tip3p.pdb"))
    mod = app.Modeller(water.topology, water.positions)
    mod.delete(list(mod.topology.residues())[20:])
    sim = _bare_simulation(mod.topology, mod.positions)
    _untouched(sim, lambda: _expect(ValueError, "no protein residue", lambda: StarMDGenerator(sim, tiny_path)))


def _expect(exc, match, fn):
    with pytest.raises(exc, match=match):
        fn()


def test_missing_backbone_atom(tiny_path):
    mod = villin_modeller()
    res = list(mod.topology.residues())[6]
    mod.delete([a for a in res.atoms() if a.name == "CA"])
    sim = _bare_simulation(mod.topology, mod.positions)
    _untouched(sim, lambda: _expect(ValueError, r"lacks backbone atom\(s\) \['CA'\]", lambda: StarMDGenerator(sim, tiny_path)))


def test_non_standard_residue(tiny_path):
    mod = villin_modeller()
    list(mod.topology.residues())[9].name = "XYZ"
    sim = _bare_simulation(mod.topology, mod.positions)
    _untouched(sim, lambda: _expect(ValueError, "XYZ .* not one of the 20 amino acids", lambda: StarMDGenerator(sim, tiny_path)))


def test_chain_gap_gives_separate_segments(tiny_path):
    mod = villin_modeller()
    mod.delete([list(mod.topology.residues())[17]])
    pmap = map_topology(mod.topology)
    assert pmap.num_residues == 34
    assert pmap.chain_index.tolist() == [0] * 17 + [1] * 17
    assert int(pmap.residue_index[17] - pmap.residue_index[16]) == SEGMENT_GAP
    assert pmap.neighbours.tolist() == [True] * 16 + [False] + [True] * 16
    assert bool(pmap.chain_start[17]) and not bool(pmap.chain_start[16])


@pytest.mark.parametrize("stride, exc, match", [
    (1.25 * unit.nanometer, TypeError, "expected a time"),
    (0, ValueError, "positive"),
    (-1 * unit.picoseconds, ValueError, "positive"),
    ("1ns", TypeError, "number of nanoseconds"),
])
def test_bad_stride(tiny_path, stride, exc, match):
    sim = vacuum_simulation(villin_modeller())
    _untouched(sim, lambda: _expect(exc, match, lambda: StarMDGenerator(sim, tiny_path, stride=stride)))


def test_stride_units_are_converted(tiny_path):
    sim = vacuum_simulation(villin_modeller())
    gen = StarMDGenerator(sim, tiny_path, stride=500 * unit.picoseconds)
    assert gen.stride_ns == pytest.approx(0.5) and gen.steps_per_jump == 250000
    assert StarMDGenerator(sim, tiny_path, stride=2).stride_ns == 2.0


def test_bad_jump_count(tiny_path):
    sim = vacuum_simulation(villin_modeller())
    gen = StarMDGenerator(sim, tiny_path, stride=0.1, relax=None)
    _untouched(sim, lambda: _expect(ValueError, "n: expected an int >= 0, got -1", lambda: gen.step(-1)))
    _untouched(sim, lambda: _expect(TypeError, "n: expected an int", lambda: gen.step(1.5)))
    _untouched(sim, lambda: _expect(ValueError, "steps", lambda: gen.relax(-3)))


def test_bad_model_files_name_the_path(tmp_path):
    sim = vacuum_simulation(villin_modeller())
    missing = tmp_path / "nope.pt"
    _untouched(sim, lambda: _expect(FileNotFoundError, "nope.pt", lambda: StarMDGenerator(sim, missing)))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00not a checkpoint" * 10)
    _untouched(sim, lambda: _expect(ValueError, "corrupt.pt", lambda: StarMDGenerator(sim, corrupt)))
    foreign = tmp_path / "foreign.pt"
    torch.save({"format": "openmm-starmd-checkpoint", "version": 1, "config": {"c_s": 24, "bogus": 1}, "model": {}}, foreign)
    _untouched(sim, lambda: _expect(ValueError, "foreign.pt", lambda: StarMDGenerator(sim, foreign)))
    _untouched(sim, lambda: _expect(TypeError, "model: expected", lambda: StarMDGenerator(sim, 42)))


def test_size_limit_gives_memory_estimate(tiny_path):
    sim = vacuum_simulation(villin_modeller())
    opts = GeneratorOptions(max_residues=20)
    _untouched(sim, lambda: _expect(ValueError, r"35 residues.*max_residues=20.*GiB of KV cache",
                                    lambda: StarMDGenerator(sim, tiny_path, options=opts)))


def test_bad_relax_and_seed(tiny_path):
    sim = vacuum_simulation(villin_modeller())
    _expect(TypeError, "relax", lambda: StarMDGenerator(sim, tiny_path, relax="anneal"))
    _expect(ValueError, "relax", lambda: StarMDGenerator(sim, tiny_path, relax=-5))
    _expect(TypeError, "seed", lambda: StarMDGenerator(sim, tiny_path, seed=1.5))
    assert np.isfinite(positions_nm(sim)).all()


def test_trained_stride_range_from_checkpoint_meta():
    from openmm_starmd.model.checkpoint import trained_stride_range

    meta = {"trajectories": [{"frame_interval_ps": 10.0, "stride_frames": [1, 18]},
                             {"frame_interval_ps": 2.0, "stride_frames": [3, 40]}]}
    assert trained_stride_range(meta) == pytest.approx((0.006, 0.18))
    assert trained_stride_range({"trained_stride_ns": [0.01, 2.0], **meta}) == (0.01, 2.0)
    assert trained_stride_range({}) is None


def test_stride_outside_the_trained_range_warns(tmp_path):
    from openmm_starmd.model.checkpoint import save_checkpoint
    from openmm_starmd.model.config import tiny
    from openmm_starmd.model.core import StarMDCore
    from openmm_starmd.openmm.generator import StrideOutsideTrainingWarning

    torch.manual_seed(0)
    path = tmp_path / "meta.pt"
    save_checkpoint(path, tiny(), StarMDCore(tiny()).net.state_dict(),
                    meta={"trajectories": [{"frame_interval_ps": 10.0, "stride_frames": [1, 12]}]})
    sim = vacuum_simulation(villin_modeller())
    with pytest.warns(StrideOutsideTrainingWarning, match=r"1.25 ns lies outside .*0.01-0.12 ns") as record:
        gen = StarMDGenerator(sim, str(path), stride=1.25)
    assert {w.filename for w in record} == {__file__}  # the user's own line, not the package's
    assert gen.trained_stride_ns == pytest.approx((0.01, 0.12))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", StrideOutsideTrainingWarning)
        StarMDGenerator(sim, str(path), stride=0.05)


@pytest.mark.parametrize("value", [-0.1, float("nan"), True, "1"])
def test_bad_noise_scale(tiny_path, value):
    sim = vacuum_simulation(villin_modeller())
    _untouched(sim, lambda: _expect(ValueError, "noise_scale", lambda: StarMDGenerator(
        sim, tiny_path, options=GeneratorOptions(noise_scale=value))))
