"""Scores Ramachandran and rotamer angles with cctbx-base; runs in its own interpreter.

cctbx-base bundles a newer libstdc++ than the one mdtraj, openmm, matplotlib or deeptime load
first, and importing it after them crashes the process. So :mod:`openmm_starmd.evaluation.molprobity`
measures the angles with mdtraj and hands them to this module in a fresh interpreter that
imports ``iotbx.pdb`` before anything else::

    python -c "import iotbx.pdb, sys; from openmm_starmd.evaluation.molprobity_worker import main; sys.exit(main(sys.argv[1:]))" IN.npz OUT.npz

Input (npz): ``phi``, ``psi``, ``rama_type`` [F, R1] (degrees; MolProbity categories 0-5),
``chis`` [F, R2, 4] (degrees, NaN where unused), ``rotamer_table`` [R2] (grid names such as
"phetyr"), ``rotarama_dir`` (a directory or "" to let libtbx find one).
Output (npz): ``rama_score`` [F, R1] and ``rotamer_score`` [F, R2] (MolProbity density values;
NaN where an angle is undefined, and in whole columns whose rotamer grid is missing),
``missing_tables`` [K], ``rotarama_dir``.
"""
from __future__ import annotations

import os
import sys


def _find_rotarama_dir(given: str) -> str:
    if given:
        return given
    from mmtbx.rotamer.rotamer_eval import find_rotarama_data_dir

    return find_rotarama_data_dir(optional=True) or ""


def _load_tables(directory: str, names) -> tuple[dict, list[str]]:
    from mmtbx.rotamer.n_dim_table import NDimTable

    tables, missing = {}, []
    for name in sorted(set(names)):
        path = os.path.join(directory, f"rota8000-{name}.data") if directory else ""
        if path and os.path.isfile(path):
            tables[name] = NDimTable.createFromText(path)
        else:
            missing.append(name)
    return tables, missing


def score(phi, psi, rama_type, chis, rotamer_table, rotarama_dir: str):
    """Return (rama_score [F, R1], rotamer_score [F, R2], missing table names, directory used)."""
    import numpy as np
    from mmtbx_validation_ramachandran_ext import rama_eval

    rama = rama_eval()
    F, R1 = phi.shape
    rama_score = np.empty((F, R1))
    for f in range(F):
        for r in range(R1):
            angles = (float(phi[f, r]), float(psi[f, r]))
            finite = np.isfinite(angles).all()  # degenerate geometry gives NaN angles
            rama_score[f, r] = rama.get_score(int(rama_type[f, r]), *angles) if finite else np.nan
    directory = _find_rotarama_dir(rotarama_dir)
    tables, missing = _load_tables(directory, [str(n) for n in rotamer_table])
    R2 = len(rotamer_table)
    rotamer_score = np.full((chis.shape[0], R2), np.nan)
    for r, name in enumerate(rotamer_table):
        table = tables.get(str(name))
        if table is None:
            continue
        n_dim = table.nDim
        for f in range(chis.shape[0]):
            angles = [float(c) for c in chis[f, r, :n_dim]]
            rotamer_score[f, r] = table.valueAt(angles) if np.isfinite(angles).all() else np.nan
    return rama_score, rotamer_score, missing, directory


def main(argv: list[str]) -> int:
    import numpy as np

    if len(argv) != 2:
        print("usage: molprobity_worker IN.npz OUT.npz", file=sys.stderr)
        return 2
    with np.load(argv[0]) as data:
        inputs = {key: data[key] for key in data.files}
    rama_score, rotamer_score, missing, directory = score(
        inputs["phi"], inputs["psi"], inputs["rama_type"], inputs["chis"],
        inputs["rotamer_table"], str(inputs["rotarama_dir"]),
    )
    np.savez(
        argv[1], rama_score=rama_score, rotamer_score=rotamer_score,
        missing_tables=np.asarray(missing, dtype=str), rotarama_dir=np.asarray(directory),
    )
    return 0
