"""Inputs that cannot memorise a protein (the ``generalising`` options of StarMDConfig):
no absolute residue index, template pair features, amino-acid dropout, detached rotations,
the skip connection and no dead last EdgeTransition."""
import dataclasses
import math

import pytest
import torch

from conftest import randomize_, random_protein
from openmm_starmd.data.dataset import Batch
from openmm_starmd.diffusion import SE3Diffuser
from openmm_starmd.geometry.so3 import rotmat_to_rotvec, rotvec_to_rotmat, uniform_random_rotmat
from openmm_starmd.model import Rollout, StarMDCore, block_causal_frame_index, block_causal_mask
from openmm_starmd.model.config import StarMDConfig, generalising, tiny, tiny_v2, tiny_v3
from openmm_starmd.model.embeddings import template_features
from openmm_starmd.training.block_causal import BlockCausalModel, training_losses
from openmm_starmd.training.losses import LossConfig

N, L = 7, 5


def _perturb(rots, trans, scale, g):
    dr = rotvec_to_rotmat(scale * torch.randn(rots.shape[:-2] + (3,), generator=g))
    return dr @ rots, trans + scale * torch.randn(trans.shape, generator=g)


def _frames(B, seed, scale=0.1):
    aatype, resid, rots, trans = random_protein(N, seed)
    g = torch.Generator().manual_seed(seed + 1)
    clean = [_perturb(rots.expand(B, N, 3, 3), trans.expand(B, N, 3), scale, g) for _ in range(L)]
    clean = [(r, t - t.mean(1, keepdim=True)) for r, t in clean]  # centred, as training and the rollout centre frames
    return aatype.expand(B, N), resid.expand(B, N), clean, g


def test_presets_switch_every_option_on_and_old_checkpoints_keep_the_old_network():
    cfg = tiny_v2()
    assert (cfg.absolute_index, cfg.template_pair, cfg.detach_rotations, cfg.last_edge_transition) == (False, True, True, False)
    assert cfg.aatype_dropout > 0 and cfg.skip_channels > 0 and cfg.context_noise_t < tiny().context_noise_t
    # a config dict written before these fields existed loads with the first architecture
    old = tiny().to_dict()
    for key in ("absolute_index", "template_pair", "aatype_dropout", "detach_rotations", "skip_channels", "last_edge_transition"):
        old.pop(key)
    assert StarMDConfig.from_dict(old) == tiny()
    with pytest.raises(ValueError, match="aatype_dropout"):
        dataclasses.replace(tiny(), aatype_dropout=1.5).validate()


def test_template_features_are_invariant_to_a_global_rigid_motion():
    torch.manual_seed(0)
    _, _, rots, trans = random_protein(N, 2)
    rots, trans = rots[None, None], trans[None, None]  # [1, 1, N, ...]
    pb = trans + 0.15 * rots[..., :, 0]
    edges = torch.linspace(0.325, 5.075, 38)
    f0 = template_features(rots, trans, pb, edges)
    R = uniform_random_rotmat([])
    shift = torch.tensor([0.7, -1.3, 2.1])
    f1 = template_features(R @ rots, trans @ R.T + shift, pb @ R.T + shift, edges)
    assert f0.shape == (1, 1, N, N, 39 + 3 + 9)
    assert (f0 - f1).abs().max() < 1e-5
    # and they carry the geometry: another structure gives other features
    f2 = template_features(rots, trans * 1.3, pb * 1.3, edges)
    assert (f0 - f2).abs().max() > 0.1


