"""StarMDGenerator as an OpenMM user meets it: drop-in jumps, exact rebuild, gate, checkpoints."""
from __future__ import annotations

import io

import mdtraj
import numpy as np
import openmm
import pytest
import torch
from openmm import app, unit

from generator_helpers import VILLIN, BypassGenerator, positions_nm, tiny_checkpoint, vacuum_simulation, villin_modeller
from openmm_starmd.model.rollout import _derive_seed
from openmm_starmd.openmm.gate import GateConfig, InvalidFrameError
from openmm_starmd.openmm.generator import GeneratorOptions, StarMDGenerator
from openmm_starmd.openmm.relax import RelaxConfig
from openmm_starmd.units import ANGSTROM_PER_NM, PS_PER_NS

torch.set_num_threads(1)
FAST = dict(num_steps=2, relax_config=RelaxConfig(max_iterations=300))


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")


class CollectingReporter:
    """A custom reporter asking for positions and energies every 1000 steps."""

    def __init__(self):
        self.steps, self.positions, self.energies = [], [], []

    def describeNextReport(self, simulation):  # noqa: N802
        return (1000 - simulation.currentStep % 1000, True, False, False, True)

    def report(self, simulation, state):
        self.steps.append(simulation.currentStep)
        self.positions.append(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
        self.energies.append(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))


def _ideal_heavy_bonds(system, topology):
    """(i, j, r0 nm) of the HarmonicBondForce terms between heavy atoms."""
    force = next(f for f in system.getForces() if isinstance(f, openmm.HarmonicBondForce))
    atoms = list(topology.atoms())
    out = []
    for k in range(force.getNumBonds()):
        i, j, r0, _ = force.getBondParameters(k)
        if atoms[i].element.symbol != "H" and atoms[j].element.symbol != "H":
            out.append((i, j, r0.value_in_unit(unit.nanometer)))
    return np.array(out)


def test_drop_in_jumps_report_advance_time_and_keep_bonds(tiny_path, tmp_path):
    pdb = app.PDBFile(VILLIN)
    mod = app.Modeller(pdb.topology, pdb.positions)
    mod.delete([r for r in mod.topology.residues() if r.name in ("HOH", "Cl")])
    sim = vacuum_simulation(mod)
    dcd = tmp_path / "traj.dcd"
    log = io.StringIO()
    custom = CollectingReporter()
    sim.reporters += [app.DCDReporter(str(dcd), 1000), app.StateDataReporter(log, 1000, step=True, time=True,
                                                                            potentialEnergy=True), custom]
    names_before = [(a.name, a.residue.name) for a in sim.topology.atoms()]
    t_before = sim.context.getState().getTime().value_in_unit(unit.picoseconds)
    gen = BypassGenerator(sim, tiny_path, stride=1.25 * unit.nanoseconds, relax="minimize", seed=5,
                          options=GeneratorOptions(**FAST))
    gen.chi1_shift_rad, gen.turn_rad = 0.6, 0.4
    gen.step(2)

    t_after = sim.context.getState().getTime().value_in_unit(unit.picoseconds)
    assert t_after - t_before == pytest.approx(2 * 1.25 * PS_PER_NS)
    assert sim.currentStep == 2 * round(1.25 * PS_PER_NS / 0.002)
    assert custom.steps == [625000, 1250000] and len(custom.energies) == 2
    assert len(log.getvalue().strip().splitlines()) == 3  # header + 2 frames
    traj = mdtraj.load_dcd(str(dcd), top=mdtraj.Topology.from_openmm(sim.topology))
    assert traj.n_frames == 2
    x = positions_nm(sim)
    assert np.isfinite(x).all() and x.shape == (len(names_before), 3)
    assert [(a.name, a.residue.name) for a in sim.topology.atoms()] == names_before
    np.testing.assert_allclose(traj.xyz[-1], x, atol=1e-3)
    np.testing.assert_allclose(custom.positions[-1], x, atol=1e-6)
    bonds = _ideal_heavy_bonds(sim.system, sim.topology)
    length = np.linalg.norm(x[bonds[:, 0].astype(int)] - x[bonds[:, 1].astype(int)], axis=-1)
    assert np.abs(length - bonds[:, 2]).max() * ANGSTROM_PER_NM < 0.1
    # the protein really moved (turned by 0.4 rad), and the history holds both frames
    assert np.abs(x - custom.positions[0]).max() > 0.1
    assert gen.history.n_frames == 2 and gen.statistics.jumps == 2


