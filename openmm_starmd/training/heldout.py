"""Held-out evaluation of a trained checkpoint on one system's MD (the numbers of the model card).

    python -m openmm_starmd.training.heldout --model CKPT --data md_data/trp_cage --stride-ns 0.05 \
        --jumps 100 --out report.json

Starting from the first MD frame, the model rolls out ``--jumps`` frames at ``--stride-ns`` (KV-cached
:class:`~openmm_starmd.model.rollout.Rollout`, each frame superposed onto the previous one).
Reported: Cα validity (:func:`openmm_starmd.evaluation.validity.ca_valid`) over the generated
frames, the largest consecutive-Cα distance, and the per-jump Cα RMSD (consecutive generated frames,
superposed) against the MD's Cα RMSD between frames the same lag apart — when the MD is long
enough to hold that lag.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from openmm_starmd.data.dataset import load_or_convert
from openmm_starmd.data.readers import find_sources
from openmm_starmd.evaluation.validity import ca_clash_break_rates, ca_valid
from openmm_starmd.geometry.so3 import quat_to_rotmat
from openmm_starmd.geometry.superpose import rmsd
from openmm_starmd.model.checkpoint import load_model
from openmm_starmd.model.rollout import Rollout
from openmm_starmd.units import ANGSTROM_PER_NM, PS_PER_NS


def md_lag_rmsd_nm(ca_nm: torch.Tensor, lag_frames: int) -> float:
    """Mean Cα RMSD (superposed) between MD frames ``lag_frames`` apart; ca_nm ``[F, N, 3]``. NaN if too short."""
    if lag_frames < 1 or ca_nm.shape[0] <= lag_frames:
        return float("nan")
    return float(rmsd(ca_nm[lag_frames:].double(), ca_nm[:-lag_frames].double()).mean())


def rollout_from_md_frame(core, trajectory, frame: int, stride_ns: float, jumps: int, **options) -> Rollout:
    """A :class:`Rollout` of ``trajectory``'s protein with MD frame ``frame`` as its one context frame and
    room for ``jumps`` more; ``options`` go to :class:`Rollout` (seed, num_steps, ode, noise_scale)."""
    rollout = Rollout(core, torch.from_numpy(trajectory.aatype), torch.from_numpy(trajectory.residue_index), stride_ns,
                      capacity_frames=jumps + 2, **options)
    rollout.add_context(quat_to_rotmat(torch.from_numpy(trajectory.quats[frame])), torch.from_numpy(trajectory.trans[frame]))
    return rollout


def evaluate(model: str, data: str, stride_ns: float, jumps: int, num_steps: int, seed: int, ode: bool = False,
             noise_scale: float = 1.0, start_frame: int = 0, replica: Optional[str] = None,
             noise_switch_t: float = 1.0) -> dict:
    """Roll out ``jumps`` frames of the (single) system under ``data`` and measure them against its MD,
    starting from frame ``start_frame`` of its first trajectory (negative: counted from the end).
    ``replica`` (e.g. ``"R2"``) restricts start and MD reference to that replica, so a model
    fine-tuned on one replica can be measured on another. ``noise_switch_t``: reverse steps above
    this diffusion time take the exact SDE, those below it ``noise_scale`` (1: ``noise_scale`` throughout)."""
    sources = find_sources(data)
    if replica is not None:
        chosen = [s for s in sources if s.replica == replica]
        if not chosen:
            raise ValueError(f"{data}: no replica {replica!r}; found {sorted({s.replica for s in sources})}")
        sources = chosen
    frames = [load_or_convert(s, None) for s in sources]
    first = frames[0]
    num_first = first.trans.shape[0]
    if not -num_first <= start_frame < num_first:
        raise ValueError(f"start_frame {start_frame} is outside the first trajectory's {num_first} frames")
    start_frame = start_frame % num_first
    aatype = torch.from_numpy(first.aatype)
    rollout = rollout_from_md_frame(load_model(model), first, start_frame, stride_ns, jumps, seed=seed, num_steps=num_steps,
                                    ode=ode, noise_scale=noise_scale, noise_switch_t=noise_switch_t)
    start = time.monotonic()
    out = rollout.run(jumps)
    wall_s = time.monotonic() - start
    ca = out.trans[0].double()  # [J, N, 3] generated Cα (the frame origin is Cα)
    ca_all = torch.cat([torch.from_numpy(first.trans[start_frame:start_frame + 1]).double(), ca])  # with the starting frame
    valid = ca_valid(ca.numpy())
    clash_rate, break_rate = ca_clash_break_rates(ca.numpy())
    consecutive = torch.linalg.norm(ca[:, 1:] - ca[:, :-1], dim=-1)  # [J, N-1]
    per_jump = rmsd(ca_all[1:], ca_all[:-1])  # [J]
    interval_ns = first.frame_interval_ps / PS_PER_NS
    lag = stride_ns / interval_ns
    lag_frames = int(round(lag)) if abs(lag - round(lag)) < 1e-6 else -1
    md_rmsd = [md_lag_rmsd_nm(torch.from_numpy(f.trans), lag_frames) for f in frames]
    md_rmsd = [x for x in md_rmsd if math.isfinite(x)]
    md_ca = torch.cat([torch.from_numpy(f.trans) for f in frames]).double()
    md_consecutive = torch.linalg.norm(md_ca[:, 1:] - md_ca[:, :-1], dim=-1)
    model_jump_a = float(per_jump.mean()) * ANGSTROM_PER_NM
    md_jump_a = float(np.mean(md_rmsd)) * ANGSTROM_PER_NM if md_rmsd else None
    return {
        "model": str(model), "system": sources[0].name, "residues": int(aatype.numel()), "stride_ns": stride_ns,
        "replica": sources[0].replica if replica is not None else None,
        "jumps": jumps, "num_steps": num_steps, "sampler": "ode" if ode else "sde", "noise_scale": noise_scale,
        "noise_switch_t": noise_switch_t, "start_frame": start_frame, "seed": seed, "wall_s": round(wall_s, 1),
        "ca_validity": float(valid.mean()), "ca_validity_first_100": float(valid[:100].mean()),
        "mean_ca_clash_rate": float(np.mean(clash_rate)), "mean_ca_break_rate": float(np.mean(break_rate)),
        "max_consecutive_ca_angstrom": float(consecutive.max()) * ANGSTROM_PER_NM,
        "md_max_consecutive_ca_angstrom": float(md_consecutive.max()) * ANGSTROM_PER_NM,
        "md_ns": sum(f.num_frames for f in frames) * interval_ns,
        "model_per_jump_ca_rmsd_angstrom": model_jump_a,
        "md_ca_rmsd_at_same_lag_angstrom": md_jump_a,
        "rmsd_ratio_model_over_md": (model_jump_a / md_jump_a) if md_jump_a else None,
        "model_rmsd_to_start_final_angstrom": float(rmsd(ca_all[-1:], ca_all[:1])[0]) * ANGSTROM_PER_NM,
        "first_invalid_jump": int(np.argmin(valid)) + 1 if not valid.all() else None,
        "ca_valid_per_jump": valid.astype(int).tolist(),
        "ca_rmsd_to_start_per_jump_angstrom": [round(float(x) * ANGSTROM_PER_NM, 3)
                                               for x in rmsd(ca_all[1:], ca_all[:1].expand_as(ca_all[1:]))],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openmm_starmd.training.heldout", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="'default' or a checkpoint path")
    parser.add_argument("--data", required=True, help="folder of the held-out system's MD")
    parser.add_argument("--stride-ns", type=float, required=True, help="Δt per jump (ns)")
    parser.add_argument("--jumps", type=int, default=100, help="frames to generate (default 100)")
    parser.add_argument("--num-steps", type=int, default=200, help="reverse-diffusion steps per jump (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ode", action="store_true", help="probability-flow ODE sampler instead of the SDE")
    parser.add_argument("--noise-scale", type=float, default=1.0,
                        help="multiplier of the reverse SDE's stochastic term (1: the exact SDE)")
    parser.add_argument("--noise-switch-t", type=float, default=1.0,
                        help="diffusion time above which reverse steps take the exact SDE (default 1: the noise scale throughout)")
    parser.add_argument("--start-frame", type=int, default=0,
                        help="start from this frame of the first trajectory (negative: from the end; default 0)")
    parser.add_argument("--replica", help="use only this replica's trajectory (e.g. R2) as start and MD reference")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--out", help="write the report as JSON here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    report = evaluate(args.model, args.data, args.stride_ns, args.jumps, args.num_steps, args.seed, args.ode, args.noise_scale,
                      args.start_frame, args.replica, args.noise_switch_t)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