def _cached_vs_full_error(core, B, seed, window=0, sink=0):
    """Largest difference between the KV-cached denoiser (template = last clean context frame,
    context window ``window``, ``sink`` sink frames) and the block-causal full forward whose noisy
    frame ℓ has clean frame ℓ-1 as its template (mask banded to ``window`` frames when given, the
    first ``sink`` frames kept)."""
    aatype, resid, clean, g = _frames(B, seed=seed)
    noisy = [_perturb(r, t, 0.3, g) for r, t in clean[1:]]
    t_noisy = torch.rand(B, L - 1, generator=g)
    log_stride = torch.full([B], 0.1)
    net = core.net
    s_seq, z_static = net.embed_protein(aatype, resid, torch.zeros_like(resid))
    rots = torch.stack([r for r, _ in clean] + [r for r, _ in noisy], 1)
    trans = torch.stack([t for _, t in clean] + [t for _, t in noisy], 1)
    tmpl_r = torch.stack([r for r, _ in clean] + [r for r, _ in clean[:-1]], 1)
    tmpl_t = torch.stack([t for _, t in clean] + [t for _, t in clean[:-1]], 1)
    pos = block_causal_frame_index(L)
    mask = block_causal_mask(L)
    if window:
        mask = mask & ((pos[:, None] - pos[None, :] < window) | (pos[None, :] < sink))
    with torch.no_grad():
        r_full, x_full, tor_full, _ = net.forward_frames(s_seq, z_static, aatype, resid, rots, trans,
                                                         torch.cat([torch.zeros(B, L), t_noisy], 1), log_stride, pos,
                                                         mask, [], [], 0, False, tmpl_r, tmpl_t)
    return _cached_error(core, aatype, resid, clean, noisy, t_noisy, log_stride, (r_full, x_full, tor_full), window, sink)


def _cached_error(core, aatype, resid, clean, noisy, t_noisy, log_stride, full, window=0, sink=0):
    """Largest difference between the KV-cached denoiser of noisy frame ℓ (after appending clean
    frames < ℓ) and the full pass's outputs ``full`` = (rots, trans, torsions) of the block-causal
    sequence [clean 0..L-1 | noisy 1..L-1]."""
    r_full, x_full, tor_full = full
    core.start(aatype, resid, torch.zeros_like(resid), L)
    core.set_window(window)
    core.set_sink(sink)
    err = 0.0
    for ell in range(L):
        if ell > 0:
            r0, x0, tor = core.denoise(noisy[ell - 1][0], noisy[ell - 1][1], float(t_noisy[0, ell - 1]), log_stride)
            j = L + ell - 1  # replicas share t in the cached call: compare replica 0
            err = max(err, (x0[0] - x_full[0, j]).abs().max().item(), (r0[0] - r_full[0, j]).abs().max().item(),
                      (tor[0] - tor_full[0, j]).abs().max().item())
        core.append_frame(clean[ell][0], clean[ell][1], log_stride, 0.0)
    return err


@pytest.mark.parametrize("make", [tiny, tiny_v2, tiny_v3], ids=["first", "generalising", "blended_start"])
def test_cached_denoise_equals_block_causal_forward_with_templates(make):
    """The rollout's KV cache (template = last context frame) equals the full block-causal pass."""
    torch.manual_seed(0)
    core = randomize_(StarMDCore(make()), seed=0, std=0.3).eval()
    err = _cached_vs_full_error(core, B=2, seed=0)
    assert err < 1e-4, err


@pytest.mark.parametrize("make", [tiny_v2, tiny_v3], ids=["generalising", "blended_start"])
def test_model_with_templates_is_se3_equivariant(make):
    B = 1
    torch.manual_seed(1)
    core = randomize_(StarMDCore(make()), seed=1, std=0.3).eval()
    aatype, resid, clean, g = _frames(B, seed=4)
    R = uniform_random_rotmat([])
    shift = torch.tensor([0.4, 0.2, -0.9])

    def run(rot, sh):
        rots = torch.stack([rot @ r for r, _ in clean], 1)
        trans = torch.stack([t @ rot.T + sh for _, t in clean], 1)
        s_seq, z_static = core.net.embed_protein(aatype, resid, torch.zeros_like(resid))
        with torch.no_grad():
            return core.net.forward_frames(s_seq, z_static, aatype, resid, rots, trans, torch.full([B, L], 0.5),
                                           torch.zeros(B), torch.arange(L), torch.ones(L, L, dtype=torch.bool).tril(),
                                           [], [], 0, False, rots.roll(1, dims=1), trans.roll(1, dims=1))

    r0, x0, tor0, _ = run(torch.eye(3), torch.zeros(3))
    r1, x1, tor1, _ = run(R, shift)
    assert (x0 @ R.T + shift - x1).abs().max() < 1e-4
    assert (R @ r0 - r1).abs().max() < 1e-4
    assert (tor0 - tor1).abs().max() < 1e-4


