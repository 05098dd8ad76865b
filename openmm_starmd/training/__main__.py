"""``python -m openmm_starmd.training ARGS`` (and ``torchrun ... -m openmm_starmd.training ARGS``):
the ``starmd train`` command, so the same arguments run in one process or data-parallel."""
import argparse
import sys

from openmm_starmd.training.command import add_arguments, run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openmm_starmd.training", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
