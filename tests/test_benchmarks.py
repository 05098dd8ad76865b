"""Pure helpers of the benchmark scripts (benchmarks/*.py): known answers, no timing assertions."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import generator_vs_md  # noqa: E402
import paper_protocol  # noqa: E402
import paper_protocol_table as table  # noqa: E402
import scaling  # noqa: E402

TRP_CAGE = ROOT / "md_data" / "trp_cage"


def test_loglog_slope_recovers_power_law_exponent():
    x = np.array([7.0, 13.0, 29.0, 61.0, 250.0])
    assert scaling.loglog_slope(x, 3.0 * x**1.7) == pytest.approx(1.7, abs=1e-12)
    with pytest.raises(ValueError, match="positive"):
        scaling.loglog_slope([1.0, 2.0], [0.0, 1.0])


def test_context_slope_is_one_for_constant_plus_linear_cost():
    L = np.array([1, 11, 33, 101, 1001])
    assert scaling.context_slope(L, 0.37 + 0.0021 * L) == pytest.approx(1.0, abs=1e-9)
    assert scaling.context_slope(L[::-1], (0.37 + 0.0021 * (L - 1) ** 2)[::-1]) == pytest.approx(2.0, abs=1e-9)


def test_ns_per_day_and_phase_means():
    assert generator_vs_md.ns_per_day(1.25, 86400.0) == pytest.approx(1.25)
    assert generator_vs_md.ns_per_day(0.5, 3.0) == pytest.approx(14400.0)
    with pytest.raises(ValueError, match="wall_s"):
        generator_vs_md.ns_per_day(1.0, 0.0)
    before = {"sample": 1.0, "relax": 0.5}
    after = {"sample": 4.0, "relax": 0.5 + 9.0}
    assert generator_vs_md.phase_seconds_per_jump(before, after, 3) == pytest.approx({"sample": 1.0, "relax": 3.0})


def test_valid_frame_ns_counts_only_gate_passing_model_frames():
    # real gate: every interval that was not an MD fallback passed it; a fallback interval counts 0 ns
    assert generator_vs_md.valid_frame_ns(0.05, jumps=4, fallbacks=3, real_gate_valid=0, real_gate=True) == pytest.approx(0.05)
    # gate opened: only the frames the real gate would have accepted count
    assert generator_vs_md.valid_frame_ns(1.25, jumps=4, fallbacks=0, real_gate_valid=1, real_gate=False) == pytest.approx(1.25)
    assert generator_vs_md.valid_frame_ns(1.25, jumps=4, fallbacks=4, real_gate_valid=0, real_gate=True) == 0.0


def test_parse_run():
    spec = paper_protocol.parse_run("0.01:100:0,1,2")
    assert (spec.stride_ns, spec.jumps, spec.seeds) == (0.01, 100, (0, 1, 2))
    for bad in ("0.01:100", "x:100:0", "0:100:0", "0.01:1:0"):
        with pytest.raises(argparse.ArgumentTypeError):
            paper_protocol.parse_run(bad)


def test_aggregate_mean_and_sample_std_skip_missing():
    rows = [{"jsd": 0.3, "ca": 0.5, "tica": None}, {"jsd": 0.5, "ca": 0.7, "tica": 0.2}, {"jsd": 0.7, "ca": 0.9}]
    agg = table.aggregate(rows)
    assert agg["jsd"][0] == pytest.approx(0.5) and agg["jsd"][1] == pytest.approx(0.2) and agg["jsd"][2] == 3
    assert agg["tica"] == (0.2, None, 1)
    assert agg["vamp2"] == (None, None, 0)
    text = table.markdown_table([("model A", agg)])
    assert "| model A | 0.50 ± 0.20 |" in text and "70.00 ± 20.00" in text and "| – |" in text


@pytest.mark.skipif(not (TRP_CAGE / "trp_cage.pdb").is_file(), reason="Trp-cage MD not in this checkout")
def test_heavy_atom_rebuild_reproduces_md_frames():
    """Frames + torsions taken from MD frames and rebuilt give back those frames' heavy atoms."""
    import mdtraj

    from openmm_starmd.openmm.coarse_grain import map_topology
    from openmm_starmd.openmm.rebuild import coarse_grain

    first = sorted(TRP_CAGE.glob("trp_cage_R1_c*.xtc"))[0]
    reference = mdtraj.load(str(first), top=str(TRP_CAGE / "trp_cage.pdb"))[:5]
    pmap = map_topology(reference.topology.to_openmm(), reference.xyz[0])
    frames = [coarse_grain(pmap, reference.xyz[k]) for k in range(reference.n_frames)]
    rollout = {key: np.stack([getattr(f, key).numpy() for f in frames]) for key in ("rots", "trans", "torsions")}
    rebuilt = paper_protocol.heavy_atom_trajectory(reference, rollout, 10.0)
    assert rebuilt.n_atoms == reference.n_atoms and rebuilt.n_frames == 5
    assert np.allclose(rebuilt.time, [10.0, 20.0, 30.0, 40.0, 50.0])
    err = np.linalg.norm(rebuilt.xyz - reference.xyz, axis=-1)  # [F, A] nm
    assert err[0].max() < 2e-3  # the geometry source itself: exact up to float32
    ca = [a.index for a in reference.topology.atoms if a.name == "CA"]
    assert err[:, ca].max() < 1e-3  # CA is the frame origin
    backbone = [a.index for a in reference.topology.atoms if a.name in ("N", "CA", "C")]
    assert err[:, backbone].max() < 0.05  # N and C: frame 0 bond geometry placed in each frame own backbone frame
    assert err.mean() < 0.03  # side chains: frame 0's bond lengths/angles with each frame's own torsions


