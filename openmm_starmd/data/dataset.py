"""Training examples: trajectories -> cached frames + torsions -> windows of L frames.

Each :class:`~openmm_starmd.data.readers.TrajectorySource` is converted once into compact
per-frame arrays (:class:`FramesTrajectory`: backbone frames as quaternions + CA
translations in nm, seven torsions as (sin, cos)), optionally cached as ``.npz`` under
``DatasetConfig.cache_dir``. An :class:`Example` is L frames of one trajectory taken
every k snapshots, k drawn log-uniformly within what the trajectory supports and the
configured stride range (SPEC §4: Δt ~ LogUniform[0.01, 10] ns), with a random contiguous
residue crop for long proteins.

With ``DatasetConfig.trim_relaxation`` each trajectory first loses its relaxation from the start
structure (:func:`relaxation_frames`): a peptide built extended collapses over its first
0.1–1 ns of MD, and examples cut from that transient teach a network that chains compact as
time passes, a drift its rollouts then follow on every protein.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from openmm_starmd.data.readers import OpenFoldFeatures, TrajectorySource
from openmm_starmd.geometry import atom14_index, atom14_to_frames_torsions, residue_constants, restype_index
from openmm_starmd.geometry.so3 import quat_to_rotmat, rotmat_to_quat
from openmm_starmd.units import PS_PER_NS

_CACHE_VERSION = 2  # 2: residue_index/chain_index from residue_constants.number_residues
_FRAMES_PER_BATCH = 512  # frames converted at once (bounds memory of the atom14 tensor)


@dataclass
class DatasetConfig:
    """How examples are cut from trajectories.

    Attributes:
        num_frames: L, frames per example (context length); with ``min_frames`` the largest L.
        min_frames: 0 for a fixed L = ``num_frames``; else each draw takes a stride first
            (log-uniform within what the trajectory allows at L = ``min_frames``) and then L
            uniformly in [``min_frames``, the most frames that stride allows, capped at
            ``num_frames``], so short trajectories still give examples at long strides.
        min_stride_ns, max_stride_ns: range of the log-uniform stride Δt.
        crop_residues: proteins longer than this are cropped to a random contiguous window.
        trim_relaxation: drop each trajectory's relaxation from its start structure
            (:func:`relaxation_frames`) before examples are cut.
        stride_first_fraction: fraction of draws (:meth:`TrajectoryDataset.draw_trajectory_window`)
            that take the stride first, log-uniform over every stride some trajectory allows, and
            then a trajectory uniformly among those that allow it. The rest draw the trajectory
            first and then a stride it allows, so that long strides, which only the few long
            trajectories allow, are as rare as those trajectories; stride-first draws give every
            decade of stride the same share of examples (0: trajectory first only).
        cache_dir: folder for the per-trajectory ``.npz`` caches (None: memory only).
        seed: base seed; example ``i`` is drawn from ``seed`` and ``i``.
    """

    num_frames: int = 8
    min_frames: int = 0
    min_stride_ns: float = 0.01
    max_stride_ns: float = 10.0
    crop_residues: int = 256
    cache_dir: Optional[Path] = None
    seed: int = 0
    trim_relaxation: bool = False
    stride_first_fraction: float = 0.0

    def validate(self) -> None:
        if self.num_frames < 2:
            raise ValueError(f"num_frames must be >= 2, got {self.num_frames}")
        if self.min_frames and not 2 <= self.min_frames <= self.num_frames:
            raise ValueError(f"min_frames must be 0 (fixed L) or lie in [2, num_frames={self.num_frames}], got {self.min_frames}")
        if not 0 < self.min_stride_ns <= self.max_stride_ns:
            raise ValueError(f"need 0 < min_stride_ns <= max_stride_ns, got {self.min_stride_ns} and {self.max_stride_ns}")
        if self.crop_residues < 1:
            raise ValueError(f"crop_residues must be >= 1, got {self.crop_residues}")
        if not 0.0 <= self.stride_first_fraction <= 1.0:
            raise ValueError(f"stride_first_fraction must lie in [0, 1], got {self.stride_first_fraction}")

    @property
    def shortest(self) -> int:
        """The fewest frames an example may have."""
        return self.min_frames or self.num_frames


@dataclass
class FramesTrajectory:
    """One trajectory as frames + torsions (the cached form).

    Attributes:
        key: ``name/replica`` of the source.
        frame_interval_ps: time between frames.
        aatype, residue_index, chain_index: ``[N]`` int64.
        quats: ``[F, N, 4]`` float32 unit quaternions of the backbone rotations.
        trans: ``[F, N, 3]`` float32 CA positions, nm.
        torsions: ``[F, N, 7, 2]`` float32 (sin, cos) of ω, φ, ψ, χ1–χ4.
        torsion_mask: ``[N, 7]`` float32 (1 where every frame defines the torsion).
        residue_mask: ``[N]`` float32 (1 where N, CA and C exist).
    """

    key: str
    frame_interval_ps: float
    aatype: np.ndarray
    residue_index: np.ndarray
    chain_index: np.ndarray
    quats: np.ndarray
    trans: np.ndarray
    torsions: np.ndarray
    torsion_mask: np.ndarray
    residue_mask: np.ndarray

    @property
    def num_frames(self) -> int:
        return self.trans.shape[0]

    @property
    def num_residues(self) -> int:
        return self.trans.shape[1]


@dataclass
class Example:
    """L frames of one protein, every ``stride_ns``.

    Attributes:
        key: source key. start_frame, stride_frames: position in the source trajectory.
        aatype, residue_index, chain_index: ``[N]`` int64.
        rots ``[L, N, 3, 3]``, trans ``[L, N, 3]`` (nm), torsions / torsions_alt
        ``[L, N, 7, 2]`` (alt: π added to the π-periodic χ), torsion_mask ``[N, 7]``,
        residue_mask ``[N]``: float32 tensors.
        stride_ns: Δt between consecutive frames.
        openfold_single ``[N, 384]`` / openfold_pair ``[N, N, 128]`` or None.
    """

    key: str
    start_frame: int
    stride_frames: int
    stride_ns: float
    aatype: torch.Tensor
    residue_index: torch.Tensor
    chain_index: torch.Tensor
    rots: torch.Tensor
    trans: torch.Tensor
    torsions: torch.Tensor
    torsions_alt: torch.Tensor
    torsion_mask: torch.Tensor
    residue_mask: torch.Tensor
    openfold_single: Optional[torch.Tensor] = None
    openfold_pair: Optional[torch.Tensor] = None


@dataclass
class Batch:
    """B examples of equal residue count stacked: every :class:`Example` tensor gains a
    leading ``[B]`` dimension (rots ``[B, L, N, 3, 3]``, ...); stride_ns is ``[B]``."""

    keys: list[str]
    stride_ns: torch.Tensor
    aatype: torch.Tensor
    residue_index: torch.Tensor
    chain_index: torch.Tensor
    rots: torch.Tensor
    trans: torch.Tensor
    torsions: torch.Tensor
    torsions_alt: torch.Tensor
    torsion_mask: torch.Tensor
    residue_mask: torch.Tensor
    openfold_single: Optional[torch.Tensor] = None
    openfold_pair: Optional[torch.Tensor] = None


def collate(examples: Sequence[Example]) -> Batch:
    """Stack examples of the same residue count N (crops of one length, or one protein)."""
    if not examples:
        raise ValueError("collate needs at least one example")
    sizes = {e.trans.shape[-2] for e in examples}
    if len(sizes) != 1:
        raise ValueError(f"examples must have equal residue counts to be batched, got {sorted(sizes)}")
    has_features = {e.openfold_single is not None for e in examples}
    if len(has_features) != 1:
        raise ValueError("either all examples or none must carry OpenFold features")
    stack = lambda name: torch.stack([getattr(e, name) for e in examples])  # noqa: E731
    with_features = has_features.pop()
    return Batch(
        keys=[e.key for e in examples], stride_ns=torch.tensor([e.stride_ns for e in examples], dtype=torch.float32),
        aatype=stack("aatype"), residue_index=stack("residue_index"), chain_index=stack("chain_index"), rots=stack("rots"),
        trans=stack("trans"), torsions=stack("torsions"), torsions_alt=stack("torsions_alt"),
        torsion_mask=stack("torsion_mask"), residue_mask=stack("residue_mask"),
        openfold_single=stack("openfold_single") if with_features else None,
        openfold_pair=stack("openfold_pair") if with_features else None,
    )


# --------------------------------------------------------------------------- conversion
def residue_atom_layout(topology) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Map an mdtraj topology onto atom14 slots of its modelled residues.

    Returns (aatype ``[N]``, residue_index ``[N]``, chain_index ``[N]``, atom_indices ``[A]``
    (topology atoms to read), residue_of_atom ``[A]``, slot_of_atom ``[A]``).
    Caps, water, ions and ligands are skipped; hydrogens and OXT have no slot.
    """
    aatype, continues, atoms, res_of, slot_of = [], [], [], [], []
    previous = None
    for residue in topology.residues:
        if not residue_constants.is_modelled_residue(residue.name):
            continue
        n = len(aatype)
        aatype.append(restype_index(residue.name))
        # numbered as the Generator numbers a Simulation (residue_constants.number_residues): a gap in
        # the file's residue numbers or a new chain starts a new segment; the file's numbers themselves
        # (villin 42-76 or 1-35) do not reach the model
        continues.append(previous is not None and previous.chain.index == residue.chain.index
                         and residue.resSeq == previous.resSeq + 1)
        previous = residue
        for atom in residue.atoms:
            slot = atom14_index(residue.name, atom.name)
            if slot >= 0:
                atoms.append(atom.index)
                res_of.append(n)
                slot_of.append(slot)
    if not aatype:
        raise ValueError("topology holds no amino-acid residue")
    as_int = lambda x: np.asarray(x, dtype=np.int64)  # noqa: E731
    residue_index, chain_index = residue_constants.number_residues(continues)
    return as_int(aatype), residue_index, chain_index, as_int(atoms), as_int(res_of), as_int(slot_of)