def test_rebuild_with_the_model_bypassed_is_exact(tiny_path):
    sim = vacuum_simulation(villin_modeller())
    sim.step(10)
    before = positions_nm(sim)
    gen = BypassGenerator(sim, tiny_path, stride=0.5, relax=None, seed=1, options=GeneratorOptions(**FAST))
    gen.step(1)
    after = positions_nm(sim)
    assert np.abs(after - before).max() * ANGSTROM_PER_NM <= 0.05


def test_random_model_fails_the_gate_and_falls_back_to_md(tiny_path):
    sim = vacuum_simulation(villin_modeller())
    gate = GateConfig(max_attempts=2, policy="md", fallback_md_steps=5)
    gen = StarMDGenerator(sim, tiny_path, stride=0.1, relax=None, seed=2, options=GeneratorOptions(gate=gate, **FAST))
    gen.step(1)
    stats = gen.statistics.as_dict()
    assert (stats["invalid_frames"], stats["resamples"], stats["fallbacks"], stats["fallback_md_steps"]) == (2, 1, 1, 5)
    assert sim.context.getState().getTime().value_in_unit(unit.picoseconds) == pytest.approx(0.1 * PS_PER_NS)
    # the MD structure joins the context as the frame at the end of the interval, as an accepted frame would
    assert gen.rollout.num_frames == 2
    ca_now = positions_nm(sim)[gen.pmap.ca_atoms]
    np.testing.assert_allclose(gen.rollout.history_trans[-1][0].numpy(), ca_now, atol=1e-5)


class _DrawRecorder(StarMDGenerator):
    """Records (frame index, sampling attempt) of every draw from the model."""

    def _sample(self, attempt):
        self.draws.append((self.rollout.num_frames, attempt))
        return super()._sample(attempt)


def test_after_a_fallback_the_md_frame_joins_the_context_and_noise_is_fresh(tiny_path):
    sim = vacuum_simulation(villin_modeller())
    gate = GateConfig(max_attempts=2, policy="md", fallback_md_steps=5)
    gen = _DrawRecorder(sim, tiny_path, stride=0.1, relax=None, seed=2, options=GeneratorOptions(gate=gate, **FAST))
    gen.draws = []
    gen.step(2)
    assert gen.statistics.fallbacks == 2 and len(gen.draws) == 4
    assert gen.draws == [(1, 0), (1, 1), (2, 0), (2, 1)]  # the fallback frame joined the context: a new frame index
    seeds = {_derive_seed(gen.seed, frame, 1 + attempt) for frame, attempt in gen.draws}  # Rollout.sample's streams
    assert len(seeds) == 4  # never the same noise twice


def test_gate_policy_raise_restores_the_simulation(tiny_path):
    sim = vacuum_simulation(villin_modeller())
    sim.step(3)
    state = sim.context.getState(getPositions=True, getVelocities=True)
    step = sim.currentStep
    gen = StarMDGenerator(sim, tiny_path, stride=0.1, relax=None, seed=2,
                          options=GeneratorOptions(gate=GateConfig(max_attempts=1, policy="raise"), **FAST))
    with pytest.raises(InvalidFrameError, match="validity gate"):
        gen.step(1)
    after = sim.context.getState(getPositions=True, getVelocities=True)
    assert np.array_equal(after.getPositions(asNumpy=True), state.getPositions(asNumpy=True))
    assert np.array_equal(after.getVelocities(asNumpy=True), state.getVelocities(asNumpy=True))
    assert after.getTime() == state.getTime() and sim.currentStep == step
    assert gen.statistics.jumps == 0 and gen.rollout.num_frames == 1


