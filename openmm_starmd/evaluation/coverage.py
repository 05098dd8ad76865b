"""Conformational coverage in the reference PCA space (paper appendix D, after Shen et al.).

Reference and generated conformations are projected on the first ``n_components`` principal
axes of the reference (default 2, the PC1/PC2 plane of the paper's figures). Each axis is cut
into ``n_bins`` (10) evenly spaced bins spanning the range of both sets together, so that a
generated frame far outside the reference lands in a bin of its own instead of being clipped
into the reference's edge bin. On the joint histogram:

- JSD: the Jensen-Shannon *distance* (square root of the divergence, base 2, so in [0, 1])
  between the normalised reference and generated histograms;
- recall: fraction of reference-occupied bins that the generated set occupies;
- precision: fraction of generated-occupied bins that the reference occupies; F1 of the two.

The caller passes only structurally valid generated frames ("Cov Valid" in the paper).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_MAX_CELLS = 1_000_000


@dataclass(frozen=True)
class CoverageConfig:
    """Number of principal axes binned jointly, and bins per axis."""

    n_components: int = 2
    n_bins: int = 10

    def validate(self) -> None:
        if self.n_components < 1:
            raise ValueError(f"CoverageConfig.n_components: expected >= 1, got {self.n_components}")
        if self.n_bins < 1:
            raise ValueError(f"CoverageConfig.n_bins: expected >= 1, got {self.n_bins}")
        if self.n_bins**self.n_components > _MAX_CELLS:
            raise ValueError(
                f"CoverageConfig: n_bins ** n_components = {self.n_bins}**{self.n_components} exceeds {_MAX_CELLS} cells"
            )


@dataclass
class CoverageResult:
    """Coverage metrics and the histograms behind them.

    Attributes:
        jsd: Jensen-Shannon distance in [0, 1]; None when there is no generated frame.
        recall, precision, f1: bin-occupancy scores (precision None without generated frames).
        edges: per axis, [n_bins + 1] bin edges (nm).
        reference_counts / generated_counts: joint histograms, shape [n_bins] * K.
    """

    jsd: float | None
    recall: float
    precision: float | None
    f1: float
    n_reference: int
    n_generated: int
    edges: list[np.ndarray]
    reference_counts: np.ndarray
    generated_counts: np.ndarray


def jensen_shannon_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2) between two histograms (normalised here)."""
    p = np.asarray(p, dtype=np.float64).ravel()
    q = np.asarray(q, dtype=np.float64).ravel()
    if p.shape != q.shape or p.sum() <= 0 or q.sum() <= 0:
        raise ValueError(f"p, q: expected two non-empty histograms of one shape, got {p.shape} and {q.shape}")
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return float(np.sqrt(max(0.0, 0.5 * kl(p) + 0.5 * kl(q))))


def _edges(reference: np.ndarray, generated: np.ndarray, n_bins: int) -> list[np.ndarray]:
    both = np.concatenate([reference, generated], axis=0)
    lo, hi = both.min(axis=0), both.max(axis=0)
    flat = hi - lo <= 0
    lo, hi = np.where(flat, lo - 0.5, lo), np.where(flat, hi + 0.5, hi)
    return [np.linspace(a, b, n_bins + 1) for a, b in zip(lo, hi)]


def coverage(reference: np.ndarray, generated: np.ndarray, config: CoverageConfig | None = None) -> CoverageResult:
    """Coverage of the reference by the generated conformations.

    Args:
        reference: [Fr, K'] reference projections on the principal axes (K' >= n_components).
        generated: [Fg, K'] generated projections (valid frames only; Fg may be 0).
        config: axes and bins.
    """
    config = config or CoverageConfig()
    config.validate()
    k = config.n_components
    if reference.ndim != 2 or reference.shape[0] == 0 or reference.shape[1] < k:
        raise ValueError(f"reference: expected [F >= 1, K >= {k}] projections, got shape {reference.shape}")
    if generated.ndim != 2 or generated.shape[1] < k:
        raise ValueError(f"generated: expected [F, K >= {k}] projections, got shape {generated.shape}")
    ref, gen = reference[:, :k], generated[:, :k]
    edges = _edges(ref, gen, config.n_bins)
    ref_counts, _ = np.histogramdd(ref, bins=edges)
    gen_counts, _ = np.histogramdd(gen, bins=edges) if len(gen) else (np.zeros_like(ref_counts), None)
    ref_occ, gen_occ = ref_counts > 0, gen_counts > 0
    both = int((ref_occ & gen_occ).sum())
    recall = both / int(ref_occ.sum())
    precision = both / int(gen_occ.sum()) if gen_occ.any() else None
    f1 = 2 * recall * precision / (recall + precision) if precision and recall else 0.0
    jsd = jensen_shannon_distance(ref_counts, gen_counts) if len(gen) else None
    return CoverageResult(
        jsd=jsd, recall=recall, precision=precision, f1=f1, n_reference=len(ref), n_generated=len(gen),
        edges=edges, reference_counts=ref_counts, generated_counts=gen_counts,
    )
