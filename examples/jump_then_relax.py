"""Jump villin HP35 forward with STAR-MD inside an OpenMM Simulation, then relax it with MD.

    python examples/jump_then_relax.py                       # villin, shipped model, 10 x 0.1 ns, 2 ps MD
    python examples/jump_then_relax.py my.pdb --model run/model.pt --frames 20 --stride 1.25ns --out my_run

Each jump is followed by a minimisation with the generated backbone restrained (the Generator's
``relax="minimize"``); after the last jump, ``--md-ps`` picoseconds of ordinary MD run with the
Simulation's own integrator (``generator.relax``), so the final structure has been relaxed by MD.

The default stride, 0.1 ns, is the shipped weights' recommended one; they were validated at 0.1 and
1.25 ns (the paper's stride) on proteins they never saw, and at 1.25 ns they sample with the
probability-flow ODE, as their card records for strides from 0.5 ns (docs/model_card.md;
``--ode`` / ``--no-ode`` choose the sampler yourself).

The validity gate here judges the relaxed structure (``--gate-judge relaxed``): a frame whose raw
sample has a consecutive Cα pair a little beyond 4.19 Å passes once the restrained minimisation
pulls it back, and the printout counts those frames. ``--gate-judge sample`` applies the paper's
test to the raw samples instead (the Generator's own default).

Implicit solvent (Amber ff14SB + OpenMM's native GBSAOBCForce, HMR, 4 fs). Writes into the folder
``--out`` (default ``jump_then_relax_out/`` in the current directory): a DCD of the jumped frames, a
PDB of the final structure and a JSON of each frame's source (model or MD fallback), and
prints the nanoseconds on the clock and those actually simulated, the intervals that fell back to
MD, the wall time and the fraction of Cα-valid frames. The shell equivalent, without the final
MD, is ``starmd generate PDB --frames 10 --stride 0.1ns --gate-judge relaxed --out traj.xtc``.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from openmm_starmd.openmm.command import JumpRunConfig, parse_stride_ns, print_summary, run_jumps
from openmm_starmd.internal import messages_to
from openmm_starmd.openmm.gate import InvalidFrameError


def main() -> int:
    import openmm.app

    villin = os.path.join(os.path.dirname(openmm.app.__file__), "data", "test.pdb")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("pdb", nargs="?", default=villin, help="structure (villin HP35 from openmm/app/data/test.pdb)")
    parser.add_argument("--model", default="default", help="'default' (shipped weights) or a checkpoint path")
    parser.add_argument("--frames", type=int, default=10, help="number of jumps")
    parser.add_argument("--stride", default="0.1ns", help="time per jump (0.1 ns is inside the shipped model's trained strides)")
    parser.add_argument("--md-ps", type=float, default=2.0, help="ps of ordinary MD after the last jump (0: none)")
    parser.add_argument("--out", default="jump_then_relax_out", help="folder for the trajectory, final structure and "
                        "per-frame record (created if needed)")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the samples and velocities (same seed, same run)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for OpenMM and torch")
    parser.add_argument("--noise-scale", type=float, default=None,
                        help="reverse-SDE noise multiplier (1: exact SDE; default: the one the weights were validated with)")
    parser.add_argument("--ode", action=argparse.BooleanOptionalAction, default=None,
                        help="--ode: the probability-flow ODE instead of the reverse SDE (larger jumps, fewer valid "
                             "frames); --no-ode: the SDE (default: the weights' choice for the stride)")
    parser.add_argument("--gate-judge", choices=("sample", "relaxed"), default="relaxed",
                        help="Cα validity checked after the restrained minimisation ('relaxed') or on the raw "
                             "generated frame ('sample', the Generator's own default and the paper's metric)")
    args = parser.parse_args()
    out = Path(args.out) / f"{'villin' if args.pdb == villin else Path(args.pdb).stem}.dcd"
    try:
        with messages_to(sys.stdout):  # one line per set-up phase and the run's time estimate
            summary = run_jumps(JumpRunConfig(pdb=args.pdb, out=str(out), frames=args.frames,
                                              stride_ns=parse_stride_ns(args.stride), model=args.model, seed=args.seed,
                                              threads=args.threads, noise_scale=args.noise_scale, ode=args.ode,
                                              gate_judge=args.gate_judge, md_after_ps=args.md_ps))
    except (ValueError, TypeError) as exc:  # a bad option or structure
        print(f"jump_then_relax: {exc}")
        return 2
    except FileNotFoundError as exc:  # e.g. the shipped weights are not installed yet
        print(f"jump_then_relax: {exc}")
        return 2
    except InvalidFrameError as exc:  # more intervals fell back to MD than GateConfig.max_fallback_fraction allows
        print(f"jump_then_relax: {exc}")
        return 1
    print_summary(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