def test_frame_whose_minimisation_fails_is_rejected_and_resampled(tiny_path):
    """A generated frame the restrained minimiser cannot handle (OpenMM's 'coordinate is NaN') counts
    as a rejected sample: the next attempt is used; when all fail, the Simulation is restored."""
    sim = vacuum_simulation(villin_modeller())
    sim.step(3)
    gen = BypassGenerator(sim, tiny_path, stride=0.1, relax="minimize", seed=4,
                          options=GeneratorOptions(gate=GateConfig(max_attempts=2, policy="raise"), **FAST))
    real_minimize = gen._minimizer.minimize
    calls = []

    def flaky(positions_nm, box_vectors=None):
        calls.append(1)
        if len(calls) == 1:
            raise openmm.OpenMMException("Particle coordinate is NaN.  For more information, see https://...")
        return real_minimize(positions_nm, box_vectors)

    gen._minimizer.minimize = flaky
    gen.step(1)
    stats = gen.statistics.as_dict()
    assert (stats["jumps"], stats["invalid_frames"], stats["resamples"], stats["fallbacks"]) == (1, 1, 1, 0)
    assert np.isfinite(positions_nm(sim)).all()

    gen._minimizer.minimize = lambda positions_nm, box_vectors=None: positions_nm * np.nan  # finite check too
    state = sim.context.getState(getPositions=True, getVelocities=True)
    with pytest.raises(InvalidFrameError, match="non-finite"):
        gen.step(1)
    after = sim.context.getState(getPositions=True, getVelocities=True)
    assert np.array_equal(after.getPositions(asNumpy=True), state.getPositions(asNumpy=True))
    assert after.getTime() == state.getTime() and gen.statistics.jumps == 1


class BrokenChainGenerator(BypassGenerator):
    """Proposes the current structure with residue 10 pulled 0.5 Å away from residue 9 (a Cα break)."""

    def _sample(self, attempt: int):
        frame = super()._sample(attempt)
        trans = frame.trans.clone()
        bond = trans[10] - trans[9]
        trans[10:] += 0.05 * bond / bond.norm()  # nm; the rest of the chain follows residue 10
        return type(frame)(frame.rots, trans, frame.torsions)


def test_relaxed_judge_accepts_a_break_the_minimisation_repairs(tiny_path):
    from openmm_starmd.evaluation.validity import ca_valid

    sim = vacuum_simulation(villin_modeller())
    with pytest.raises(InvalidFrameError, match="break rate"):  # the raw sample fails the paper's gate
        BrokenChainGenerator(sim, tiny_path, stride=0.1, relax="minimize", seed=4, options=GeneratorOptions(
            gate=GateConfig(max_attempts=1, policy="raise"), **FAST)).step(1)
    gen = BrokenChainGenerator(sim, tiny_path, stride=0.1, relax="minimize", seed=4, options=GeneratorOptions(
        gate=GateConfig(max_attempts=1, policy="raise", judge="relaxed"), **FAST))
    gen.step(1)
    assert gen.statistics.repaired_frames == 1 and gen.statistics.invalid_frames == 0
    ca = positions_nm(sim)[gen.pmap.ca_atoms]
    assert ca_valid(ca[None], gen.pmap.neighbours)[0]
    assert np.linalg.norm(ca[10] - ca[9]) < 0.40  # the force field pulled the chain back together
    with pytest.raises(ValueError, match="judge"):
        GeneratorOptions(gate=GateConfig(judge="after")).validate()


def test_checkpoint_resume_equals_uninterrupted_run(tiny_path, tmp_path):
    def opts():  # the random model's frames are unphysical: accept every finite frame
        return GeneratorOptions(gate=GateConfig(max_clash_rate=1.0, max_break_rate=1.0), **FAST)

    full = StarMDGenerator(vacuum_simulation(villin_modeller()), tiny_path, stride=0.2, relax=None, seed=11, options=opts())
    full.step(3)
    first = StarMDGenerator(vacuum_simulation(villin_modeller()), tiny_path, stride=0.2, relax=None, seed=11, options=opts())
    first.step(2)
    first.saveCheckpoint(tmp_path / "gen.chk")
    sim = vacuum_simulation(villin_modeller(), seed=99)
    resumed = StarMDGenerator(sim, tiny_path, stride=0.2, relax=None, seed=0, options=opts())
    resumed.loadCheckpoint(tmp_path / "gen.chk")
    resumed.step(1)
    a, b = full.history, resumed.history
    assert a.n_frames == b.n_frames == 3
    np.testing.assert_allclose(b.xyz, a.xyz, atol=1e-5)
    np.testing.assert_allclose(b.time, a.time)
    assert resumed.statistics.jumps == 3 and sim.currentStep == full.simulation.currentStep