def frames_from_source(source: TrajectorySource) -> FramesTrajectory:
    """Read a trajectory and convert every frame to backbone frames + torsions."""
    aatype, residue_index, chain_index, atoms, res_of, slot_of = residue_atom_layout(source.topology())
    xyz = source.read(atoms)  # [F, A, 3] nm
    F, N = xyz.shape[0], len(aatype)
    atom14_mask = torch.zeros(N, residue_constants.NUM_ATOM14)
    atom14_mask[res_of, slot_of] = 1.0
    chain_start = torch.from_numpy(np.r_[True, chain_index[1:] != chain_index[:-1]])
    aa = torch.from_numpy(aatype)
    res_idx = torch.from_numpy(residue_index)
    quats, trans, torsions, torsion_mask, residue_mask = [], [], [], [], []
    for a in range(0, F, _FRAMES_PER_BATCH):
        chunk = torch.from_numpy(xyz[a:a + _FRAMES_PER_BATCH])  # [f, A, 3]
        atom14 = torch.zeros(chunk.shape[0], N, residue_constants.NUM_ATOM14, 3)
        atom14[:, res_of, slot_of] = chunk
        ft = atom14_to_frames_torsions(atom14, atom14_mask.expand(chunk.shape[0], -1, -1), aa, res_idx, chain_start)
        quats.append(rotmat_to_quat(ft.rots))
        trans.append(ft.trans)
        torsions.append(ft.torsions)
        torsion_mask.append(ft.torsion_mask.amin(0))
        residue_mask.append(ft.frame_mask.amin(0))
    return FramesTrajectory(
        key=source.key, frame_interval_ps=source.frame_interval_ps, aatype=aatype, residue_index=residue_index,
        chain_index=chain_index, quats=torch.cat(quats).numpy().astype(np.float32),
        trans=torch.cat(trans).numpy().astype(np.float32), torsions=torch.cat(torsions).numpy().astype(np.float32),
        torsion_mask=torch.stack(torsion_mask).amin(0).numpy().astype(np.float32),
        residue_mask=torch.stack(residue_mask).amin(0).numpy().astype(np.float32),
    )


