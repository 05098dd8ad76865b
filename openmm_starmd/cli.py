"""The ``starmd`` command.

Each subcommand lives in the module that owns its work and exposes two functions,
``add_arguments(parser)`` and ``run(args) -> int``. Only the chosen subcommand's
module is imported, so ``starmd --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from openmm_starmd.internal import messages_to

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("openmm_starmd.openmm.command", "jump a protein forward with STAR-MD and write a trajectory"),
    "simulate": ("openmm_starmd.openmm.simulate", "run OpenMM MD on structures to make training data (resumable)"),
    "train": ("openmm_starmd.training.command", "train or fine-tune a STAR-MD model on MD trajectories"),
    "evaluate": ("openmm_starmd.evaluation.command", "compare generated and reference trajectories (paper metrics)"),
    "export": ("openmm_starmd.model.export", "export the STAR-MD core as a TorchScript file"),
    "info": ("openmm_starmd.openmm.info", "describe a model: weights, training steps, sampler defaults, config"),
    "build-plugin": ("openmm_starmd.plugin.build", "compile and install the C++ OpenMM plugin (GeneratorIntegrator)"),
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's defaults formatter, except where the help already states its default or there is
    no default worth stating (None, a flag's False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        says_default = any(phrase in text for phrase in ("(default", "default)", "the default", ", default "))
        nothing = action.default is None or action.default is False or action.default in ([], (), argparse.SUPPRESS)
        if says_default or nothing:
            return text
        return super()._get_help_string(action)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings on the command line: the message and its kind, not a line of the package's source."""
    print(f"starmd: warning: {message} ({category.__name__})", file=sys.stderr if file is None else file)


def subcommand_parser(name: str) -> tuple[argparse.ArgumentParser, object]:
    """The argument parser of ``starmd NAME`` and the module that runs it."""
    module_name, help_text = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"starmd {name}", description=help_text, formatter_class=HelpFormatter)
    module.add_arguments(parser)
    return parser, module


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
    if argv and argv[0] in ("simulate", "train"):
        from openmm_starmd.internal import restore_interrupt

        restore_interrupt()  # a backgrounded job still stops on kill -INT
    top = _top_parser()
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0
    if argv[0] in ("-V", "--version"):
        from openmm_starmd import __version__

        print(f"openmm-starmd {__version__}")
        return 0
    name = top.parse_args(argv[:1]).subcommand
    parser, module = subcommand_parser(name)
    args = parser.parse_args(argv[1:])
    with warnings.catch_warnings(), messages_to(sys.stderr):
        warnings.showwarning = _show_warning
        return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
