"""Rigid transforms as value classes (OpenFold ``Rigid``/``Rotation`` style), fp32 torch.

A rigid transform T = (R, t) maps local coordinates x to global R x + t.
The free functions (:func:`rigid_apply`, :func:`rigid_invert_apply`,
:func:`rigid_compose`) are the same maths on raw tensors; the network and the
sampler call them directly so they stay TorchScript-compatible, and the
classes below are thin wrappers for everything else.
"""
from __future__ import annotations

import torch

from openmm_starmd.geometry import so3


def rigid_apply(rots: torch.Tensor, trans: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """R x + t for rots ``[..., 3, 3]``, trans ``[..., 3]``, points ``[..., 3]``."""
    return torch.einsum("...ij,...j->...i", rots, x) + trans


def rigid_invert_apply(rots: torch.Tensor, trans: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """R^T (x - t): global points ``[..., 3]`` into the local frame."""
    return torch.einsum("...ji,...j->...i", rots, x - trans)


def rigid_compose(
    rots_a: torch.Tensor, trans_a: torch.Tensor, rots_b: torch.Tensor, trans_b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """T_a o T_b = (R_a R_b, R_a t_b + t_a)."""
    return rots_a @ rots_b, rigid_apply(rots_a, trans_a, trans_b)


class Rotation:
    """A batch of rotations stored as fp32 matrices ``[..., 3, 3]``."""

    def __init__(self, rot_mats: torch.Tensor):
        if rot_mats.shape[-2:] != (3, 3):
            raise ValueError(f"rot_mats must have shape [..., 3, 3], got {tuple(rot_mats.shape)}")
        self.rot_mats = rot_mats.float()

    # constructors
    @staticmethod
    def identity(shape: tuple[int, ...], device: torch.device | None = None) -> "Rotation":
        return Rotation(torch.eye(3, device=device).expand(*shape, 3, 3).clone())

    @staticmethod
    def from_quat(quat: torch.Tensor) -> "Rotation":
        return Rotation(so3.quat_to_rotmat(quat))

    @staticmethod
    def from_rotvec(rotvec: torch.Tensor) -> "Rotation":
        return Rotation(so3.rotvec_to_rotmat(rotvec))

    # conversions
    def to_quat(self) -> torch.Tensor:
        return so3.rotmat_to_quat(self.rot_mats)

    def to_rotvec(self) -> torch.Tensor:
        return so3.rotmat_to_rotvec(self.rot_mats)

    # algebra
    def compose(self, other: "Rotation") -> "Rotation":
        return Rotation(self.rot_mats @ other.rot_mats)

    def invert(self) -> "Rotation":
        return Rotation(self.rot_mats.transpose(-1, -2))

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("...ij,...j->...i", self.rot_mats, x)

    def invert_apply(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("...ji,...j->...i", self.rot_mats, x)

    # container behaviour
    @property
    def shape(self) -> torch.Size:
        return self.rot_mats.shape[:-2]

    def __getitem__(self, index) -> "Rotation":
        index = index if isinstance(index, tuple) else (index,)
        return Rotation(self.rot_mats[index + (slice(None), slice(None))])

    def unsqueeze(self, dim: int) -> "Rotation":
        dim = dim if dim >= 0 else dim - 2
        return Rotation(self.rot_mats.unsqueeze(dim))

    def to(self, device: torch.device | str) -> "Rotation":
        return Rotation(self.rot_mats.to(device))

    def detach(self) -> "Rotation":
        return Rotation(self.rot_mats.detach())

    def __repr__(self) -> str:
        return f"Rotation(shape={tuple(self.shape)})"


class Rigid:
    """A batch of rigid transforms (rotation ``[..., 3, 3]`` + translation ``[..., 3]``)."""

    def __init__(self, rots: Rotation, trans: torch.Tensor):
        if trans.shape[-1] != 3 or trans.shape[:-1] != rots.shape:
            raise ValueError(
                f"trans must have shape {tuple(rots.shape) + (3,)} to match the rotations, got {tuple(trans.shape)}"
            )
        self.rots = rots
        self.trans = trans.float()

    # constructors
    @staticmethod
    def identity(shape: tuple[int, ...], device: torch.device | None = None) -> "Rigid":
        return Rigid(Rotation.identity(shape, device), torch.zeros(*shape, 3, device=device))

    @staticmethod
    def from_tensors(rot_mats: torch.Tensor, trans: torch.Tensor) -> "Rigid":
        return Rigid(Rotation(rot_mats), trans)

    @staticmethod
    def from_3_points(x_n: torch.Tensor, x_ca: torch.Tensor, x_c: torch.Tensor) -> "Rigid":
        """Backbone frames from N, CA, C (AF2 Gram-Schmidt, origin at CA)."""
        rots, trans = so3.frames_from_three_points(x_n.float(), x_ca.float(), x_c.float())
        return Rigid(Rotation(rots), trans)

    @staticmethod
    def from_tensor_4x4(m: torch.Tensor) -> "Rigid":
        if m.shape[-2:] != (4, 4):
            raise ValueError(f"expected [..., 4, 4], got {tuple(m.shape)}")
        return Rigid(Rotation(m[..., :3, :3]), m[..., :3, 3])

    @staticmethod
    def from_tensor_7(t: torch.Tensor) -> "Rigid":
        """From ``[..., 7]`` = quaternion (w, x, y, z) + translation."""
        return Rigid(Rotation.from_quat(t[..., :4]), t[..., 4:])

    # conversions
    def to_tensor_4x4(self) -> torch.Tensor:
        m = torch.zeros(*self.shape, 4, 4, device=self.trans.device)
        m[..., :3, :3] = self.rots.rot_mats
        m[..., :3, 3] = self.trans
        m[..., 3, 3] = 1.0
        return m

    def to_tensor_7(self) -> torch.Tensor:
        return torch.cat([self.rots.to_quat(), self.trans], dim=-1)

    # algebra
    def compose(self, other: "Rigid") -> "Rigid":
        rots, trans = rigid_compose(self.rots.rot_mats, self.trans, other.rots.rot_mats, other.trans)
        return Rigid(Rotation(rots), trans)

    def invert(self) -> "Rigid":
        inv = self.rots.invert()
        return Rigid(inv, -inv.apply(self.trans))

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return rigid_apply(self.rots.rot_mats, self.trans, x)

    def invert_apply(self, x: torch.Tensor) -> torch.Tensor:
        return rigid_invert_apply(self.rots.rot_mats, self.trans, x)

    def scale_translation(self, factor: float) -> "Rigid":
        return Rigid(self.rots, self.trans * factor)

    # container behaviour
    @property
    def shape(self) -> torch.Size:
        return self.trans.shape[:-1]

    def __getitem__(self, index) -> "Rigid":
        index = index if isinstance(index, tuple) else (index,)
        return Rigid(self.rots[index], self.trans[index + (slice(None),)])

    def unsqueeze(self, dim: int) -> "Rigid":
        tdim = dim if dim >= 0 else dim - 1
        return Rigid(self.rots.unsqueeze(dim), self.trans.unsqueeze(tdim))

    def to(self, device: torch.device | str) -> "Rigid":
        return Rigid(self.rots.to(device), self.trans.to(device))

    def detach(self) -> "Rigid":
        return Rigid(self.rots.detach(), self.trans.detach())

    def __repr__(self) -> str:
        return f"Rigid(shape={tuple(self.shape)})"
