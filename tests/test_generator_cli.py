"""``starmd generate``: the shell face of the Generator."""
from __future__ import annotations

import mdtraj
import pytest
import torch

from generator_helpers import VILLIN, tiny_checkpoint
from openmm_starmd.cli import main
from openmm_starmd.openmm.command import parse_relax, parse_stride_ns

torch.set_num_threads(1)


@pytest.mark.parametrize("text, ns", [("1.25ns", 1.25), ("500ps", 0.5), ("2", 2.0), (" 250 fs", 2.5e-4), ("1e-1ns", 0.1)])
def test_parse_stride(text, ns):
    assert parse_stride_ns(text) == pytest.approx(ns)


def test_parse_errors():
    with pytest.raises(ValueError, match="--stride"):
        parse_stride_ns("1.25nm")
    with pytest.raises(ValueError, match="--relax"):
        parse_relax("anneal")
    assert parse_relax("none") is None and parse_relax("100") == 100 and parse_relax("minimize") == "minimize"


def test_generate_writes_xtc_and_pdb(tmp_path, capsys):
    model = tiny_checkpoint(tmp_path / "tiny.pt")
    out = tmp_path / "traj.xtc"
    rc = main(["generate", VILLIN, "--frames", "2", "--stride", "100ps", "--out", str(out), "--model", model,
               "--num-steps", "2", "--relax", "none", "--fallback-md-steps", "10", "--no-progress", "--seed", "3"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "simulated 0.200 ns" in printed and "MD fallbacks 2" in printed  # a random model fails the gate
    traj = mdtraj.load(str(out), top=str(out.with_suffix(".pdb")))
    assert traj.n_frames == 2 and traj.n_residues == 35
    assert traj.time[1] - traj.time[0] == pytest.approx(100.0)


def test_generate_reports_bad_input(tmp_path, capsys):
    assert main(["generate", str(tmp_path / "missing.pdb"), "--model", "x.pt"]) == 2
    assert "missing.pdb" in capsys.readouterr().err
    assert main(["generate", VILLIN, "--stride=-1ns"]) == 2
    assert main(["generate", VILLIN, "--frames", "-2"]) == 2
