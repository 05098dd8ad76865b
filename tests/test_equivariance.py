"""A global rigid motion of every input frame moves the predicted frames the same way and leaves
invariant outputs (torsions) unchanged."""
import torch

from conftest import randomize_, random_protein
from openmm_starmd.geometry.so3 import rotvec_to_rotmat, uniform_random_rotmat
from openmm_starmd.model import StarMD, block_causal_frame_index, block_causal_mask, tiny

N, L, B = 7, 5, 2


def _inputs(seed):
    g = torch.Generator().manual_seed(seed)
    aatype, resid, rots, trans = random_protein(N, seed)
    F = 2 * L - 1
    dr = rotvec_to_rotmat(0.3 * torch.randn(B, F, N, 3, generator=g))
    R = dr @ rots.expand(B, F, N, 3, 3)
    X = trans + 0.1 * torch.randn(B, F, N, 3, generator=g)
    t = torch.cat([0.05 * torch.rand(B, L, generator=g), torch.rand(B, L - 1, generator=g)], 1)
    return aatype.expand(B, N), resid.expand(B, N), R, X, t


def _forward(net, aatype, resid, R, X, t):
    s_seq, z_static = net.embed_protein(aatype, resid, torch.zeros_like(resid))
    with torch.no_grad():
        return net.forward_frames(s_seq, z_static, aatype, resid, R, X, t, torch.full([B], 0.3),
                                  block_causal_frame_index(L), block_causal_mask(L), [], [], 0, False)


def test_global_rigid_motion_equivariance():
    torch.manual_seed(0)
    net = randomize_(StarMD(tiny()), seed=1).eval()
    aatype, resid, R, X, t = _inputs(2)
    g_rot = uniform_random_rotmat([], generator=torch.Generator().manual_seed(3))
    g_trans = torch.tensor([1.3, -0.7, 2.1])
    r0, x0, tor, _ = _forward(net, aatype, resid, R, X, t)
    r0_g, x0_g, tor_g, _ = _forward(net, aatype, resid, g_rot @ R, X @ g_rot.T + g_trans, t)
    assert (r0_g - g_rot @ r0).abs().max() < 1e-4
    assert (x0_g - (x0 @ g_rot.T + g_trans)).abs().max() < 1e-4
    assert (tor_g - tor).abs().max() < 1e-4
    # the prediction is not trivially the input (the randomised network moves frames)
    assert (x0 - X).abs().max() > 1e-2


def test_per_frame_rigid_motion_invariance_of_history():
    """Each frame is embedded invariantly: moving one history frame rigidly on its own leaves the
    prediction for every other frame unchanged (only its own output moves with it)."""
    torch.manual_seed(0)
    net = randomize_(StarMD(tiny()), seed=4).eval()
    aatype, resid, R, X, t = _inputs(5)
    r0, x0, tor, _ = _forward(net, aatype, resid, R, X, t)
    g_rot = uniform_random_rotmat([], generator=torch.Generator().manual_seed(6))
    R2, X2 = R.clone(), X.clone()
    R2[:, 1] = g_rot @ R[:, 1]
    X2[:, 1] = X[:, 1] @ g_rot.T
    r0b, x0b, torb, _ = _forward(net, aatype, resid, R2, X2, t)
    others = [f for f in range(2 * L - 1) if f != 1]
    assert (x0b[:, others] - x0[:, others]).abs().max() < 1e-4
    assert (torb - tor).abs().max() < 1e-4
