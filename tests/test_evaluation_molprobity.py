"""MolProbity checks through cctbx-base: agreement with cctbx's own code, injected outliers.

cctbx-base cannot be imported into this process (mdtraj is loaded first and cctbx's libstdc++
would crash it), so pytest.importorskip is not usable: availability is checked with
``unavailable_reason()`` (importlib.util.find_spec, no import) and the cctbx-side reference
numbers are computed in a subprocess.
"""
import json
import os
import subprocess
import sys

import mdtraj
import numpy as np
import pytest

from openmm_starmd.evaluation import molprobity
from openmm_starmd.evaluation.molprobity import (
    MolProbityConfig, aa_thresholds, aa_valid, molprobity_scores, unavailable_reason,
)
from openmm_starmd.evaluation.structure import protein_residues
from test_evaluation_data import ROTARAMA_DIR, villin

needs_cctbx = pytest.mark.skipif(
    unavailable_reason() is not None or not os.path.isdir(ROTARAMA_DIR),
    reason=f"needs cctbx-base and the MolProbity rotamer grids in {ROTARAMA_DIR} ($STARMD_ROTARAMA_DIR)",
)
CONFIG = MolProbityConfig(rotarama_dir=ROTARAMA_DIR)

# Scores each PDB with cctbx: ramalyze outliers, and rotamer outliers from cctbx's own χ angles
# (SidechainAngles) on the Top8000 grids, as RotamerEval.evaluate does.
CCTBX_SCRIPT = """
import iotbx.pdb, json, os, sys
from mmtbx.validation.ramalyze import ramalyze
from mmtbx.rotamer.sidechain_angles import SidechainAngles
from mmtbx.rotamer.n_dim_table import NDimTable
grid_dir, paths = sys.argv[1], sys.argv[2:]
stems = dict(phe="phetyr", tyr="phetyr")
tables, angles, out = {}, SidechainAngles(False), []
for path in paths:
    hierarchy = iotbx.pdb.input(path).construct_hierarchy(sort_atoms=False)
    rama = {int(r.resseq): bool(r.is_outlier()) for r in ramalyze(hierarchy, out=None, quiet=True).results}
    rota = {}
    for group in hierarchy.only_model().only_chain().residue_groups():
        residue = group.only_atom_group()
        name = residue.resname.strip().lower()
        grid = os.path.join(grid_dir, "rota8000-%s.data" % stems.get(name, name))
        chis = angles.measureChiAngles(residue)
        if not chis or not os.path.isfile(grid):
            continue
        if grid not in tables:
            tables[grid] = NDimTable.createFromText(grid)
        table = tables[grid]
        rota[int(group.resseq)] = table.valueAt(chis) < 0.003
    out.append([rama, rota])
print(json.dumps(out))
"""


def rotate_chi1(trajectory: mdtraj.Trajectory, frame: int, residue_index: int, chi1_deg: float) -> None:
    """Set χ1 (N-CA-CB-CG*) of one residue in one frame by rotating its side chain beyond CB
    rigidly about the CA-CB axis (bond lengths and angles unchanged)."""
    residue = trajectory.topology.residue(residue_index)
    atoms = {a.name: a.index for a in residue.atoms}
    gamma = next(atoms[n] for n in ("CG", "CG1", "OG", "OG1", "SG") if n in atoms)
    quad = np.array([[atoms["N"], atoms["CA"], atoms["CB"], gamma]])
    current = np.degrees(mdtraj.compute_dihedrals(trajectory[frame], quad, periodic=False))[0, 0]
    backbone = {"N", "H", "CA", "HA", "C", "O", "CB"}
    moving = [a.index for a in residue.atoms if a.name not in backbone]
    xyz = trajectory.xyz[frame].astype(np.float64)
    origin = xyz[atoms["CB"]]
    axis = origin - xyz[atoms["CA"]]
    axis /= np.linalg.norm(axis)
    theta = np.radians(chi1_deg - current)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + np.sin(theta) * k + (1 - np.cos(theta)) * k @ k  # Rodrigues
    xyz[moving] = (xyz[moving] - origin) @ rot.T + origin
    trajectory.xyz[frame] = xyz.astype(np.float32)


def test_unavailable_reason_says_how_to_install(monkeypatch):
    monkeypatch.setattr(molprobity.importlib.util, "find_spec", lambda name: None)
    reason = unavailable_reason()
    assert "cctbx-base" in reason and "pip install cctbx-base" in reason
    with pytest.raises(RuntimeError, match="pip install cctbx-base"):
        molprobity_scores(villin(), protein_residues(villin().topology), source="villin.pdb")


def test_config_validation():
    with pytest.raises(ValueError, match="percentile"):
        MolProbityConfig(percentile=0).validate()
    with pytest.raises(ValueError, match="rotarama_dir"):
        MolProbityConfig(rotarama_dir="/no/such/dir").validate()


