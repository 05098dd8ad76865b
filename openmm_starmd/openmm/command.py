"""``starmd generate``: jump a protein forward with STAR-MD inside OpenMM.

The OpenMM Generator it drives is built by issue #3; until it lands this subcommand says so and
exits with status 2 (the core rollout is available from Python: ``openmm_starmd.model.Rollout``).
"""
from __future__ import annotations

import sys


def add_arguments(parser) -> None:
    parser.add_argument("pdb", nargs="?", help="input structure (PDB)")
    parser.add_argument("--frames", type=int, default=80, help="number of jumps")
    parser.add_argument("--stride", default="1.25ns", help="time per jump, e.g. 1.25ns or 500ps")
    parser.add_argument("--out", default="traj.xtc", help="output trajectory")


def run(args) -> int:
    print("starmd generate: not available yet — the OpenMM StarMDGenerator is completed by issue #3. "
          "Use openmm_starmd.model.Rollout from Python in the meantime.", file=sys.stderr)
    return 2
