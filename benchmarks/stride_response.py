"""How far a jump moves a protein at each stride, against the MD at the same lag.

One MD frame of each system (``--frame``, default the middle of its first trajectory) starts
``--replicas`` independent raw rollouts (gate open, no resampling, no relaxation) of ``--jumps``
jumps at every ``--strides`` value and sampler setting. Reported per system, setting and stride:
the Cα RMSD of the first jump (from the MD frame) and the mean of the later jumps (from generated
frames), superposed as the validation measures jumps; the Cα validity of all generated frames; and
the MD's mean Cα RMSD between frames the same lag apart (None when the MD is shorter). A network
that ignored the stride would move the protein equally far at every stride; one that matched MD
would follow the MD column, from MD frames and from its own alike. A setting is
NUM_STEPS:NOISE_SCALE[:TIME_SPACING[:NOISE_SWITCH_T]] (``GeneratorOptions``).

    python benchmarks/stride_response.py --model CKPT --data md_data --systems villin trp_cage \
        --strides 0.01 0.1 1.25 5 --settings 50:0.25 50:1:2 --jumps 4 --out benchmarks/results/stride_response_NAME

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

from openmm_starmd.evaluation.validity import ca_valid  # noqa: E402
from openmm_starmd.geometry.superpose import rmsd  # noqa: E402
from openmm_starmd.training.validation import _md_lag_rmsd_nm, _systems  # noqa: E402
from reports import parse_setting, setting_label, write_report  # noqa: E402

ANGSTROM_PER_NM = 10.0


def rollouts(core, trajectory, frame: int, stride_ns: float, jumps: int, replicas: int, num_steps: int,
             noise_scale: float, time_spacing: float, seed: int, noise_switch_t: float = 1.0, ode: bool = False) -> np.ndarray:
    """``replicas`` rollouts of ``jumps`` jumps from MD frame ``frame``: Cα positions
    ``[replicas, jumps + 1, N, 3]`` nm, the MD frame first."""
    from openmm_starmd.geometry.so3 import quat_to_rotmat
    from openmm_starmd.model.rollout import Rollout

    rollout = Rollout(core, torch.from_numpy(trajectory.aatype), torch.from_numpy(trajectory.residue_index), stride_ns,
                      replicas=replicas, seed=seed, num_steps=num_steps, noise_scale=noise_scale, ode=ode,
                      time_spacing=time_spacing, noise_switch_t=noise_switch_t, capacity_frames=jumps + 2, chain_index=torch.from_numpy(trajectory.chain_index))
    rollout.add_context(quat_to_rotmat(torch.from_numpy(trajectory.quats[frame])), torch.from_numpy(trajectory.trans[frame]))
    generated = rollout.run(jumps).trans.double()  # [replicas, jumps, N, 3]
    start = torch.from_numpy(trajectory.trans[frame]).double()[None, None].expand(replicas, 1, -1, -1)
    return torch.cat([start, generated], 1).numpy()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="'default' or a checkpoint")
    parser.add_argument("--data", default="md_data")
    parser.add_argument("--systems", nargs="+", required=True)
    parser.add_argument("--strides", nargs="+", type=float, default=[0.01, 0.1, 1.25, 5.0], help="ns")
    parser.add_argument("--settings", nargs="+", default=["50:0.25", "50:1:2"], help="NUM_STEPS:NOISE_SCALE[:TIME_SPACING[:NOISE_SWITCH_T]]")
    parser.add_argument("--replicas", type=int, default=8)
    parser.add_argument("--jumps", type=int, default=4, help="jumps per rollout (>= 2: the first from MD, the rest from generated frames)")
    parser.add_argument("--frame", type=int, default=-1, help="start frame of the first trajectory (default: its middle)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        settings = [parse_setting(s) for s in args.settings]
    except ValueError as exc:
        parser.error(f"--settings: {exc}")
    if args.replicas < 1 or args.jumps < 2 or any(s <= 0 for s in args.strides):
        parser.error("--replicas must be >= 1, --jumps >= 2 and every stride > 0")
    from openmm_starmd.model.checkpoint import load_model

    torch.set_num_threads(args.threads)
    core = load_model(args.model).eval()
    systems = _systems(args.data, args.systems)
    missing = [n for n in args.systems if n not in systems]
    if missing:
        parser.error(f"no MD under {args.data!r} for {missing}")
    rows = []
    for name in args.systems:
        first = systems[name][0]
        frame = first.trans.shape[0] // 2 if args.frame < 0 else args.frame
        if not 0 <= frame < first.trans.shape[0]:
            parser.error(f"--frame {frame}: {name} has {first.trans.shape[0]} frames")
        for num_steps, noise, spacing, switch, ode in settings:
            for stride in args.strides:
                began = time.monotonic()
                ca = torch.from_numpy(rollouts(core, first, frame, stride, args.jumps, args.replicas, num_steps, noise, spacing,
                                               args.seed, switch, ode))
                jump = rmsd(ca[:, 1:], ca[:, :-1]).numpy() * ANGSTROM_PER_NM  # [replicas, jumps]
                md = _md_lag_rmsd_nm(systems[name], stride)
                rows.append({"system": name, "residues": int(first.aatype.shape[0]), "frame": frame, "num_steps": num_steps,
                             "noise_scale": noise, "time_spacing": spacing, "noise_switch_t": switch, "ode": ode, "stride_ns": stride, "replicas": args.replicas,
                             "jumps": args.jumps, "first_jump_rmsd_angstrom": float(jump[:, 0].mean()),
                             "first_jump_rmsd_sd_angstrom": float(jump[:, 0].std()),
                             "later_jump_rmsd_angstrom": float(jump[:, 1:].mean()),
                             "ca_valid": float(np.mean(ca_valid(ca[:, 1:].reshape(-1, *ca.shape[2:]).numpy()))),
                             "md_lag_rmsd_angstrom": None if md is None else md * ANGSTROM_PER_NM,
                             "wall_s": round(time.monotonic() - began, 1)})
                print(json.dumps(rows[-1]), flush=True)
    table = [[r["system"], str(r["residues"]), setting_label(r["num_steps"], r["noise_scale"], r["time_spacing"], r.get("noise_switch_t", 1.0), r.get("ode", False)), f"{r['stride_ns']:g}",
              f"{r['first_jump_rmsd_angstrom']:.2f} ± {r['first_jump_rmsd_sd_angstrom']:.2f}", f"{r['later_jump_rmsd_angstrom']:.2f}",
              "—" if r["md_lag_rmsd_angstrom"] is None else f"{r['md_lag_rmsd_angstrom']:.2f}",
              "—" if r["md_lag_rmsd_angstrom"] is None else f"{r['later_jump_rmsd_angstrom'] / r['md_lag_rmsd_angstrom']:.2f}",
              f"{100 * r['ca_valid']:.0f} %"] for r in rows]
    data = {"model": args.model, "settings": vars(args) | {"out": None}, "rows": rows}
    print(write_report(args.out, data, f"Jumps from one MD frame, by stride: `{Path(args.model).name}`", "stride_response.py",
                       argv if argv is not None else sys.argv[1:],
                       ["system", "residues", "steps:noise:spacing[:switch]", "stride (ns)", "first jump Cα RMSD (Å), mean ± sd over replicas",
                        "later jumps (Å)", "MD at the same lag (Å)", "later jumps / MD", "Cα-valid"], table),
          end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
