"""The context's motion as an input (``StarMDConfig.context_motion``): each residue's displacement and
turn from the frame before the template to the template, invariant to a rigid motion of either frame,
the same in the block-causal training pass and the KV-cached rollout, and off in a warm start until
trained."""
import pytest
import torch

from conftest import randomize_
from openmm_starmd.diffusion import SE3Diffuser
from openmm_starmd.geometry.so3 import uniform_random_rotmat
from openmm_starmd.model import StarMDCore, block_causal_frame_index, block_causal_mask
from openmm_starmd.model.config import tiny_v3, tiny_v4
from openmm_starmd.model.embeddings import MOTION_FEATURES, motion_features
from openmm_starmd.model.export import script_core
from openmm_starmd.training.block_causal import BlockCausalModel, block_causal_previous, training_losses
from openmm_starmd.training.losses import LossConfig
from test_generalising_inputs import L, N, _batch, _cached_error, _frames, _perturb


def _pair(seed=0):
    aatype, resid, clean, g = _frames(1, seed, scale=0.1)
    (r0, t0), (r1, t1) = clean[0], clean[1]
    return r1[:, None], t1[:, None], r0[:, None], t0[:, None]


def test_motion_features_are_invariant_to_a_rigid_motion_of_either_frame():
    rots, trans, prev_rots, prev_trans = _pair()
    has = torch.ones(1, 1)
    f0 = motion_features(rots, trans, prev_rots, prev_trans, has)
    assert f0.shape == (1, 1, N, MOTION_FEATURES)
    for seed in range(3):
        R = uniform_random_rotmat([], generator=torch.Generator().manual_seed(seed))
        shift = torch.tensor([0.3, -1.1, 0.8]) * (seed + 1)
        moved_prev = motion_features(rots, trans, R @ prev_rots, prev_trans @ R.T + shift, has)
        moved_both = motion_features(R @ rots, trans @ R.T + shift, R @ prev_rots, prev_trans @ R.T + shift, has)
        assert (f0 - moved_prev).abs().max() < 1e-4
        assert (f0 - moved_both).abs().max() < 1e-4
    # the displacement is in Å and its length is the norm of the first three features
    assert torch.allclose(f0[..., 12], f0[..., :3].norm(dim=-1), atol=1e-5)
    assert float(f0[..., 12].mean()) > 0.5  # 0.1 nm per component of perturbation: about 1.5 Å
    # a frame that did not move: only the flag is left; no previous frame: all zero
    still = motion_features(rots, trans, rots, trans, has)
    assert still[..., :13].abs().max() < 1e-3 and torch.equal(still[..., 13], torch.ones(1, 1, N))
    assert torch.equal(motion_features(rots, trans, prev_rots, prev_trans, torch.zeros(1, 1)), torch.zeros(1, 1, N, MOTION_FEATURES))


def test_block_causal_previous_frames_are_those_before_each_template():
    B, F = 2, 2 * L - 1
    hist = torch.arange(L, dtype=torch.float32)[None, :, None, None].expand(B, L, N, 3)
    tmpl_t = torch.cat([hist, hist[:, :-1]], 1)
    tmpl_r = torch.eye(3).expand(B, F, N, 3, 3)
    _, prev_t, has = block_causal_previous(tmpl_r, tmpl_t)
    assert has[0].tolist() == [0.0] + [1.0] * (L - 1) + [0.0] + [1.0] * (L - 2)
    present = has[0] > 0
    # clean ℓ: frame ℓ-1; noisy ℓ (template ℓ-1): frame ℓ-2
    assert torch.equal(prev_t[0, present, 0, 0], tmpl_t[0, present, 0, 0] - 1.0)


