"""Rigid frames, SO(3), residue constants, and atoms <-> frames + torsions.

Internal length unit: nanometres (OpenMM's), everywhere in this package.
"""
from openmm_starmd.geometry.rigid import Rigid, Rotation, rigid_apply, rigid_compose, rigid_invert_apply

__all__ = ["Rigid", "Rotation", "rigid_apply", "rigid_compose", "rigid_invert_apply"]