def test_relax_md_steps_and_context_follows_the_simulation(tiny_path):
    sim = vacuum_simulation(villin_modeller())
    opts = GeneratorOptions(num_steps=2, relax_config=RelaxConfig(max_iterations=50))
    gen = BypassGenerator(sim, tiny_path, stride=0.05, relax=5, seed=1, options=opts)
    gen.turn_rad = 0.1
    gen.step(1)
    assert sim.context.getState().getTime().value_in_unit(unit.picoseconds) == pytest.approx(0.05 * PS_PER_NS)
    gen.relax(20)  # physical MD between jumps moves the protein
    assert gen.statistics.md_steps == 20 and sim.currentStep == 25000 + 20
    ca_now = positions_nm(sim)[gen.pmap.ca_atoms]
    assert np.abs(ca_now - gen.rollout.history_trans[-1][0].numpy()).max() > 1e-3
    gen.step(1)
    # the frame before the new jump was replaced by the structure MD left behind
    np.testing.assert_allclose(gen.rollout.history_trans[1][0].numpy(), ca_now, atol=1e-5)
    assert gen.rollout.num_frames == 3 and gen.statistics.wall_s["context"] > 0


def test_restrained_minimiser_replaces_constraints_by_stiff_bonds():
    """The minimisation copy has no constraints but bonds at the constraint lengths: the minimised
    structure keeps those lengths (to 0.05 Å) and has a lower energy than the perturbed start."""
    from openmm_starmd.openmm.relax import RestrainedMinimizer

    sim = vacuum_simulation(villin_modeller())
    assert sim.system.getNumConstraints() > 0
    rng = np.random.default_rng(0)
    start = positions_nm(sim) + rng.normal(scale=0.01, size=positions_nm(sim).shape)
    backbone = np.arange(0, sim.topology.getNumAtoms(), 7)
    stiff = RestrainedMinimizer(sim, backbone, RelaxConfig(max_iterations=300))
    out = stiff.minimize(start)
    assert stiff._contexts[True][0].getSystem().getNumConstraints() == 0 and stiff.constrained_retries == 0
    lengths = np.array([sim.system.getConstraintParameters(k)[2].value_in_unit(unit.nanometer)
                        for k in range(sim.system.getNumConstraints())])
    pairs = np.array([sim.system.getConstraintParameters(k)[:2] for k in range(sim.system.getNumConstraints())])
    got = np.linalg.norm(out[pairs[:, 0]] - out[pairs[:, 1]], axis=1)
    assert np.abs(got - lengths).max() < 0.005

    def energy(x):
        sim.context.setPositions(x)
        return sim.context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)

    assert energy(out) < energy(start) - 100.0
    kept = RestrainedMinimizer(sim, backbone, RelaxConfig(max_iterations=10, constraint_k=0.0))
    kept.minimize(start)
    assert list(kept._contexts) == [False]
    assert kept._contexts[False][0].getSystem().getNumConstraints() == sim.system.getNumConstraints()


def _water_dimer_simulation():
    """Two rigid TIP3P waters in vacuum; the second one's hydrogen sits 0.5 Å from the first one's oxygen."""
    top = app.Topology()
    chain = top.addChain()
    for _ in range(2):
        res = top.addResidue("HOH", chain)
        o = top.addAtom("O", app.element.oxygen, res)
        for name in ("H1", "H2"):
            top.addBond(o, top.addAtom(name, app.element.hydrogen, res))
    ff = app.ForceField("amber14/tip3p.xml")
    system = ff.createSystem(top, nonbondedMethod=app.NoCutoff, constraints=app.HBonds, rigidWater=True)
    water = np.array([[0.0, 0.0, 0.0], [0.09572, 0.0, 0.0], [-0.02400, 0.09266, 0.0]])
    second = water - water[1] + np.array([0.05, 0.0, 0.0])  # its H1 0.05 nm from the first O
    sim = app.Simulation(top, system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    return sim, np.concatenate([water, second])


def test_restrained_minimiser_redoes_a_collapsed_flexible_pass_with_constraints():
    """Soft flexible bonds let the hydrogen (no Lennard-Jones radius) fall onto the other oxygen;
    the minimiser sees the strained bond and redoes the minimisation with the constraints kept."""
    from openmm_starmd.openmm.relax import MAX_BOND_STRAIN, RestrainedMinimizer

    sim, start = _water_dimer_simulation()
    soft = RestrainedMinimizer(sim, np.array([0]), RelaxConfig(max_iterations=500, constraint_k=50.0))
    flexible = soft._run(True, start, None)
    assert soft.bond_strain(flexible) > MAX_BOND_STRAIN  # the collapse this guards against
    out = soft.minimize(start)
    assert soft.constrained_retries == 1
    assert soft.bond_strain(out) < 1e-3
    assert np.linalg.norm(out[3] - out[0]) > 0.15  # the hydrogen-bonded H...O distance, not a collapse