def _cached_vs_full_error(core, B, seed):
    """Largest difference between the KV-cached denoiser and the block-causal training pass
    (BlockCausalModel, which derives the frames before the templates itself)."""
    aatype, resid, clean, g = _frames(B, seed=seed)
    noisy = [_perturb(r, t, 0.3, g) for r, t in clean[1:]]
    t_noisy = torch.rand(B, L - 1, generator=g)
    log_stride = torch.full([B], 0.1)
    rots = torch.stack([r for r, _ in clean] + [r for r, _ in noisy], 1)
    trans = torch.stack([t for _, t in clean] + [t for _, t in noisy], 1)
    tmpl_r = torch.stack([r for r, _ in clean] + [r for r, _ in clean[:-1]], 1)
    tmpl_t = torch.stack([t for _, t in clean] + [t for _, t in clean[:-1]], 1)
    model = BlockCausalModel(core.net)
    chain = torch.zeros_like(resid)
    with torch.no_grad():
        r_full, x_full, tor_full, _ = model(aatype, resid, chain, None, None, rots, trans,
                                            torch.cat([torch.zeros(B, L), t_noisy], 1), log_stride,
                                            block_causal_frame_index(L), block_causal_mask(L), tmpl_r, tmpl_t)
    return _cached_error(core, aatype, resid, clean, noisy, t_noisy, log_stride, (r_full, x_full, tor_full))


def test_cached_denoise_equals_block_causal_training_pass_with_motion():
    torch.manual_seed(0)
    core = randomize_(StarMDCore(tiny_v4()), seed=0, std=0.3).eval()
    assert core.net.motion_embed.weight.abs().max() > 0
    assert _cached_vs_full_error(core, B=2, seed=0) < 1e-4


def _sample_after(core, history, seed, stride=0.1):
    aatype, resid = history[0], history[1]
    core.start(aatype, resid, torch.zeros_like(resid), len(history[2]) + 1)
    log_stride = torch.log10(torch.full([aatype.shape[0]], stride))
    for r, t in history[2]:
        core.append_frame(r, t, log_stride, 0.0)
    torch.manual_seed(seed)
    with torch.no_grad():
        return core.sample_frame(log_stride, 4, False, 0.25, 1.0, 1.0)


def test_warm_start_keeps_the_parent_output_and_training_makes_the_motion_count():
    torch.manual_seed(1)
    parent = randomize_(StarMDCore(tiny_v3()), seed=1, std=0.3).eval()
    child = StarMDCore(tiny_v4()).eval()
    missing, unexpected = child.net.load_state_dict(parent.net.state_dict(), strict=False)
    assert sorted(missing) == ["motion_embed.bias", "motion_embed.weight"] and not unexpected
    aatype, resid, clean, _ = _frames(1, seed=5, scale=0.1)
    moving = (aatype, resid, clean[:3])
    frozen = (aatype, resid, [clean[2]] * 3)
    a = _sample_after(parent, moving, seed=7)
    b = _sample_after(child, moving, seed=7)
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(a, b))
    # with the zero-initialised input, the history's motion changes nothing the rollout needs
    # beyond what the parent sees; once the input has weights, a moving and a frozen history differ
    randomize_(child.net.motion_embed, seed=2, std=0.3)
    c = _sample_after(child, moving, seed=7)
    d = _sample_after(child, frozen, seed=7)
    assert (c[1] - d[1]).abs().max() > 1e-3


def test_every_parameter_gets_a_gradient_with_motion():
    cfg = tiny_v4()
    torch.manual_seed(4)
    model = BlockCausalModel(StarMDCore(cfg).net)
    losses = training_losses(model, SE3Diffuser(cfg.diffusion), _batch(), cfg, LossConfig())
    losses["total"].backward()
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []
    # in a trained network (random weights here) the zero-initialised input still learns
    randomize_(model, seed=4, std=0.3)
    with torch.no_grad():
        model.net.motion_embed.weight.zero_()
        model.net.motion_embed.bias.zero_()
    model.zero_grad()
    training_losses(model, SE3Diffuser(cfg.diffusion), _batch(), cfg, LossConfig())["total"].backward()
    assert model.net.motion_embed.weight.grad.abs().max() > 0


@pytest.mark.parametrize("replicas", [1, 2])
def test_scripted_core_with_motion_equals_eager(replicas):
    torch.manual_seed(3)
    core = randomize_(StarMDCore(tiny_v4()), seed=3, std=0.3).eval()
    aatype, resid, clean, _ = _frames(replicas, seed=6, scale=0.1)
    history = (aatype, resid, clean[:3])
    eager = _sample_after(core, history, seed=11)
    scripted = _sample_after(script_core(core), history, seed=11)
    assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip(eager, scripted))
