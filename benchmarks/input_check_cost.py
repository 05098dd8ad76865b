"""What the Generator's input checks cost per call, on villin (openmm/app/data/test.pdb).

    python benchmarks/input_check_cost.py [--repeats 20]

Measured, each as the median of ``--repeats`` calls on one thread:

* the System digest that tells the relaxation copy to rebuild (once per ``step()`` call), for
  villin in vacuum (582 atoms, amber14) and in its crystal water (8867 atoms, amber14 + TIP3P, PME);
* making the protein whole (every ``_positions()`` call in a periodic box): solvated villin as
  it is (no bond crosses the box: one vectorised test) and wrapped residue by residue across
  the box corner (the breadth-first loop over the protein's bonds runs);
* the finiteness and Cα-chirality checks (once per ``step()`` call / at construction);
* ``starmd generate``'s argument and structure check (``JumpRunConfig.validate``) on test.pdb.

Writes benchmarks/results/input_check_cost.md.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import openmm
import torch
from openmm import app, unit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402

from openmm_starmd.openmm.coarse_grain import (  # noqa: E402
    check_chirality,
    check_finite_positions,
    make_whole,
    map_topology,
    protein_bond_tree,
)
from openmm_starmd.openmm.command import JumpRunConfig  # noqa: E402

VILLIN = str(Path(app.__file__).parent / "data" / "test.pdb")
RESULTS = Path(__file__).resolve().parent / "results"


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    pdb = app.PDBFile(VILLIN)
    vacuum = app.Modeller(pdb.topology, pdb.positions)
    vacuum.delete([r for r in vacuum.topology.residues() if r.name in ("HOH", "NA", "Na", "CL", "Cl")])
    systems = {
        f"villin in vacuum ({vacuum.topology.getNumAtoms()} atoms)":
            app.ForceField("amber14-all.xml").createSystem(vacuum.topology, nonbondedMethod=app.NoCutoff),
        f"villin in water ({pdb.topology.getNumAtoms()} atoms)":
            app.ForceField("amber14-all.xml", "amber14/tip3p.xml").createSystem(
                pdb.topology, nonbondedMethod=app.PME, constraints=app.HBonds),
    }
    rows = []
    for name, system in systems.items():
        ms = median_ms(lambda: hashlib.sha256(openmm.XmlSerializer.serialize(system).encode()).hexdigest(), args.repeats)
        rows.append((f"System digest, {name}", ms))

    x = np.asarray(pdb.positions.value_in_unit(unit.nanometer))
    box = np.asarray(pdb.topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer))
    tree = protein_bond_tree(pdb.topology)
    rows.append((f"make_whole, solvated villin as it is ({len(tree)} protein bonds)",
                 median_ms(lambda: make_whole(x, box, tree), args.repeats)))
    ca = [a.index for a in pdb.topology.atoms() if a.name == "CA"]
    wrapped = x - x[ca].mean(0)
    for res in pdb.topology.residues():
        idx = [a.index for a in res.atoms()]
        wrapped[idx] -= np.floor(wrapped[idx].mean(0) / np.diag(box)) * np.diag(box)
    rows.append(("make_whole, solvated villin wrapped per residue at the box corner",
                 median_ms(lambda: make_whole(wrapped, box, tree), args.repeats)))
    pmap = map_topology(pdb.topology, x)
    rows.append(("check_finite_positions + check_chirality, solvated villin",
                 median_ms(lambda: (check_finite_positions(pdb.topology, x), check_chirality(pmap, x)), args.repeats)))
    cfg = JumpRunConfig(pdb=VILLIN, model="default")
    rows.append(("starmd generate argument + structure check (JumpRunConfig.validate), test.pdb",
                 median_ms(cfg.validate, max(3, args.repeats // 4))))

    lines = ["# Cost of the input checks", "", f"{time.strftime('%Y-%m-%d')}; {machine_info()}", "",
             f"Command: `python benchmarks/input_check_cost.py --repeats {args.repeats}` (median of the repeats).", "",
             "| check | ms per call |", "|---|---|"]
    lines += [f"| {name} | {ms:.2f} |" for name, ms in rows]
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "input_check_cost.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
