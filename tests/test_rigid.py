"""SO(3) maps and rigid transforms: round trips, identities, known answers, Haar statistics."""
import math

import pytest
import torch

from openmm_starmd.geometry import so3
from openmm_starmd.geometry.rigid import Rigid, Rotation, rigid_apply, rigid_compose, rigid_invert_apply


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _random_rotvecs(n: int, angles: torch.Tensor, seed: int) -> torch.Tensor:
    axis = torch.randn(n, 3, generator=_gen(seed), dtype=torch.float64)
    return axis / axis.norm(dim=-1, keepdim=True) * angles[:, None]


def _quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product of (w, x, y, z) quaternions."""
    w1, x1, y1, z1 = a.unbind(-1)
    w2, x2, y2, z2 = b.unbind(-1)
    return torch.stack(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ],
        -1,
    )


def _assert_rotation(r: torch.Tensor, atol: float) -> None:
    eye = torch.eye(3, dtype=r.dtype).expand(r.shape)
    torch.testing.assert_close(r @ r.transpose(-1, -2), eye, atol=atol, rtol=0)
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(r.shape[:-2], dtype=r.dtype), atol=atol, rtol=0)


# --------------------------------------------------------------------------- SO(3) maps
def test_hat_vee_cross_product():
    v, x = torch.randn(2, 13, 3, generator=_gen(0), dtype=torch.float64)
    torch.testing.assert_close(so3.hat(v) @ x[..., None], torch.linalg.cross(v, x)[..., None])
    torch.testing.assert_close(so3.vee(so3.hat(v)), v)


@pytest.mark.parametrize(
    "angles",
    [
        torch.rand(101, generator=_gen(1), dtype=torch.float64) * (math.pi - 1e-3),  # generic
        torch.tensor([0.0, 1e-9, 1e-6, 5e-5, 9.9e-5, 1.01e-4, 1e-3], dtype=torch.float64),  # near 0
        math.pi - torch.tensor([1e-3, 1e-4, 1e-5, 1e-6], dtype=torch.float64),  # near pi
    ],
    ids=["generic", "near_zero", "near_pi"],
)
def test_exp_log_round_trip(angles):
    v = _random_rotvecs(len(angles), angles, seed=2)
    r = so3.rotvec_to_rotmat(v)
    _assert_rotation(r, atol=1e-12)
    # known answer: trace R = 1 + 2 cos(angle)
    torch.testing.assert_close(r.diagonal(dim1=-2, dim2=-1).sum(-1), 1 + 2 * torch.cos(angles), atol=1e-12, rtol=0)
    torch.testing.assert_close(so3.rotmat_to_rotvec(r), v, atol=1e-9, rtol=0)


def test_log_at_exactly_pi_gives_the_same_rotation():
    v = _random_rotvecs(7, torch.full((7,), math.pi, dtype=torch.float64), seed=3)
    r = so3.rotvec_to_rotmat(v)
    back = so3.rotmat_to_rotvec(r)
    torch.testing.assert_close(back.norm(dim=-1), torch.full((7,), math.pi, dtype=torch.float64))
    torch.testing.assert_close(so3.rotvec_to_rotmat(back), r, atol=1e-12, rtol=0)


def test_log_exp_round_trip_float32_random_rotations():
    r = so3.uniform_random_rotmat([5, 7], generator=_gen(4))
    torch.testing.assert_close(so3.rotvec_to_rotmat(so3.rotmat_to_rotvec(r)), r, atol=2e-6, rtol=0)


def test_exp_map_gradient_finite_at_zero():
    v = torch.zeros(3, 3, dtype=torch.float64, requires_grad=True)
    r = so3.rotvec_to_rotmat(v)
    x = torch.tensor([0.3, -1.2, 0.7], dtype=torch.float64)
    (r @ x).sum().backward()
    # d/dv (R x) at v = 0 is -hat(x), so the gradient of sum(R x) is sum_rows(-hat(x)) per v
    expected = -so3.hat(x).sum(0).expand(3, 3)
    torch.testing.assert_close(v.grad, expected)


def test_quaternion_round_trip_and_composition():
    q = torch.randn(11, 4, generator=_gen(5), dtype=torch.float64)
    q = q / q.norm(dim=-1, keepdim=True)
    r = so3.quat_to_rotmat(q)
    _assert_rotation(r, atol=1e-12)
    back = so3.rotmat_to_quat(r)
    sign = torch.sign((back * q).sum(-1, keepdim=True))  # q and -q are the same rotation
    torch.testing.assert_close(back * sign, q, atol=1e-12, rtol=0)
    q2 = torch.randn(11, 4, generator=_gen(6), dtype=torch.float64)
    torch.testing.assert_close(so3.quat_to_rotmat(_quat_mul(q, q2)), r @ so3.quat_to_rotmat(q2), atol=1e-12, rtol=0)


def test_quaternion_near_pi_rotations():
    # rotations by ~pi have w ~ 0: the other branches of rotmat_to_quat must take over
    v = _random_rotvecs(9, torch.full((9,), math.pi - 1e-7, dtype=torch.float64), seed=7)
    r = so3.rotvec_to_rotmat(v)
    torch.testing.assert_close(so3.quat_to_rotmat(so3.rotmat_to_quat(r)), r, atol=1e-12, rtol=0)


def test_uniform_random_rotmat_haar_moments():
    n = 20000
    r = so3.uniform_random_rotmat([n], generator=_gen(8), dtype=torch.float64)
    _assert_rotation(r, atol=1e-12)
    # Haar measure: E[R_ij] = 0, Var[R_ij] = 1/3; trace = 1 + 2 cos(angle), E = 0, Var = 1
    five_sigma_entry = 5 * math.sqrt(1 / 3 / n)
    assert r.mean(0).abs().max().item() < five_sigma_entry
    trace = r.diagonal(dim1=-2, dim2=-1).sum(-1)
    assert abs(trace.mean().item()) < 5 / math.sqrt(n)
    assert abs(trace.var().item() - 1.0) < 5 * math.sqrt(2.0 / n) * 1.5  # var of a sample variance, loose


# --------------------------------------------------------------------------- rigid transforms
def _random_rigid(shape, seed):
    g = _gen(seed)
    return Rigid(Rotation(so3.uniform_random_rotmat(list(shape), generator=g)), torch.randn(*shape, 3, generator=g))


def test_rigid_apply_invert_apply_round_trip():
    t = _random_rigid((5, 7), seed=10)
    x = torch.randn(5, 7, 3, generator=_gen(11))
    torch.testing.assert_close(t.invert_apply(t.apply(x)), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(t.invert().apply(x), t.invert_apply(x), atol=1e-5, rtol=0)
    # rigid motions preserve distances
    y = torch.randn(5, 7, 3, generator=_gen(12))
    torch.testing.assert_close((t.apply(x) - t.apply(y)).norm(dim=-1), (x - y).norm(dim=-1), atol=1e-5, rtol=0)


def test_rigid_compose_identities():
    a, b, c = (_random_rigid((7,), seed=s) for s in (13, 14, 15))
    x = torch.randn(7, 3, generator=_gen(16))
    torch.testing.assert_close(a.compose(b).apply(x), a.apply(b.apply(x)), atol=1e-5, rtol=0)
    ab_c, a_bc = a.compose(b).compose(c), a.compose(b.compose(c))
    torch.testing.assert_close(ab_c.to_tensor_4x4(), a_bc.to_tensor_4x4(), atol=1e-5, rtol=0)
    ident = a.compose(a.invert())
    torch.testing.assert_close(ident.to_tensor_4x4(), Rigid.identity((7,)).to_tensor_4x4(), atol=1e-5, rtol=0)
    # compose equals the product of homogeneous matrices
    torch.testing.assert_close(a.compose(b).to_tensor_4x4(), a.to_tensor_4x4() @ b.to_tensor_4x4(), atol=1e-5, rtol=0)


def test_free_functions_match_classes():
    a, b = _random_rigid((3, 5), seed=17), _random_rigid((3, 5), seed=18)
    x = torch.randn(3, 5, 3, generator=_gen(19))
    torch.testing.assert_close(rigid_apply(a.rots.rot_mats, a.trans, x), a.apply(x))
    torch.testing.assert_close(rigid_invert_apply(a.rots.rot_mats, a.trans, x), a.invert_apply(x))
    r, t = rigid_compose(a.rots.rot_mats, a.trans, b.rots.rot_mats, b.trans)
    torch.testing.assert_close(r, a.compose(b).rots.rot_mats)
    torch.testing.assert_close(t, a.compose(b).trans)


def test_rigid_tensor_round_trips_and_container():
    t = _random_rigid((5, 7), seed=20)
    for back in (Rigid.from_tensor_4x4(t.to_tensor_4x4()), Rigid.from_tensor_7(t.to_tensor_7())):
        torch.testing.assert_close(back.rots.rot_mats, t.rots.rot_mats, atol=1e-5, rtol=0)
        torch.testing.assert_close(back.trans, t.trans)
    assert t[1].shape == (7,) and t[:, 2].shape == (5,) and t.unsqueeze(-1).shape == (5, 7, 1)
    torch.testing.assert_close(t.unsqueeze(-1).apply(torch.zeros(5, 7, 1, 3))[..., 0, :], t.trans)
    with pytest.raises(ValueError, match="trans must have shape"):
        Rigid(t.rots, torch.zeros(5, 3))
    with pytest.raises(ValueError, match="rot_mats"):
        Rotation(torch.zeros(5, 3, 4))


def test_rotation_rotvec_constructors():
    v = _random_rotvecs(13, torch.rand(13, generator=_gen(21), dtype=torch.float64) * 3.0, seed=22).float()
    rot = Rotation.from_rotvec(v)
    torch.testing.assert_close(rot.to_rotvec(), v, atol=1e-5, rtol=0)
    torch.testing.assert_close(Rotation.from_quat(rot.to_quat()).rot_mats, rot.rot_mats, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- backbone frames
def test_frames_from_three_points_orthonormal_and_af2_convention():
    g = _gen(23)
    x_n, x_ca, x_c = torch.randn(3, 5, 7, 3, generator=g, dtype=torch.float64)
    rots, trans = so3.frames_from_three_points(x_n, x_ca, x_c)
    _assert_rotation(rots, atol=1e-6)  # unit vectors are v / (|v| + 1e-8), so not exact to 1e-10
    torch.testing.assert_close(trans, x_ca)
    local_c = rigid_invert_apply(rots, trans, x_c)
    local_n = rigid_invert_apply(rots, trans, x_n)
    # C on +x; N in the xy plane with positive y
    torch.testing.assert_close(local_c[..., 0], (x_c - x_ca).norm(dim=-1), atol=1e-6, rtol=0)
    torch.testing.assert_close(local_c[..., 1:], torch.zeros_like(local_c[..., 1:]), atol=1e-6, rtol=0)
    assert (local_n[..., 1] > 0).all()
    torch.testing.assert_close(local_n[..., 2], torch.zeros_like(local_n[..., 2]), atol=1e-6, rtol=0)


def test_frames_from_three_points_equivariant():
    g = _gen(24)
    x = torch.randn(3, 7, 3, generator=g, dtype=torch.float64)
    r = so3.uniform_random_rotmat([], generator=g, dtype=torch.float64)
    t = torch.randn(3, generator=g, dtype=torch.float64)
    rots, trans = so3.frames_from_three_points(*x)
    rots2, trans2 = so3.frames_from_three_points(*(x @ r.T + t))
    torch.testing.assert_close(rots2, r @ rots, atol=1e-10, rtol=0)
    torch.testing.assert_close(trans2, trans @ r.T + t)
