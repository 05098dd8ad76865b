"""Cα validity: known clash/break counts, paper thresholds, injected failures on villin."""
import mdtraj
import numpy as np
import pytest

from openmm_starmd.evaluation.structure import protein_residues
from openmm_starmd.evaluation.validity import (
    BREAK_DISTANCE_NM, CLASH_DISTANCE_NM, MAX_BREAK_RATE, MAX_CLASH_RATE, CaValidityConfig,
    ca_clash_break_rates, ca_valid,
)
from openmm_starmd.units import ANGSTROM_PER_NM
from test_evaluation_data import ca_indices, villin

SPACING_NM = 3.8 / ANGSTROM_PER_NM


def straight_chain(n: int) -> np.ndarray:
    """[N, 3] Cα positions on a line, 3.8 Å apart: no clash (non-neighbours >= 7.6 Å), no break."""
    ca = np.zeros((n, 3))
    ca[:, 0] = np.arange(n) * SPACING_NM
    return ca


def test_thresholds_are_the_papers_in_nm():
    assert CLASH_DISTANCE_NM * ANGSTROM_PER_NM == pytest.approx(3.0)
    assert BREAK_DISTANCE_NM * ANGSTROM_PER_NM == pytest.approx(4.19)
    assert MAX_CLASH_RATE == pytest.approx(0.0129)
    assert MAX_BREAK_RATE == pytest.approx(0.002)


def test_known_clash_and_break_counts():
    N = 7  # 21 pairs, 6 neighbour pairs
    frames = np.stack([straight_chain(N)] * 3)  # [F=3, N, 3]
    # frame 1: residue 6 folded back to 2.5 Å beside residue 0 -> exactly one clash (0, 6);
    # its distance to residue 5 becomes a break.
    frames[1, 6] = frames[1, 0] + np.array([0.0, 0.25, 0.0])
    # frame 2: the bond 3-4 stretched to 5.0 Å, the rest of the chain shifted with it -> one break.
    frames[2, 4:, 0] += (5.0 - 3.8) / ANGSTROM_PER_NM
    clash, brk = ca_clash_break_rates(frames)
    np.testing.assert_allclose(clash, [0.0, 1 / 21, 0.0])
    np.testing.assert_allclose(brk, [0.0, 1 / 6, 1 / 6])
    np.testing.assert_array_equal(ca_valid(frames), [True, False, False])


def test_distances_just_inside_and_outside_the_cutoffs():
    N = 5
    ca = straight_chain(N)
    eps = 1e-4
    for bond_nm, broken in ((BREAK_DISTANCE_NM - eps, 0), (BREAK_DISTANCE_NM + eps, 1)):
        x = ca.copy()
        x[2:, 0] += bond_nm - SPACING_NM
        assert ca_clash_break_rates(x)[1][0] == pytest.approx(broken / (N - 1))
    for gap_nm, clashing in ((CLASH_DISTANCE_NM + eps, 0), (CLASH_DISTANCE_NM - eps, 1)):
        x = ca.copy()
        x[4] = x[0] + np.array([0.0, gap_nm, 0.0])
        assert ca_clash_break_rates(x)[0][0] == pytest.approx(clashing / 10)


def test_rates_at_the_threshold_are_valid():
    frames = straight_chain(7)[None].repeat(2, axis=0)
    frames[1, 6] = frames[1, 0] + np.array([0.0, 0.25, 0.0])  # 1/21 clash, 1/6 break
    loose = CaValidityConfig(max_clash_rate=1 / 21, max_break_rate=1 / 6)
    tight = CaValidityConfig(max_clash_rate=1 / 21 - 1e-9, max_break_rate=1 / 6)
    np.testing.assert_array_equal(ca_valid(frames, config=loose), [True, True])
    np.testing.assert_array_equal(ca_valid(frames, config=tight), [True, False])


