"""Known answers of every training loss term, the frame alignment and the schedule."""
import math

import pytest
import torch

from conftest import random_protein
from openmm_starmd.diffusion import SE3Diffuser
from openmm_starmd.diffusion.config import fast
from openmm_starmd.geometry.so3 import uniform_random_rotmat
from openmm_starmd.training.block_causal import align_and_centre
from openmm_starmd.training.losses import (LossConfig, Prediction, Target, all_atom, ca_clash_loss, ca_rg_loss, compute_losses, fape,
                                           score_losses, torsion_loss)
from openmm_starmd.training.trainer import EMA, lr_factor

B, F, N = 2, 3, 7


def _truth(seed=0):
    g = torch.Generator().manual_seed(seed)
    aatype, _, rots, trans = random_protein(N, seed)
    rots = rots.expand(B, F, N, 3, 3).clone()
    trans = (trans + 0.05 * torch.randn(B, F, N, 3, generator=g))
    trans = trans - trans.mean(-2, keepdim=True)
    angles = torch.rand(B, F, N, 7, generator=g) * 2 * math.pi
    torsions = torch.stack([torch.sin(angles), torch.cos(angles)], -1)
    return aatype.expand(B, N), rots, trans, torsions


def _target(diffuser, seed=0):
    aatype, rots, trans, torsions = _truth(seed)
    torch.manual_seed(seed)
    t = 0.05 + 0.9 * torch.rand(B, F)
    rots_t, trans_t = diffuser.forward_marginal(rots, trans, t)
    torsion_mask = torch.ones(B, N, 7)
    return Target(rots, trans, rots_t, trans_t, t, torsions, torsions.clone(), torsion_mask, torch.ones(B, N), aatype)


@pytest.fixture(scope="module")
def diffuser():
    return SE3Diffuser(fast())


def test_fape_zero_for_identical_and_invariant_to_global_motion():
    aatype, rots, trans, torsions = _truth()
    gr, gt, atoms, mask = all_atom(rots, trans, torsions, aatype)
    M = gr.shape[2] * 8
    P = atoms.shape[2] * 14
    args = dict(frame_mask=torch.ones(B, F, M), point_mask=mask.reshape(B, F, P), clamp_nm=1.0, length_scale_nm=1.0, eps_nm2=0.0)
    flat = lambda r, t, x: (r.reshape(B, F, M, 3, 3), t.reshape(B, F, M, 3), x.reshape(B, F, P, 3))  # noqa: E731
    truth = flat(gr, gt, atoms)
    assert torch.allclose(fape(*truth, *truth, **args), torch.zeros(B, F), atol=1e-5)
    # one rigid motion of the whole prediction leaves FAPE at zero
    R = uniform_random_rotmat([], generator=torch.Generator().manual_seed(3))
    shift = torch.tensor([0.7, -1.3, 0.4])
    moved = flat(R @ gr, gt @ R.T + shift, atoms @ R.T + shift)
    assert torch.allclose(fape(*moved, *truth, **args), torch.zeros(B, F), atol=1e-5)
    # a perturbed prediction: same value after moving it rigidly
    g = torch.Generator().manual_seed(4)
    noisy = (atoms + 0.05 * torch.randn(atoms.shape, generator=g)) * mask[..., None]
    a = fape(*flat(gr, gt, noisy), *truth, **args)
    b = fape(*flat(R @ gr, gt @ R.T + shift, noisy @ R.T + shift), *truth, **args)
    assert (a > 0.01).all() and torch.allclose(a, b, atol=1e-5)


