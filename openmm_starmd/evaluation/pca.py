"""The reference coordinate space: Cα superposition and PCA of the reference MD.

Following the paper (appendix D), every trajectory is superposed on the first frame of the
reference by its Cα atoms, and a PCA of the reference's flattened Cα coordinates ([F, 3N], nm)
defines the space in which coverage and the lag-time metrics are measured.
"""
from __future__ import annotations

from dataclasses import dataclass

import mdtraj
import numpy as np

# Components whose singular value is below this fraction of the largest carry no variance.
_RANK_TOLERANCE = 1e-8


def superposed_ca(trajectory: mdtraj.Trajectory, ca_indices: np.ndarray, target_ca_nm: np.ndarray) -> np.ndarray:
    """Cα positions of every frame after optimal superposition on a target structure.

    Args:
        trajectory: any trajectory; only the atoms ``ca_indices`` are used.
        ca_indices: [N] atom indices of the Cα atoms, in residue order.
        target_ca_nm: [N, 3] target Cα positions (nm), e.g. the reference's first frame.

    Returns:
        [F, N, 3] float64 superposed Cα positions in nm.
    """
    ca = trajectory.atom_slice(ca_indices)
    target = mdtraj.Trajectory(np.asarray(target_ca_nm, dtype=np.float32)[None], ca.topology)
    ca.superpose(target, frame=0)
    return ca.xyz.astype(np.float64)


@dataclass(frozen=True)
class ReferencePCA:
    """PCA of reference Cα coordinates.

    Attributes:
        mean: [3N] mean flattened coordinates (nm).
        components: [K, 3N] orthonormal principal axes, by decreasing variance; the sign of
            each axis is fixed so that its largest-magnitude loading is positive.
        variance: [K] variance along each axis (nm^2).
    """

    mean: np.ndarray
    components: np.ndarray
    variance: np.ndarray

    @classmethod
    def fit(cls, ca_nm: np.ndarray, n_components: int) -> "ReferencePCA":
        """Fit on [F, N, 3] Cα positions; keeps at most ``n_components`` axes with variance."""
        if n_components < 1:
            raise ValueError(f"n_components: expected >= 1, got {n_components}")
        F = ca_nm.shape[0]
        x = ca_nm.reshape(F, -1)  # [F, 3N]
        mean = x.mean(axis=0)
        _, s, vt = np.linalg.svd(x - mean, full_matrices=False)  # s: [min(F, 3N)]
        keep = s > _RANK_TOLERANCE * max(s[0], np.finfo(float).tiny) if s.size else np.zeros(0, bool)
        k = min(n_components, int(keep.sum()))
        components = vt[:k]
        signs = np.sign(components[np.arange(k), np.abs(components).argmax(axis=1)])
        return cls(mean=mean, components=components * signs[:, None], variance=s[:k] ** 2 / F)

    @property
    def n_components(self) -> int:
        return self.components.shape[0]

    def transform(self, ca_nm: np.ndarray) -> np.ndarray:
        """Project [F, N, 3] Cα positions onto the axes: returns [F, K] (nm)."""
        F = ca_nm.shape[0]
        return (ca_nm.reshape(F, -1) - self.mean) @ self.components.T
