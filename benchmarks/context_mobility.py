"""Does the network read how mobile a protein is from its context?

From MD frames after each system's relaxation (``relaxation_frames``), ``--replicas`` raw samples
(gate open, no resampling, no relaxation) of the next frame at each stride, with three contexts
ending in the same MD frame f:

- ``md``: the MD frames f - K·k, …, f at the stride (k snapshots), superposed and centred as in
  training (``align_and_centre``): a history that shows how far this protein moves per stride;
- ``frozen``: frame f repeated K + 1 times: a history that shows no motion at all;
- ``start``: frame f alone.

K is ``--history`` or fewer where the trajectory is too short (at least 1). Reported per system and
stride: the mean Cα RMSD (superposed) of the history's own steps, of the sampled frame from f under
each context, and of MD at the same lag at equilibrium. A network that reads mobility from its
history gives ``md`` jumps that follow the history and exceed the ``frozen`` ones; one that ignores
it gives the same jump under every context.

    python benchmarks/context_mobility.py --model default --data md_data \
        --split md_data/validation_split.txt --strides 0.1 1.25 --out benchmarks/results/context_mobility_NAME

This measures; it chooses nothing, so validation systems may be named. Writes ``OUT.json`` and
``OUT.md``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openmm_starmd.data.dataset import relaxation_frames  # noqa: E402
from openmm_starmd.evaluation.validity import ca_valid  # noqa: E402
from openmm_starmd.geometry.superpose import rmsd  # noqa: E402
from openmm_starmd.training.validation import _md_lag_rmsd_nm, _systems, read_split  # noqa: E402
from reports import write_report  # noqa: E402

ANGSTROM_PER_NM = 10.0
CONTEXTS = ("md", "frozen", "start")


def contexts(trajectory, frame: int, k: int, history: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The three contexts ending in MD frame ``frame``: rots ``[L, N, 3, 3]``, trans ``[L, N, 3]`` nm."""
    from openmm_starmd.geometry.so3 import quat_to_rotmat
    from openmm_starmd.training.block_causal import align_and_centre

    idx = [frame - (history - i) * k for i in range(history + 1)]
    rots = quat_to_rotmat(torch.from_numpy(trajectory.quats[idx]))
    trans = torch.from_numpy(trajectory.trans[idx])
    mask = torch.from_numpy(trajectory.residue_mask)[None]
    rots, trans = align_and_centre(rots[None], trans[None], mask)
    rots, trans = rots[0], trans[0]
    last_r, last_t = rots[-1:], trans[-1:]
    return {"md": (rots, trans), "frozen": (last_r.expand_as(rots), last_t.expand_as(trans)), "start": (last_r, last_t)}