def test_fape_matches_its_definition_point_by_point():
    """The expanded matrix-product form equals expressing every point in every frame (AF2 Alg. 28),
    values and gradients, with masks, partial clamping and slightly non-orthonormal rotations."""
    g = torch.Generator().manual_seed(11)
    M, P = 9, 13
    rots = [uniform_random_rotmat([3, M], generator=g).float() + 1e-3 * torch.randn(3, M, 3, 3, generator=g) for _ in range(2)]
    trans = [torch.randn(3, M, 3, generator=g) for _ in range(2)]
    points = [torch.randn(3, P, 3, generator=g) * 0.6 for _ in range(2)]
    fm = (torch.rand(3, M, generator=g) > 0.2).float()
    pm = (torch.rand(3, P, generator=g) > 0.2).float()
    pred = [x.clone().requires_grad_() for x in (rots[0], trans[0], points[0])]
    value = fape(*pred, rots[1], trans[1], points[1], fm, pm, clamp_nm=1.0, length_scale_nm=0.7, eps_nm2=1e-6)
    value.sum().backward()
    ref_in = [x.detach().clone().requires_grad_() for x in pred]
    local = [torch.einsum("bmji,bmpj->bmpi", r, x[:, None] - t[:, :, None]) for r, t, x in
             ((ref_in[0], ref_in[1], ref_in[2]), (rots[1], trans[1], points[1]))]  # R^T (x - t)  [3, M, P, 3]
    d = torch.clamp(torch.sqrt(((local[0] - local[1]) ** 2).sum(-1) + 1e-6), max=1.0) / 0.7
    w = fm[:, :, None] * pm[:, None, :]
    reference = (d * w).sum((1, 2)) / w.sum((1, 2))
    reference.sum().backward()
    assert 0.05 < float(reference.min()) and float(reference.max()) < 1.0 / 0.7  # some errors clamped, not all
    assert torch.allclose(value, reference, atol=1e-6)
    for a, b in zip(pred, ref_in):
        assert torch.allclose(a.grad, b.grad, atol=1e-5)


def test_fape_saturates_at_clamp_over_length_scale():
    aatype, rots, trans, torsions = _truth()
    far = trans + 50.0  # every local error far above the 1 nm clamp
    ones = torch.ones(B, F, N)
    value = fape(rots, trans, far, rots, trans, trans, ones, ones, clamp_nm=1.0, length_scale_nm=1.0, eps_nm2=0.0)
    assert torch.allclose(value, torch.ones(B, F))
    value = fape(rots, trans, far, rots, trans, trans, ones, ones, clamp_nm=1.0, length_scale_nm=0.5, eps_nm2=0.0)
    assert torch.allclose(value, 2.0 * torch.ones(B, F))


def test_score_losses_zero_at_truth_and_one_for_the_prior_scale(diffuser):
    target = _target(diffuser)
    rot, trans = score_losses(diffuser, target.rots_0, target.trans_0, target)
    assert torch.allclose(rot, torch.zeros(B, F), atol=1e-6) and torch.allclose(trans, torch.zeros(B, F), atol=1e-6)
    rot, trans = score_losses(diffuser, target.rots_t, target.trans_t, target)  # a wrong x̂_0: positive
    assert (rot > 0).all() and (trans > 0).all()


def test_torsion_loss_known_values():
    g = torch.Generator().manual_seed(0)
    angles = torch.rand(B, F, N, 7, generator=g) * 2 * math.pi
    truth = torch.stack([torch.sin(angles), torch.cos(angles)], -1)
    alt = -truth
    mask = torch.ones(B, N, 7)
    assert torch.allclose(torsion_loss(truth, truth, truth, alt, mask, 0.02), torch.zeros(B, F), atol=1e-6)
    assert torch.allclose(torsion_loss(alt, alt, truth, alt, mask, 0.02), torch.zeros(B, F), atol=1e-6)  # the π-periodic alternative
    # a quarter turn: |a - b|^2 = 2 for unit vectors 90 degrees apart; raw of length 2 adds 0.02 * 1
    turned = torch.stack([truth[..., 1], -truth[..., 0]], -1)
    value = torsion_loss(turned, 2.0 * turned, truth, truth, mask, 0.02)
    assert torch.allclose(value, torch.full((B, F), 2.0 + 0.02), atol=1e-5)
    # masked torsions do not count
    mask[..., 3:] = 0.0
    wrong = truth.clone()
    wrong[..., 3:, :] = turned[..., 3:, :]
    assert torch.allclose(torsion_loss(wrong, wrong, truth, truth, mask, 0.02), torch.zeros(B, F), atol=1e-6)


def test_compute_losses_vanish_for_a_perfect_prediction(diffuser):
    target = _target(diffuser)
    target = target._replace(t=torch.full((B, F), 0.1))  # all frames in the low-t terms
    cfg = LossConfig(fape_eps_nm2=0.0)
    perfect = Prediction(target.rots_0, target.trans_0, target.torsions, target.torsions)
    terms = compute_losses(diffuser, perfect, target, cfg)
    for name, value in terms.items():
        assert abs(float(value)) < 1e-5, name
    g = torch.Generator().manual_seed(1)
    wrong = Prediction(target.rots_0, target.trans_0 + 0.1 * torch.randn(target.trans_0.shape, generator=g),
                       target.torsions, target.torsions)
    terms = compute_losses(diffuser, wrong, target, cfg)
    assert terms["bb_coord"] > 0 and terms["dist_map"] > 0 and terms["bb_fape"] > 0 and terms["trans_score"] > 0
    weights = cfg.weights()
    assert torch.allclose(terms["total"], sum(weights[k] * terms[k] for k in weights))
    # the coordinate terms only count for t <= 0.25
    high = compute_losses(diffuser, wrong, target._replace(t=torch.full((B, F), 0.6)), cfg)
    assert float(high["bb_coord"]) == 0.0 and float(high["dist_map"]) == 0.0


