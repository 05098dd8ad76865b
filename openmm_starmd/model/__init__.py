"""The STAR-MD network, its KV-cached rollout and TorchScript export.

Glossary of tensor letters used in shapes throughout ``model/``:

    B  batch (replicas of one protein, or equal-length crops)
    L  frames of a trajectory (context length); F frames in one call
    N  residues
    H  attention heads;  D  channels per head
    C  channels (c_s singles, c_z pairs, c_cond conditioning)
    M  B·F structures flattened for per-frame layers (IPA)
    P  query/key points of IPA;  V  value points
"""
from openmm_starmd.model.config import StarMDConfig, paper, preset, small, tiny
from openmm_starmd.model.core import StarMDCore
from openmm_starmd.model.rollout import Frame, Rollout
from openmm_starmd.model.starmd import StarMD, block_causal_frame_index, block_causal_mask

__all__ = ["StarMDConfig", "StarMDCore", "StarMD", "Rollout", "Frame", "tiny", "small", "paper", "preset",
           "block_causal_mask", "block_causal_frame_index"]
