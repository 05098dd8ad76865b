"""Validity gate for generated frames (SPEC §6): finite coordinates and Cα clash/break rates.

An invalid frame is re-sampled (``Rollout.sample(attempt=k)``) up to ``max_attempts`` times in
all; when every attempt fails the policy applies: ``"md"`` runs physical MD for the interval
instead (at most ``fallback_md_steps`` integrator steps; the clock still advances by the full
stride so the generator's time axis stays regular), ``"raise"`` raises :class:`InvalidFrameError`
with the Simulation restored to where it was before the call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from openmm_starmd.evaluation.validity import MAX_BREAK_RATE, MAX_CLASH_RATE, CaValidityConfig, ca_clash_break_rates, valid_from_rates

POLICIES = ("md", "raise")
JUDGES = ("sample", "relaxed")


class InvalidFrameError(RuntimeError):
    """Every sample of a jump failed the validity gate and the policy is ``"raise"``."""


@dataclass
class GateConfig:
    """Attributes: max_attempts (samples per jump, >= 1); policy ("md" or "raise");
    fallback_md_steps (cap on the MD steps run for a rejected interval); max_clash_rate and
    max_break_rate (Cα thresholds, the paper's by default; 1.0 accepts any finite frame); judge:
    which Cα positions are checked: "sample" (the generated frame, as SPEC §6 scores a model) or
    "relaxed" (the all-atom structure after the restrained minimisation, i.e. what would be written
    to the Simulation; only differs when the Generator relaxes). "relaxed" lets the force field
    repair small chain breaks of a sample; the count of such frames is
    ``GeneratorStatistics.repaired_frames``."""

    max_attempts: int = 3
    policy: str = "md"
    fallback_md_steps: int = 500
    max_clash_rate: float = MAX_CLASH_RATE
    max_break_rate: float = MAX_BREAK_RATE
    judge: str = "sample"

    @property
    def validity(self) -> CaValidityConfig:
        return CaValidityConfig(max_clash_rate=self.max_clash_rate, max_break_rate=self.max_break_rate)

    def validate(self) -> "GateConfig":
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(f"GateConfig.max_attempts: expected an int >= 1, got {self.max_attempts!r}")
        if self.policy not in POLICIES:
            raise ValueError(f"GateConfig.policy: expected one of {POLICIES}, got {self.policy!r}")
        if self.judge not in JUDGES:
            raise ValueError(f"GateConfig.judge: expected one of {JUDGES}, got {self.judge!r}")
        if isinstance(self.fallback_md_steps, bool) or not isinstance(self.fallback_md_steps, int) or self.fallback_md_steps < 0:
            raise ValueError(f"GateConfig.fallback_md_steps: expected an int >= 0, got {self.fallback_md_steps!r}")
        self.validity.validate()
        return self


def check_frame(ca_nm: np.ndarray, neighbours: Optional[np.ndarray], *extra: np.ndarray,
                config: Optional[CaValidityConfig] = None) -> tuple[bool, str]:
    """Judge one frame: Cα positions ``[N, 3]`` nm, chain-neighbour mask ``[N-1]`` bool (None: all i, i+1).

    ``extra`` arrays (torsions, ...) must be finite too. Returns (valid, reason)."""
    ca = np.asarray(ca_nm, dtype=np.float64)
    if not np.isfinite(ca).all() or not all(np.isfinite(np.asarray(e)).all() for e in extra):
        return False, "non-finite coordinates"
    if ca.shape[0] < 2:
        return True, ""
    clash, brk = ca_clash_break_rates(ca[None], neighbours, config)
    if bool(valid_from_rates(clash, brk, config)[0]):
        return True, ""
    return False, f"Cα clash rate {float(clash[0]):.3%}, break rate {float(brk[0]):.3%}"


__all__ = ["GateConfig", "InvalidFrameError", "check_frame", "POLICIES", "JUDGES"]
