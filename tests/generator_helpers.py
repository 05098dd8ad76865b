"""Shared set-up for the Generator tests: OpenMM systems built as a user builds them, a random
`tiny` checkpoint, and a generator whose proposal bypasses the model (rebuild/relax checks)."""
from __future__ import annotations

import math
import os

import numpy as np
import openmm
import torch
from openmm import app, unit

from openmm_starmd.geometry.so3 import rotvec_to_rotmat
from openmm_starmd.openmm.generator import StarMDGenerator
from openmm_starmd.openmm.rebuild import CoarseFrame, coarse_grain

VILLIN = os.path.join(os.path.dirname(app.__file__), "data", "test.pdb")
ION_NAMES = ("HOH", "Cl", "CL", "NA", "Na")


def villin_modeller(keep_ions: bool = False) -> app.Modeller:
    pdb = app.PDBFile(VILLIN)
    mod = app.Modeller(pdb.topology, pdb.positions)
    drop = ("HOH",) if keep_ions else ION_NAMES
    mod.delete([r for r in mod.topology.residues() if r.name in drop])
    return mod


def vacuum_simulation(mod: app.Modeller, step_fs: float = 2.0, seed: int = 1) -> app.Simulation:
    """amber14 in vacuum (fast), HBonds, LangevinMiddle on the CPU platform with one thread."""
    ff = app.ForceField("amber14-all.xml")
    system = ff.createSystem(mod.topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds)
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, step_fs * unit.femtoseconds)
    integrator.setRandomNumberSeed(seed)
    sim = app.Simulation(mod.topology, system, integrator, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    sim.context.setPositions(mod.positions)
    return sim


def tiny_checkpoint(path) -> str:
    """A randomly initialised `tiny` model saved with save_checkpoint."""
    from openmm_starmd.model.checkpoint import save_checkpoint
    from openmm_starmd.model.config import tiny
    from openmm_starmd.model.core import StarMDCore

    torch.manual_seed(0)
    core = StarMDCore(tiny())
    save_checkpoint(path, tiny(), core.net.state_dict())
    return str(path)


def rigid_turn(frame: CoarseFrame, angle_rad: float, axis=(0.3, -0.5, 0.8)) -> CoarseFrame:
    """The whole protein turned about its centroid."""
    axis = torch.tensor(axis, dtype=torch.float32)
    rot = rotvec_to_rotmat(axis / axis.norm() * angle_rad)
    centre = frame.trans.mean(0)
    return CoarseFrame(rot @ frame.rots, (frame.trans - centre) @ rot.T + centre, frame.torsions)


def shift_chi1(frame: CoarseFrame, angle_rad: float) -> CoarseFrame:
    """Every chi1 torsion rotated by ``angle_rad``."""
    tors = frame.torsions.clone()
    s, c = tors[:, 3, 0].clone(), tors[:, 3, 1].clone()
    tors[:, 3, 0] = s * math.cos(angle_rad) + c * math.sin(angle_rad)
    tors[:, 3, 1] = c * math.cos(angle_rad) - s * math.sin(angle_rad)
    return CoarseFrame(frame.rots, frame.trans, tors)


class BypassGenerator(StarMDGenerator):
    """The model bypassed: each proposal is the current structure, optionally chi1-shifted and turned."""

    chi1_shift_rad = 0.0
    turn_rad = 0.0

    def _sample(self, attempt: int) -> CoarseFrame:
        frame = coarse_grain(self.pmap, self._positions())
        return rigid_turn(shift_chi1(frame, self.chi1_shift_rad), self.turn_rad)


def positions_nm(sim: app.Simulation) -> np.ndarray:
    return np.asarray(sim.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer))
