"""How well one denoiser call recovers a real MD frame from its noised version, per noise level.

For each protein: the context is one MD frame k, the target the MD frame ``--lag-ns`` later (Kabsch-
aligned onto the context, as the rollout aligns), noised by the forward process to t. One network
call gives x̂₀. Reported per t: the Cα RMSD of the noisy input x_t and of x̂₀ to the target, the mean
|error| of the consecutive Cα distances of x̂₀, and the fraction of them beyond 4.19 Å (a chain
break for the validity check). A denoiser that uses its input has x̂₀ closer to the target than x_t
at low t; the last reverse steps of a sample happen there, so this is what sets the local geometry
of generated frames.

    python benchmarks/denoiser_accuracy.py --model CKPT --systems pep_GYDPETGTWG pep_MKTLHNEIRS \
        --out benchmarks/results/denoiser_accuracy_NAME

Writes ``OUT.json`` and ``OUT.md``.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openmm_starmd.evaluation.validity import BREAK_DISTANCE_NM  # noqa: E402
from openmm_starmd.geometry.so3 import quat_to_rotmat  # noqa: E402
from openmm_starmd.geometry.superpose import kabsch  # noqa: E402
from openmm_starmd.training.validation import _systems  # noqa: E402
from reports import write_report  # noqa: E402

NOISE_LEVELS = (0.01, 0.05, 0.2, 0.5)


def _bonds_nm(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).norm(dim=-1)


def md_frames_at_lag(f, lag_ns: float):
    """One trajectory's frames for a lag: the lag in frames, rots ``[T, N, 3, 3]``, trans ``[T, N, 3]`` (nm,
    float32) and log10(lag / ns) ``[1]``. Raises if the trajectory is not longer than the lag."""
    lag = int(round(lag_ns * 1000.0 / f.frame_interval_ps))
    if f.num_frames <= lag:
        raise ValueError(f"trajectory of {f.num_frames} frames is shorter than the lag of {lag} frames")
    rots = quat_to_rotmat(torch.from_numpy(f.quats)).float()
    trans = torch.from_numpy(f.trans).float()
    return lag, rots, trans, torch.full([1], math.log10(lag_ns))


def aligned_target(rots: torch.Tensor, trans: torch.Tensor, k: int, lag: int):
    """MD frame k + lag superposed onto the centred frame k (Cα Kabsch, as the rollout aligns):
    rots ``[1, N, 3, 3]`` and trans ``[1, N, 3]``."""
    rot, shift = kabsch(trans[k + lag][None], (trans[k] - trans[k].mean(0))[None])
    x_true = torch.einsum("bij,nj->bni", rot, trans[k + lag]) + shift[:, None]
    return rot[:, None] @ rots[k + lag][None], x_true


def measure(core, trajectories, lag_ns: float, starts: int, seed: int) -> list[dict]:
    """Rows per noise level for one system (see the module doc)."""
    f = trajectories[0]
    lag, rots, trans, log10_stride = md_frames_at_lag(f, lag_ns)
    torch.manual_seed(seed)
    values = {t: [] for t in NOISE_LEVELS}
    for k in np.linspace(0, f.num_frames - lag - 1, starts).round().astype(int):
        core.start(torch.from_numpy(f.aatype)[None], torch.from_numpy(f.residue_index)[None],
                   torch.from_numpy(f.chain_index)[None], 4, None, None)
        core.append_frame(rots[k][None], trans[k][None], log10_stride, float(core.context_noise_t))
        r_true, x_true = aligned_target(rots, trans, k, lag)
        bonds_true = _bonds_nm(x_true)
        for t in NOISE_LEVELS:
            r_t, x_t = core.diffuser.forward_marginal(r_true, x_true, torch.full([1], t))
            _, x0, _ = core.denoise(r_t, x_t, t, log10_stride)
            rms = lambda x: float(((x - x_true) ** 2).sum(-1).mean().sqrt()) * 10.0  # noqa: E731  Å
            bonds = _bonds_nm(x0)
            values[t].append((rms(x_t), rms(x0), float((bonds - bonds_true).abs().mean()) * 10.0,
                              float((bonds > BREAK_DISTANCE_NM).float().mean())))
    rows = []
    for t, v in values.items():
        v = np.asarray(v)
        rows.append({"t": t, "input_rmsd_angstrom": float(v[:, 0].mean()), "x0_rmsd_angstrom": float(v[:, 1].mean()),
                     "bond_error_angstrom": float(v[:, 2].mean()), "bond_break_fraction": float(v[:, 3].mean())})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="'default' or a checkpoint path (EMA weights, eager core)")
    parser.add_argument("--data", default="md_data")
    parser.add_argument("--systems", nargs="+", required=True, help="system names under --data")
    parser.add_argument("--lag-ns", type=float, default=0.1)
    parser.add_argument("--starts", type=int, default=7, help="context frames per system, evenly spread")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True, help="output stem: writes OUT.json and OUT.md")
    args = parser.parse_args(argv)
    from openmm_starmd.model.checkpoint import load_model

    torch.set_num_threads(args.threads)
    core = load_model(args.model).eval()
    systems = _systems(args.data, args.systems)
    report = {"model": args.model, "lag_ns": args.lag_ns, "starts": args.starts, "systems": {}}
    for name in args.systems:
        report["systems"][name] = measure(core, systems[name], args.lag_ns, args.starts, args.seed)
    table = [[name, f"{r['t']:g}", f"{r['input_rmsd_angstrom']:.2f}", f"{r['x0_rmsd_angstrom']:.2f}",
              f"{r['bond_error_angstrom']:.3f}", f"{100 * r['bond_break_fraction']:.1f} %"]
             for name, rows in report["systems"].items() for r in rows]
    print(write_report(args.out, report, f"One denoiser call on MD frames: `{Path(args.model).name}`", "denoiser_accuracy.py",
                       argv if argv is not None else sys.argv[1:],
                       ["system", "t", "RMSD x_t → truth (Å)", "RMSD x̂₀ → truth (Å)", "mean Cα-Cα error of x̂₀ (Å)",
                        "Cα-Cα > 4.19 Å"], table), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
