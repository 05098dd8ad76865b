"""Restrained minimisation after a jump, in a private Context (the user's System is untouched).

Design choice: the restraint lives in a *copy* of the user's System with one extra
``CustomExternalForce`` (harmonic, ``0.5 k |x - x0|^2`` on every backbone N, CA, C), in a second
Context on the same platform. The user's System, Context, force groups and reported energies are
never changed, so no restraint can leak into their MD; the price is one extra Context
(created once, lazily, at the first minimisation).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import openmm
from openmm import unit

RESTRAINT_K_PARAMETER = "starmd_backbone_k"


@dataclass
class RelaxConfig:
    """Restrained minimisation settings.

    Attributes:
        restraint_k: harmonic constant on backbone N, CA, C (kJ/mol/nm^2).
        tolerance: minimiser force tolerance (kJ/mol/nm).
        max_iterations: minimiser iteration cap (0: until converged).
        constraint_k: the minimisation runs on a copy of the system whose constraints are
            replaced by harmonic bonds of this stiffness (kJ/mol/nm^2) at the constraint lengths;
            the constraints are re-applied when the positions go back to the Simulation. OpenMM's
            minimiser handles constraints with rounds of growing penalties; without them it
            converged 1.4-7.7x faster on villin frames with the same final energy within 10 kJ/mol
            (3 frames, docs/model_card.md). 0 keeps the constraints.
    """

    restraint_k: float = 1000.0
    tolerance: float = 10.0
    max_iterations: int = 2000
    constraint_k: float = 4.0e5

    def validate(self) -> "RelaxConfig":
        if not self.restraint_k >= 0:
            raise ValueError(f"RelaxConfig.restraint_k: expected >= 0 kJ/mol/nm^2, got {self.restraint_k}")
        if not self.tolerance > 0:
            raise ValueError(f"RelaxConfig.tolerance: expected > 0 kJ/mol/nm, got {self.tolerance}")
        if not self.constraint_k >= 0:
            raise ValueError(f"RelaxConfig.constraint_k: expected >= 0 kJ/mol/nm^2, got {self.constraint_k}")
        if self.max_iterations < 0:
            raise ValueError(f"RelaxConfig.max_iterations: expected >= 0, got {self.max_iterations}")
        return self


def _platform_properties(context: openmm.Context) -> dict[str, str]:
    platform = context.getPlatform()
    props = {}
    for name in platform.getPropertyNames():
        try:
            props[name] = platform.getPropertyValue(context, name)
        except Exception:  # some properties cannot be read back; the defaults then apply
            continue
    return props


class RestrainedMinimizer:
    """Minimise a copy of ``system`` with backbone atoms ``[R]`` held near given positions."""

    def __init__(self, simulation, backbone_atoms: np.ndarray, config: RelaxConfig):
        self.simulation = simulation
        self.config = config.validate()
        self.backbone_atoms = np.asarray(backbone_atoms, dtype=np.int64)
        self._context = None
        self._restraint = None
        self._force_index = -1

    def _build(self) -> None:
        system = copy.deepcopy(self.simulation.system)
        force = openmm.CustomExternalForce(f"0.5*{RESTRAINT_K_PARAMETER}*((x-x0)^2+(y-y0)^2+(z-z0)^2)")
        force.addGlobalParameter(RESTRAINT_K_PARAMETER, self.config.restraint_k)
        for name in ("x0", "y0", "z0"):
            force.addPerParticleParameter(name)
        for i in self.backbone_atoms:
            force.addParticle(int(i), [0.0, 0.0, 0.0])
        self._force_index = system.addForce(force)
        if self.config.constraint_k > 0 and system.getNumConstraints() > 0:
            bonds = openmm.HarmonicBondForce()
            for k in reversed(range(system.getNumConstraints())):
                i, j, length = system.getConstraintParameters(k)
                bonds.addBond(i, j, length, self.config.constraint_k)
                system.removeConstraint(k)
            system.addForce(bonds)
        integrator = openmm.VerletIntegrator(0.001 * unit.picoseconds)
        ctx = self.simulation.context
        self._context = openmm.Context(system, integrator, ctx.getPlatform(), _platform_properties(ctx))
        self._restraint = force
        self._system = system
        self._integrator = integrator

    def minimize(self, positions_nm: np.ndarray, box_vectors=None) -> np.ndarray:
        """Minimise from ``positions_nm`` ``[A, 3]`` with the backbone restrained to them; returns ``[A, 3]`` nm."""
        if self._context is None:
            self._build()
        pos = np.asarray(positions_nm, dtype=np.float64)
        for k, i in enumerate(self.backbone_atoms):
            self._restraint.setParticleParameters(k, int(i), [float(v) for v in pos[i]])
        if box_vectors is not None:
            self._context.setPeriodicBoxVectors(*box_vectors)
        self._context.setPositions(pos * unit.nanometer)
        for name, value in self.simulation.context.getParameters().items():  # e.g. alchemical lambdas
            self._context.setParameter(name, value)
        self._restraint.updateParametersInContext(self._context)
        openmm.LocalEnergyMinimizer.minimize(self._context, self.config.tolerance, self.config.max_iterations)
        state = self._context.getState(getPositions=True)
        return np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))


__all__ = ["RelaxConfig", "RestrainedMinimizer", "RESTRAINT_K_PARAMETER"]