def test_align_and_centre_removes_rigid_motion_between_frames():
    aatype, rots, trans, _ = _truth()
    gen = torch.Generator().manual_seed(5)
    R = uniform_random_rotmat([B, F], generator=gen)  # a different rigid motion per frame
    shift = torch.randn(B, F, 1, 3, generator=gen)
    base_rots, base_trans = rots[:, :1].expand(B, F, N, 3, 3), trans[:, :1].expand(B, F, N, 3)
    moved_rots = R[:, :, None] @ base_rots
    moved_trans = torch.einsum("bfij,bfnj->bfni", R, base_trans) + shift
    out_rots, out_trans = align_and_centre(moved_rots, moved_trans, torch.ones(B, N))
    for f in range(1, F):
        assert torch.allclose(out_trans[:, f], out_trans[:, 0], atol=1e-4)
        assert torch.allclose(out_rots[:, f], out_rots[:, 0], atol=1e-4)
    assert torch.allclose(out_trans.mean(-2), torch.zeros(B, F, 3), atol=1e-5)


def test_lr_schedule_and_ema():
    assert lr_factor(0, 100, 10, 0.01, 0.1) == pytest.approx(0.01)
    assert lr_factor(10, 100, 10, 0.01, 0.1) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, 0.01, 0.1) == pytest.approx(0.55)  # half-way down the cosine
    assert lr_factor(100, 100, 10, 0.01, 0.1) == pytest.approx(0.1)
    lin = torch.nn.Linear(3, 5)
    ema = EMA(lin, decay=0.9)
    with torch.no_grad():
        lin.weight.fill_(2.0)
    for _ in range(300):
        ema.update(lin)
    assert torch.allclose(ema.shadow["weight"], torch.full((5, 3), 2.0), atol=1e-6)


def test_ca_bond_loss_is_the_squared_bond_length_error_in_angstrom(diffuser):
    target = _target(diffuser, seed=4)
    perfect = Prediction(target.rots_0, target.trans_0, target.torsions, target.torsions)
    cfg = LossConfig(ca_bond_weight=2.0, ca_bond_max_nm=10.0)  # every consecutive pair counts as bonded here
    assert compute_losses(diffuser, perfect, target, cfg)["ca_bond"] < 1e-8
    stretched = perfect._replace(trans=target.trans_0 * 1.1)  # every distance 10 % longer
    d = torch.linalg.norm(target.trans_0[:, :, 1:] - target.trans_0[:, :, :-1], dim=-1) * 10.0  # Å
    terms = compute_losses(diffuser, stretched, target, cfg)
    assert torch.isclose(terms["ca_bond"], ((0.1 * d) ** 2).mean(), rtol=1e-4)
    without = compute_losses(diffuser, stretched, target, LossConfig(ca_bond_max_nm=10.0))
    assert torch.isclose(terms["total"] - without["total"], 2.0 * terms["ca_bond"], rtol=1e-4)