def sample_next(core, trajectory, ctx_rots: torch.Tensor, ctx_trans: torch.Tensor, stride_ns: float, replicas: int, seed: int,
                num_steps: int, noise_scale: float, noise_switch_t: float, context_window: int, context_sink: int) -> torch.Tensor:
    """Cα ``[replicas, N, 3]`` nm of the frame sampled after the context."""
    from openmm_starmd.model.rollout import Rollout

    rollout = Rollout(core, torch.from_numpy(trajectory.aatype), torch.from_numpy(trajectory.residue_index), stride_ns,
                      replicas=replicas, seed=seed, num_steps=num_steps, noise_scale=noise_scale, noise_switch_t=noise_switch_t,
                      capacity_frames=ctx_trans.shape[0] + 1, chain_index=torch.from_numpy(trajectory.chain_index),
                      context_window=context_window, context_sink=context_sink)
    for r, t in zip(ctx_rots, ctx_trans):
        rollout.add_context(r, t)
    return rollout.sample().trans.double()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="'default' or a checkpoint")
    parser.add_argument("--data", default="md_data")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--systems", nargs="+")
    group.add_argument("--split", help="a split file (one system per line, '#' comments)")
    parser.add_argument("--strides", nargs="+", type=float, default=[0.1, 1.25], help="ns")
    parser.add_argument("--history", type=int, default=7, help="most history frames before the last (K)")
    parser.add_argument("--starts", type=int, default=4, help="MD frames per system and stride, evenly spaced after the relaxation")
    parser.add_argument("--replicas", type=int, default=8)
    parser.add_argument("--num-steps", type=int, default=50)
    parser.add_argument("--noise-scale", type=float, default=0.25)
    parser.add_argument("--noise-switch-t", type=float, default=0.1)
    parser.add_argument("--context-window", type=int, default=8)
    parser.add_argument("--context-sink", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.replicas < 1 or args.history < 1 or args.starts < 1 or any(s <= 0 for s in args.strides):
        parser.error("--replicas, --history and --starts must be >= 1 and every stride > 0")
    from openmm_starmd.model.checkpoint import load_model

    torch.set_num_threads(args.threads)
    core = load_model(args.model).eval()
    names = args.systems or read_split(args.split)
    systems = _systems(args.data, names)
    missing = [n for n in names if n not in systems]
    if missing:
        parser.error(f"no MD under {args.data!r} for {missing}")
    rows = []
    for name in names:
        trajectory = max(systems[name], key=lambda f: f.trans.shape[0])  # the longest replica
        num_frames = trajectory.trans.shape[0]
        relax = relaxation_frames(trajectory.trans)
        for stride in args.strides:
            k = max(1, round(stride * 1000.0 / trajectory.frame_interval_ps))
            history = min(args.history, (num_frames - 1 - relax) // k)
            if history < 1:
                print(f"{name} {stride:g} ns: too short after its relaxation for one history step; skipped", flush=True)
                continue
            first = relax + history * k
            frames = np.unique(np.linspace(first, num_frames - 1, args.starts).round().astype(int))
            began = time.monotonic()
            jumps = {c: [] for c in CONTEXTS}
            valid = {c: [] for c in CONTEXTS}
            steps = []
            for i, frame in enumerate(frames):
                ctx = contexts(trajectory, int(frame), k, history)
                md_t = ctx["md"][1].double()
                steps.append(float(rmsd(md_t[1:], md_t[:-1]).mean()) * ANGSTROM_PER_NM)
                for c in CONTEXTS:
                    rots, trans = ctx[c]
                    ca = sample_next(core, trajectory, rots, trans, stride, args.replicas, args.seed + i, args.num_steps,
                                     args.noise_scale, args.noise_switch_t, args.context_window, args.context_sink)
                    last = trans[-1].double()[None].expand_as(ca)
                    jumps[c].append(float(rmsd(ca, last).mean()) * ANGSTROM_PER_NM)
                    valid[c].append(float(np.mean(ca_valid(ca.numpy()))))
            md = _md_lag_rmsd_nm(systems[name], stride, equilibrium=True)
            row = {"system": name, "residues": int(trajectory.aatype.shape[0]), "stride_ns": stride, "history_frames": history,
                   "start_frames": [int(f) for f in frames], "replicas": args.replicas,
                   "history_step_rmsd_angstrom": float(np.mean(steps)),
                   "md_lag_rmsd_equilibrium_angstrom": None if md is None else md * ANGSTROM_PER_NM,
                   "wall_s": round(time.monotonic() - began, 1)}
            for c in CONTEXTS:
                row[f"jump_{c}_angstrom"] = float(np.mean(jumps[c]))
                row[f"ca_valid_{c}"] = float(np.mean(valid[c]))
            rows.append(row)
            print(json.dumps(row), flush=True)
    table = [[r["system"], str(r["residues"]), f"{r['stride_ns']:g}", str(r["history_frames"]), f"{r['history_step_rmsd_angstrom']:.2f}",
              "—" if r["md_lag_rmsd_equilibrium_angstrom"] is None else f"{r['md_lag_rmsd_equilibrium_angstrom']:.2f}",
              f"{r['jump_md_angstrom']:.2f}", f"{r['jump_frozen_angstrom']:.2f}", f"{r['jump_start_angstrom']:.2f}",
              f"{r['jump_md_angstrom'] / r['jump_frozen_angstrom']:.2f}",
              " / ".join(f"{100 * r[f'ca_valid_{c}']:.0f}" for c in CONTEXTS)] for r in rows]
    data = {"model": args.model, "settings": vars(args) | {"out": None}, "rows": rows}
    print(write_report(args.out, data, f"Jumps after a moving, a frozen and a one-frame context: `{Path(args.model).name}`",
                       "context_mobility.py", argv if argv is not None else sys.argv[1:],
                       ["system", "residues", "stride (ns)", "history frames K", "MD history step (Å)", "MD at equilibrium, same lag (Å)",
                        "jump after MD history (Å)", "after frozen history (Å)", "after the frame alone (Å)", "MD / frozen",
                        "Cα-valid % md / frozen / start"], table),
          end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
