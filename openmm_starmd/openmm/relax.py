"""Restrained minimisation after a jump, in a private Context (the user's System is untouched).

Design choice: the restraint lives in a *copy* of the user's System with one extra
``CustomExternalForce`` (harmonic, ``0.5 k |x - x0|^2`` on every backbone N, CA, C), in a second
Context on the same platform. The user's System, Context, force groups and reported energies are
never changed, so no restraint can leak into their MD; the price is one extra Context
(created lazily, at the first minimisation). The copy follows the System: :meth:`RestrainedMinimizer.sync`
(called by the Generator at the start of every ``step()``) compares a digest of the System's XML with
the copy's and rebuilds the copy when they differ (a force added, parameters changed, with or
without ``context.reinitialize()``).
"""
from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass

import numpy as np
import openmm
from openmm import unit

RESTRAINT_K_PARAMETER = "starmd_backbone_k"
MAX_BOND_STRAIN = 0.1  # relative length error of a constraint-turned-bond that marks a collapsed minimisation


@dataclass
class RelaxConfig:
    """Restrained minimisation settings.

    Attributes:
        restraint_k: harmonic constant on backbone N, CA, C (kJ/mol/nm^2).
        tolerance: minimiser force tolerance (kJ/mol/nm). 50 by default: on six rebuilt villin
            frames at 1.25 ns (shipped model, implicit solvent) it took 0.69 s per frame against
            2.54 s at 10, every frame Cα-valid either way, with potential energies of -4427 vs
            -4698 kJ/mol on average -- both far below the 300 K MD mean of -3075 +- 62 kJ/mol, so
            the frame is relaxed enough for MD to take over (benchmarks/relax_tolerance.py).
        max_iterations: minimiser iteration cap (0: until converged).
        constraint_k: the minimisation runs on a copy of the system whose constraints are
            replaced by harmonic bonds of this stiffness (kJ/mol/nm^2) at the constraint lengths;
            the constraints are re-applied when the positions go back to the Simulation. OpenMM's
            minimiser handles constraints with rounds of growing penalties; without them it
            converged 1.4-7.7x faster on villin frames with the same final energy within 10 kJ/mol
            (3 frames, docs/model_card.md). 0 keeps the constraints. Flexible bonds can let a
            hydrogen without Lennard-Jones radius (TIP3P water, Ser/Thr hydroxyls) collapse onto a
            nearby acceptor from a badly overlapping start; when any such bond ends more than
            :data:`MAX_BOND_STRAIN` away from its length, the minimisation is redone with the
            constraints kept (counted in ``RestrainedMinimizer.constrained_retries``).
    """

    restraint_k: float = 1000.0
    tolerance: float = 50.0
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
        self._contexts = {}  # flexible: bool -> (Context, restraint force, integrator)
        self._pairs = np.zeros((0, 2), dtype=np.int64)  # constraints turned into bonds, and their lengths
        self._lengths = np.zeros(0)
        self._system_digest = None  # digest of the System the private Contexts were built from
        self.constrained_retries = 0

    @property
    def flexible(self) -> bool:
        """True when the minimisation first runs with the constraints turned into stiff bonds."""
        return self.config.constraint_k > 0 and self.simulation.system.getNumConstraints() > 0

    def _digest(self) -> str:
        return hashlib.sha256(openmm.XmlSerializer.serialize(self.simulation.system).encode()).hexdigest()

    def sync(self) -> bool:
        """Drop the private Contexts when the Simulation's System changed since they were built
        (they are rebuilt at the next minimisation). Returns True when they were dropped."""
        if not self._contexts or self._digest() == self._system_digest:
            return False
        self._contexts = {}
        return True

    def _build(self, flexible: bool):
        if not self._contexts:
            self._system_digest = self._digest()
        system = copy.deepcopy(self.simulation.system)
        force = openmm.CustomExternalForce(f"0.5*{RESTRAINT_K_PARAMETER}*((x-x0)^2+(y-y0)^2+(z-z0)^2)")
        force.addGlobalParameter(RESTRAINT_K_PARAMETER, self.config.restraint_k)
        for name in ("x0", "y0", "z0"):
            force.addPerParticleParameter(name)
        for i in self.backbone_atoms:
            force.addParticle(int(i), [0.0, 0.0, 0.0])
        system.addForce(force)
        if flexible:
            bonds = openmm.HarmonicBondForce()
            pairs, lengths = [], []
            for k in reversed(range(system.getNumConstraints())):
                i, j, length = system.getConstraintParameters(k)
                length = length.value_in_unit(unit.nanometer) if unit.is_quantity(length) else float(length)
                bonds.addBond(i, j, length, self.config.constraint_k)
                pairs.append((i, j))
                lengths.append(length)
                system.removeConstraint(k)
            system.addForce(bonds)
            self._pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
            self._lengths = np.asarray(lengths, dtype=np.float64)
        integrator = openmm.VerletIntegrator(0.001 * unit.picoseconds)
        ctx = self.simulation.context
        context = openmm.Context(system, integrator, ctx.getPlatform(), _platform_properties(ctx))
        self._contexts[flexible] = (context, force, integrator)
        return self._contexts[flexible]

    def _run(self, flexible: bool, pos: np.ndarray, box_vectors) -> np.ndarray:
        context, restraint, _ = self._contexts.get(flexible) or self._build(flexible)
        for k, i in enumerate(self.backbone_atoms):
            restraint.setParticleParameters(k, int(i), [float(v) for v in pos[i]])
        if box_vectors is not None:
            context.setPeriodicBoxVectors(*box_vectors)
        context.setPositions(pos * unit.nanometer)
        for name, value in self.simulation.context.getParameters().items():  # e.g. alchemical lambdas
            context.setParameter(name, value)
        restraint.updateParametersInContext(context)
        openmm.LocalEnergyMinimizer.minimize(context, self.config.tolerance, self.config.max_iterations)
        state = context.getState(getPositions=True)
        return np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))

    def bond_strain(self, positions_nm: np.ndarray) -> float:
        """Largest relative length error of the constraints turned into bonds (0 when there are none)."""
        if len(self._lengths) == 0:
            return 0.0
        x = np.asarray(positions_nm, dtype=np.float64)
        r = np.linalg.norm(x[self._pairs[:, 0]] - x[self._pairs[:, 1]], axis=-1)
        strain = np.abs(r - self._lengths) / self._lengths
        return float(strain.max()) if np.isfinite(strain).all() else float("inf")

    def minimize(self, positions_nm: np.ndarray, box_vectors=None) -> np.ndarray:
        """Minimise from ``positions_nm`` ``[A, 3]`` with the backbone restrained to them; returns ``[A, 3]`` nm."""
        pos = np.asarray(positions_nm, dtype=np.float64)
        if not self.flexible:
            return self._run(False, pos, box_vectors)
        out = self._run(True, pos, box_vectors)
        if self.bond_strain(out) <= MAX_BOND_STRAIN:
            return out
        self.constrained_retries += 1
        return self._run(False, pos, box_vectors)


__all__ = ["RelaxConfig", "RestrainedMinimizer", "RESTRAINT_K_PARAMETER", "MAX_BOND_STRAIN"]
