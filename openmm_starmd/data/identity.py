"""Sequence identity between proteins, for choosing validation proteins by sequence.

Global alignment (Needleman-Wunsch with linear gaps: match +1, mismatch -1,
gap -2; ties broken toward matches), identity = identical aligned pairs / length of the
longer sequence (a short peptide cannot make a long protein "known"). Unrelated sequences reach some identity by chance under this
definition (random 10-mers: mean 5 %, 95th percentile 20 %; random 50-mers: 15 % and 22 %),
so identity < 30 % means "unrelated" for the proteins used here.
"""
from __future__ import annotations

import numpy as np

MATCH, MISMATCH, GAP = 1, -1, -2


def identity(a: str, b: str) -> float:
    """Fraction of identical residues in the best global alignment of ``a`` and ``b``,
    over the length of the longer sequence (0..1)."""
    if not a or not b:
        raise ValueError("sequences must be non-empty")
    n, m = len(a), len(b)
    score = np.zeros((n + 1, m + 1), dtype=np.int64)
    ident = np.zeros((n + 1, m + 1), dtype=np.int64)  # identities along the best path
    score[:, 0] = GAP * np.arange(n + 1)
    score[0, :] = GAP * np.arange(m + 1)
    bb = np.frombuffer(b.encode(), dtype=np.uint8)
    for i in range(1, n + 1):
        same = bb == ord(a[i - 1])  # [m]
        diag = score[i - 1, :-1] + np.where(same, MATCH, MISMATCH)
        diag_id = ident[i - 1, :-1] + same
        up = score[i - 1, 1:] + GAP
        up_id = ident[i - 1, 1:]
        for j in range(1, m + 1):  # left moves depend on the row being filled
            best, best_id = diag[j - 1], diag_id[j - 1]
            for cand, cand_id in ((up[j - 1], up_id[j - 1]), (score[i, j - 1] + GAP, ident[i, j - 1])):
                if cand > best or (cand == best and cand_id > best_id):
                    best, best_id = cand, cand_id
            score[i, j], ident[i, j] = best, best_id
    return float(ident[n, m]) / max(n, m)


def max_identity(seq: str, others: list[str]) -> tuple[float, int]:
    """Highest identity of ``seq`` to any of ``others`` and the index of that sequence."""
    if not others:
        return 0.0, -1
    values = [identity(seq, o) for o in others]
    k = int(np.argmax(values))
    return values[k], k


__all__ = ["identity", "max_identity"]
