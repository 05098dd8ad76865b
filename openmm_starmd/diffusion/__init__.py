"""SE(3) diffusion of per-residue rigid frames (SPEC §3).

- :mod:`~openmm_starmd.diffusion.config`: ``DiffusionConfig`` and its presets.
- :mod:`~openmm_starmd.diffusion.igso3`: the IGSO(3) distribution (density, sampling, score).
- :mod:`~openmm_starmd.diffusion.r3`: VP-SDE on translations (``R3Diffuser``).
- :mod:`~openmm_starmd.diffusion.so3`: IGSO(3) diffusion on rotations (``SO3Diffuser``).
- :mod:`~openmm_starmd.diffusion.se3`: ``SE3Diffuser``, the object the model and training use.
- :mod:`~openmm_starmd.diffusion.sampler`: the reverse-diffusion loop for a Python denoiser.

Units: translations in nanometres at every public entry point.
"""
from openmm_starmd.diffusion.config import DiffusionConfig
from openmm_starmd.diffusion.igso3 import IGSO3
from openmm_starmd.diffusion.r3 import R3Diffuser
from openmm_starmd.diffusion.sampler import ReverseSample, reverse_sample
from openmm_starmd.diffusion.se3 import SE3Diffuser
from openmm_starmd.diffusion.so3 import SO3Diffuser

__all__ = ["DiffusionConfig", "IGSO3", "R3Diffuser", "ReverseSample", "SE3Diffuser", "SO3Diffuser", "reverse_sample"]
