"""The ``starmd`` command as a user meets it: help on every option with its default, and warnings
that show the message rather than a line of the package's source."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from generator_helpers import VILLIN
from openmm_starmd.cli import SUBCOMMANDS, HelpFormatter, main, subcommand_parser

torch.set_num_threads(1)


@pytest.mark.parametrize("name", list(SUBCOMMANDS))
def test_every_option_has_help_and_states_its_default(name):
    parser, _ = subcommand_parser(name)
    text = parser.format_help()
    assert "SPEC" not in text and "§" not in text and "issue" not in text.lower()
    formatter = HelpFormatter(parser.prog)
    for action in parser._actions:
        assert action.help, f"starmd {name}: {action.option_strings or action.dest} has no help"
        stated = formatter._get_help_string(action)
        if action.default not in (None, False, [], (), argparse.SUPPRESS):
            assert "default" in stated, f"starmd {name}: {action.option_strings} hides its default {action.default!r}"


def test_generate_help_shows_seed_and_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--seed SEED integer seed" in text
    assert "reverse-diffusion steps per frame (default: the number the weights were validated with; 50 for the shipped weights)" in text
    assert "(default: the one the weights were validated with, 0.25 for the shipped weights;" in text
    assert "(default: recommended)" in text and "(default: traj.xtc)" in text


def test_cli_warning_shows_the_message_not_package_source(tmp_path, capsys):
    from openmm_starmd.model.checkpoint import save_checkpoint
    from openmm_starmd.model.config import tiny
    from openmm_starmd.model.core import StarMDCore

    torch.manual_seed(0)
    model = tmp_path / "meta.pt"
    save_checkpoint(model, tiny(), StarMDCore(tiny()).net.state_dict(),
                    meta={"trajectories": [{"frame_interval_ps": 10.0, "stride_frames": [1, 12]}]})
    rc = main(["generate", VILLIN, "--frames", "0", "--stride", "1.25ns", "--model", str(model), "--relax", "none",
               "--out", str(tmp_path / "t.xtc"), "--no-progress"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "starmd: warning: stride 1.25 ns lies outside" in err and "StrideOutsideTrainingWarning" in err
    assert ".py:" not in err  # no file:line of the package, no source line
    for phase in ("hydrogens added: 35 residues", "implicit-solvent system", "energy minimised", "parameters, cpu) in"):
        assert "set-up: " in err and phase in err, phase  # one line per set-up phase


def test_cpu_estimate_matches_its_measurements_and_scales():
    from openmm_starmd.openmm.estimate import MEASURED_RESIDUES, SECONDS_PER_SAMPLE, cpu_seconds_per_sample, describe_run

    for scripted, key in ((True, "torchscript"), (False, "eager")):
        for n, seconds in zip(MEASURED_RESIDUES, SECONDS_PER_SAMPLE[key]):
            assert cpu_seconds_per_sample(n, 50, scripted) == pytest.approx(seconds)
        sizes = [7, 20, 35, 60, 89, 130, 160, 400]
        times = [cpu_seconds_per_sample(n, 50, scripted) for n in sizes]
        assert times == sorted(times)
    assert cpu_seconds_per_sample(89, 100, True) == pytest.approx(2 * cpu_seconds_per_sample(89, 50, True))
    line = describe_run(100, 35, 50, True)
    assert line.startswith("100 jump(s) of a 35-residue protein at 50 reverse-diffusion steps") and "3 min" in line
    with pytest.raises(ValueError, match="num_residues"):
        cpu_seconds_per_sample(0, 50, True)


def test_run_jumps_runs_md_after_the_jumps(tmp_path):
    from generator_helpers import tiny_checkpoint
    from openmm_starmd.openmm.command import JumpRunConfig, describe_sampler, run_jumps

    model = tiny_checkpoint(tmp_path / "tiny.pt")
    with pytest.raises(ValueError, match="--md-after-ps"):
        JumpRunConfig(pdb=VILLIN, model=model, md_after_ps=-1.0).validate()
    with pytest.raises(ValueError, match="--context-window: expected 0"):
        JumpRunConfig(pdb=VILLIN, model=model, context_window=1).validate()
    with pytest.raises(ValueError, match="--context-sink: expected a number of frames"):
        JumpRunConfig(pdb=VILLIN, model=model, context_sink=-1).validate()
    summary = run_jumps(JumpRunConfig(pdb=VILLIN, out=str(tmp_path / "t.dcd"), frames=1, stride_ns=0.05, model=model,
                                      relax="none", num_steps=2, fallback_md_steps=5, progress=False, seed=1,
                                      md_after_ps=0.02, ode=True))
    assert summary["statistics"]["md_steps"] == 5  # 0.02 ps / 4 fs
    sampler = {"num_steps": 2, "ode": True, "noise_scale": 0.5, "noise_switch_t": 1.0, "time_spacing": 1.0,
               "context_window": 0, "context_sink": 0}  # the tiny model has no card: GeneratorOptions' fallbacks
    assert summary["sampler"] == sampler
    assert json.loads(Path(summary["sidecar"]).read_text())["sampler"] == sampler
    assert describe_sampler(sampler) == "2 reverse steps, probability-flow ODE; whole history"
    shipped = {**sampler, "num_steps": 50, "ode": False, "noise_scale": 0.25, "noise_switch_t": 0.1, "context_window": 8,
               "context_sink": 1}
    assert describe_sampler(shipped) == ("50 reverse steps, SDE: exact above t = 0.1, noise 0.25 below; "
                                         "context window 8 frames + 1 sink frame(s)")


def test_package_exports_the_openmm_facing_classes():
    import subprocess
    import sys

    code = ("import sys, openmm_starmd as o; assert 'openmm' not in sys.modules, 'import is lazy'; "
            "from openmm_starmd import GeneratorOptions, GateConfig, RelaxConfig, StarMDGenerator, GeneratorStatistics; "
            "print(sorted(o.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for name in ("GeneratorOptions", "GateConfig", "RelaxConfig", "StarMDGenerator", "load_model"):
        assert f"'{name}'" in out
    import openmm_starmd
    from openmm_starmd.openmm.gate import GateConfig
    from openmm_starmd.openmm.generator import GeneratorOptions, StarMDGenerator
    from openmm_starmd.openmm.relax import RelaxConfig

    assert (openmm_starmd.GeneratorOptions, openmm_starmd.GateConfig, openmm_starmd.RelaxConfig,
            openmm_starmd.StarMDGenerator) == (GeneratorOptions, GateConfig, RelaxConfig, StarMDGenerator)
    with pytest.raises(AttributeError, match="no attribute 'GeneratorOption'"):
        openmm_starmd.GeneratorOption  # noqa: B018 (a typo names what is missing)


def test_statistics_print_as_a_short_table():
    from openmm_starmd import GeneratorStatistics

    stats = GeneratorStatistics(jumps=10, fallbacks=2, fallback_md_steps=1000, simulated_ns=1.0, invalid_frames=3,
                                resamples=2, repaired_frames=1)
    stats.wall_s["sample"], stats.wall_s["relax"] = 8.25, 3.0
    lines = str(stats).splitlines()
    assert len(lines) < 15 and "GeneratorStatistics(" not in str(stats)
    table = {line[:29].strip(): line[29:].strip() for line in lines}
    assert table["jumps"] == "10" and table["generated by the model"] == "8"
    assert table["replaced by MD fallback"] == "2 (1000 MD steps)"
    assert table["samples failing the gate"] == "3 (2 resampled)"
    assert table["wall time"] == "11.2 s" and table["sample"] == "8.2 s" and "md" not in table  # phases never run left out
    widths = {len(line) - len(line.lstrip()) for line in lines}
    assert widths <= {0, 2}
