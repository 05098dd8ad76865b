"""Functional SO(3) maps on torch tensors (fp32, TorchScript-compatible).

Rotations are 3x3 matrices ``[..., 3, 3]`` acting on column vectors; rotation
vectors ``[..., 3]`` are axis * angle with the angle in [0, pi]; quaternions
``[..., 4]`` are (w, x, y, z). Every function here is plain torch so the
sampler and the network can be scripted.
"""
from __future__ import annotations

import torch




def hat(v: torch.Tensor) -> torch.Tensor:
    """Skew-symmetric matrix ``[..., 3, 3]`` of vectors ``[..., 3]`` (hat(v) x = v cross x)."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack(
        [torch.stack([o, -z, y], -1), torch.stack([z, o, -x], -1), torch.stack([-y, x, o], -1)], -2
    )


def vee(m: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hat` on the antisymmetric part of ``[..., 3, 3]``."""
    return 0.5 * torch.stack(
        [m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1
    )


def rotvec_to_rotmat(v: torch.Tensor) -> torch.Tensor:
    """Exponential map: rotation vectors ``[..., 3]`` -> matrices ``[..., 3, 3]`` (Rodrigues)."""
    angle = torch.linalg.norm(v, dim=-1, keepdim=True)[..., None]  # [..., 1, 1]
    small = angle < 1e-4
    safe = torch.where(small, torch.ones_like(angle), angle)
    a = torch.where(small, 1.0 - angle**2 / 6.0, torch.sin(safe) / safe)
    b = torch.where(small, 0.5 - angle**2 / 24.0, (1.0 - torch.cos(safe)) / safe**2)
    k = hat(v)
    eye = torch.eye(3, dtype=v.dtype, device=v.device).expand(k.shape)
    return eye + a * k + b * (k @ k)


def rotmat_to_rotvec(r: torch.Tensor) -> torch.Tensor:
    """Logarithm map: matrices ``[..., 3, 3]`` -> rotation vectors ``[..., 3]`` (angle in [0, pi]).

    Goes through the quaternion, which is stable for every angle including pi.
    """
    q = rotmat_to_quat(r)
    w = q[..., 0].clamp(-1.0, 1.0)
    xyz = q[..., 1:]
    # Choose the hemisphere with w >= 0 so the angle is in [0, pi].
    sign = torch.where(w < 0, -torch.ones_like(w), torch.ones_like(w))
    w = w * sign
    xyz = xyz * sign[..., None]
    sin_half = torch.linalg.norm(xyz, dim=-1)
    angle = 2.0 * torch.atan2(sin_half, w)
    small = sin_half < 1e-4
    scale = torch.where(small, 2.0 / w.clamp_min(1e-12), angle / sin_half.clamp_min(1e-12))
    return xyz * scale[..., None]


def _quat_basis(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Constant ``[16, 9]``: R (row-major) = (q q^T).flatten() @ basis for a unit q = (w, x, y, z).

    Row a*4+b holds the coefficient of q_a q_b in each of the 9 entries of R:
    R00 = w²+x²-y²-z², R01 = 2(xy-wz), R02 = 2(xz+wy), R10 = 2(xy+wz), R11 = w²-x²+y²-z²,
    R12 = 2(yz-wx), R20 = 2(xz-wy), R21 = 2(yz+wx), R22 = w²-x²-y²+z².
    """
    return torch.tensor([
        # R00  R01   R02   R10   R11   R12   R20   R21   R22
        [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],  # ww
        [0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 1.0, 0.0],  # wx
        [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0],  # wy
        [0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # wz
        [0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 1.0, 0.0],  # xw
        [1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, -1.0],  # xx
        [0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # xy
        [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0],  # xz
        [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0],  # yw
        [0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # yx
        [-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0],  # yy
        [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0],  # yz
        [0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # zw
        [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0],  # zx
        [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0],  # zy
        [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0],  # zz
    ], dtype=dtype, device=device)


def quat_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    """Quaternions ``[..., 4]`` (w, x, y, z; normalised here) -> matrices ``[..., 3, 3]``."""
    q = q / torch.linalg.norm(q, dim=-1, keepdim=True)
    outer = (q[..., :, None] * q[..., None, :]).flatten(-2)  # [..., 16]
    return torch.matmul(outer, _quat_basis(q.dtype, q.device)).unflatten(-1, (3, 3))


def rotmat_to_quat(r: torch.Tensor) -> torch.Tensor:
    """Matrices ``[..., 3, 3]`` -> unit quaternions ``[..., 4]`` (w, x, y, z).

    Picks, per rotation, the best-conditioned of the four standard formulas.
    """
    m00, m11, m22 = r[..., 0, 0], r[..., 1, 1], r[..., 2, 2]
    candidates = torch.stack(
        [
            torch.stack([1 + m00 + m11 + m22, r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]], -1),
            torch.stack([r[..., 2, 1] - r[..., 1, 2], 1 + m00 - m11 - m22, r[..., 0, 1] + r[..., 1, 0], r[..., 0, 2] + r[..., 2, 0]], -1),
            torch.stack([r[..., 0, 2] - r[..., 2, 0], r[..., 0, 1] + r[..., 1, 0], 1 - m00 + m11 - m22, r[..., 1, 2] + r[..., 2, 1]], -1),
            torch.stack([r[..., 1, 0] - r[..., 0, 1], r[..., 0, 2] + r[..., 2, 0], r[..., 1, 2] + r[..., 2, 1], 1 - m00 - m11 + m22], -1),
        ],
        -2,
    )  # [..., 4 candidates, 4]
    diag = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    best = diag.argmax(dim=-1, keepdim=True)  # [..., 1]
    q = torch.gather(candidates, -2, best[..., None].expand(best.shape + (4,))).squeeze(-2)
    return q / torch.linalg.norm(q, dim=-1, keepdim=True)


def frames_from_three_points(
    x_n: torch.Tensor, x_ca: torch.Tensor, x_c: torch.Tensor, eps: float = 1e-8
) -> tuple[torch.Tensor, torch.Tensor]:
    """AF2 Gram-Schmidt frames (supplement Alg. 21) from N, CA, C positions ``[..., 3]``.

    e1 points CA->C, e2 lies in the N-CA-C plane on the N side, e3 = e1 x e2;
    the origin is CA. Returns ``(rots [..., 3, 3], trans [..., 3])``.
    """
    v1 = x_c - x_ca
    v2 = x_n - x_ca
    e1 = v1 / (torch.linalg.norm(v1, dim=-1, keepdim=True) + eps)
    u2 = v2 - e1 * (e1 * v2).sum(-1, keepdim=True)
    e2 = u2 / (torch.linalg.norm(u2, dim=-1, keepdim=True) + eps)
    e3 = torch.linalg.cross(e1, e2, dim=-1)
    return torch.stack([e1, e2, e3], dim=-1), x_ca


def uniform_random_rotmat(shape: list[int], generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Haar-uniform random rotations ``[*shape, 3, 3]`` via normalised Gaussian quaternions."""
    q = torch.randn(shape + [4], generator=generator, dtype=torch.float64)
    return quat_to_rotmat(q).to(dtype)
