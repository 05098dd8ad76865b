"""The Generator on other systems: explicit solvent (TIP3P + PME), several chains, a carried ion."""
from __future__ import annotations

import os

import numpy as np
import openmm
import pytest
import torch
from openmm import app, unit

from generator_helpers import BypassGenerator, positions_nm, tiny_checkpoint, vacuum_simulation, villin_modeller
from openmm_starmd.openmm.generator import GeneratorOptions
from openmm_starmd.openmm.rebuild import SHELL_OUTER_NM
from openmm_starmd.openmm.relax import RelaxConfig
from openmm_starmd.units import ANGSTROM_PER_NM

torch.set_num_threads(1)
FAST = dict(num_steps=2, relax_config=RelaxConfig(max_iterations=300))
MIN_PROTEIN_WATER_NM = 0.22  # closer heavy-atom contacts than 2.2 Å are overlaps (H-bonds are ~2.7 Å)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")


def _explicit_peptide():
    """Villin's first six residues (termini completed by pdbfixer) in TIP3P with PME, 0.6 nm padding."""
    import io
    import random

    from pdbfixer import PDBFixer

    saved_random_state = random.getstate()
    random.seed(11)  # Modeller.addHydrogens and addSolvent's ion placement draw from Python's random module

    mod = villin_modeller()
    mod.delete(list(mod.topology.residues())[6:])
    mod.delete([a for a in mod.topology.atoms() if a.element.symbol == "H"])
    text = io.StringIO()
    app.PDBFile.writeFile(mod.topology, mod.positions, text)
    # Reference platform for pdbfixer's minimisations: the threaded CPU sums differ run to run (1e-3 nm)
    fixer = PDBFixer(pdbfile=io.StringIO(text.getvalue()), platform=openmm.Platform.getPlatformByName("Reference"))
    fixer.findMissingResidues()
    fixer.missingResidues = {}
    fixer.findMissingAtoms()
    fixer.addMissingAtoms(seed=11)  # its settling MD is otherwise unseeded
    fixer.addMissingHydrogens(7.0)
    ff = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    solvated = app.Modeller(fixer.topology, fixer.positions)
    solvated.addSolvent(ff, padding=0.6 * unit.nanometer)
    random.setstate(saved_random_state)
    system = ff.createSystem(solvated.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.8 * unit.nanometer,
                             constraints=app.HBonds)
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 2 * unit.femtoseconds)
    sim = app.Simulation(solvated.topology, system, integrator, openmm.Platform.getPlatformByName("CPU"),
                         {"Threads": "1", "DeterministicForces": "true"})
    sim.context.setPositions(solvated.positions)
    return sim


def _min_protein_water_nm(sim, gen) -> float:
    x = positions_nm(sim)
    box = np.diag(sim.context.getState().getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer))
    protein = x[gen.pmap.protein_heavy_atoms]  # the modelled residues only: the Na+ counter-ion's shell is ~2.3 Å
    water = x[[a.index for a in sim.topology.atoms() if a.residue.name in ("HOH", "WAT") and a.element.symbol != "H"]]
    d = protein[:, None, :] - water[None, :, :]
    d -= box * np.round(d / box)
    return float(np.linalg.norm(d, axis=-1).min())


def test_explicit_solvent_relax_leaves_no_water_overlapping_the_protein(tiny_path):
    sim = _explicit_peptide()
    sim.minimizeEnergy(maxIterations=100)
    n_atoms = sim.topology.getNumAtoms()
    gen = BypassGenerator(sim, tiny_path, stride=0.2, relax=None, seed=3, options=GeneratorOptions(**FAST))
    gen.turn_rad = 1.2  # a large rigid turn about the centroid pushes the termini into the solvent
    gen.step(1)
    overlapping = _min_protein_water_nm(sim, gen)
    gen.relax_mode = "minimize"
    gen.step(1)
    relaxed = _min_protein_water_nm(sim, gen)
    assert overlapping < MIN_PROTEIN_WATER_NM < relaxed, (overlapping, relaxed)
    assert sim.topology.getNumAtoms() == n_atoms and np.isfinite(positions_nm(sim)).all()
    assert gen.history.unitcell_vectors is not None and gen.history.n_frames == 2


