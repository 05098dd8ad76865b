"""``starmd train``: train or fine-tune STAR-MD on MD trajectories.

The training loop, losses and data pipeline are built by issue #4; until it lands this subcommand
says so and exits with status 2.
"""
from __future__ import annotations

import sys


def add_arguments(parser) -> None:
    parser.add_argument("--data", help="folder of topology + trajectory pairs, or the ATLAS layout")
    parser.add_argument("--preset", default="small", choices=["tiny", "small", "paper"], help="model size")
    parser.add_argument("--steps", type=int, default=1000, help="optimiser steps")
    parser.add_argument("--out", help="output checkpoint")
    parser.add_argument("--init", help="initial checkpoint ('default' or a path) for fine-tuning")


def run(args) -> int:
    print("starmd train: not available yet — training is completed by issue #4.", file=sys.stderr)
    return 2
