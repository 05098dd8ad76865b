"""How long a STAR-MD sample takes on a CPU, before a run starts.

The estimate interpolates (log-log in the number of residues N, linear in the number of
reverse-diffusion steps) seconds per sample measured on 2026-11-29 on a 2-core CPU (AMD EPYC,
load average 5-6 from other jobs, one torch thread) with the shipped ``default`` weights (``small``
preset), 50 steps, one context frame: the mean of two timed samples after a warm-up sample
(``Rollout.sample``). A longer context adds to it (KV cache; benchmarks/results/scaling.md), as do
re-samples of frames that fail the validity gate and the minimisation after each jump. On another
machine the figures differ; the progress bar shows the real rate once jumps run.
"""
from __future__ import annotations

import numpy as np

MEASURED_STEPS = 50
MEASURED_RESIDUES = (35, 89, 160)
SECONDS_PER_SAMPLE = {  # N = 35, 89, 160
    "torchscript": (2.0, 3.9, 9.6),
    "eager": (3.3, 5.9, 11.8),
}


def cpu_seconds_per_sample(num_residues: int, num_steps: int, scripted: bool) -> float:
    """Estimated wall seconds for one sample of ``num_residues`` residues at ``num_steps`` steps on one
    CPU thread (see the module docstring for where the figures come from)."""
    if num_residues < 1 or num_steps < 1:
        raise ValueError(f"expected num_residues >= 1 and num_steps >= 1, got {num_residues} and {num_steps}")
    seconds = SECONDS_PER_SAMPLE["torchscript" if scripted else "eager"]
    log_n, log_t = np.log(MEASURED_RESIDUES), np.log(seconds)
    x = np.log(num_residues)
    segment = 0 if x <= log_n[1] else 1  # straight log-log line through the nearest pair, also beyond the ends
    slope = (log_t[segment + 1] - log_t[segment]) / (log_n[segment + 1] - log_n[segment])
    per_50 = float(np.exp(log_t[segment] + slope * (x - log_n[segment])))
    return per_50 * num_steps / MEASURED_STEPS


def describe_run(num_jumps: int, num_residues: int, num_steps: int, scripted: bool) -> str:
    """One line: the run's size and the estimated sampling time on a CPU."""
    per_sample = cpu_seconds_per_sample(num_residues, num_steps, scripted)
    total = per_sample * num_jumps
    total_text = f"{total:.0f} s" if total < 120 else f"{total / 60:.0f} min" if total < 7200 else f"{total / 3600:.1f} h"
    return (f"{num_jumps} jump(s) of a {num_residues}-residue protein at {num_steps} reverse-diffusion steps per sample: "
            f"about {per_sample:.1f} s per sample on one CPU thread, {total_text} of sampling without re-samples "
            f"(estimate from a 2-core CPU measured 2026-11-29{'' if scripted else ', eager model; TorchScript is faster'})")