def test_shifting_residue_index_leaves_sampled_frames_unchanged():
    """Without the absolute index, residue numbers enter only as differences (RoPE and the
    relative-index pair features): a numbering offset changes nothing the model samples."""
    torch.manual_seed(2)
    core = randomize_(StarMDCore(tiny_v2()), seed=2, std=0.1).eval()
    aatype, resid, rots, trans = random_protein(N, 6)
    out = []
    for offset in (0, 15, 203):
        roll = Rollout(core, aatype, resid + offset, 0.1, seed=7, num_steps=4, capacity_frames=4)
        roll.add_context(rots, trans)
        out.append(roll.run(2))
    for other in out[1:]:
        assert (other.trans - out[0].trans).abs().max() < 1e-4
        assert (other.rots - out[0].rots).abs().max() < 1e-4
    # the first network does see absolute numbers (the test would catch a silent no-op)
    core1 = randomize_(StarMDCore(tiny()), seed=2, std=0.1).eval()
    first = []
    for offset in (0, 15):
        roll = Rollout(core1, aatype, resid + offset, 0.1, seed=7, num_steps=4, capacity_frames=4)
        roll.add_context(rots, trans)
        first.append(roll.run(1))
    assert (first[1].trans - first[0].trans).abs().max() > 1e-3


def _batch(B=2, seed=3):
    aatype, resid, clean, _ = _frames(B, seed)
    rots = torch.stack([r for r, _ in clean], 1)
    trans = torch.stack([t for _, t in clean], 1)
    tors = torch.nn.functional.normalize(torch.randn(B, L, N, 7, 2), dim=-1)
    return Batch(keys=["x"] * B, stride_ns=torch.full([B], 0.1), aatype=aatype.clone(), residue_index=resid.clone(),
                 chain_index=torch.zeros_like(resid), rots=rots, trans=trans, torsions=tors, torsions_alt=tors,
                 torsion_mask=torch.ones(B, N, 7), residue_mask=torch.ones(B, N), openfold_single=None, openfold_pair=None)


@pytest.mark.parametrize("make", [tiny_v2, tiny_v3], ids=["generalising", "blended_start"])
def test_every_parameter_gets_a_gradient_so_ddp_needs_no_unused_parameter_search(make):
    cfg = make()
    torch.manual_seed(4)
    core = StarMDCore(cfg)
    model = BlockCausalModel(core.net)
    losses = training_losses(model, SE3Diffuser(cfg.diffusion), _batch(), cfg, LossConfig())
    losses["total"].backward()
    dead = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert dead == []


def test_amino_acid_dropout_hides_types_from_the_singles_only():
    cfg = dataclasses.replace(generalising(tiny()), aatype_dropout=0.5)
    torch.manual_seed(5)
    core = randomize_(StarMDCore(cfg), seed=5, std=0.3)
    model = BlockCausalModel(core.net)
    batch = _batch()
    seen = []

    def hook(_module, args, _out):
        seen.append(args[0].clone())

    handle = core.net.seq_embed.aatype.register_forward_hook(hook)
    training_losses(model, SE3Diffuser(cfg.diffusion), batch, cfg, LossConfig())
    handle.remove()
    hidden = seen[0] == 20
    assert 0 < hidden.sum() < hidden.numel()  # some, not all, residues hidden (p = 0.5 of 14)
    assert torch.equal(seen[0][~hidden], batch.aatype[~hidden])


def test_context_window_equals_a_banded_block_causal_forward():
    """With a window of W frames the cached rollout attends to the last W - 1 context frames and
    itself, exactly as the block-causal pass with a banded mask (training with L = W)."""
    torch.manual_seed(6)
    core = randomize_(StarMDCore(tiny_v2()), seed=6, std=0.3).eval()
    err = _cached_vs_full_error(core, B=1, seed=8, window=3)
    assert err < 1e-4, err
    with pytest.raises(ValueError):
        core.set_window(1)


@pytest.mark.parametrize("sink", [1, 2])
def test_context_window_with_sink_frames_equals_the_masked_block_causal_forward(sink):
    """With sink frames the cached rollout attends to the first ``sink`` frames, the last W - 1
    context frames and itself, exactly as the block-causal pass with that mask; once the window
    has passed the sink frames, dropping them changes the frames."""
    torch.manual_seed(12)
    core = randomize_(StarMDCore(tiny_v2()), seed=12, std=0.3).eval()
    err = _cached_vs_full_error(core, B=1, seed=13, window=2, sink=sink)
    assert err < 1e-4, err
    assert _cached_vs_full_error(core, B=1, seed=13, window=2, sink=0) < 1e-4
    with pytest.raises(ValueError):
        core.set_sink(-1)


