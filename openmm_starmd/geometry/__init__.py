"""Rigid frames, SO(3), residue constants, and atoms <-> frames + torsions.

Internal length unit: nanometres (OpenMM's), everywhere in this package.
"""
from openmm_starmd.geometry import residue_constants
from openmm_starmd.geometry.all_atom import (
    FramesTorsions,
    ResidueGeometry,
    atom14_from_frames_torsions,
    atom14_to_atom37,
    atom14_to_frames_torsions,
    atom14_to_group_frames,
    atom37_to_atom14,
    frames_to_atom14,
    gather_group_frames,
    pseudo_beta,
    residue_geometry_from_atom14,
    segment_starts,
    torsion_angles_to_frames,
)
from openmm_starmd.geometry.residue_constants import atom14_index, is_modelled_residue, parent_residue_name, restype_index
from openmm_starmd.geometry.rigid import Rigid, Rotation, rigid_apply, rigid_compose, rigid_invert_apply

__all__ = [
    "Rigid",
    "Rotation",
    "rigid_apply",
    "rigid_compose",
    "rigid_invert_apply",
    "residue_constants",
    "FramesTorsions",
    "ResidueGeometry",
    "atom14_from_frames_torsions",
    "atom14_to_atom37",
    "atom14_to_frames_torsions",
    "atom14_to_group_frames",
    "atom37_to_atom14",
    "frames_to_atom14",
    "gather_group_frames",
    "pseudo_beta",
    "residue_geometry_from_atom14",
    "segment_starts",
    "torsion_angles_to_frames",
    "atom14_index",
    "is_modelled_residue",
    "parent_residue_name",
    "restype_index",
]
