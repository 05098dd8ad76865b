"""Synthetic trajectories for the evaluation tests (helpers only; no tests here).

Villin headpiece (35 residues, openmm/app/data/test.pdb, protein atoms only) moved by
stationary AR(1) processes x_t = a x_{t-1} + sqrt(1 - a^2) σ ε_t, whose lag-τ correlation is a^τ.
"""
from __future__ import annotations

import os

import mdtraj
import numpy as np
import openmm.app

VILLIN_PDB = os.path.join(os.path.dirname(openmm.app.__file__), "data", "test.pdb")
ROTARAMA_DIR = os.environ.get("STARMD_ROTARAMA_DIR", "/work/shared/data/rotarama_data")


def villin() -> mdtraj.Trajectory:
    """One frame of villin, protein atoms only (582 atoms, 35 residues)."""
    full = mdtraj.load(VILLIN_PDB)
    return full.atom_slice(full.topology.select("protein"))


def ar1(rng: np.random.Generator, n_frames: int, shape: tuple[int, ...], a: float, sigma: float) -> np.ndarray:
    """Stationary AR(1) series [n_frames, *shape] with coefficient a and marginal SD sigma."""
    x = np.empty((n_frames,) + shape)
    x[0] = rng.normal(size=shape) * sigma
    kick = np.sqrt(1.0 - a * a) * sigma
    for t in range(1, n_frames):
        x[t] = a * x[t - 1] + kick * rng.normal(size=shape)
    return x


def move_ca(base: mdtraj.Trajectory, ca_displacement_nm: np.ndarray) -> mdtraj.Trajectory:
    """Trajectory whose frame f is ``base`` with each residue moved rigidly by the displacement
    of its Cα ([F, N, 3] nm), so side chains and backbone keep their internal geometry."""
    top = base.topology
    residue_of_atom = np.array([atom.residue.index for atom in top.atoms])
    ca_residues = [r.index for r in top.residues if any(a.name == "CA" for a in r.atoms)]
    slot = {res: k for k, res in enumerate(ca_residues)}
    per_atom = ca_displacement_nm[:, [slot[r] for r in residue_of_atom], :]  # [F, n_atoms, 3]
    xyz = base.xyz[0][None].astype(np.float64) + per_atom
    return mdtraj.Trajectory(xyz.astype(np.float32), top)


def ca_indices(trajectory: mdtraj.Trajectory) -> np.ndarray:
    return trajectory.topology.select("name CA")


def one_blas_thread():
    """Context manager limiting BLAS to one thread: on a loaded 2-core machine, OpenBLAS threads
    spin-waiting for each other make small matrix products ~100x slower."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # threadpoolctl comes with scikit-learn, a deeptime dependency
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1)
