"""All weight initialisation of the STAR-MD network, in one place.

Linear layers: truncated-normal fan-in (LeCun) init, zero bias. Zero-initialised (so the
untrained network is the identity map on frames and every residual branch starts off):
the AdaLN modulations (shift, scale and gate), the skip mixes, the backbone update, the template-offset and
context-motion inputs and the last layer's weights of the torsion head (its bias starts every torsion at angle 0). IPA's point-attention head weights start at softplus^-1(1).
"""
from __future__ import annotations

import math

import torch
from torch import nn


def _lecun_(linear: nn.Linear) -> None:
    std = math.sqrt(1.0 / linear.in_features)
    nn.init.trunc_normal_(linear.weight, std=std, a=-2 * std, b=2 * std)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)


def init_weights(model: nn.Module) -> None:
    from openmm_starmd.model.blocks import BackboneUpdate, DiffusionBlock, SkipMix

    for module in model.modules():
        if isinstance(module, nn.Linear):
            _lecun_(module)
    for module in model.modules():
        if isinstance(module, DiffusionBlock):
            nn.init.zeros_(module.modulation.weight)
            nn.init.zeros_(module.modulation.bias)
        if isinstance(module, SkipMix):
            nn.init.zeros_(module.linear.weight)
            nn.init.zeros_(module.linear.bias)
        if isinstance(module, BackboneUpdate):
            nn.init.zeros_(module.linear.weight)
            nn.init.zeros_(module.linear.bias)
    for name in ("offset_embed", "motion_embed"):
        inputs = getattr(model, name, None)
        if isinstance(inputs, nn.Linear):
            nn.init.zeros_(inputs.weight)
            nn.init.zeros_(inputs.bias)
    head = getattr(model, "torsion_head", None)
    if head is not None:
        # Zero weights, bias (sin, cos) = (0, 1) per torsion: the raw output starts at unit length,
        # where the (sin, cos) normalisation is well conditioned (at zero length its gradient is
        # ~1/sqrt(eps) and swamps every other loss term under gradient clipping).
        nn.init.zeros_(head[-1].weight)
        with torch.no_grad():
            head[-1].bias.copy_(torch.tensor([0.0, 1.0]).repeat(head[-1].bias.numel() // 2))
