"""Where in the reverse process a generated jump loses its size.

For each protein and context (``--context`` MD frames ending at frame k, ``--lag-ns`` apart), the MD
frame one lag later is the truth. The reverse process is started at its first step at or below the
diffusion time t*, from that truth noised by the forward process (t* = 1: from the prior, an ordinary
sample), and run to the end with the sampler of the rollout. Reported per t*: the Cα RMSD of the
final frame to the context frame (the jump) and to the truth, against MD's jump over the same lag.

A network whose x̂₀ is the conditional mean at every t keeps the marginal of the noised truth, so the
jump stays MD's size from every t*. The t* where the jump falls below MD's is where x̂₀ pulls the
sample towards the context more than the data do.

    python benchmarks/jump_by_diffusion_time.py --model default --systems pep_YGRKKRRQRRR trpzip2 \\
        --lag-ns 1.25 --out benchmarks/results/jump_by_diffusion_time_NAME

Writes ``OUT.json`` and ``OUT.md``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from denoiser_accuracy import aligned_target, md_frames_at_lag  # noqa: E402
from openmm_starmd.geometry.superpose import rmsd  # noqa: E402
from openmm_starmd.training.validation import _systems  # noqa: E402
from reports import write_report  # noqa: E402

T_STARS = (1.0, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05)


def _first_step(ts: torch.Tensor, t_star: float) -> int:
    """Index of the first reverse step at or below ``t_star`` (0: the whole process from the prior)."""
    return int((ts <= t_star + 1e-9).nonzero().min())


def _finish(core, rots, trans, ts, first: int, log10_stride: torch.Tensor, noise_scale: float, noise_switch_t: float):
    """Run the reverse steps ``ts[first:]`` from (rots, trans) as ``sample_frame`` does; x̂₀ of the last step (nm)."""
    x0 = trans
    for i in range(first, len(ts)):
        t = float(ts[i])
        r0, x0, _ = core.denoise(rots, trans, t, log10_stride)
        if i + 1 < len(ts):
            noise = 1.0 if t > noise_switch_t else noise_scale
            z_rot, z_trans = torch.randn(trans.shape), torch.randn(trans.shape)
            rots, trans = core.diffuser.reverse_step(rots, trans, r0, x0, t, t - float(ts[i + 1]), z_rot, z_trans, False, noise)
    return x0


@torch.no_grad()
def measure(core, trajectories, lag_ns: float, starts: int, context: int, repeats: int, t_stars, num_steps: int,
            noise_scale: float, noise_switch_t: float) -> dict:
    """MD's mean jump and, per t*, the mean jump and distance to the truth of the final frames (Å)."""
    f = trajectories[0]
    lag, rots, trans, log10_stride = md_frames_at_lag(f, lag_ns)
    ts = core.diffuser.timesteps(num_steps, 1.0)
    first_k = min((context - 1) * lag, f.num_frames - lag - 1)
    md, rows = [], {t: ([], []) for t in t_stars}
    for k in np.linspace(first_k, f.num_frames - lag - 1, starts).round().astype(int):
        core.start(torch.from_numpy(f.aatype)[None], torch.from_numpy(f.residue_index)[None],
                   torch.from_numpy(f.chain_index)[None], context + 1, None, None)
        for j in range(min(context, k // lag + 1) - 1, -1, -1):
            core.append_frame(rots[k - j * lag][None], trans[k - j * lag][None], log10_stride, float(core.context_noise_t))
        r_true, x_true = aligned_target(rots, trans, k, lag)
        md.append(float(rmsd(trans[k + lag], trans[k])) * 10.0)
        for t_star in t_stars:
            first = _first_step(ts, t_star)
            for _ in range(repeats):
                if float(ts[first]) >= 1.0:
                    r, x = core.diffuser.sample_prior([1, x_true.shape[1]], None, None)
                else:
                    r, x = core.diffuser.forward_marginal(r_true, x_true, torch.full([1], float(ts[first])))
                x0 = _finish(core, r, x, ts, first, log10_stride, noise_scale, noise_switch_t)[0]
                rows[t_star][0].append(float(rmsd(x0, trans[k])) * 10.0)
                rows[t_star][1].append(float(rmsd(x0, x_true[0])) * 10.0)
    return {"md_jump_angstrom": float(np.mean(md)), "frames": len(md) * repeats,
            "rows": [{"t_star": t, "start_t": float(ts[_first_step(ts, t)]),
                      "jump_angstrom": float(np.mean(j)), "to_truth_angstrom": float(np.mean(e)),
                      "jump_ratio": float(np.mean(j) / np.mean(md))} for t, (j, e) in rows.items()]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="'default' or a checkpoint path (EMA weights, eager core)")
    parser.add_argument("--data", default="md_data")
    parser.add_argument("--systems", nargs="+", required=True, help="system names under --data")
    parser.add_argument("--lag-ns", type=float, default=1.25)
    parser.add_argument("--starts", type=int, default=8, help="context end frames per system, evenly spread")
    parser.add_argument("--context", type=int, default=4, help="MD frames of context, --lag-ns apart (default 4)")
    parser.add_argument("--repeats", type=int, default=2, help="samples per context and t* (default 2)")
    parser.add_argument("--t-star", type=float, nargs="+", default=list(T_STARS), help="diffusion times to start from")
    parser.add_argument("--num-steps", type=int, default=50)
    parser.add_argument("--noise-scale", type=float, default=0.25)
    parser.add_argument("--noise-switch-t", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True, help="output stem: writes OUT.json and OUT.md")
    args = parser.parse_args(argv)
    if args.context < 1 or args.starts < 1 or args.repeats < 1:
        parser.error("--context, --starts and --repeats must be >= 1")
    from openmm_starmd.model.checkpoint import load_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    core = load_model(args.model).eval()
    systems = _systems(args.data, args.systems)
    report = {"model": args.model, "lag_ns": args.lag_ns, "starts": args.starts, "context": args.context,
              "repeats": args.repeats, "num_steps": args.num_steps, "noise_scale": args.noise_scale,
              "noise_switch_t": args.noise_switch_t, "systems": {}}
    for name in args.systems:
        report["systems"][name] = measure(core, systems[name], args.lag_ns, args.starts, args.context, args.repeats,
                                          args.t_star, args.num_steps, args.noise_scale, args.noise_switch_t)
    table = [[name, f"{s['md_jump_angstrom']:.2f}", f"{r['t_star']:g}", f"{r['jump_angstrom']:.2f}", f"{r['jump_ratio']:.2f}",
              f"{r['to_truth_angstrom']:.2f}"] for name, s in report["systems"].items() for r in s["rows"]]
    print(write_report(args.out, report, f"Jump size by the diffusion time the reverse process starts from: "
                       f"`{Path(args.model).name}`, {args.lag_ns:g} ns", "jump_by_diffusion_time.py",
                       argv if argv is not None else sys.argv[1:],
                       ["system", "MD jump (Å)", "start t*", "jump (Å)", "jump / MD", "final → truth (Å)"], table), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
