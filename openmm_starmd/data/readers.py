"""Trajectory readers: one interface over the MD data layouts a user may have on disk.

A :class:`TrajectorySource` is one continuous trajectory (one replica) of one protein:
its mdtraj topology, its frame interval in ps, and its coordinates in nm. Layouts found
by :func:`find_sources`:

* stem pairs: ``x.pdb`` + ``x.dcd`` / ``x.xtc`` / ``x.trr`` / ``x.nc`` / ``x.h5`` (any
  mdtraj-readable topology + trajectory with the same stem; replica ``R1``);
* chunked (``starmd simulate``): ``x.pdb`` + ``x_R1_c0000.xtc``, ``x_R1_c0001.xtc``, ...
  concatenated in chunk order, frame interval from ``x.json``;
* ATLAS: ``x.pdb`` + ``x_prod_R1_fit.xtc`` .. ``x_prod_R3_fit.xtc`` (10 ps frames);
* mdCATH: one ``.h5`` per domain, group ``<domain>`` holding ``pdbProteinAtoms`` (PDB
  text) and groups ``<temperature>/<replica>/coords`` [F, atoms, 3] in Å, 1 ns per frame
  (needs ``h5py``);
* self-contained mdtraj HDF5 trajectories ``x.h5`` (topology inside; needs ``tables``).

Precomputed OpenFold features ``x_single.npy`` [N, 384] and ``x_pair.npy`` [N, N, 128]
next to a system are returned by :meth:`TrajectorySource.openfold_features`.

The frame interval of a stem pair is taken, in this order, from the ``frame_interval_ps``
argument, a sidecar ``x.json`` (``{"frame_interval_ps": 10}`` or the ``settings`` block
written by ``starmd simulate``), or the time stamps stored in the trajectory (XTC, TRR,
NetCDF, HDF5). DCD stores none: pass the interval or write the JSON.
"""
from __future__ import annotations

import json
import re
import tempfile
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from openmm_starmd.units import NM_PER_ANGSTROM, PS_PER_NS

TOPOLOGY_SUFFIXES = (".pdb", ".gro", ".prmtop", ".parm7", ".psf")
TRAJECTORY_SUFFIXES = (".dcd", ".xtc", ".trr", ".nc", ".ncdf", ".netcdf", ".h5")
_TIMESTAMPED_SUFFIXES = (".xtc", ".trr", ".nc", ".ncdf", ".netcdf", ".h5")
ATLAS_FRAME_INTERVAL_PS = 10.0
MDCATH_FRAME_INTERVAL_PS = 1.0 * PS_PER_NS
MDCATH_TEMPERATURES_K = (320, 348, 379, 413, 450)
OPENFOLD_SINGLE_DIM = 384
OPENFOLD_PAIR_DIM = 128


@dataclass(frozen=True)
class OpenFoldFeatures:
    """Precomputed OpenFold representations of one protein.

    Attributes:
        single: ``[N, 384]`` float32 single representation.
        pair: ``[N, N, 128]`` float32 pair representation.
    """

    single: np.ndarray
    pair: np.ndarray