def _fingerprint(source: TrajectorySource) -> str:
    """Changes when the source's files change (size or modification time) or grow."""
    paths = [getattr(source, "topology_path", None), *getattr(source, "trajectory_paths", []), getattr(source, "path", None)]
    parts = [f"v{_CACHE_VERSION}", source.key, f"{source.frame_interval_ps:.6g}"]
    for p in paths:
        if p is not None:
            stat = Path(p).stat()
            parts.append(f"{Path(p).name}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def load_or_convert(source: TrajectorySource, cache_dir: Optional[Path]) -> FramesTrajectory:
    """:func:`frames_from_source`, through an ``.npz`` cache when ``cache_dir`` is given."""
    if cache_dir is None:
        return frames_from_source(source)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / (re.sub(r"[^A-Za-z0-9_.-]", "_", source.key) + ".npz")
    fingerprint = _fingerprint(source)
    if path.exists():
        with np.load(path) as data:
            if str(data["fingerprint"]) == fingerprint:
                return FramesTrajectory(key=source.key, frame_interval_ps=float(data["frame_interval_ps"]),
                                        **{k: data[k] for k in ("aatype", "residue_index", "chain_index", "quats", "trans",
                                                                 "torsions", "torsion_mask", "residue_mask")})
    frames = frames_from_source(source)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")  # one per process: two trainers may share the folder
    np.savez(tmp, fingerprint=fingerprint, frame_interval_ps=frames.frame_interval_ps, aatype=frames.aatype,
             residue_index=frames.residue_index, chain_index=frames.chain_index, quats=frames.quats, trans=frames.trans,
             torsions=frames.torsions, torsion_mask=frames.torsion_mask, residue_mask=frames.residue_mask)
    tmp.replace(path)
    return frames


# --------------------------------------------------------------------------- relaxation
RELAXATION_MIN_FRAMES = 20  # shorter trajectories are kept whole
RELAXATION_TOLERANCE_NM = 0.02  # "reached the median": within 0.2 Å of it, or crossed it


def radius_of_gyration(ca: np.ndarray) -> np.ndarray:
    """Cα radius of gyration ``[F]`` of positions ``[F, N, 3]`` (same units)."""
    ca = np.asarray(ca, dtype=np.float64)
    return np.sqrt(((ca - ca.mean(-2, keepdims=True)) ** 2).sum(-1).mean(-1))


def relaxation_frames(trans: np.ndarray, tolerance_nm: float = RELAXATION_TOLERANCE_NM,
                      min_frames: int = RELAXATION_MIN_FRAMES) -> int:
    """How many leading frames of a trajectory (Cα ``trans [F, N, 3]``, nm) are its relaxation from
    the start structure: the frames before the Cα radius of gyration first reaches the median of
    the trajectory's second half (comes within ``tolerance_nm`` of it, or crosses it). A folded
    start sits at that median already (0 or 1 frames); a peptide built extended relaxes for
    0.1–1 ns. 0 for trajectories of fewer than ``min_frames`` frames."""
    F = trans.shape[0]
    if F < min_frames:
        return 0
    rg = radius_of_gyration(trans)
    median = float(np.median(rg[F // 2:]))
    reached = np.nonzero(((rg - median) * (rg[0] - median) <= 0) | (np.abs(rg - median) <= tolerance_nm))[0]
    return int(reached[0])


def trimmed(frames: FramesTrajectory, start: int) -> FramesTrajectory:
    """The trajectory from frame ``start`` on."""
    if start == 0:
        return frames
    return replace(frames, quats=frames.quats[start:], trans=frames.trans[start:], torsions=frames.torsions[start:])


# --------------------------------------------------------------------------- sampling
def stride_range_frames(num_frames_total: int, frame_interval_ps: float, config: DatasetConfig) -> Optional[tuple[int, int]]:
    """Allowed strides (in snapshots) ``[k_min, k_max]`` for a trajectory, or None if none fits.

    k_max is limited by the trajectory length (``(L-1)·k <= F-1`` at the shortest L) and
    ``max_stride_ns``; k_min by ``min_stride_ns`` (at least one snapshot).
    """
    interval_ns = frame_interval_ps / PS_PER_NS
    k_min = max(1, math.ceil(config.min_stride_ns / interval_ns - 1e-9))
    k_max = min((num_frames_total - 1) // (config.shortest - 1), math.floor(config.max_stride_ns / interval_ns + 1e-9))
    return (k_min, k_max) if k_max >= k_min else None


def sample_stride(k_min: int, k_max: int, rng: np.random.Generator) -> int:
    """Log-uniform integer stride: k = ⌊exp(u)⌋, u ~ U[log k_min, log(k_max + 1)).

    P(k) = log((k + 1) / k) / log((k_max + 1) / k_min), the continuous log-uniform law
    binned onto integers.
    """
    u = rng.uniform(math.log(k_min), math.log(k_max + 1))
    return int(min(k_max, max(k_min, math.floor(math.exp(u)))))


@dataclass
class TrajectoryDataset(torch.utils.data.Dataset):
    """Examples of ``config.num_frames`` frames drawn from a set of trajectories.

    ``dataset[i]`` is deterministic in (``config.seed``, ``i``): a trajectory drawn
    uniformly, a log-uniform stride it supports, a uniform start and, for long proteins,
    a uniform contiguous crop. ``len`` is ``examples_per_epoch``.

    Args:
        sources: trajectories (from :func:`~openmm_starmd.data.readers.find_sources`).
        config: sampling settings.
        examples_per_epoch: nominal dataset length.
    """

    sources: Sequence[TrajectorySource]
    config: DatasetConfig = field(default_factory=DatasetConfig)
    examples_per_epoch: int = 10_000

    def __post_init__(self):
        self.config.validate()
        self.trajectories: list[FramesTrajectory] = []
        self.stride_ranges: list[tuple[int, int]] = []
        self.features: list[Optional[OpenFoldFeatures]] = []
        self.trimmed_frames: list[int] = []
        for source in self.sources:
            frames = load_or_convert(source, self.config.cache_dir)
            skip = relaxation_frames(frames.trans) if self.config.trim_relaxation else 0
            frames = trimmed(frames, skip)
            strides = stride_range_frames(frames.num_frames, frames.frame_interval_ps, self.config)
            if strides is None:
                warnings.warn(f"{source.key}: {frames.num_frames} frames of {frames.frame_interval_ps:g} ps cannot hold "
                              f"{self.config.num_frames} frames at strides in [{self.config.min_stride_ns:g}, "
                              f"{self.config.max_stride_ns:g}] ns; skipped", stacklevel=2)
                continue
            self.trajectories.append(frames)
            self.trimmed_frames.append(skip)
            self.stride_ranges.append(strides)
            self.features.append(source.openfold_features())
        if not self.trajectories:
            raise ValueError("no trajectory is long enough for one example; lower num_frames or min_stride_ns")

    def __len__(self) -> int:
        return self.examples_per_epoch

    def __getitem__(self, index: int) -> Example:
        rng = np.random.default_rng([self.config.seed, int(index)])
        t, window = self.draw_trajectory_window(rng)
        return self.example(t, rng, window=window)

    def draw_trajectory_window(self, rng: np.random.Generator) -> tuple[int, tuple[int, int]]:
        """(trajectory number, (stride in snapshots, L)) of one draw: with probability
        ``config.stride_first_fraction`` the stride first (:meth:`draw_stride_first`), else a
        trajectory uniformly and then :meth:`draw_window`. With a fraction of 0 no extra random
        number is drawn, so the draws equal those of a dataset without the option."""
        fraction = self.config.stride_first_fraction
        if fraction > 0.0 and rng.random() < fraction:
            return self.draw_stride_first(rng)
        trajectory = int(rng.integers(len(self.trajectories)))
        return trajectory, self.draw_window(trajectory, rng)

    def stride_support_ns(self, trajectory: int) -> tuple[float, float]:
        """[lo, hi) in ns of the strides trajectory ``trajectory`` allows, in the binning of
        :func:`sample_stride`: snapshots k_min … k_max, i.e. [k_min, k_max + 1) intervals."""
        k_min, k_max = self.stride_ranges[trajectory]
        interval_ns = self.trajectories[trajectory].frame_interval_ps / PS_PER_NS
        return k_min * interval_ns, (k_max + 1) * interval_ns

    def draw_stride_first(self, rng: np.random.Generator) -> tuple[int, tuple[int, int]]:
        """A stride Δt log-uniform over the union of what the trajectories allow, then a trajectory
        uniformly among those that allow Δt, its stride k = ⌊Δt / interval⌋ and L (fixed, or
        uniform in what k allows). Returns (trajectory number, (k, L))."""
        support = [self.stride_support_ns(t) for t in range(len(self.trajectories))]
        lo, hi = min(a for a, _ in support), max(b for _, b in support)
        stride_ns = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        eligible = [t for t, (a, b) in enumerate(support) if a <= stride_ns < b]
        if not eligible:  # a gap between the supports (trajectories of different intervals): the nearest
            eligible = [min(range(len(support)), key=lambda t: min(abs(math.log(stride_ns / support[t][0])),
                                                                    abs(math.log(stride_ns / support[t][1]))))]
        trajectory = eligible[int(rng.integers(len(eligible)))]
        frames, (k_min, k_max) = self.trajectories[trajectory], self.stride_ranges[trajectory]
        k = int(min(k_max, max(k_min, math.floor(stride_ns / (frames.frame_interval_ps / PS_PER_NS) + 1e-9))))
        return trajectory, (k, self._draw_length(frames, k, rng))

    def _draw_length(self, frames: FramesTrajectory, k: int, rng: np.random.Generator) -> int:
        """L for stride ``k``: fixed, or uniform in [min_frames, the most frames k allows] (see :class:`DatasetConfig`)."""
        if not self.config.min_frames:
            return self.config.num_frames
        most = min(self.config.num_frames, 1 + (frames.num_frames - 1) // k)
        return int(rng.integers(self.config.min_frames, most + 1))

    def draw_window(self, trajectory: int, rng: np.random.Generator) -> tuple[int, int]:
        """(stride in snapshots, number of frames L) for trajectory number ``trajectory``: the stride
        log-uniform within what the trajectory allows, then L (fixed, or uniform in what that stride
        allows; see :class:`DatasetConfig`)."""
        frames, (k_min, k_max) = self.trajectories[trajectory], self.stride_ranges[trajectory]
        k = sample_stride(k_min, k_max, rng)
        return k, self._draw_length(frames, k, rng)

    def example(self, trajectory: int, rng: np.random.Generator, crop_start: Optional[int] = None,
                window: Optional[tuple[int, int]] = None) -> Example:
        """One example from trajectory number ``trajectory`` (stride, start and crop from ``rng``;
        ``window`` = (stride in snapshots, L) fixes the first two, see :meth:`draw_window`)."""
        frames = self.trajectories[trajectory]
        k, L = self.draw_window(trajectory, rng) if window is None else window
        start = int(rng.integers(frames.num_frames - (L - 1) * k))
        index = start + k * np.arange(L)
        N = frames.num_residues
        n = min(N, self.config.crop_residues)
        a = int(rng.integers(N - n + 1)) if crop_start is None else crop_start
        res = slice(a, a + n)
        torsions = torch.from_numpy(frames.torsions[index, res])  # [L, n, 7, 2]
        aatype = torch.from_numpy(frames.aatype[res])
        periodic = residue_constants.chi_pi_periodic.to(torch.float32)[aatype]  # [n, 4]
        flip = 1.0 - 2.0 * torch.cat([torch.zeros(n, 3), periodic], dim=-1)  # [n, 7]
        feats = self.features[trajectory]
        return Example(
            key=frames.key, start_frame=start, stride_frames=k, stride_ns=k * frames.frame_interval_ps / PS_PER_NS,
            aatype=aatype, residue_index=torch.from_numpy(frames.residue_index[res]),
            chain_index=torch.from_numpy(frames.chain_index[res]),
            rots=quat_to_rotmat(torch.from_numpy(frames.quats[index, res])), trans=torch.from_numpy(frames.trans[index, res]),
            torsions=torsions, torsions_alt=torsions * flip[..., None], torsion_mask=torch.from_numpy(frames.torsion_mask[res]),
            residue_mask=torch.from_numpy(frames.residue_mask[res]),
            openfold_single=None if feats is None else torch.from_numpy(feats.single[res]),
            openfold_pair=None if feats is None else torch.from_numpy(feats.pair[res, res]),
        )

    def describe(self) -> str:
        """One line per trajectory: frames, residues, interval, allowed strides and the relaxation
        frames dropped (JSON lines)."""
        return "\n".join(json.dumps({"key": f.key, "frames": f.num_frames, "residues": f.num_residues,
                                     "frame_interval_ps": f.frame_interval_ps, "stride_frames": list(s),
                                     "relaxation_frames_dropped": d})
                         for f, s, d in zip(self.trajectories, self.stride_ranges, self.trimmed_frames))


__all__ = ["DatasetConfig", "FramesTrajectory", "Example", "Batch", "collate", "TrajectoryDataset", "frames_from_source", "load_or_convert",
           "residue_atom_layout", "stride_range_frames", "sample_stride", "radius_of_gyration", "relaxation_frames", "trimmed"]
