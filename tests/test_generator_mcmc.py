"""The openmmtools adapter: StarMDMove composes with openmmtools samplers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from openmm import app, unit

from generator_helpers import tiny_checkpoint, villin_modeller
from openmm_starmd.openmm.gate import GateConfig
from openmm_starmd.openmm.generator import GeneratorOptions

mcmc = pytest.importorskip("openmmtools.mcmc")
states = pytest.importorskip("openmmtools.states")
cache = pytest.importorskip("openmmtools.cache")
torch.set_num_threads(1)


def test_move_in_a_sequence_with_langevin_dynamics(tmp_path):
    from openmm_starmd.openmm.mcmc import StarMDMove

    mod = villin_modeller()
    system = app.ForceField("amber14-all.xml").createSystem(mod.topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds)
    thermo = states.ThermodynamicState(system, 300 * unit.kelvin)
    sampler_state = states.SamplerState(mod.positions)
    start = np.array(sampler_state.positions.value_in_unit(unit.nanometer))
    options = GeneratorOptions(num_steps=2, gate=GateConfig(max_clash_rate=1.0, max_break_rate=1.0))
    move = StarMDMove(mod.topology, model=tiny_checkpoint(tmp_path / "tiny.pt"), stride=0.1, relax="minimize", seed=4,
                      options=options, context_cache=cache.ContextCache())
    sequence = mcmc.SequenceMove([move, mcmc.LangevinDynamicsMove(n_steps=5, context_cache=cache.ContextCache())])
    sampler = mcmc.MCMCSampler(thermo, sampler_state, sequence)
    sampler.run(2)
    end = np.array(sampler.sampler_state.positions.value_in_unit(unit.nanometer))
    assert np.isfinite(end).all() and end.shape == start.shape
    assert move.generator.statistics.jumps == 2 and move.generator.rollout.num_frames == 3
    assert np.abs(end - start).max() > 0.1  # the random model moved the protein