def test_two_chains_rebuild_exactly_and_move(tiny_path):
    mod = villin_modeller()
    other = villin_modeller()
    shift = openmm.Vec3(3.0, 0.0, 0.0) * unit.nanometer
    mod.add(other.topology, [p + shift for p in other.positions.value_in_unit(unit.nanometer) * unit.nanometer])
    sim = vacuum_simulation(mod)
    before = positions_nm(sim)
    gen = BypassGenerator(sim, tiny_path, stride=0.2, relax=None, seed=3, options=GeneratorOptions(**FAST))
    assert gen.pmap.num_residues == 70 and gen.pmap.chain_index.tolist() == [0] * 35 + [1] * 35
    assert not gen.pmap.neighbours[34] and gen.pmap.neighbours.sum() == 68
    gen.step(1)
    assert np.abs(positions_nm(sim) - before).max() * ANGSTROM_PER_NM <= 0.05
    gen.turn_rad = 0.3
    gen.step(1)
    assert np.abs(positions_nm(sim) - before).max() > 0.1


def test_ion_is_carried_along(tiny_path):
    mod = villin_modeller(keep_ions=True)
    ff = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    system = ff.createSystem(mod.topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds)
    sim = app.Simulation(mod.topology, system, openmm.LangevinMiddleIntegrator(300, 1, 0.002),
                         openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    sim.context.setPositions(mod.positions)
    ions = [a.index for a in sim.topology.atoms() if a.residue.name.upper() == "CL"]
    assert ions
    gen = BypassGenerator(sim, tiny_path, stride=0.2, relax=None, seed=3, options=GeneratorOptions(**FAST))
    assert set(ions) <= set(gen.pmap.other_atoms.tolist())
    before = positions_nm(sim)
    gen.turn_rad = 0.2
    gen.step(1)
    after = positions_nm(sim)
    heavy = gen.pmap.protein_heavy_atoms
    protein_shift = np.linalg.norm(after[heavy] - before[heavy], axis=-1)
    for i in ions:
        distance = np.linalg.norm(before[heavy] - before[i], axis=-1)
        moved = np.linalg.norm(after[i] - before[i])
        if distance.min() >= SHELL_OUTER_NM:
            assert moved == 0.0  # bulk: untouched
        else:  # in the shell: follows its nearest protein atom, at most fully
            assert moved <= protein_shift[np.argmin(distance)] + 1e-6
    gen.relax_mode = "minimize"
    gen.step(1)
    assert np.isfinite(positions_nm(sim)).all() and sim.topology.getNumAtoms() == before.shape[0]


def test_solvent_shell_kdtree_equals_the_traceable_torch_version(tiny_path):
    """The Python Generator finds nearest protein atoms with a k-d tree, the plugin's trace with
    brute-force torch blocks: the carried solvent must land in the same place (minimum image)."""
    from openmm_starmd.openmm.coarse_grain import map_topology
    from openmm_starmd.openmm.rebuild import carry_other_atoms, other_atom_groups, rectangular_box_lengths

    sim = _explicit_peptide()
    old = torch.as_tensor(positions_nm(sim))
    pmap = map_topology(sim.topology)
    residue_of_atom = np.array([a.residue.index for a in sim.topology.atoms()])
    box = sim.context.getState().getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
    new = old.clone()
    heavy = torch.as_tensor(pmap.protein_heavy_atoms)
    new[heavy] += torch.as_tensor([0.3, -0.2, 0.1], dtype=torch.float64)  # the protein moves 0.37 nm
    group = other_atom_groups(pmap, residue_of_atom)
    lengths = rectangular_box_lengths(box)
    fast = carry_other_atoms(pmap, group, old, new, lengths, kdtree=True)
    traced = carry_other_atoms(pmap, group, old, new, lengths, kdtree=False)
    moved = (fast - old).norm(dim=-1)[torch.as_tensor(pmap.other_atoms)]
    assert 0 < int((moved > 0).sum()) < len(pmap.other_atoms)  # a shell moves, bulk water does not
    assert torch.allclose(fast, traced, atol=1e-12, rtol=0)