def test_plots_write_pngs(tmp_path):
    """The lag-curve and rate plots write readable PNG files."""
    import matplotlib.image

    lags = [1, 2, 5]
    dyn = {"lags": lags, "rmsd_lag": {"reference_nm": [0.1, 0.2, 0.3], "generated_nm": [0.2, 0.2, 0.2]},
           "autocorr": {"reference": [0.9, 0.7, 0.3], "generated": [0.1, 0.0, 0.0]},
           "vamp2": {"reference": [3.0, 2.0, 1.0], "generated": [1.0, 1.0, 0.5]}}
    table.plot_curves({"reference (R1)": dyn, "model": dyn}, tmp_path / "a.png", 0.01)
    table.plot_rates({"model": (np.zeros(7), np.full(7, 0.1))}, tmp_path / "b.png", 0.01)
    for name in ("a.png", "b.png"):
        assert matplotlib.image.imread(tmp_path / name).ndim == 3


def _untrained_template_start(tmp_path) -> Path:
    """An untrained ``tiny_v2`` checkpoint at ``tmp_path/m.pt`` (it returns its context frame) and a
    data root with a smooth villin trajectory; returns the data root."""
    import torch

    import openmm.app
    from openmm_starmd.model import StarMDCore
    from openmm_starmd.model.checkpoint import save_checkpoint
    from openmm_starmd.model.config import tiny_v2
    from test_training import _smooth_villin

    villin = Path(openmm.app.__file__).parent / "data" / "test.pdb"
    data = _smooth_villin(tmp_path / "data" / "villin", str(villin)).parent
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m.pt", tiny_v2(), StarMDCore(tiny_v2()).net.state_dict())
    return data


