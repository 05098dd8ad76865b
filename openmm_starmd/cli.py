"""The ``starmd`` command.

Each subcommand lives in the module that owns its work and exposes two functions,
``add_arguments(parser)`` and ``run(args) -> int``. Only the chosen subcommand's
module is imported, so ``starmd --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("openmm_starmd.openmm.command", "jump a protein forward with STAR-MD and write a trajectory"),
    "simulate": ("openmm_starmd.openmm.simulate", "run OpenMM MD on structures to make training data (resumable)"),
    "train": ("openmm_starmd.training.command", "train or fine-tune a STAR-MD model on MD trajectories"),
    "evaluate": ("openmm_starmd.evaluation.command", "compare generated and reference trajectories (paper metrics)"),
    "export": ("openmm_starmd.model.export", "export the STAR-MD core as a TorchScript file"),
    "info": ("openmm_starmd.model.checkpoint", "describe a model checkpoint (config, parameters, SHA-256)"),
    "build-plugin": ("openmm_starmd.plugin.build", "compile and install the C++ OpenMM plugin (GeneratorIntegrator)"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="starmd",
        description="STAR-MD: nanosecond jumps of protein motion inside OpenMM.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="subcommands:\n" + "\n".join(f"  {n:<10} {h}" for n, (_, h) in SUBCOMMANDS.items())
        + "\n\nRun 'starmd SUBCOMMAND --help' for its options.",
    )
    parser.add_argument("subcommand", choices=list(SUBCOMMANDS), metavar="SUBCOMMAND", help="one of: " + ", ".join(SUBCOMMANDS))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0
    if argv[0] in ("-V", "--version"):
        from openmm_starmd import __version__

        print(f"openmm-starmd {__version__}")
        return 0
    name = top.parse_args(argv[:1]).subcommand
    module_name, help_text = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"starmd {name}", description=help_text)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