def test_neighbour_mask_skips_pairs_that_are_not_bonded():
    x = straight_chain(7)
    x[4:, 0] += 1.0  # a 13.8 Å gap between residues 3 and 4
    assert ca_clash_break_rates(x)[1][0] == pytest.approx(1 / 6)
    neighbours = np.array([True, True, True, False, True, True])  # two chains: 0-3 and 4-6
    assert ca_clash_break_rates(x, neighbours)[1][0] == 0.0
    assert ca_valid(x, neighbours)[0]


def test_injected_clashes_and_breaks_lower_validity_by_exactly_their_fraction():
    rng = np.random.default_rng(11)
    base = villin()
    ca0 = base.xyz[0, ca_indices(base)].astype(np.float64)  # [35, 3]
    F = 25
    frames = ca0[None] + rng.normal(size=(F,) + ca0.shape) * 0.002  # 0.02 Å jitter: all valid
    centre = ca0.mean(axis=0)
    clash_frames, break_frames = [3, 8, 11, 19], [5, 14, 22]
    for f in clash_frames:  # shrink 0.7x: every neighbour pair at ~2.7 Å clashes (34/595 = 5.7 %)
        frames[f] = centre + 0.7 * (frames[f] - centre)
    for f in break_frames:  # stretch 1.2x: neighbour pairs at ~4.6 Å break; nothing gets closer
        frames[f] = centre + 1.2 * (frames[f] - centre)
    clash, brk = ca_clash_break_rates(frames)
    valid = ca_valid(frames)
    injected = np.zeros(F, dtype=bool)
    injected[clash_frames + break_frames] = True
    np.testing.assert_array_equal(valid, ~injected)
    assert valid.mean() == pytest.approx(1.0 - 7 / 25)
    assert (clash[clash_frames] > MAX_CLASH_RATE).all() and (brk[clash_frames] == 0).all()
    assert (brk[break_frames] > MAX_BREAK_RATE).all() and (clash[break_frames] == 0).all()


def test_accepts_a_single_frame_and_float32():
    x = straight_chain(9).astype(np.float32)
    clash, brk = ca_clash_break_rates(x)
    assert clash.shape == (1,) and brk.shape == (1,)


@pytest.mark.parametrize("shape", [(4, 7), (4, 7, 2), (2, 1, 3), (2, 3, 7, 3)])
def test_bad_shapes_raise_naming_the_argument(shape):
    with pytest.raises(ValueError, match="ca_nm"):
        ca_clash_break_rates(np.zeros(shape))


def test_bad_neighbour_mask_raises():
    with pytest.raises(ValueError, match="neighbours"):
        ca_valid(straight_chain(7), neighbours=np.ones(7, dtype=bool))


def test_bad_config_raises():
    with pytest.raises(ValueError, match="max_clash_rate"):
        CaValidityConfig(max_clash_rate=1.5).validate()


def test_protein_residues_of_villin():
    residues = protein_residues(villin().topology)
    assert residues.n_residues == 35
    assert residues.names[:3] == ("LEU", "SER", "ASP")
    assert residues.neighbours.all() and residues.neighbours.shape == (34,)


def test_neighbours_follow_chains_and_numbering_gaps():
    top = mdtraj.Topology()
    for chain_numbers in ((1, 2, 3, 5), (1, 2)):
        chain = top.add_chain()
        for number in chain_numbers:
            residue = top.add_residue("HID", chain, resSeq=number)
            top.add_atom("CA", mdtraj.element.carbon, residue)
    residues = protein_residues(top)
    np.testing.assert_array_equal(residues.neighbours, [True, True, False, False, True])
    assert residues.names[0] == "HIS"


def test_non_protein_topology_raises_naming_the_source():
    full = mdtraj.load(__import__("test_evaluation_data").VILLIN_PDB)
    water = full.atom_slice(full.topology.select("water"))
    with pytest.raises(ValueError, match="water.pdb.*protein"):
        protein_residues(water.topology, "water.pdb")
