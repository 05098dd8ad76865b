"""benchmarks/rollout_vs_md.py: MD RMSD to the start is zero at the start and the report, JSON and
figure are written for a short rollout."""
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_md_rmsd_to_start_begins_at_zero_on_the_frame_grid():
    from rollout_vs_md import md_rmsd_to_start

    times, rmsd = md_rmsd_to_start(str(ROOT / "md_data" / "trpzip2"))
    assert rmsd[0] < 1e-6 and (rmsd[1:] > 0).all()
    assert np.allclose(np.diff(times), 0.01)  # frames every 10 ps


def test_short_rollout_writes_report_and_figure(tmp_path):
    import rollout_vs_md

    figure = tmp_path / "fig.png"
    rollout_vs_md.main(["--data", str(ROOT / "md_data" / "trpzip2"), "--jumps", "3", "--seeds", "0", "4",
                        "--num-steps", "2", "--out", str(tmp_path), "--figure", str(figure)])
    result = json.loads((tmp_path / "rollout_vs_md.json").read_text())
    assert [r["seed"] for r in result["rollouts"]] == [0, 4]
    assert all(len(r["ca_valid_per_jump"]) == 3 for r in result["rollouts"])
    assert result["weights"].startswith("default (") and "sha256" in result["weights"]
    assert figure.stat().st_size > 10_000
    assert "| 4 |" in (tmp_path / "rollout_vs_md.md").read_text()