class TrajectorySource(ABC):
    """One continuous trajectory of one protein.

    Attributes:
        name: the protein (system) identifier, shared by its replicas.
        replica: replica label, unique within ``name`` (``"R1"``, ``"320K_0"``, ...).
        frame_interval_ps: simulated time between consecutive frames.
    """

    name: str
    replica: str
    frame_interval_ps: float

    @property
    def key(self) -> str:
        """``name/replica``: unique over a data set."""
        return f"{self.name}/{self.replica}"

    @abstractmethod
    def topology(self):
        """The ``mdtraj.Topology`` of the stored atoms (protein residues at least)."""

    @abstractmethod
    def n_frames(self) -> int:
        """Number of frames F."""

    @abstractmethod
    def read(self, atom_indices: Optional[np.ndarray] = None) -> np.ndarray:
        """Coordinates ``[F, A, 3]`` float32 in nm of all atoms, or of ``atom_indices`` [A]."""

    def openfold_features(self) -> Optional[OpenFoldFeatures]:
        """OpenFold single/pair features stored next to the system, or None."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r}, frame_interval_ps={self.frame_interval_ps:g})"


class FileTrajectorySource(TrajectorySource):
    """A topology file plus one or more trajectory files read in order as one trajectory.

    Args:
        name: protein identifier.
        replica: replica label.
        topology_path: any mdtraj topology (PDB, GRO, PRMTOP, PSF), or None for a
            self-contained mdtraj HDF5 trajectory.
        trajectory_paths: trajectory files, concatenated in the given order.
        frame_interval_ps: time between frames (> 0).
        features_stem: path prefix of ``<stem>_single.npy`` / ``<stem>_pair.npy``, if any.
    """

    def __init__(self, name: str, replica: str, topology_path: Optional[Path], trajectory_paths: Sequence[Path],
                 frame_interval_ps: float, features_stem: Optional[Path] = None):
        if not trajectory_paths:
            raise ValueError(f"trajectory_paths must hold at least one file for {name}/{replica}")
        if not frame_interval_ps > 0:
            raise ValueError(f"frame_interval_ps must be > 0, got {frame_interval_ps}")
        self.name, self.replica = name, replica
        self.topology_path = None if topology_path is None else Path(topology_path)
        self.trajectory_paths = [Path(p) for p in trajectory_paths]
        self.frame_interval_ps = float(frame_interval_ps)
        self.features_stem = features_stem
        self._topology = None
        self._n_frames: Optional[int] = None

    def topology(self):
        import mdtraj

        if self._topology is None:
            if self.topology_path is None:
                self._topology = mdtraj.load_frame(str(self.trajectory_paths[0]), 0).topology
            else:
                self._topology = mdtraj.load_topology(str(self.topology_path))
        return self._topology

    def n_frames(self) -> int:
        import mdtraj

        if self._n_frames is None:
            total = 0
            for path in self.trajectory_paths:
                with mdtraj.open(str(path), mode="r") as handle:
                    total += len(handle)
            self._n_frames = total
        return self._n_frames

    def read(self, atom_indices: Optional[np.ndarray] = None) -> np.ndarray:
        import mdtraj

        top = None if self.topology_path is None else str(self.topology_path)
        idx = None if atom_indices is None else np.asarray(atom_indices, dtype=np.int64)
        kwargs = {} if top is None else {"top": top}
        traj = mdtraj.load([str(p) for p in self.trajectory_paths], atom_indices=idx, **kwargs)
        self._n_frames = traj.n_frames
        return np.ascontiguousarray(traj.xyz, dtype=np.float32)

    def openfold_features(self) -> Optional[OpenFoldFeatures]:
        if self.features_stem is None:
            return None
        return load_openfold_features(self.features_stem)


class MDCATHSource(TrajectorySource):
    """One (temperature, replica) trajectory of an mdCATH domain file.

    Args:
        path: the ``mdcath_dataset_<domain>.h5`` file.
        domain: the domain group name (the file's only top-level group when None).
        temperature_k: one of the simulated temperatures (320, 348, 379, 413, 450).
        replica: replica number as stored ("0".."4").
    """

    def __init__(self, path: Path, domain: Optional[str], temperature_k: int, replica: int):
        self.path = Path(path)
        with _open_h5(self.path) as h5:
            domain = domain if domain is not None else _single_group(h5, self.path)
            group = f"{domain}/{int(temperature_k)}/{int(replica)}"
            if group not in h5:
                raise ValueError(f"{self.path}: no group {group!r} (temperature_k={temperature_k}, replica={replica})")
            self._n_frames = int(h5[group]["coords"].shape[0])
        self.domain, self.temperature_k, self.replica_index = domain, int(temperature_k), int(replica)
        self.name, self.replica = domain, f"{int(temperature_k)}K_{int(replica)}"
        self.frame_interval_ps = MDCATH_FRAME_INTERVAL_PS
        self._topology = None

    def topology(self):
        import mdtraj

        if self._topology is None:
            with _open_h5(self.path) as h5:
                text = h5[self.domain]["pdbProteinAtoms"][()]
            text = text.decode() if isinstance(text, bytes) else str(text)
            with tempfile.NamedTemporaryFile("w", suffix=".pdb") as handle:
                handle.write(text)
                handle.flush()
                self._topology = mdtraj.load_topology(handle.name)
        return self._topology

    def n_frames(self) -> int:
        return self._n_frames

    def read(self, atom_indices: Optional[np.ndarray] = None) -> np.ndarray:
        with _open_h5(self.path) as h5:
            coords = h5[f"{self.domain}/{self.temperature_k}/{self.replica_index}/coords"]
            xyz_a = coords[()] if atom_indices is None else coords[()][:, np.asarray(atom_indices, dtype=np.int64)]
        return np.ascontiguousarray(xyz_a * NM_PER_ANGSTROM, dtype=np.float32)

    def openfold_features(self) -> Optional[OpenFoldFeatures]:
        stem = self.path.parent / self.domain
        return load_openfold_features(stem) if _has_features(stem) else None


def load_openfold_features(stem: Path) -> OpenFoldFeatures:
    """Read ``<stem>_single.npy`` [N, 384] and ``<stem>_pair.npy`` [N, N, 128], checking shapes."""
    single = np.load(f"{stem}_single.npy").astype(np.float32)
    pair = np.load(f"{stem}_pair.npy").astype(np.float32)
    n = single.shape[0]
    if single.shape != (n, OPENFOLD_SINGLE_DIM):
        raise ValueError(f"{stem}_single.npy must have shape [N, {OPENFOLD_SINGLE_DIM}], got {single.shape}")
    if pair.shape != (n, n, OPENFOLD_PAIR_DIM):
        raise ValueError(f"{stem}_pair.npy must have shape [{n}, {n}, {OPENFOLD_PAIR_DIM}] to match single, got {pair.shape}")
    return OpenFoldFeatures(single, pair)


def _has_features(stem: Path) -> bool:
    return Path(f"{stem}_single.npy").exists() and Path(f"{stem}_pair.npy").exists()


# --------------------------------------------------------------------------- discovery
def find_sources(path: Path | str, frame_interval_ps: Optional[float] = None,
                 mdcath_temperatures: Sequence[int] = (320,)) -> list[TrajectorySource]:
    """All trajectories under ``path`` (a folder, searched recursively, or one file).

    Args:
        path: a data folder, an mdCATH ``.h5`` file, or one trajectory file whose topology
            shares its stem.
        frame_interval_ps: overrides every stem pair's frame interval (not ATLAS/mdCATH).
        mdcath_temperatures: mdCATH temperatures to read (default 320 K only: the others
            are thermal unfolding runs).

    Returns:
        Sources sorted by key. Raises ValueError when nothing readable is found.
    """
    root = Path(path)
    if not root.exists():
        raise ValueError(f"path {str(root)!r} does not exist")
    if root.is_file():
        if root.suffix == ".h5" and _h5_kind(root) == "mdcath":
            sources = _mdcath_sources(root, mdcath_temperatures)
        else:
            sources = [s for s in _folder_sources(root.parent, frame_interval_ps) if root in getattr(s, "trajectory_paths", [])]
    else:
        folders = sorted({p.parent for p in root.rglob("*") if p.is_file()} | {root})
        sources = [s for folder in folders for s in _folder_sources(folder, frame_interval_ps, mdcath_temperatures)]
    if not sources:
        raise ValueError(f"no readable trajectories under {str(root)!r}: expected topology + trajectory pairs with matching "
                         f"stems (x.pdb + x.dcd), the chunked layout (x.pdb + x_R1_c0000.xtc), the ATLAS layout "
                         f"(x.pdb + x_prod_R1_fit.xtc) or mdCATH .h5 files")
    return sorted(sources, key=lambda s: s.key)


_CHUNK_RE = re.compile(r"^(?P<stem>.+)_R(?P<rep>\d+)_c(?P<chunk>\d+)$")
_ATLAS_RE = re.compile(r"^(?P<stem>.+)_prod_R(?P<rep>\d+)_fit$")


def _folder_sources(folder: Path, frame_interval_ps: Optional[float],
                    mdcath_temperatures: Sequence[int] = (320,)) -> list[TrajectorySource]:
    """Sources whose files all lie directly in ``folder``."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    topologies = {p.name[: -len(p.suffix)]: p for p in files if p.suffix in TOPOLOGY_SUFFIXES}
    trajectories = [p for p in files if p.suffix in TRAJECTORY_SUFFIXES and ".tmp" not in p.suffixes]
    groups: dict[tuple[str, str], list[tuple[int, Path]]] = {}
    layout: dict[tuple[str, str], str] = {}
    sources: list[TrajectorySource] = []
    for traj in trajectories:
        stem = traj.name[: -len(traj.suffix)]
        chunk, atlas = _CHUNK_RE.match(stem), _ATLAS_RE.match(stem)
        if stem in topologies:
            key, order, kind = (stem, "R1"), 0, "pair"
        elif chunk and chunk["stem"] in topologies:
            key, order, kind = (chunk["stem"], f"R{int(chunk['rep'])}"), int(chunk["chunk"]), "chunked"
        elif atlas and atlas["stem"] in topologies:
            key, order, kind = (atlas["stem"], f"R{int(atlas['rep'])}"), 0, "atlas"
        elif traj.suffix == ".h5":
            kind = _h5_kind(traj)
            if kind == "mdcath":
                sources.extend(_mdcath_sources(traj, mdcath_temperatures))
            elif kind == "mdtraj":
                interval = frame_interval_ps or _sidecar_interval(folder / f"{stem}.json") or _timestamp_interval(traj, None)
                sources.append(FileTrajectorySource(stem, "R1", None, [traj], interval, _features_stem(folder, stem)))
            continue
        else:
            warnings.warn(f"{traj}: no topology with a matching stem ({stem}.pdb, ...); skipped", stacklevel=3)
            continue
        groups.setdefault(key, []).append((order, traj))
        layout[key] = kind
    for (stem, replica), members in sorted(groups.items()):
        members.sort()
        paths = [p for _, p in members]
        if layout[(stem, replica)] == "chunked":
            paths = _contiguous_chunks(members)
        interval = _frame_interval(layout[(stem, replica)], folder, stem, paths[0], topologies[stem], frame_interval_ps)
        sources.append(FileTrajectorySource(stem, replica, topologies[stem], paths, interval, _features_stem(folder, stem)))
    return sources


def _contiguous_chunks(members: list[tuple[int, Path]]) -> list[Path]:
    """Chunk files 0, 1, 2, ... up to the first gap (a gap means a chunk is missing)."""
    paths = []
    for expected, (index, path) in enumerate(members):
        if index != expected:
            warnings.warn(f"{path.parent}: chunk {expected} missing; using chunks 0..{expected - 1}", stacklevel=4)
            break
        paths.append(path)
    return paths


def _features_stem(folder: Path, stem: str) -> Optional[Path]:
    return folder / stem if _has_features(folder / stem) else None


def _frame_interval(kind: str, folder: Path, stem: str, first: Path, topology: Path, override: Optional[float]) -> float:
    if kind == "atlas":
        return ATLAS_FRAME_INTERVAL_PS
    if override is not None:
        return float(override)
    sidecar = _sidecar_interval(folder / f"{stem}.json")
    if sidecar is not None:
        return sidecar
    return _timestamp_interval(first, topology)


def _sidecar_interval(path: Path) -> Optional[float]:
    if not path.exists():
        return None
    meta = json.loads(path.read_text())
    value = meta.get("frame_interval_ps", meta.get("settings", {}).get("frame_interval_ps"))
    return None if value is None else float(value)


def _timestamp_interval(path: Path, topology: Optional[Path]) -> float:
    """Frame interval from the time stamps of the first two frames (formats that store time)."""
    import mdtraj

    if path.suffix not in _TIMESTAMPED_SUFFIXES:
        raise ValueError(f"{path}: {path.suffix} files store no time stamps; pass frame_interval_ps or write "
                         f"{path.with_suffix('.json').name} with {{\"frame_interval_ps\": ...}}")
    kwargs = {} if topology is None else {"top": str(topology)}
    first = next(iter(mdtraj.iterload(str(path), chunk=2, **kwargs)))
    if first.n_frames < 2 or not first.time[1] > first.time[0]:
        raise ValueError(f"{path}: cannot infer the frame interval from its time stamps {first.time[:2]}; pass frame_interval_ps")
    return float(first.time[1] - first.time[0])


# --------------------------------------------------------------------------- HDF5
def _import_h5py():
    try:
        import h5py
    except ImportError as err:
        raise ImportError("reading mdCATH files needs h5py; install it with 'pip install h5py'") from err
    return h5py


def _open_h5(path: Path):
    return _import_h5py().File(str(path), "r")


def _single_group(h5, path: Path) -> str:
    groups = [k for k in h5.keys() if "pdbProteinAtoms" in h5[k]]
    if len(groups) != 1:
        raise ValueError(f"{path}: expected one mdCATH domain group holding 'pdbProteinAtoms', found {groups}")
    return groups[0]


def _h5_kind(path: Path) -> str:
    """``"mdcath"``, ``"mdtraj"`` (self-contained mdtraj HDF5) or ``"unknown"``."""
    try:
        h5py = _import_h5py()
    except ImportError:
        try:
            import tables
        except ImportError as err:
            raise ImportError(f"{path}: reading .h5 files needs h5py (mdCATH, 'pip install h5py') or "
                              f"tables (mdtraj HDF5, 'pip install tables')") from err
        with tables.open_file(str(path), "r") as handle:
            return "mdtraj" if "/topology" in handle and "/coordinates" in handle else "unknown"
    with h5py.File(str(path), "r") as h5:
        if "topology" in h5 and "coordinates" in h5:
            return "mdtraj"
        if any(isinstance(h5[k], h5py.Group) and "pdbProteinAtoms" in h5[k] for k in h5.keys()):
            return "mdcath"
    return "unknown"


def _mdcath_sources(path: Path, temperatures: Sequence[int]) -> list[TrajectorySource]:
    with _open_h5(path) as h5:
        domain = _single_group(h5, path)
        pairs = [(int(t), int(r)) for t in h5[domain].keys() if t.isdigit() and int(t) in {int(x) for x in temperatures}
                 for r in h5[domain][t].keys() if r.isdigit() and "coords" in h5[domain][t][r]]
    return [MDCATHSource(path, domain, t, r) for t, r in sorted(pairs)]


__all__ = [
    "TrajectorySource", "FileTrajectorySource", "MDCATHSource", "OpenFoldFeatures", "find_sources",
    "load_openfold_features", "ATLAS_FRAME_INTERVAL_PS", "MDCATH_FRAME_INTERVAL_PS", "MDCATH_TEMPERATURES_K",
]
