"""Read trajectories for evaluation, with errors that name the file at fault."""
from __future__ import annotations

import os

import mdtraj

# Formats that carry their own topology; the others need --topology.
_SELF_DESCRIBING = (".pdb", ".pdb.gz", ".h5", ".hdf5", ".cif", ".pdbx", ".gro", ".mol2")


def load_topology(path: str) -> mdtraj.Topology:
    """Read a topology (PDB, mmCIF, GRO, HDF5 ... any file mdtraj reads a topology from)."""
    if not os.path.isfile(path):
        raise ValueError(f"{path}: topology file not found")
    try:
        return mdtraj.load_topology(path)
    except Exception as error:  # mdtraj raises many types for unreadable files
        raise ValueError(f"{path}: cannot read a topology from this file ({type(error).__name__}: {error})") from error


def load_trajectory(path: str, topology: str | None = None, stride: int = 1) -> mdtraj.Trajectory:
    """Read a trajectory, checking it against its topology.

    Args:
        path: trajectory file (XTC, DCD, TRR, NetCDF, HDF5, multi-model PDB, ...).
        topology: topology file; required for formats without one (XTC, DCD, ...).
        stride: keep every ``stride``-th frame.

    Raises:
        ValueError: missing file, unreadable file, a topology whose atom count differs from the
            trajectory's, or zero frames; the message names the file(s).
    """
    if not os.path.isfile(path):
        raise ValueError(f"{path}: trajectory file not found")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path}: the trajectory file is empty (zero frames)")
    if stride < 1:
        raise ValueError(f"stride: expected an integer >= 1, got {stride}")
    self_describing = path.lower().endswith(_SELF_DESCRIBING)
    if topology is None and not self_describing:
        raise ValueError(f"{path}: this format has no topology; pass a topology file (--topology)")
    top = load_topology(topology) if topology is not None else None
    try:
        if self_describing:
            trajectory = mdtraj.load(path, stride=stride)
        else:
            trajectory = mdtraj.load(path, top=top, stride=stride)
    except Exception as error:  # mdtraj raises ValueError, IOError, RuntimeError, ...
        with_top = f" with topology {topology}" if topology else ""
        raise ValueError(
            f"{path}: cannot read this trajectory{with_top} ({type(error).__name__}: {error})"
        ) from error
    if top is not None and trajectory.n_atoms != top.n_atoms:
        raise ValueError(
            f"{path}: topology {topology} has {top.n_atoms} atoms but the trajectory has {trajectory.n_atoms}"
        )
    if trajectory.n_frames == 0:
        raise ValueError(f"{path}: the trajectory has zero frames")
    return trajectory