@needs_cctbx
def test_outliers_match_cctbx_ramalyze_and_sidechain_angles(tmp_path):
    rng = np.random.default_rng(5)
    base = villin()
    F = 3
    # 0.2 Å noise: some Ramachandran and rotamer outliers, and some peptide bonds stretched past
    # MolProbity's 2.0 Å link cutoff (those residues are skipped by both sides)
    xyz = base.xyz + rng.normal(size=(F,) + base.xyz.shape[1:]).astype(np.float32) * 0.02
    trajectory = mdtraj.Trajectory(xyz, base.topology)
    paths = [str(tmp_path / f"frame{f}.pdb") for f in range(F)]
    for f, path in enumerate(paths):
        trajectory[f].save_pdb(path)
    proc = subprocess.run([sys.executable, "-c", CCTBX_SCRIPT, ROTARAMA_DIR, *paths], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    expected = json.loads(proc.stdout)
    residues = protein_residues(trajectory.topology)
    scores = molprobity_scores(trajectory, residues, CONFIG)
    number = {label: int(label.split(":")[0][3:]) for label in residues.labels}
    compared = {"rama": 0, "rotamer": 0}
    for f in range(F):
        rama, rota = expected[f]
        evaluated = {str(number[label]) for j, label in enumerate(scores.rama_labels) if scores.rama_evaluated[f, j]}
        assert evaluated == set(rama)
        for j, label in enumerate(scores.rama_labels):
            if scores.rama_evaluated[f, j]:
                assert bool(scores.rama_outlier[f, j]) == rama[str(number[label])], (f, label)
                compared["rama"] += 1
        for j, label in enumerate(scores.rotamer_labels):
            assert bool(scores.rotamer_outlier[f, j]) == rota[str(number[label])], (f, label)
            compared["rotamer"] += 1
    assert compared["rotamer"] == F * 24 and F * 30 <= compared["rama"] < F * 33
    assert 0 < scores.rama_outlier.sum() < scores.rama_outlier.size  # both kinds were compared
    assert 0 < scores.rotamer_outlier.sum() < scores.rotamer_outlier.size


@needs_cctbx
def test_injected_rotamer_outliers_lower_aa_validity_by_their_fraction():
    base = villin()
    F = 9
    trajectory = mdtraj.join([base] * F)
    residues = protein_residues(base.topology)
    # χ1 = 0° (eclipsed) is forbidden for every side chain: a rotamer outlier.
    targets = [residues.labels.index(label) for label in ("PHE10:0", "MET12:0", "LEU20:0")]
    bad_frames = [1, 4, 7]
    for f in bad_frames:
        for i in targets:
            rotate_chi1(trajectory, f, int(residues.residue_indices[i]), 0.0)
    scores = molprobity_scores(trajectory, residues, CONFIG)
    n_scored = len(scores.rotamer_labels)
    expected = np.zeros(F)
    expected[bad_frames] = 3 / n_scored
    np.testing.assert_allclose(scores.rotamer_rate, expected)
    np.testing.assert_array_equal(scores.rama_rate, 0.0)  # backbone untouched
    clean = [f for f in range(F) if f not in bad_frames]
    reference = molprobity.MolProbityScores(
        scores.rama_outlier[clean], scores.rama_evaluated[clean], scores.rotamer_outlier[clean],
        scores.rama_labels, scores.rotamer_labels,
    )
    thresholds = aa_thresholds(reference, CONFIG)  # 99th percentile of the clean frames: 0
    assert thresholds == (0.0, 0.0)
    valid = aa_valid(scores, *thresholds)
    assert valid.mean() == pytest.approx(1 - 3 / 9)
    assert not valid[bad_frames].any()


@needs_cctbx
def test_residues_without_grids_or_termini_are_reported_and_degenerate_ones_are_outliers():
    base = villin()
    trajectory = mdtraj.join([base] * 2)
    residues = protein_residues(base.topology)
    phe10 = residues.residue_indices[residues.labels.index("PHE10:0")]
    side = [a.index for a in base.topology.residue(int(phe10)).atoms if a.name in ("CB", "CG", "CD1")]
    trajectory.xyz[1, side] = trajectory.xyz[1, side[0]]  # collapsed side chain: χ undefined (NaN)
    scores = molprobity_scores(trajectory, residues, CONFIG)
    column = scores.rotamer_labels.index("PHE10:0")
    np.testing.assert_array_equal(scores.rotamer_outlier[:, column], [False, True])  # outlier, not a crash
    assert scores.rotamer_outlier[1].sum() == 1
    reasons = scores.not_evaluated
    assert "rota8000-arg.data" in reasons["ARG14:0"] and "rota8000-lys.data" in reasons["LYS7:0"]
    assert "terminus" in reasons["LEU1:0"] and "terminus" in reasons["PHE35:0"]
    assert "ARG14:0" not in scores.rotamer_labels and len(scores.rotamer_labels) == 24
    # Cα-only input: nothing can be scored, and the reasons say which atoms are missing
    ca_only = base.atom_slice(base.topology.select("name CA"))
    empty = molprobity_scores(ca_only, protein_residues(ca_only.topology), CONFIG)
    assert empty.rama_outlier.shape == (1, 0) and empty.rotamer_outlier.shape == (1, 0)  # no worker started
    assert "missing" in empty.not_evaluated["SER2:0"]


def test_percentile_thresholds_accept_that_share_of_reference_frames():
    rates = np.arange(200) / 1000.0  # 200 distinct per-frame rates
    flags = np.zeros((200, 1000), dtype=bool)
    for f, r in enumerate(rates):
        flags[f, : int(round(r * 1000))] = True
    scores = molprobity.MolProbityScores(flags, np.ones_like(flags), flags, ["x"] * 1000, ["x"] * 1000)
    rama_max, rot_max = aa_thresholds(scores, MolProbityConfig(percentile=99.0))
    assert aa_valid(scores, rama_max, rot_max).mean() == pytest.approx(0.99)
    fixed = aa_thresholds(scores, MolProbityConfig(max_rama_outlier_rate=0.05, max_rotamer_outlier_rate=0.1))
    assert fixed == (0.05, 0.1)