def test_denoiser_accuracy_of_an_untrained_template_start_is_the_md_motion(tmp_path):
    """An untrained template-start network returns its context frame whatever the noise, so the
    measured x̂₀ error is the MD motion over the lag at every t and the input error grows with t."""
    import json

    import denoiser_accuracy

    data = _untrained_template_start(tmp_path)
    out = tmp_path / "acc"
    assert denoiser_accuracy.main(["--model", str(tmp_path / "m.pt"), "--data", str(data), "--systems", "villin",
                                   "--lag-ns", "0.1", "--starts", "3", "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["systems"]["villin"]
    x0 = [r["x0_rmsd_angstrom"] for r in rows]
    assert max(x0) - min(x0) < 1e-3 and 0.05 < x0[0] < 3.0  # the context frame's distance to the target, every t
    inputs = [r["input_rmsd_angstrom"] for r in rows]
    assert inputs == sorted(inputs) and inputs[-1] > 10 * inputs[0]
    bond_errors = [r["bond_error_angstrom"] for r in rows]
    assert max(bond_errors) - min(bond_errors) < 1e-4  # the context frame's chain, every t
    assert "| villin | 0.01 |" in out.with_suffix(".md").read_text()


def test_sampler_sweep_refuses_validation_systems(tmp_path):
    """The sampler is chosen on training proteins; naming a validation protein stops before any work."""
    import sampler_sweep

    data = Path(__file__).resolve().parents[1] / "md_data"
    with pytest.raises(SystemExit, match="validation systems"):
        sampler_sweep.main(["--model", "default", "--data", str(data), "--systems", "trp_cage", "villin",
                            "--out", str(tmp_path / "sweep")])
    assert not (tmp_path / "sweep.json").exists()


def test_sampler_sweep_of_an_untrained_template_start_reports_no_motion(tmp_path):
    """An untrained template-start network returns its context frame, so every jump is ~0 Å and its
    ratio to the MD motion at the same lag is ~0, while the MD reference itself is positive."""
    import json

    import sampler_sweep
    from openmm_starmd.training.validation import _md_lag_rmsd_nm, _systems

    data = _untrained_template_start(tmp_path)
    out = tmp_path / "sweep"
    assert sampler_sweep.main(["--model", str(tmp_path / "m.pt"), "--data", str(data), "--systems", "villin",
                               "--settings", "3:0.5", "3:1:2", "3:0.25:1:0.5", "--stride-ns", "0.01", "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert _md_lag_rmsd_nm(_systems(str(data), ["villin"])["villin"], 0.01) > 0.005  # nm
    assert [(r["noise_scale"], r["time_spacing"], r["noise_switch_t"]) for r in rows] == [(0.5, 1.0, 1.0), (1.0, 2.0, 1.0),
                                                                                            (0.25, 1.0, 0.5)]
    for row in rows:
        assert row["frames"] == 4 and row["jump_rmsd_angstrom"] < 0.01
        assert row["rmsd_ratio_systems"] == 1 and row["rmsd_ratio_median"] < 0.01
    table = out.with_suffix(".md").read_text()
    assert "| 3 | 0.5 | 1 | — | 4 |" in table and "| 3 | 1 | 2 | — | 4 |" in table and "| 3 | 0.25 | 1 | 0.5 | 4 |" in table


def test_stride_response_of_an_untrained_template_start_is_no_motion_at_every_stride(tmp_path):
    """An untrained template-start network returns its context frame, so the first jump and the
    later ones move ~0 Å at every stride and sampler, the samples are as valid as the start, and the
    MD column is there only where the MD (31 frames of 10 ps) is longer than the lag."""
    import json

    import stride_response
    from openmm_starmd.evaluation.validity import ca_valid
    from openmm_starmd.training.validation import _systems

    data = _untrained_template_start(tmp_path)
    out = tmp_path / "strides"
    assert stride_response.main(["--model", str(tmp_path / "m.pt"), "--data", str(data), "--systems", "villin",
                                 "--strides", "0.01", "1.25", "--settings", "3:0.5", "3:1:2:0.5", "--replicas", "2",
                                 "--jumps", "2", "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [(r["noise_scale"], r["stride_ns"]) for r in rows] == [(0.5, 0.01), (0.5, 1.25), (1.0, 0.01), (1.0, 1.25)]
    start = _systems(str(data), ["villin"])["villin"][0].trans[15]
    for row in rows:  # the samples are the start frame, so they are exactly as valid as it is
        assert row["frame"] == 15 and row["replicas"] == 2 and row["jumps"] == 2
        assert row["first_jump_rmsd_angstrom"] < 0.01 and row["later_jump_rmsd_angstrom"] < 0.01
        assert row["ca_valid"] == float(ca_valid(start[None].astype(np.float64))[0])
    assert all(r["md_lag_rmsd_angstrom"] > 0.05 for r in rows if r["stride_ns"] == 0.01)
    assert all(r["md_lag_rmsd_angstrom"] is None for r in rows if r["stride_ns"] == 1.25)
    assert [r["noise_switch_t"] for r in rows] == [1.0, 1.0, 0.5, 0.5]
    assert "| villin | 35 | 3:0.5:1 | 0.01 |" in out.with_suffix(".md").read_text()
    assert "| villin | 35 | 3:1:2:0.5 | 0.01 |" in out.with_suffix(".md").read_text()
    with pytest.raises(SystemExit):
        stride_response.main(["--model", str(tmp_path / "m.pt"), "--data", str(data), "--systems", "villin",
                              "--settings", "3", "--out", str(out)])
    with pytest.raises(SystemExit):  # five fields
        stride_response.main(["--model", str(tmp_path / "m.pt"), "--data", str(data), "--systems", "villin",
                              "--settings", "3:1:2:0.5:7", "--out", str(out)])


def test_a_sampler_setting_reads_back_from_its_label_and_names_the_ode():
    from reports import parse_setting, setting_label

    assert parse_setting("50:0.25") == (50, 0.25, 1.0, 1.0, False)
    assert parse_setting("50:0.25:1:0.1") == (50, 0.25, 1.0, 0.1, False)
    assert parse_setting("50:ode") == (50, 0.0, 1.0, 1.0, True) == parse_setting("50:ODE:1")
    for text in ("50:0.25:1:0.1", "200:1:2", "50:ode:1"):
        assert setting_label(*parse_setting(text)) == text
    with pytest.raises(ValueError):
        parse_setting("50:sde")


def test_write_report_keeps_a_dot_in_the_name(tmp_path):
    import json

    from reports import write_report

    text = write_report(tmp_path / "sweep_1.25ns", {"a": 1}, "Title", "x.py", ["--out", "sweep_1.25ns"], ["h1", "h2"], [["1", "2"]])
    assert json.loads((tmp_path / "sweep_1.25ns.json").read_text()) == {"a": 1}
    assert (tmp_path / "sweep_1.25ns.md").read_text() == text and "| 1 | 2 |" in text
    write_report(tmp_path / "other.json", {}, "T", "x.py", [], ["h"], [])
    assert (tmp_path / "other.json").is_file() and (tmp_path / "other.md").is_file()


def _validation_report(seed, valid: dict) -> dict:
    settings = {"jumps": 20, "num_steps": 50, "noise_scale": 0.25, "time_spacing": 1.0, "seed": seed, "strides_ns": [0.1]}
    return {"settings": settings, "systems": [{"system": s, "stride_ns": 0.1, "ca_valid": v} for s, v in valid.items()]}


def test_validation_compare_pools_seeds_and_pairs_systems(tmp_path):
    import json

    import validation_compare

    a = [_validation_report(0, {"x": 0.5, "y": 1.0, "z": 0.7}), _validation_report(10, {"x": 0.7, "y": 0.8, "z": 0.9})]
    b = [_validation_report(0, {"x": 0.9, "y": 1.0, "z": 0.8}), _validation_report(10, {"x": 0.7, "y": 1.0, "z": 1.0})]
    r = validation_compare.compare(a, b)["0.1ns"]
    assert r["a"]["ca_valid"] == pytest.approx(0.766666, abs=1e-5) and r["a"]["cells"] == 6
    assert r["a"]["se"] == pytest.approx(np.std([0.5, 1.0, 0.7, 0.7, 0.8, 0.9], ddof=1) / np.sqrt(6))
    diffs = [0.8 - 0.6, 1.0 - 0.9, 0.9 - 0.8]  # per system, seeds averaged first
    assert r["difference"] == pytest.approx(np.mean(diffs)) and r["systems"] == 3
    assert r["difference_se"] == pytest.approx(np.std(diffs, ddof=1) / np.sqrt(3))
    with pytest.raises(ValueError, match="same seed"):
        validation_compare.compare([a[0], a[0]], b)
    other = _validation_report(20, {"x": 1.0})
    other["settings"]["noise_scale"] = 1.0
    with pytest.raises(ValueError, match="differ in more than the seed"):
        validation_compare.compare([a[0], other], b)
    ode = [json.loads(json.dumps(rep)) for rep in a]
    for rep, noise in zip(ode, (0.5, 0.25)):  # the ODE does not use the SDE's noise settings
        rep["settings"].update(sampler="ode", noise_scale=noise)
    assert validation_compare.compare(ode, b)["0.1ns"]["a"]["cells"] == 6
    paths = []
    for k, rep in enumerate(a + b):
        paths.append(tmp_path / f"r{k}.json")
        paths[-1].write_text(json.dumps(rep))
    validation_compare.main(["--a", *map(str, paths[:2]), "--b", *map(str, paths[2:]), "--out", str(tmp_path / "cmp")])
    assert "+13.3 ± 3.3" in (tmp_path / "cmp.md").read_text()
    assert r["a"]["invalid_by"] is None  # reports without the failure causes


def test_validation_compare_pools_the_failure_causes():
    import validation_compare

    reports = [_validation_report(0, {"x": 0.5, "y": 1.0}), _validation_report(10, {"x": 0.7, "y": 0.9})]
    for rep, (bo, co) in zip(reports, ((0.1, 0.4), (0.3, 0.0))):
        for row in rep["systems"]:
            row["invalid_by"] = {"break_only": bo, "clash_only": co, "both": 0.0, "clash_pairs_local": 1,
                                 "clash_pairs_long_range": 2}
    c = validation_compare.compare(reports, reports)["0.1ns"]["a"]["invalid_by"]
    assert c["break_only"] == pytest.approx(0.2) and c["clash_only"] == pytest.approx(0.2)
    assert c["clash_pairs_local"] == 4 and c["clash_pairs_long_range"] == 8
    assert validation_compare._causes_cell(c) == "20.0 / 20.0 / 0.0 (4 / 8)"


def test_context_mobility_of_an_untrained_template_start_is_no_motion_after_any_context(tmp_path):
    """An untrained template-start network returns the last frame of its context, so the jump is
    ~0 Å after the moving MD history, the frozen one and the frame alone, while the history itself
    moves; a stride longer than the MD (31 frames of 10 ps) is skipped."""
    import json

    import context_mobility

    data = _untrained_template_start(tmp_path)
    out = tmp_path / "mobility"
    assert context_mobility.main(["--model", str(tmp_path / "m.pt"), "--data", str(data), "--systems", "villin",
                                  "--strides", "0.02", "1.25", "--history", "3", "--starts", "2", "--replicas", "2",
                                  "--num-steps", "3", "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [r["stride_ns"] for r in rows] == [0.02]
    row = rows[0]
    assert row["history_frames"] == 3 and row["replicas"] == 2 and len(row["start_frames"]) == 2
    assert row["history_step_rmsd_angstrom"] > 0.05
    for context in context_mobility.CONTEXTS:
        assert row[f"jump_{context}_angstrom"] < 0.01
    assert "| villin | 35 | 0.02 | 3 |" in out.with_suffix(".md").read_text()
    with pytest.raises(SystemExit):
        context_mobility.main(["--model", str(tmp_path / "m.pt"), "--data", str(data), "--systems", "villin",
                               "--history", "0", "--out", str(out)])


def test_jump_by_diffusion_time_of_an_untrained_template_start_is_no_motion_from_any_start(tmp_path):
    """An untrained template-start network returns its context frame from any noisy input, so the
    final frame is the context frame whatever t* the reverse process starts from: jump ~0 Å and the
    distance to the truth is MD's own jump, which is positive."""
    import json

    import jump_by_diffusion_time

    data = _untrained_template_start(tmp_path)
    out = tmp_path / "jumps"
    assert jump_by_diffusion_time.main(["--model", str(tmp_path / "m.pt"), "--data", str(data), "--systems", "villin",
                                        "--lag-ns", "0.05", "--starts", "2", "--context", "2", "--repeats", "1",
                                        "--num-steps", "6", "--t-star", "1", "0.3", "--out", str(out)]) == 0
    report = json.loads(out.with_suffix(".json").read_text())["systems"]["villin"]
    assert report["md_jump_angstrom"] > 0.05 and report["frames"] == 2
    assert [r["t_star"] for r in report["rows"]] == [1.0, 0.3]
    assert report["rows"][0]["start_t"] == 1.0 and report["rows"][1]["start_t"] <= 0.3 + 1e-6
    for row in report["rows"]:
        assert row["jump_angstrom"] < 0.01 and row["jump_ratio"] < 0.01
        assert abs(row["to_truth_angstrom"] - report["md_jump_angstrom"]) < 0.01
    assert "| villin |" in out.with_suffix(".md").read_text()
