"""Cα-level structural validity per frame (STAR-MD paper, appendix D, table 5).

A *clash* is a Cα pair (all i < j) closer than 3.0 Å: twice the carbon van der Waals radius
(1.7 Å) minus a 0.4 Å tolerance, the Str2Str/ConfDiff criterion. A *break* is a pair of chain
neighbours whose Cα atoms are farther apart than 4.19 Å (3.80 Å plus 0.4 Å, the largest seen in
MD). Per frame, the clash rate is the fraction of all Cα pairs that clash and the break rate the
fraction of neighbour pairs that break; the frame is Cα-valid when the clash rate is at most
1.29 % and the break rate at most 0.2 %.

Works on plain arrays of Cα positions in nm, ``[F, N, 3]``, so the Generator can gate its own
output with :func:`ca_valid` without building an mdtraj trajectory.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from openmm_starmd.units import NM_PER_ANGSTROM

CLASH_DISTANCE_NM = 3.0 * NM_PER_ANGSTROM
BREAK_DISTANCE_NM = 4.19 * NM_PER_ANGSTROM
MAX_CLASH_RATE = 1.29 / 100.0
MAX_BREAK_RATE = 0.2 / 100.0

# Pairwise distances are computed for this many (frame, i, j) entries at a time.
_CHUNK_ENTRIES = 2_000_000


@dataclass(frozen=True)
class CaValidityConfig:
    """Thresholds of the Cα checks (defaults: the paper's table 5)."""

    clash_distance_nm: float = CLASH_DISTANCE_NM
    break_distance_nm: float = BREAK_DISTANCE_NM
    max_clash_rate: float = MAX_CLASH_RATE
    max_break_rate: float = MAX_BREAK_RATE

    def validate(self) -> None:
        for name in ("clash_distance_nm", "break_distance_nm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"CaValidityConfig.{name}: expected > 0, got {getattr(self, name)}")
        for name in ("max_clash_rate", "max_break_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"CaValidityConfig.{name}: expected a fraction in [0, 1], got {getattr(self, name)}")


def _as_ca_array(ca_nm) -> np.ndarray:
    ca = np.asarray(ca_nm, dtype=np.float64)
    if ca.ndim == 2:
        ca = ca[None]
    if ca.ndim != 3 or ca.shape[-1] != 3:
        raise ValueError(f"ca_nm: expected Cα positions of shape [F, N, 3] (nm), got shape {ca.shape}")
    if ca.shape[1] < 2:
        raise ValueError(f"ca_nm: expected at least 2 residues, got {ca.shape[1]}")
    return ca


def _as_neighbours(neighbours, n_residues: int) -> np.ndarray:
    if neighbours is None:
        return np.ones(n_residues - 1, dtype=bool)
    mask = np.asarray(neighbours, dtype=bool)
    if mask.shape != (n_residues - 1,):
        raise ValueError(f"neighbours: expected a boolean mask of shape ({n_residues - 1},), got {mask.shape}")
    return mask


def ca_clash_break_rates(
    ca_nm, neighbours=None, config: CaValidityConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame Cα clash and break rates.

    Args:
        ca_nm: Cα positions [F, N, 3] (or [N, 3]) in nm; numpy array or CPU tensor.
        neighbours: [N-1] bool, True where residues i and i+1 are chain neighbours
            (default: one chain, all consecutive).
        config: thresholds (default: the paper's).

    Returns:
        clash_rate: [F] fraction of the N(N-1)/2 Cα pairs closer than the clash distance.
        break_rate: [F] fraction of neighbour pairs farther than the break distance (0 when
            there are no neighbour pairs).
    """
    config = config or CaValidityConfig()
    ca = _as_ca_array(ca_nm)
    F, N, _ = ca.shape
    mask = _as_neighbours(neighbours, N)
    iu, ju = np.triu_indices(N, k=1)
    n_pairs = iu.size
    clashes = np.empty(F, dtype=np.int64)
    step = max(1, _CHUNK_ENTRIES // (N * N))
    for start in range(0, F, step):
        block = ca[start : start + step]  # [f, N, 3]
        d = np.linalg.norm(block[:, :, None, :] - block[:, None, :, :], axis=-1)  # [f, N, N]
        clashes[start : start + step] = (d[:, iu, ju] < config.clash_distance_nm).sum(axis=1)
    bond = np.linalg.norm(ca[:, 1:] - ca[:, :-1], axis=-1)[:, mask]  # [F, n_neighbours]
    n_bonds = int(mask.sum())
    breaks = (bond > config.break_distance_nm).sum(axis=1)
    clash_rate = clashes / n_pairs
    break_rate = breaks / n_bonds if n_bonds else np.zeros(F)
    return clash_rate, break_rate


def ca_valid(ca_nm, neighbours=None, config: CaValidityConfig | None = None) -> np.ndarray:
    """Per-frame Cα validity: [F] bool, clash rate <= max and break rate <= max.

    Args and defaults as in :func:`ca_clash_break_rates`.
    """
    config = config or CaValidityConfig()
    return valid_from_rates(*ca_clash_break_rates(ca_nm, neighbours, config), config)


def valid_from_rates(clash_rate: np.ndarray, break_rate: np.ndarray, config: CaValidityConfig | None = None) -> np.ndarray:
    """[F] bool from per-frame rates: clash rate <= max and break rate <= max."""
    config = config or CaValidityConfig()
    return (clash_rate <= config.max_clash_rate) & (break_rate <= config.max_break_rate)
