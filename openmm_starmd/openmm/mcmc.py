"""An openmmtools ``MCMCMove`` that jumps with STAR-MD, so the Generator composes with
openmmtools samplers (``MCMCSampler``, ``SequenceMove``, replica exchange).

    from openmmtools import mcmc
    move = mcmc.SequenceMove([StarMDMove(topology, model="default", stride=1.25, n_jumps=1),
                              mcmc.LangevinDynamicsMove(n_steps=500)])
    mcmc.MCMCSampler(thermodynamic_state, sampler_state, move).run(10)

The move keeps one :class:`StarMDGenerator` (and so one rollout whose context is every frame it
generated); each ``apply`` runs the generator on the cached Context of the thermodynamic state
with a LangevinMiddle integrator at the state's temperature (``timestep``), syncing the sampler
state in and out. Like any propagator that is not exactly reversible, it is not an MCMC kernel
with a Metropolis test: use it for enhanced exploration, not for exact Boltzmann sampling.
"""
from __future__ import annotations

from typing import Optional

import openmm
from openmm import unit

from openmm_starmd.openmm.generator import GeneratorOptions, StarMDGenerator

try:
    from openmmtools.mcmc import MCMCMove
except ImportError as exc:  # optional dependency
    raise ImportError("openmm_starmd.openmm.mcmc needs openmmtools: install it with 'pip install openmmtools' "
                      "or 'conda install -c conda-forge openmmtools'") from exc


class _ContextSimulation:
    """The parts of ``openmm.app.Simulation`` the Generator uses, over an existing Context."""

    def __init__(self, topology, system: openmm.System, context: openmm.Context, integrator: openmm.Integrator):
        self.topology, self.system, self.context, self.integrator = topology, system, context, integrator
        self.reporters: list = []
        self._usesPBC = system.usesPeriodicBoundaryConditions()

    @property
    def currentStep(self) -> int:  # noqa: N802 (OpenMM naming)
        return self.context.getStepCount()

    @currentStep.setter
    def currentStep(self, value: int) -> None:  # noqa: N802
        self.context.setStepCount(int(value))

    def step(self, steps: int) -> None:
        self.integrator.step(steps)


class StarMDMove(MCMCMove):
    """``apply`` makes ``n_jumps`` STAR-MD jumps of ``stride`` (see :class:`StarMDGenerator`).

    Args:
        topology: the ``openmm.app.Topology`` of the sampled system (openmmtools states carry none).
        model, stride, relax, seed, options: as for :class:`StarMDGenerator`.
        n_jumps: jumps per ``apply``.
        timestep: step of the LangevinMiddle integrator used for relaxation MD and fallbacks.
    """

    def __init__(self, topology, model="default", stride=1.25 * unit.nanoseconds, relax="minimize",
                 seed: Optional[int] = None, n_jumps: int = 1, timestep=2.0 * unit.femtoseconds,
                 options: Optional[GeneratorOptions] = None, context_cache=None):
        super().__init__(context_cache=context_cache)
        if isinstance(n_jumps, bool) or not isinstance(n_jumps, int) or n_jumps < 1:
            raise ValueError(f"n_jumps: expected an int >= 1, got {n_jumps!r}")
        self.topology = topology
        self.model, self.stride, self.relax, self.seed = model, stride, relax, seed
        self.n_jumps = n_jumps
        self.timestep = timestep
        self.options = options
        self.generator: Optional[StarMDGenerator] = None

    def apply(self, thermodynamic_state, sampler_state, context_cache=None):
        context_cache = self._get_context_cache(context_cache)
        integrator = openmm.LangevinMiddleIntegrator(thermodynamic_state.temperature, 1.0 / unit.picosecond, self.timestep)
        context, integrator = context_cache.get_context(thermodynamic_state, integrator)
        thermodynamic_state.apply_to_context(context)
        sampler_state.apply_to_context(context, ignore_velocities=True)
        shim = _ContextSimulation(self.topology, thermodynamic_state.get_system(remove_thermostat=True), context, integrator)
        if self.generator is None:
            self.generator = StarMDGenerator(shim, model=self.model, stride=self.stride, relax=self.relax, seed=self.seed,
                                             options=self.options)
        else:
            self.generator.simulation = shim
            self.generator._minimizer.simulation = shim
        self.generator.step(self.n_jumps)
        sampler_state.update_from_context(context)


__all__ = ["StarMDMove"]
