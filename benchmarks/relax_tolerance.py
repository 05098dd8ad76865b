"""Restrained-minimisation cost and result vs RelaxConfig, on rebuilt villin frames at 1.25 ns.

    python benchmarks/relax_tolerance.py [--frames 6] [--threads 1]

The shipped model jumps villin (openmm/app/data/test.pdb, implicit solvent as in the main job)
``--frames`` times at 1.25 ns with the gate opened and no relaxation; each rebuilt (unminimised)
frame is then minimised with the Generator's :class:`RestrainedMinimizer` under several
(tolerance, max_iterations) settings. Reported per setting: seconds per frame, the system's
potential energy after minimisation (constraints applied), and how many frames pass the Cα
gate; for scale, the fully minimised start and the mean potential energy of 40 ps of 300 K MD.
Writes benchmarks/results/relax_tolerance.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import openmm
import openmm.app
import torch
from openmm import unit

from openmm_starmd.evaluation.validity import ca_valid
from openmm_starmd.openmm.command import build_implicit_simulation
from openmm_starmd.openmm.gate import GateConfig
from openmm_starmd.openmm.generator import GeneratorOptions, StarMDGenerator
from openmm_starmd.openmm.relax import RelaxConfig, RestrainedMinimizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SETTINGS = ((10.0, 2000), (50.0, 2000), (100.0, 2000), (10.0, 200))


def _energy(context: openmm.Context, x: np.ndarray) -> float:
    context.setPositions(x * unit.nanometer)
    context.applyConstraints(1e-6)
    return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    villin = os.path.join(os.path.dirname(openmm.app.__file__), "data", "test.pdb")
    sim = build_implicit_simulation(villin, "CPU", args.threads)
    gen = StarMDGenerator(sim, model="default", stride=1.25 * unit.nanoseconds, relax=None, seed=3,
                          options=GeneratorOptions(gate=GateConfig(max_clash_rate=1.0, max_break_rate=1.0)))
    frames = []
    rebuild = gen._rebuild_and_minimize

    def keep(frame, positions_nm, box):
        new = rebuild(frame, positions_nm, box)
        frames.append(new.copy())
        return new

    gen._rebuild_and_minimize = keep
    gen.step(args.frames)
    platform = openmm.Platform.getPlatformByName("CPU")
    probe = openmm.Context(sim.system, openmm.VerletIntegrator(0.001), platform, {"Threads": str(args.threads)})
    rows = []
    for tolerance, iterations in SETTINGS:
        minimizer = RestrainedMinimizer(sim, gen.pmap.backbone_atoms, RelaxConfig(tolerance=tolerance, max_iterations=iterations))
        minimizer.minimize(frames[0])  # builds its contexts outside the timing
        seconds, energies, valid = [], [], 0
        for x in frames:
            t = time.perf_counter()
            y = minimizer.minimize(x)
            seconds.append(time.perf_counter() - t)
            energies.append(_energy(probe, y))
            valid += int(ca_valid(y[gen.pmap.ca_atoms][None], gen.pmap.neighbours)[0])
        rows.append((tolerance, iterations, np.mean(seconds), np.mean(energies), min(energies), max(energies), valid))
        print(rows[-1], flush=True)
    sim.minimizeEnergy(tolerance=1.0)
    minimum = sim.context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    sim.context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    sim.step(2500)
    thermal = []
    for _ in range(40):
        sim.step(250)
        thermal.append(sim.context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
    lines = ["# Restrained minimisation vs RelaxConfig: villin frames at 1.25 ns", "", machine_info(), "",
             f"{args.frames} rebuilt frames from the shipped model (seed 3, gate opened, noise 0.5), minimised with the "
             "backbone restrained (k = 1000 kJ/mol/nm²) and constraints as stiff bonds.", "",
             "| tolerance (kJ/mol/nm) | max iterations | s per frame | potential energy, mean (min, max) kJ/mol | Cα-valid |",
             "|---:|---:|---:|---|---:|"]
    for tol, it, sec, mean, lo, hi, valid in rows:
        lines.append(f"| {tol:g} | {it} | {sec:.2f} | {mean:,.0f} ({lo:,.0f}, {hi:,.0f}) | {valid}/{args.frames} |")
    lines += ["", f"For scale: fully minimised start (tolerance 1) {minimum:,.0f} kJ/mol; 300 K MD (LangevinMiddle, "
              f"4 fs, 40 samples over 40 ps after 10 ps) {np.mean(thermal):,.0f} ± {np.std(thermal):.0f} kJ/mol.", ""]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "relax_tolerance.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