def test_sink_frames_change_only_frames_whose_window_has_left_them():
    """A rollout with window 2 and one sink frame gives the window-only rollout's first frame
    (whose window still holds the given context) and different frames after it."""
    torch.manual_seed(14)
    core = randomize_(StarMDCore(tiny_v2()), seed=14, std=0.3).eval()
    aatype, resid, rots, trans = random_protein(N, 14)
    outs = []
    for sink in (0, 1):
        roll = Rollout(core, aatype, resid, 0.1, seed=3, num_steps=3, capacity_frames=5, context_window=2, context_sink=sink)
        roll.add_context(rots, trans)
        outs.append(roll.run(3).trans[0])
    assert torch.allclose(outs[0][0], outs[1][0], atol=1e-5)
    assert (outs[0][2] - outs[1][2]).abs().max() > 1e-3
    with pytest.raises(ValueError):
        Rollout(core, aatype, resid, 0.1, context_sink=-1)


def test_untrained_network_that_starts_from_the_template_returns_its_context_frame():
    """Zero-initialised updates: x̂₀ is the last clean context frame, so sampling reproduces it
    (a propagator that is valid before it learns any motion)."""
    torch.manual_seed(9)
    core = StarMDCore(tiny_v2()).eval()
    aatype, resid, rots, trans = random_protein(N, 9)
    roll = Rollout(core, aatype, resid, 0.1, seed=1, num_steps=3, capacity_frames=4)
    roll.add_context(rots, trans)
    out = roll.run(2)
    assert (out.trans[0, -1] - trans).abs().max() < 1e-4  # aligned back onto the context frame
    assert (out.rots[0, -1] - rots).abs().max() < 1e-4


def test_history_errors_reach_context_and_templates_but_not_the_targets(monkeypatch):
    """Training on history with generated-like errors: the context tokens and the templates are the
    perturbed frames, the targets the clean ones, and the errors have the documented size."""
    import openmm_starmd.training.block_causal as bc

    cfg = tiny_v2()
    torch.manual_seed(10)
    batch = _batch()
    seen = {}

    class Capture(BlockCausalModel):
        def forward(self, *args):
            seen["args"] = args
            return super().forward(*args)

    def capture_target(diffuser, pred, target, loss_cfg):
        seen["target"] = target
        return {"total": pred.trans.sum()}

    monkeypatch.setattr(bc, "compute_losses", capture_target)
    model = Capture(StarMDCore(cfg).net)
    clean_rots, clean_trans = bc.align_and_centre(batch.rots, batch.trans, batch.residue_mask)
    for errors, perturbed in ((None, False), (bc.HistoryErrors(0.5, 10.0, 1.0), True)):
        training_losses(model, SE3Diffuser(cfg.diffusion), batch, cfg, LossConfig(), history_errors=errors)
        template_rots, template_trans = seen["args"][11], seen["args"][12]
        B, L = clean_trans.shape[:2]
        assert torch.equal(template_trans[:, L:], template_trans[:, :L - 1])  # noisy frame ℓ: the history frame ℓ-1
        moved = (template_trans[:, :L] - clean_trans).norm(dim=-1)  # nm
        assert bool((moved > 0).any()) == perturbed
        assert float(moved.max()) < 0.5  # a few RMS lengths of 0.05 nm at most
        assert torch.equal(seen["target"].trans_0, clean_trans[:, 1:])
        assert torch.equal(seen["target"].rots_0, clean_rots[:, 1:])


