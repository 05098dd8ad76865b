"""Lag-time metrics of dynamic fidelity (paper appendix D, eqs. 30-32).

All functions take superposed Cα coordinates ([F, N, 3], nm) or their projections on the top
principal axes of the reference ([F, K]); lags are in frames.

- Cα RMSD vs lag: E_l[RMSD(x_{l+τ}, x_l)] on coordinates already superposed on a common
  frame (no per-pair refit), nm.
- Autocorrelation vs lag: E_l[(x_l - μ)·(x_{l+τ} - μ)] / E_l[|x_l - μ|²] on the K-dimensional
  projection, with the trajectory's own mean μ (eq. 31 with x a vector: a variance-weighted
  average of the per-axis autocorrelations). 1 at τ = 0, a^τ for an AR(1) with coefficient a.
- VAMP-2 vs lag: squared Frobenius norm of K = C00^{-1/2} C0τ Cττ^{-1/2} of the mean-free
  projection (eq. 32), estimated with deeptime's VAMP. This is deeptime's VAMP-2 *score minus
  one*: deeptime adds 1 for the constant function that mean removal takes out.
- tICA correlation: per-residue loading scores S_i = max(|v_ix|, |v_iy|, |v_iz|) of tIC1 and
  tIC2 (deeptime TICA, kinetic-map scaling, ε = 1e-6) of reference and generated coordinates,
  compared by |Pearson r|; only lagged pairs whose two frames are valid enter the fit, and a lag
  with fewer than ``min_pairs`` valid pairs gives None ("N/A" in the paper).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TICA_EPSILON = 1e-6
PAPER_TICA_LAGS = (1, 5, 10, 20)


@dataclass(frozen=True)
class DynamicsConfig:
    """Lag-time metric options.

    Attributes:
        n_pcs: reference principal axes used by autocorrelation and VAMP-2 (paper: 32).
        lags: lags in frames for RMSD, autocorrelation and VAMP-2 (None: :func:`default_lags`).
        tica_lags: lags in frames for the tICA correlation (paper: 1, 5, 10, 20).
        tica_min_pairs: fewest valid lagged pairs for a tICA fit (paper: 30).
        epsilon: eigenvalue cutoff of the covariance matrices (paper: 1e-6).
    """

    n_pcs: int = 32
    lags: tuple[int, ...] | None = None
    tica_lags: tuple[int, ...] = PAPER_TICA_LAGS
    tica_min_pairs: int = 30
    epsilon: float = TICA_EPSILON

    def validate(self) -> None:
        if self.n_pcs < 1:
            raise ValueError(f"DynamicsConfig.n_pcs: expected >= 1, got {self.n_pcs}")
        for name in ("lags", "tica_lags"):
            lags = getattr(self, name)
            if lags is not None and (len(lags) == 0 or any(int(t) != t or t < 1 for t in lags)):
                raise ValueError(f"DynamicsConfig.{name}: expected positive integer frame lags, got {lags}")
        if self.tica_min_pairs < 2:
            raise ValueError(f"DynamicsConfig.tica_min_pairs: expected >= 2, got {self.tica_min_pairs}")


def default_lags(n_frames: int, max_count: int = 16) -> tuple[int, ...]:
    """Roughly log-spaced lags from 1 to n_frames // 2 (at most ``max_count`` of them)."""
    top = max(1, n_frames // 2)
    return tuple(int(t) for t in np.unique(np.round(np.geomspace(1, top, max_count)).astype(int)))


def _check_lags(n_frames: int, lags, minimum_pairs: int = 1) -> np.ndarray:
    lags = np.asarray(lags, dtype=int)
    if lags.ndim != 1 or lags.size == 0 or (lags < 1).any():
        raise ValueError(f"lags: expected positive integer lags, got {lags.tolist()}")
    if n_frames - lags.max() < minimum_pairs:
        raise ValueError(
            f"lags: the largest lag {lags.max()} needs at least {lags.max() + minimum_pairs} frames, got {n_frames}"
        )
    return lags


def rmsd_vs_lag(ca_nm: np.ndarray, lags) -> np.ndarray:
    """Mean Cα RMSD between frames τ apart: [len(lags)] in nm. ``ca_nm``: [F, N, 3] superposed."""
    lags = _check_lags(ca_nm.shape[0], lags)
    out = np.empty(len(lags))
    for k, tau in enumerate(lags):
        diff = ca_nm[tau:] - ca_nm[:-tau]  # [F - tau, N, 3]
        out[k] = np.sqrt((diff**2).sum(axis=-1).mean(axis=-1)).mean()
    return out


def autocorrelation_vs_lag(projection: np.ndarray, lags) -> np.ndarray:
    """Normalised autocorrelation of the [F, K] projection: [len(lags)], 1 at lag 0."""
    lags = _check_lags(projection.shape[0], lags)
    x = projection - projection.mean(axis=0)
    variance = (x**2).sum(axis=1).mean()
    if variance <= 0:
        return np.full(len(lags), np.nan)
    return np.array([(x[:-tau] * x[tau:]).sum(axis=1).mean() / variance for tau in lags])


def vamp2_vs_lag(projection: np.ndarray, lags, epsilon: float = TICA_EPSILON) -> np.ndarray:
    """VAMP-2 (sum of squared singular values of the Koopman matrix) of the [F, K] projection.

    Directions whose covariance eigenvalue is below ``epsilon`` (nm^2) are discarded; when all
    are, the score is 0.
    """
    from deeptime.decomposition import VAMP
    from deeptime.numeric import ZeroRankError

    lags = _check_lags(projection.shape[0], lags, minimum_pairs=2)
    out = np.empty(len(lags))
    for k, tau in enumerate(lags):
        try:
            model = VAMP(lagtime=int(tau), epsilon=epsilon).fit(projection).fetch_model()
        except ZeroRankError:  # every covariance eigenvalue below epsilon: nothing resolvable
            out[k] = 0.0
            continue
        out[k] = float(np.sum(model.singular_values**2))
    return out


def valid_pairs(n_frames: int, lag: int, valid: np.ndarray | None) -> np.ndarray:
    """Indices l with both frames l and l + lag valid: [P]."""
    start = np.arange(max(0, n_frames - lag))
    if valid is None:
        return start
    return start[valid[start] & valid[start + lag]]


def tica_loading_scores(
    ca_nm: np.ndarray, lag: int, valid: np.ndarray | None = None, epsilon: float = TICA_EPSILON,
    min_pairs: int = 30, n_components: int = 2,
) -> np.ndarray | None:
    """Per-residue tICA loading scores S_i^(k) = max_xyz |v_i| of the top components.

    Args:
        ca_nm: [F, N, 3] superposed Cα coordinates.
        lag: tICA lag in frames.
        valid: [F] bool frame validity; pairs with an invalid frame are left out.
        epsilon, min_pairs, n_components: as in :class:`DynamicsConfig`.

    Returns:
        [n_components, N] scores, or None when fewer than ``min_pairs`` valid pairs exist or
        the fit yields fewer than ``n_components`` components (variance below ``epsilon``).
    """
    from deeptime.decomposition import TICA
    from deeptime.numeric import ZeroRankError

    F, N, _ = ca_nm.shape
    idx = valid_pairs(F, lag, valid)
    if len(idx) < min_pairs:
        return None
    x = ca_nm.reshape(F, 3 * N)  # [F, 3N]
    try:
        model = TICA(lagtime=int(lag), epsilon=epsilon, scaling="kinetic_map").fit((x[idx], x[idx + lag])).fetch_model()
    except ZeroRankError:  # no direction with variance above epsilon
        return None
    vectors = model.instantaneous_coefficients  # [3N, k], by decreasing eigenvalue
    if vectors.shape[1] < n_components:
        return None
    return np.abs(vectors[:, :n_components].T.reshape(n_components, N, 3)).max(axis=-1)


def _abs_pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    if a.std() == 0 or b.std() == 0:
        return None
    return float(abs(np.corrcoef(a, b)[0, 1]))


def tica_correlation(
    reference_ca_nm: np.ndarray, generated_ca_nm: np.ndarray, lags=PAPER_TICA_LAGS,
    generated_valid: np.ndarray | None = None, epsilon: float = TICA_EPSILON, min_pairs: int = 30,
) -> dict:
    """tICA correlation per lag: |Pearson r| of tIC1 and tIC2 loading scores, and their mean.

    Returns:
        {"lags": [...], "pc1": [r or None], "pc2": [...], "correlation": [mean or None],
        "valid_pairs": [P per lag], "mean": mean over lags with a value (None if none)}.
    """
    out: dict = {"lags": [int(t) for t in lags], "pc1": [], "pc2": [], "correlation": [], "valid_pairs": []}
    F_gen = generated_ca_nm.shape[0]
    for tau in lags:
        out["valid_pairs"].append(int(len(valid_pairs(F_gen, int(tau), generated_valid))))
        ref = tica_loading_scores(reference_ca_nm, int(tau), None, epsilon, min_pairs)
        gen = tica_loading_scores(generated_ca_nm, int(tau), generated_valid, epsilon, min_pairs)
        r = [None, None] if ref is None or gen is None else [_abs_pearson(ref[k], gen[k]) for k in range(2)]
        out["pc1"].append(r[0])
        out["pc2"].append(r[1])
        out["correlation"].append(None if None in r else 0.5 * (r[0] + r[1]))
    values = [c for c in out["correlation"] if c is not None]
    out["mean"] = float(np.mean(values)) if values else None
    return out