def test_ca_clash_loss_counts_only_pairs_closer_than_floor_and_truth(diffuser):
    # five residues on a line 3.8 Å apart; the prediction folds residue 4 back onto residue 0
    true = torch.zeros(1, 1, 5, 3)
    true[..., 0] = torch.arange(5.0) * 0.38
    pred = true.clone()
    pred[0, 0, 4] = torch.tensor([0.1, 0.0, 0.0])  # 1.0 Å from residue 0, 2.8 Å from 1, 6.6 Å from 2, 10.4 Å from 3
    mask = torch.ones(1, 5)
    assert ca_clash_loss(true, true, mask, 0.38).abs().max() < 1e-12  # the truth costs nothing
    got = ca_clash_loss(pred, true, mask, 0.38)
    # pairs |i - j| >= 2 under 3.8 Å: (0, 4) at 1.0 Å and (1, 4) at 2.8 Å -> (2.8² + 1.0²) / 5 residues
    assert torch.allclose(got, torch.tensor([[(2.8**2 + 1.0**2) / 5]]), rtol=1e-5)
    # (3, 4) are chain neighbours: 10.4 Å is the bond term's business, not this one's
    # a truth that is itself closer than the floor sets the floor for that pair
    true_close = true.clone()
    true_close[0, 0, 4] = torch.tensor([0.05, 0.0, 0.0])  # truth 0.5 Å from residue 0, 3.3 Å from 1
    got = ca_clash_loss(pred, true_close, mask, 0.38)
    assert torch.allclose(got, torch.tensor([[0.5**2 / 5]]), rtol=1e-4)  # (1, 4): 3.3 - 2.8 Å; (0, 4): none
    # padded residues do not count, and the gradient pushes the clashing atoms apart
    assert ca_clash_loss(pred, true, torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]]), 0.38).abs().max() < 1e-12
    pred.requires_grad_(True)
    ca_clash_loss(pred, true, mask, 0.38).sum().backward()
    assert pred.grad[0, 0, 4, 0] < 0 < pred.grad[0, 0, 0, 0]  # descent moves residue 4 to +x, residue 0 to -x


@pytest.mark.parametrize("term, seed, shrink, weight", [("ca_clash", 4, 0.3, 2.0), ("ca_rg", 5, 0.8, 0.5)])
def test_optional_ca_term_enters_the_total_with_its_weight(diffuser, term, seed, shrink, weight):
    target = _target(diffuser, seed=seed)
    perfect = Prediction(target.rots_0, target.trans_0, target.torsions, target.torsions)
    assert compute_losses(diffuser, perfect, target, LossConfig(**{f"{term}_weight": 1.0}))[term] < 1e-8
    compact = perfect._replace(trans=target.trans_0 * shrink)
    on = compute_losses(diffuser, compact, target, LossConfig(**{f"{term}_weight": weight}))
    off = compute_losses(diffuser, compact, target, LossConfig())
    assert on[term] > 0
    assert torch.isclose(on["total"] - off["total"], weight * on[term], rtol=1e-4)


def test_ca_rg_loss_is_the_squared_radius_of_gyration_error_and_rigid_invariant(diffuser):
    # four residues on the corners of a 0.6 nm square: Rg = 0.6 / sqrt(2) nm (every atom that far from the centre)
    true = torch.tensor([[[[0.0, 0.0, 0.0], [0.6, 0.0, 0.0], [0.6, 0.6, 0.0], [0.0, 0.6, 0.0]]]])
    mask = torch.ones(1, 4)
    assert ca_rg_loss(true, true, mask).abs().max() < 1e-10
    shrunk = true * 0.5  # Rg halves: error 0.3 / sqrt(2) nm = 2.121 Å
    assert torch.allclose(ca_rg_loss(shrunk, true, mask), torch.tensor([[(3.0 / 2**0.5) ** 2]]), rtol=1e-5)
    # a rotated and shifted copy of the truth costs nothing
    c, s = torch.cos(torch.tensor(0.7)), torch.sin(torch.tensor(0.7))
    rot = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    moved = true @ rot.T + torch.tensor([1.0, -2.0, 0.5])
    assert ca_rg_loss(moved, true, mask).abs().max() < 1e-8
    # a padded residue far away does not count
    padded_true = torch.cat([true, torch.full((1, 1, 1, 3), 9.0)], dim=2)
    padded_pred = torch.cat([shrunk, torch.full((1, 1, 1, 3), -9.0)], dim=2)
    got = ca_rg_loss(padded_pred, padded_true, torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]]))
    assert torch.allclose(got, torch.tensor([[(3.0 / 2**0.5) ** 2]]), rtol=1e-5)
    # descent expands a compacted prediction: residue 2 (at +x, +y of the centre) moves further out
    shrunk.requires_grad_(True)
    ca_rg_loss(shrunk, true, mask).sum().backward()
    assert shrunk.grad[0, 0, 2, 0] < 0 and shrunk.grad[0, 0, 2, 1] < 0


def _per_frame(diffuser, pred, target, cfg, name):
    """``[B, F]``: loss term ``name`` of each target frame computed on its own."""
    def one(b, f):
        frame = target._replace(**{k: getattr(target, k)[b:b + 1, f:f + 1] for k in ("rots_0", "trans_0", "rots_t", "trans_t",
                                                                                   "t", "torsions", "torsions_alt")},
                                torsion_mask=target.torsion_mask[b:b + 1], residue_mask=target.residue_mask[b:b + 1],
                                aatype=target.aatype[b:b + 1])
        return float(compute_losses(diffuser, Prediction(*(x[b:b + 1, f:f + 1] for x in pred)), frame, cfg)[name])
    return torch.tensor([[one(b, f) for f in range(F)] for b in range(B)])