def test_history_error_size_and_mask():
    from openmm_starmd.training.block_causal import HistoryErrors, perturb_history

    torch.manual_seed(11)
    B, L, N = 4000, 2, 16
    rots = uniform_random_rotmat([B, L, N])
    trans = torch.randn(B, L, N, 3)
    mask = torch.ones(B, N)
    mask[:, -1] = 0
    r, t = perturb_history(rots, trans, mask, HistoryErrors(max_angstrom=0.5, max_degrees=10.0, prob=1.0))
    d2 = ((t - trans) ** 2).sum(-1)[..., :-1]  # nm²
    # level s ~ U[0, 1]: E[|Δx|²] = (0.05 nm)² E[s²] = (0.05 nm)² / 3
    assert abs(float(d2.mean()) / (0.05**2 / 3) - 1) < 0.05
    angle = rotmat_to_rotvec(r @ rots.transpose(-1, -2)).norm(dim=-1)
    assert abs(float((angle[..., :-1] ** 2).mean()) / (math.radians(10.0) ** 2 / 3) - 1) < 0.05
    assert torch.equal(t[..., -1, :], trans[..., -1, :]) and torch.allclose(r[..., -1, :, :], rots[..., -1, :, :])
    none = perturb_history(rots, trans, mask, HistoryErrors())
    assert none[0] is rots and none[1] is trans
    with pytest.raises(ValueError):
        HistoryErrors(max_angstrom=-1.0).validate()


def test_blended_start_is_the_template_at_high_noise_and_the_input_at_low_noise():
    """An untrained blended-start network (zero updates) returns its start frames: the last context
    frame at t = 1, where the input is noise, and the noisy input itself as t -> 0."""
    torch.manual_seed(12)
    core = StarMDCore(tiny_v3()).eval()
    aatype, resid, clean, g = _frames(1, seed=12, scale=0.3)
    (tr, tt), (xr, xt) = clean[0], clean[1]
    s_seq, z_static = core.net.embed_protein(aatype, resid, torch.zeros_like(resid))

    def start(t):
        with torch.no_grad():
            r0, x0, _, _ = core.net.forward_frames(s_seq, z_static, aatype, resid, xr[:, None], xt[:, None], torch.full([1, 1], t),
                                                   torch.full([1], -1.0), torch.zeros(1, dtype=torch.long), torch.ones(1, 1, dtype=torch.bool), [], [], 0,
                                                   False, tr[:, None], tt[:, None])
        return r0[:, 0], x0[:, 0]

    r_hi, x_hi = start(1.0)
    assert (x_hi - tt).abs().max() < 1e-3 and (r_hi - tr).abs().max() < 2e-2
    r_lo, x_lo = start(1e-6)
    assert (x_lo - xt).abs().max() < 1e-3
    # rotations keep IGSO(3) noise of sigma_min = 0.1 rad at t = 0: the start is on the geodesic, 80 % of the way
    # (motion scale 0.2 rad at 0.1 ns against 0.1 rad of noise)
    expected = tr @ rotvec_to_rotmat(0.8 * rotmat_to_rotvec(tr.transpose(-1, -2) @ xr))
    assert (r_lo - expected).abs().max() < 2e-3
    r_mid, x_mid = start(0.05)  # in between, on the segment from the template to the input
    w = ((x_mid - tt) * (xt - tt)).sum() / ((xt - tt) ** 2).sum()
    assert 0.05 < float(w) < 0.95
    assert (x_mid - (tt + w * (xt - tt))).abs().max() < 2e-3


def test_low_t_fraction_oversamples_the_low_noise_range():
    from openmm_starmd.training.block_causal import noise_levels

    torch.manual_seed(13)
    cfg = tiny_v3()
    for fraction in (0.0, 0.5):
        _, t = noise_levels(20000, 3, cfg, 0.01, torch.device("cpu"), fraction)
        assert float(t.min()) >= 0.01 and float(t.max()) <= 1.0
        # below 0.1: the uniform share (0.09 / 0.99) plus the log-uniform fraction
        expected = fraction + (1 - fraction) * 0.09 / 0.99
        assert abs(float((t < 0.1).float().mean()) - expected) < 0.01
        if fraction:  # log-uniform: about as many below 10^-1.5 as between 10^-1.5 and 0.1 (0.48 expected)
            low = t[t < 0.1]
            assert 0.42 < float((low < 0.1**1.5).float().mean()) < 0.54


