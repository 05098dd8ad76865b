"""Report files and the ``starmd evaluate`` command, including its errors for bad input."""
import json
from html.parser import HTMLParser

import matplotlib.image
import mdtraj
import numpy as np
import pytest

from openmm_starmd.cli import main
from openmm_starmd.evaluation.evaluator import EvaluationConfig, evaluate
from openmm_starmd.evaluation.molprobity import MolProbityConfig
from openmm_starmd.evaluation.report import PLOTS, write_report
from test_evaluation_data import VILLIN_PDB, ar1, move_ca, one_blas_thread, villin

REQUIRED = {
    "validity": ("ca", "aa", "ca_aa"),
    "coverage": ("jsd", "recall"),
    "dynamics": ("rmsd_lag", "autocorr", "vamp2", "tica"),
}


@pytest.fixture(autouse=True)
def _single_threaded_blas():
    with one_blas_thread():
        yield


@pytest.fixture(scope="module")
def trajectories():
    base = villin()
    rng = np.random.default_rng(0)
    reference = move_ca(base, ar1(rng, 121, (35, 3), 0.9, 0.003))
    generated = move_ca(base, ar1(rng, 47, (35, 3), 0.7, 0.004))
    for f in (5, 6, 30):  # a few broken frames, so the plots show invalid frames
        generated.xyz[f] *= 1.2
    return reference, generated


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources, self.links = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.sources.append(attrs["src"])
        if tag == "a":
            self.links.append(attrs["href"])


