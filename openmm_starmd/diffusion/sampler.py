"""Reverse-diffusion sampling of one frame with any denoiser (eager Python loop).

The exported core runs the same loop in TorchScript; this one serves training-time
validation, tests and experiments with a Python callable as the denoiser. With
``generator=None`` it draws its noise from torch's global generator in the core's order
(prior uniforms, prior axis normals, prior translation normals, then per step rotation
normals and translation normals), so both loops agree for the same seed and denoiser.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import torch

from openmm_starmd.diffusion.se3 import SE3Diffuser

# denoiser(rots_t [..., N, 3, 3], trans_t [..., N, 3] nm, t) -> (rots_0_hat, trans_0_hat)
Denoiser = Callable[[torch.Tensor, torch.Tensor, float], Tuple[torch.Tensor, torch.Tensor]]


@dataclass
class ReverseSample:
    """Result of :func:`reverse_sample`: the last x̂_0 (the generated frame, SPEC §3) and the
    noisy state x_{t_min} it was predicted from. rots ``[..., N, 3, 3]``, trans ``[..., N, 3]`` nm."""

    rots: torch.Tensor
    trans: torch.Tensor
    rots_t: torch.Tensor
    trans_t: torch.Tensor


def reverse_sample(
    diffuser: SE3Diffuser,
    denoiser: Denoiser,
    shape: List[int],
    mask: Optional[torch.Tensor] = None,
    num_steps: Optional[int] = None,
    ode: Optional[bool] = None,
    noise_scale: Optional[float] = None,
    time_spacing: float = 1.0,
    noise_switch_t: float = 1.0,
    ode_noise: float = 0.0,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device] = None,
) -> ReverseSample:
    """Generate frames of batch-and-residue ``shape`` = [..., N] from the prior.

    Evaluates the denoiser at each of ``diffuser.timesteps(num_steps)`` (1.0 down to t_min) and
    takes a reverse step between consecutive times. ``num_steps``, ``ode`` and ``noise_scale``
    default to the diffuser's configuration; ``time_spacing`` places the times (see
    :meth:`SE3Diffuser.timesteps`; 1: evenly spaced). Steps from a time t > ``noise_switch_t`` take
    the exact SDE (noise scale 1), the others ``noise_scale``, as the exported core's
    ``sample_frame`` does (1: ``noise_scale`` at every step). With ``ode`` every step adds noise
    ``ode_noise`` with the drift that keeps the data's marginals (0: the probability-flow ODE).
    """
    num_steps = diffuser.num_steps if num_steps is None else num_steps
    ode = diffuser.ode if ode is None else ode
    noise_scale = diffuser.noise_scale if noise_scale is None else noise_scale
    if not callable(denoiser):
        raise TypeError(f"denoiser must be callable (rots_t, trans_t, t) -> (rots_0_hat, trans_0_hat), got {type(denoiser).__name__}")
    if not 0.0 <= float(noise_switch_t) <= 1.0:
        raise ValueError(f"noise_switch_t must be a diffusion time in [0, 1], got {noise_switch_t}")
    if not 0.0 <= float(ode_noise) <= 1.0:
        raise ValueError(f"ode_noise must lie in [0, 1] (0: the probability-flow ODE, 1: the reverse SDE), got {ode_noise}")
    shape = [int(n) for n in shape]
    ts = [float(t) for t in diffuser.timesteps(num_steps, time_spacing)]
    u = torch.rand(shape, generator=generator, device=device)
    axis = torch.randn(shape + [3], generator=generator, device=device)
    z = torch.randn(shape + [3], generator=generator, device=device)
    rots, trans = diffuser.prior_from_noise(u, axis, z, mask)
    rots_0, trans_0 = rots, trans
    for i, t in enumerate(ts):
        rots_0, trans_0 = denoiser(rots, trans, t)
        if i + 1 == len(ts):
            break
        z_rot = torch.randn(shape + [3], generator=generator, device=device)
        z_trans = torch.randn(shape + [3], generator=generator, device=device)
        step_noise = ode_noise if ode else (1.0 if t > noise_switch_t else noise_scale)
        rots, trans = diffuser.reverse_step(rots, trans, rots_0, trans_0, t, t - ts[i + 1], z_rot, z_trans, ode, step_noise, mask)
    return ReverseSample(rots=rots_0, trans=trans_0, rots_t=rots, trans_t=trans)
