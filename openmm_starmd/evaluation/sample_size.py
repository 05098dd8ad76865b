"""Which metrics of an evaluation rest on too few frames or lagged pairs to be trusted.

The minima are rules of thumb, stated in every message so that a user can judge them:

- coverage bins the frames on a grid of ``n_bins ** n_components`` cells; a histogram needs at
  least one frame per cell (``MIN_FRAMES_PER_BIN``) before its JSD and recall mean anything;
- autocorrelation and VAMP-2 estimate covariances of ``k`` PCs from the lagged pairs; they need
  ``MIN_PAIRS_PER_PC`` pairs per PC at the largest lag;
- the mean Cα RMSD at a lag needs ``MIN_RMSD_PAIRS`` pairs at the largest lag;
- tICA at a lag with fewer than ``tica_min_pairs`` valid pairs is not computed at all.
"""
from __future__ import annotations

MIN_FRAMES_PER_BIN = 1
MIN_PAIRS_PER_PC = 10
MIN_RMSD_PAIRS = 10


class SampleSizeWarning(UserWarning):
    """A metric was computed from fewer frames or lagged pairs than it needs to be reliable."""


def sample_size_warnings(n_reference: int, n_generated: int, n_generated_valid: int, lags, n_pcs: int,
                         n_bins: int, n_components: int, tica_lags, tica_values, tica_min_pairs: int) -> list[str]:
    """Messages, one per metric that rests on too few frames or pairs (empty when all are fine).

    Args:
        n_reference / n_generated: frames of each trajectory; n_generated_valid: valid generated frames.
        lags: the lags (frames) of the RMSD, autocorrelation and VAMP-2 curves; n_pcs: PCs they use.
        n_bins / n_components: the coverage grid. tica_lags / tica_values: tICA lags and their
        correlations (None where too few valid pairs). tica_min_pairs: the tICA minimum.
    """
    notes = []
    cells = n_bins ** n_components
    need = MIN_FRAMES_PER_BIN * cells
    if min(n_reference, n_generated_valid) < need:
        notes.append(f"coverage (JSD, recall) rests on {n_reference} reference and {n_generated_valid} valid generated "
                     f"frames over {cells} bins ({n_bins} per PC on {n_components} PCs); it needs at least {need} "
                     "frames in each (one per bin): use longer trajectories or fewer --bins")
    largest = max(lags)
    pairs = min(n_reference, n_generated) - largest
    need = MIN_PAIRS_PER_PC * n_pcs
    if pairs < need:
        notes.append(f"autocorrelation and VAMP-2 at lag {largest} rest on {pairs} lagged pairs for {n_pcs} PCs; they "
                     f"need at least {need} ({MIN_PAIRS_PER_PC} per PC): use longer trajectories, shorter --lags or "
                     "fewer --pcs")
    if pairs < MIN_RMSD_PAIRS:
        notes.append(f"the Cα RMSD at lag {largest} rests on {pairs} frame pairs; it needs at least {MIN_RMSD_PAIRS}: "
                     "use longer trajectories or shorter --lags")
    missing = [lag for lag, value in zip(tica_lags, tica_values) if value is None]
    if missing:
        notes.append(f"tICA correlation not computed at lag(s) {', '.join(map(str, missing))}: fewer than "
                     f"{tica_min_pairs} valid lagged pairs (the minimum for a tICA fit) or too little motion")
    return notes