class _Oracle(BlockCausalModel):
    """Returns the given MD frames as x̂_0 of every frame slot of a block-causal pass, and records the calls."""

    def __init__(self, net, rots, trans):
        super().__init__(net)
        self.truth = rots, trans
        self.calls = []

    def forward(self, *args):
        self.calls.append(args)
        rots_in, G = args[5], (args[5].shape[1] + 1) // 2
        rots, trans = self.truth
        r = torch.cat([rots[:, :G], rots[:, 1:G]], 1)
        x = torch.cat([trans[:, :G], trans[:, 1:G]], 1)
        tors = torch.zeros(*x.shape[:3], 7, 2)
        return r, x, tors, tors


class _Wrapped(torch.nn.Module):
    """Stands in for DDP: the samples must run on ``.module``, never through the wrapper."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, *args):
        raise AssertionError("self-generated history ran through the DDP wrapper")


def test_self_history_replaces_the_middle_history_frames_with_samples_in_the_md_pose():
    from openmm_starmd.training.block_causal import SelfHistory, align_and_centre, generate_history

    cfg = tiny_v3()
    torch.manual_seed(12)
    batch = _batch()
    batch.residue_mask[1, -2:] = 0.0  # a padded example
    rots_0, trans_0 = align_and_centre(batch.rots, batch.trans, batch.residue_mask)
    B, L, N = trans_0.shape[:3]
    diffuser = SE3Diffuser(cfg.diffusion)
    core = randomize_(StarMDCore(cfg), seed=12, std=0.3)
    rots, trans = generate_history(_Wrapped(BlockCausalModel(core.net)), diffuser, batch, rots_0, trans_0,
                                   SelfHistory(1.0, num_steps=3))
    assert torch.equal(trans[:, 0], trans_0[:, 0]) and torch.equal(trans[:, L - 1], trans_0[:, L - 1])  # MD start, unused last
    assert torch.equal(rots[:, 0], rots_0[:, 0]) and not rots.requires_grad
    moved = (trans[:, 1:L - 1] - trans_0[:, 1:L - 1]).norm(dim=-1)  # nm
    assert bool((moved[0] > 0.01).all())  # a random network's sample differs from MD...
    assert torch.equal(trans[1, 1:L - 1, -2:], trans_0[1, 1:L - 1, -2:])  # ...except at padded residues
    eye = torch.eye(3).expand_as(rots)
    assert torch.allclose(rots @ rots.transpose(-1, -2), eye, atol=1e-5)
    m = batch.residue_mask[:, None, :, None]
    assert float(((trans * m).sum(2) / m.sum(2)).abs().max()) < 1e-5  # centred on present residues
    # superposed onto its MD frame: the best rigid fit of sample onto MD is the identity
    from openmm_starmd.geometry.superpose import kabsch

    r, t = kabsch(trans[:, 1:L - 1].reshape(-1, N, 3), trans_0[:, 1:L - 1].reshape(-1, N, 3),
                  batch.residue_mask[:, None].expand(B, L - 2, N).reshape(-1, N))
    assert torch.allclose(r, torch.eye(3).expand_as(r), atol=1e-4) and float(t.abs().max()) < 1e-5


def test_self_history_from_a_perfect_denoiser_is_the_md_history_and_sees_only_earlier_frames():
    from openmm_starmd.training.block_causal import SelfHistory, align_and_centre, generate_history

    cfg = tiny_v3()
    torch.manual_seed(13)
    batch = _batch()
    rots_0, trans_0 = align_and_centre(batch.rots, batch.trans, batch.residue_mask)
    L = trans_0.shape[1]
    oracle = _Oracle(StarMDCore(cfg).net, rots_0, trans_0)
    rots, trans = generate_history(oracle, SE3Diffuser(cfg.diffusion), batch, rots_0, trans_0, SelfHistory(1.0, num_steps=4))
    assert torch.allclose(trans, trans_0, atol=1e-5) and torch.allclose(rots, rots_0, atol=1e-5)
    assert len(oracle.calls) == 4
    args = oracle.calls[0]
    G = L - 1
    assert torch.equal(args[5][:, :G], rots_0[:, :G]) and torch.equal(args[6][:, :G], trans_0[:, :G])  # clean MD context
    assert torch.equal(args[9], block_causal_frame_index(G)) and torch.equal(args[10], block_causal_mask(G))
    assert torch.equal(args[12][:, G:], trans_0[:, :G - 1])  # sample ℓ's template: MD frame ℓ-1
    assert torch.equal(args[13], batch.aatype)  # every amino-acid type seen, as at inference
    assert [float(a[7][0, -1]) for a in oracle.calls] == pytest.approx([float(x) for x in SE3Diffuser(cfg.diffusion).timesteps(4)])


def test_self_history_in_training_keeps_clean_targets_and_leaves_rng_alone_when_off(monkeypatch):
    import openmm_starmd.training.block_causal as bc

    cfg = tiny_v3()
    batch = _batch()
    seen = {}

    def capture_target(diffuser, pred, target, loss_cfg):
        seen["target"] = target
        return {"total": pred.trans.sum()}

    monkeypatch.setattr(bc, "compute_losses", capture_target)
    net = randomize_(StarMDCore(cfg), seed=14, std=0.3).net
    diffuser = SE3Diffuser(cfg.diffusion)
    clean_rots, clean_trans = bc.align_and_centre(batch.rots, batch.trans, batch.residue_mask)
    totals = []
    for history in (None, bc.SelfHistory(0.0), bc.SelfHistory(1.0, num_steps=2)):
        torch.manual_seed(14)
        out = bc.training_losses(BlockCausalModel(net), diffuser, batch, cfg, LossConfig(), self_history=history)
        totals.append(float(out["total"].detach()))
        assert torch.equal(seen["target"].trans_0, clean_trans[:, 1:])
    assert totals[0] == totals[1]  # off: bit-identical to a run without the option
    assert totals[2] != totals[0]
    with pytest.raises(ValueError, match="probability"):
        bc.SelfHistory(1.5).validate()
    with pytest.raises(ValueError, match="2 reverse"):
        bc.SelfHistory(0.5, num_steps=1).validate()
    with pytest.raises(ValueError, match="1 level"):
        bc.SelfHistory(0.5, levels=0).validate()


class _Recording(BlockCausalModel):
    def __init__(self, net):
        super().__init__(net)
        self.calls = []

    def forward(self, *args):
        self.calls.append(args)
        return super().forward(*args)


def test_self_history_levels_condition_each_level_on_the_previous_levels_samples():
    from openmm_starmd.training.block_causal import SelfHistory, align_and_centre, generate_history

    cfg = tiny_v3()
    batch = _batch()
    rots_0, trans_0 = align_and_centre(batch.rots, batch.trans, batch.residue_mask)
    L = trans_0.shape[1]
    G = L - 1
    diffuser = SE3Diffuser(cfg.diffusion)
    net = randomize_(StarMDCore(cfg), seed=15, std=0.3).net
    torch.manual_seed(15)
    r1, x1 = generate_history(BlockCausalModel(net), diffuser, batch, rots_0, trans_0, SelfHistory(1.0, num_steps=3))
    torch.manual_seed(15)  # the first level draws the same noise
    recording = _Recording(net)
    r2, x2 = generate_history(recording, diffuser, batch, rots_0, trans_0, SelfHistory(1.0, num_steps=3, levels=2))
    assert len(recording.calls) == 6
    second = recording.calls[3]  # the first call of level 2
    # context: MD frame 0, then the level-1 samples of frames 1..G-1
    assert torch.equal(second[6][:, :1], trans_0[:, :1]) and torch.allclose(second[6][:, 1:G], x1[:, 1:G])
    assert torch.allclose(second[5][:, 1:G], r1[:, 1:G])
    # sample l's template: the level-1 sample l-1 (MD frame 0 for the first)
    assert torch.allclose(second[12][:, G:], torch.cat([trans_0[:, :1], x1[:, 1:G - 1]], 1))
    assert torch.equal(x2[:, 0], trans_0[:, 0]) and torch.equal(x2[:, L - 1], trans_0[:, L - 1])
    assert float((x2[:, 2:G] - x1[:, 2:G]).abs().max()) > 1e-3  # later frames see generated history
    # a perfect denoiser still returns the MD history after any number of levels
    oracle = _Oracle(StarMDCore(cfg).net, rots_0, trans_0)
    rots, trans = generate_history(oracle, diffuser, batch, rots_0, trans_0, SelfHistory(1.0, num_steps=2, levels=3))
    assert torch.allclose(trans, trans_0, atol=1e-5) and torch.allclose(rots, rots_0, atol=1e-5)
    assert len(oracle.calls) == 6