def strict_json(path):
    def reject(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(path.read_text(), parse_constant=reject)


def check_report_dir(out):
    metrics = strict_json(out / "metrics.json")
    for section, keys in REQUIRED.items():
        for key in keys:
            assert key in metrics[section], f"{section}.{key}"
    parser = _Images()
    parser.feed((out / "report.html").read_text())
    assert sorted(parser.sources) == sorted(PLOTS.values())
    assert "metrics.json" in parser.links
    for name in PLOTS.values():
        image = matplotlib.image.imread(out / name)
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
        assert image[..., :3].std() > 0.01  # not blank
    return metrics


def test_write_report_files_open_and_are_referenced(trajectories, tmp_path):
    reference, generated = trajectories
    config = EvaluationConfig(frame_interval_ns=0.5, molprobity=MolProbityConfig(enabled=False))
    metrics = evaluate(reference, generated, config)
    written = write_report(metrics, tmp_path / "report")
    assert set(written) == {"metrics", "html", *PLOTS}
    saved = check_report_dir(tmp_path / "report")
    assert saved["validity"]["ca"] == pytest.approx(44 / 47)
    assert saved["dynamics"]["lag_ns"][0] == 0.5


def test_cli_writes_metrics_and_report(trajectories, tmp_path, capsys):
    reference, generated = trajectories
    top = tmp_path / "top.pdb"
    reference[0].save_pdb(str(top))
    reference.save_dcd(str(tmp_path / "ref.dcd"))
    generated.save_xtc(str(tmp_path / "gen.xtc"))
    out = tmp_path / "out"
    rc = main([
        "evaluate", "--reference", str(tmp_path / "ref.dcd"), "--generated", str(tmp_path / "gen.xtc"),
        "--topology", str(top), "--out", str(out), "--no-molprobity", "--lags", "1,2,4,8", "--pcs", "11",
    ])
    assert rc == 0
    metrics = check_report_dir(out)
    assert metrics["dynamics"]["lags"] == [1, 2, 4, 8] and metrics["dynamics"]["n_pcs"] == 11
    assert metrics["inputs"]["generated"] == str(tmp_path / "gen.xtc")
    printed = capsys.readouterr().out
    assert "validity CA" in printed and "report.html" in printed


@pytest.fixture(scope="module")
def files(tmp_path_factory, trajectories):
    reference, generated = trajectories
    d = tmp_path_factory.mktemp("bad")
    reference[0].save_pdb(str(d / "top.pdb"))
    reference[:21].save_dcd(str(d / "ref.dcd"))
    generated.save_dcd(str(d / "gen.dcd"))
    full = mdtraj.load(VILLIN_PDB)
    water = full.atom_slice(full.topology.select("water")[:90])
    water.save_pdb(str(d / "water.pdb"))
    (d / "empty.xtc").write_bytes(b"")
    return d


@pytest.mark.parametrize(
    "case, expected",
    [
        ("topology_mismatch", r"gen\.dcd: cannot read this trajectory with topology .*water\.pdb"),
        ("zero_frames", r"empty\.xtc: the trajectory file is empty \(zero frames\)"),
        ("short_reference", r"ref\.dcd: 21 frames is shorter than the largest lag 40"),
        ("not_protein", r"water\.pdb: expected a protein"),
        ("missing_file", r"nothere\.dcd: trajectory file not found"),
    ],
)
def test_cli_bad_input_names_the_file(files, case, expected, capsys):
    d = files
    args = {
        "topology_mismatch": ["--reference", d / "ref.dcd", "--generated", d / "gen.dcd", "--topology", d / "water.pdb",
                              "--reference-topology", d / "top.pdb"],
        "zero_frames": ["--reference", d / "ref.dcd", "--generated", d / "empty.xtc", "--topology", d / "top.pdb"],
        "short_reference": ["--reference", d / "ref.dcd", "--generated", d / "gen.dcd", "--topology", d / "top.pdb",
                            "--lags", "1,40"],
        "not_protein": ["--reference", d / "water.pdb", "--generated", d / "gen.dcd", "--topology", d / "top.pdb",
                        "--reference-topology", d / "water.pdb"],
        "missing_file": ["--reference", d / "nothere.dcd", "--generated", d / "gen.dcd", "--topology", d / "top.pdb"],
    }[case]
    rc = main(["evaluate", *map(str, args), "--out", str(d / "out"), "--no-molprobity"])
    assert rc == 2
    err = capsys.readouterr().err
    assert __import__("re").search(expected, err), err


def test_cli_rejects_bad_lag_lists(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--reference", "r", "--generated", "g", "--out", "o", "--lags", "1,x"])
    assert "comma-separated integer" in capsys.readouterr().err


def test_few_frames_warn_and_say_the_minimum(trajectories, tmp_path, capsys):
    """14 frames against the same 14: every curve is identical, the differences are exactly 0, and the
    metrics resting on too few frames or pairs are named with the minimum they need."""
    from openmm_starmd.evaluation.sample_size import MIN_PAIRS_PER_PC, SampleSizeWarning

    reference = trajectories[0][:14]
    config = EvaluationConfig(frame_interval_ns=0.1, molprobity=MolProbityConfig(enabled=False))
    with pytest.warns(SampleSizeWarning) as record:
        metrics = evaluate(reference, reference, config)
    assert {w.filename for w in record} == {__file__}
    notes = metrics["warnings"]
    assert [str(w.message) for w in record] == notes
    k, largest = metrics["dynamics"]["n_pcs"], max(metrics["dynamics"]["lags"])
    assert any(n.startswith("coverage") and "over 100 bins" in n and "at least 100 frames" in n for n in notes)
    assert any(f"rest on {14 - largest} lagged pairs for {k} PCs" in n and f"at least {MIN_PAIRS_PER_PC * k}" in n
               for n in notes)
    assert any(n.startswith("tICA correlation not computed at lag(s) 1, 5, 10, 20: fewer than 30") for n in notes)
    for key in ("autocorr", "vamp2"):
        assert metrics["dynamics"][key]["mean_abs_diff"] == 0.0
    assert metrics["dynamics"]["rmsd_lag"]["mean_abs_diff_nm"] == 0.0
    assert all(len(repr(t)) <= 6 for t in metrics["dynamics"]["lag_ns"]), metrics["dynamics"]["lag_ns"]  # 0.3, not 0.30000000000000004

    top = tmp_path / "top.pdb"
    reference[0].save_pdb(str(top))
    reference.save_dcd(str(tmp_path / "ref.dcd"))
    rc = main(["evaluate", "--reference", str(tmp_path / "ref.dcd"), "--generated", str(tmp_path / "ref.dcd"),
               "--topology", str(top), "--out", str(tmp_path / "out"), "--no-molprobity", "--frame-interval-ns", "0.1"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "starmd: warning: coverage (JSD, recall) rests on 14 reference" in err and ".py:" not in err
    html_text = (tmp_path / "out" / "report.html").read_text()
    assert "Too few frames for some metrics" in html_text and "0.30000000000000004" not in html_text


def test_enough_frames_give_no_sample_size_warning():
    from openmm_starmd.evaluation.sample_size import sample_size_warnings

    assert sample_size_warnings(2000, 2000, 2000, (1, 10, 100), 32, 10, 2, (1, 5), (0.9, 0.8), 30) == []