def test_time_limits_drop_the_structure_terms_above_them_and_nothing_else(diffuser):
    target = _target(diffuser, seed=6)
    target = target._replace(t=torch.tensor([[0.05, 0.3, 0.9], [0.1, 0.5, 0.02]]))
    perfect = Prediction(target.rots_0, target.trans_0, target.torsions, target.torsions)
    off = perfect._replace(trans=target.trans_0 * 0.7, rots=target.rots_0.transpose(-1, -2))  # wrong everywhere
    weights = dict(ca_bond_weight=5.0, ca_clash_weight=20.0, ca_rg_weight=0.5, ca_bond_max_nm=10.0)
    every = compute_losses(diffuser, off, target, LossConfig(**weights))
    limited = compute_losses(diffuser, off, target, LossConfig(**weights, ca_bond_max_t=0.1, ca_clash_max_t=0.1, ca_rg_max_t=0.1, fape_max_t=0.1))
    low = (target.t <= 0.1).float()  # frames (0, 0), (1, 0), (1, 2)
    assert int(low.sum()) == 3
    # each limited term is the per-frame term zeroed above the limit, averaged over all frames
    for name in ("ca_bond", "ca_clash", "ca_rg", "bb_fape", "sc_fape"):
        per_frame = _per_frame(diffuser, off, target, LossConfig(**weights), name)
        assert (per_frame > 0).all(), name
        assert torch.isclose(every[name], per_frame.mean(), rtol=1e-4), name
        assert torch.isclose(limited[name], (per_frame * low).mean(), rtol=1e-4), name
    # the score, torsion and low-t coordinate terms do not change
    for name in ("rot_score", "trans_score", "torsion", "bb_coord", "dist_map"):
        assert torch.isclose(limited[name], every[name], rtol=1e-6), name
    # a limit of 1 is the default: every t counts
    same = compute_losses(diffuser, off, target, LossConfig(**weights, ca_bond_max_t=1.0, ca_clash_max_t=1.0, ca_rg_max_t=1.0, fape_max_t=1.0))
    assert torch.isclose(same["total"], every["total"], rtol=1e-6)


def test_the_translation_score_loss_is_the_ca_x0_error_times_a_weight_that_falls_with_t(diffuser):
    target = _target(diffuser, seed=7)
    target = target._replace(t=torch.tensor([[0.02, 0.1, 0.3], [0.02, 0.1, 0.3]]))
    perfect = Prediction(target.rots_0, target.trans_0, target.torsions, target.torsions)
    cfg = LossConfig(ca_x0_weight=1.0)
    assert float(compute_losses(diffuser, perfect, target, cfg)["ca_x0"]) == 0.0
    shifted = perfect._replace(trans=target.trans_0 + 0.3)
    assert float(compute_losses(diffuser, shifted, target, cfg)["ca_x0"]) < 1e-8
    ratios = []
    for shift, scale in ((0.05, 0.9), (0.0, 0.8), (0.1, 1.2)):  # three different wrong predictions (nm)
        off = perfect._replace(trans=target.trans_0 * scale + shift)
        _, trans = score_losses(diffuser, off.rots, off.trans, target)  # [B, F]
        per_frame = _per_frame(diffuser, off, target, cfg, "ca_x0")
        # ca_x0 is the mean over residues of the squared Cα error in Å², blind to a shift of the whole frame
        d = off.trans - target.trans_0
        d = d - d.mean(-2, keepdim=True)
        err = ((d * 10.0) ** 2).sum(-1).mean(-1)
        assert torch.allclose(per_frame, err, rtol=1e-4)
        ratios.append(trans / per_frame)
    # the score loss is the same error times a weight that depends on t only, and falls with t
    for r in ratios[1:]:
        assert torch.allclose(r, ratios[0], rtol=1e-3)
    w = ratios[0][0]
    assert w[0] > w[1] > w[2] > 0
    # the weighted term enters the total
    off = perfect._replace(trans=target.trans_0 * 0.9)
    with_x0 = compute_losses(diffuser, off, target, LossConfig(ca_x0_weight=0.5))
    without = compute_losses(diffuser, off, target, LossConfig())
    assert torch.isclose(with_x0["total"] - without["total"], 0.5 * with_x0["ca_x0"], rtol=1e-4)
