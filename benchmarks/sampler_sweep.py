"""Choose a model's sampler (reverse steps, noise scale, time spacing) on training proteins, never on the validation split.

For each setting: raw rollouts (gate open, no resampling, no relaxation) from two MD frames of each
named system (its farthest-apart frames, as the validation does), ``--jumps`` jumps at ``--stride-ns``.
Reported: Cα validity (the paper's check), the mean and spread of consecutive Cα distances, the
mean per-jump Cα RMSD (superposed, as the validation measures it) and its ratio to the MD's Cα RMSD
at the same lag (median over systems), and the fraction of frames more compact than the MD's 1st
percentile of the radius of gyration (mean over systems): lower noise scales give more valid frames
and smaller jumps.
A setting is NUM_STEPS:NOISE_SCALE[:TIME_SPACING[:NOISE_SWITCH_T]] (``GeneratorOptions``; the
spacing defaults to 1, evenly spaced times; the switch to 1, the noise scale at every step);
NOISE_SCALE ``ode`` takes the probability-flow ODE at every step (``50:ode``).

    python benchmarks/sampler_sweep.py --model CKPT --systems pep_GYDPETGTWG trpzip2 ... \
        --settings 25:0.5 50:0.5 50:1:2 --out benchmarks/results/sampler_sweep_NAME

Writes ``OUT.json`` and ``OUT.md``.
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
from openmm_starmd.training.validation import _md_lag_rmsd_nm, _systems, compactness, far_pair_rollouts  # noqa: E402
from reports import parse_setting, write_report  # noqa: E402


def rollouts(core, trajectories, stride_ns: float, jumps: int, num_steps: int, noise_scale: float, seed: int,
             time_spacing: float = 1.0, noise_switch_t: float = 1.0, ode: bool = False) -> list[np.ndarray]:
    """Generated Cα positions ``[jumps + 1, N, 3]`` (nm; the MD start first) of the validation's two
    rollouts from the farthest-apart MD frames."""
    generated, _ = far_pair_rollouts(core, trajectories, stride_ns, jumps, num_steps, noise_scale, seed,
                                     time_spacing=time_spacing, noise_switch_t=noise_switch_t, ode=ode)
    return [g.numpy() for rollouts_of_start in generated for g in rollouts_of_start]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", default="md_data")
    parser.add_argument("--systems", nargs="+", required=True, help="training systems (not the validation split)")
    parser.add_argument("--settings", nargs="+", default=["25:0.5", "50:0.5", "50:0.25"], help="NUM_STEPS:NOISE_SCALE[:TIME_SPACING[:NOISE_SWITCH_T]]")
    parser.add_argument("--stride-ns", type=float, default=0.1)
    parser.add_argument("--jumps", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    from openmm_starmd.model.checkpoint import load_model
    from openmm_starmd.training.validation import read_split

    held_out = set(read_split(Path(args.data) / "validation_split.txt")) if (Path(args.data) / "validation_split.txt").is_file() else set()
    if held_out & set(args.systems):
        raise SystemExit(f"sampler_sweep: {sorted(held_out & set(args.systems))} are validation systems; choose the sampler on training systems")
    torch.set_num_threads(args.threads)
    core = load_model(args.model).eval()
    systems = _systems(args.data, args.systems)
    md_ca_nm = {name: np.concatenate([t.trans for t in systems[name]]) for name in args.systems}
    md_lag_nm = {name: _md_lag_rmsd_nm(systems[name], args.stride_ns) for name in args.systems}
    rows = []
    for setting in args.settings:
        try:
            steps, noise, spacing, switch, ode = parse_setting(setting)
        except ValueError as exc:
            parser.error(f"--settings: {exc}")
        start = time.monotonic()
        valid, bonds, jumps, ratios, below_p1 = [], [], [], [], []
        for name in args.systems:
            system_jumps, system_frames = [], []
            for ca in rollouts(core, systems[name], args.stride_ns, args.jumps, int(steps), float(noise), args.seed, float(spacing),
                                float(switch), ode):
                valid.append(ca_valid(ca[1:]))
                bonds.append(np.linalg.norm(ca[1:, 1:] - ca[1:, :-1], axis=-1).ravel() * 10.0)
                g = torch.from_numpy(ca)
                system_jumps.append(rmsd(g[1:], g[:-1]).numpy() * 10.0)
                system_frames.append(ca[1:])
            jumps += system_jumps
            below_p1.append(compactness(system_frames, md_ca_nm[name])["below_md_p1"])
            md_lag = md_lag_nm[name]
            if md_lag is not None:
                ratios.append(float(np.concatenate(system_jumps).mean()) / (10.0 * md_lag))
        bonds = np.concatenate(bonds)
        rows.append({"num_steps": int(steps), "noise_scale": float(noise), "time_spacing": float(spacing),
                     "noise_switch_t": float(switch), "ode": ode, "ca_valid": float(np.concatenate(valid).mean()),
                     "bond_mean_angstrom": float(bonds.mean()), "bond_std_angstrom": float(bonds.std()),
                     "jump_rmsd_angstrom": float(np.concatenate(jumps).mean()), "frames": int(sum(len(v) for v in valid)),
                     "rmsd_ratio_median": float(np.median(ratios)) if ratios else None, "rmsd_ratio_systems": len(ratios),
                     "below_md_rg_p1": float(np.mean(below_p1)),
                     "wall_s": round(time.monotonic() - start, 1)})
        print(json.dumps(rows[-1]), flush=True)
    table = [[str(r["num_steps"]), "ODE" if r.get("ode") else f"{r['noise_scale']:g}", f"{r['time_spacing']:g}",
              "—" if r["noise_switch_t"] >= 1 else f"{r['noise_switch_t']:g}", str(r["frames"]), f"{100 * r['ca_valid']:.0f} %",
              f"{r['bond_mean_angstrom']:.2f} ± {r['bond_std_angstrom']:.2f}", f"{r['jump_rmsd_angstrom']:.2f}",
              "—" if r["rmsd_ratio_median"] is None else f"{r['rmsd_ratio_median']:.2f} ({r['rmsd_ratio_systems']})",
              f"{100 * r['below_md_rg_p1']:.0f} %"] for r in rows]
    data = {"model": args.model, "systems": args.systems, "stride_ns": args.stride_ns, "jumps": args.jumps, "rows": rows}
    print(write_report(args.out, data, f"Sampler sweep on training proteins: `{Path(args.model).name}`", "sampler_sweep.py",
                       argv if argv is not None else sys.argv[1:],
                       ["reverse steps", "noise scale", "time spacing", "exact SDE above t", "frames", "Cα-valid", "Cα-Cα mean ± sd (Å)", "per-jump RMSD (Å)",
                        "per-jump RMSD / MD (systems)", "frames below MD's Rg 1st percentile"], table),
          end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
