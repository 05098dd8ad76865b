"""Validity gate for generated frames (SPEC §6): finite coordinates and Cα clash/break rates.

An invalid frame is re-sampled (``Rollout.sample(attempt=k)``) up to ``max_attempts`` times in
all; when every attempt fails the policy applies: ``"md"`` runs physical MD for the interval
instead (at most ``fallback_md_steps`` integrator steps, or the whole interval when it is None; the
clock still advances by the full stride so the generator's time axis stays regular), ``"raise"``
raises :class:`InvalidFrameError` with the Simulation restored to where it was before the call.

A fallback interval is not the model's: its clock advanced a stride while MD ran only
``fallback_md_steps`` steps. Every ``step(n)`` call with such intervals emits one
:class:`FallbackWarning`, and once more than ``max_fallback_fraction`` of the generator's intervals
are fallbacks, ``step()`` raises :class:`FallbackFractionError` instead (Simulation restored).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from openmm_starmd.evaluation.validity import MAX_BREAK_RATE, MAX_CLASH_RATE, CaValidityConfig, ca_clash_break_rates, valid_from_rates

POLICIES = ("md", "raise")
JUDGES = ("sample", "relaxed")


#: A fallback fraction judged over fewer intervals says little (one failed first jump would be 100 %):
#: ``max_fallback_fraction`` applies once the generator has made this many intervals.
MIN_INTERVALS_JUDGED = 4


class InvalidFrameError(RuntimeError):
    """Every sample of a jump failed the validity gate and the policy is ``"raise"``."""


class FallbackFractionError(InvalidFrameError):
    """More of the generator's intervals were MD fallbacks than ``GateConfig.max_fallback_fraction`` allows."""


class FallbackWarning(UserWarning):
    """Some intervals of a ``step(n)`` call were MD fallbacks: the clock advanced more than was simulated."""


@dataclass
class GateConfig:
    """Attributes: max_attempts (samples per jump, >= 1); policy ("md" or "raise");
    fallback_md_steps (cap on the MD steps run for a rejected interval); max_clash_rate and
    max_break_rate (Cα thresholds, the paper's by default; 1.0 accepts any finite frame); judge:
    which Cα positions are checked: "sample" (the generated frame, as SPEC §6 scores a model) or
    "relaxed" (the all-atom structure after the restrained minimisation, i.e. what would be written
    to the Simulation; only differs when the Generator relaxes). "relaxed" lets the force field
    repair small chain breaks of a sample; the count of such frames is
    ``GeneratorStatistics.repaired_frames``.

    ``fallback_md_steps=None`` runs MD for the whole interval of a rejected jump (stride / step
    size steps): the clock is then correct, at the speed of MD for that interval.

    ``max_fallback_fraction``: the largest fraction of the generator's intervals (all its jumps so
    far, judged from the :data:`MIN_INTERVALS_JUDGED`-th on) that may be MD fallbacks; above it
    ``step()`` raises :class:`FallbackFractionError` as soon as the outcome is certain, with the
    Simulation restored to where it was before the call. Default 0.5: above one half, most of the
    clock was not simulated (a fallback runs 500 steps, 2 ps at 4 fs, of a 1.25 ns interval), so the
    trajectory's time axis misleads; setups in which the model works stay far below it (shipped
    weights on villin at 0.05 ns: 2 of 90 intervals were fallbacks; a Trp-cage fine-tune: 4-7 of
    30; docs/model_card.md), while the failures seen in practice are at 100 %. 1.0 never raises."""

    max_attempts: int = 3
    policy: str = "md"
    fallback_md_steps: Optional[int] = 500
    max_fallback_fraction: float = 0.5
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
        steps = self.fallback_md_steps
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 0):
            raise ValueError(f"GateConfig.fallback_md_steps: expected an int >= 0 or None (the whole interval), got {steps!r}")
        fraction = self.max_fallback_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= fraction <= 1.0:
            raise ValueError(f"GateConfig.max_fallback_fraction: expected a number in [0, 1], got {fraction!r}")
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


__all__ = ["GateConfig", "InvalidFrameError", "FallbackFractionError", "FallbackWarning", "check_frame", "POLICIES", "JUDGES",
           "MIN_INTERVALS_JUDGED"]
