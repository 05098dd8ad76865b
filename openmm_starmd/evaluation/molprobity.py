"""MolProbity Ramachandran and rotamer outliers per frame, through the optional cctbx-base.

The angles are measured here with mdtraj; the MolProbity Top8000 densities are looked up by
cctbx-base in a separate interpreter (:mod:`openmm_starmd.evaluation.molprobity_worker`),
because importing cctbx after mdtraj/openmm/matplotlib crashes the process. Install with
``pip install "openmm-starmd[validate]"`` (that is, ``pip install cctbx-base``).

Definitions follow MolProbity (ramalyze/rotalyze):

- Ramachandran category of residue i: GLY -> glycine; PRO -> cis-Pro when the preceding
  ω is within ±90°, else trans-Pro; residue before a PRO -> pre-Pro; ILE/VAL -> Ile/Val;
  otherwise general. Outlier when the density is below 0.0005 (general), 0.002 (cis-Pro) or
  0.001 (the others). Chain termini (no φ or no ψ) are not evaluated, nor, in a given frame,
  a residue whose peptide bond to either neighbour is longer than 2.0 Å (MolProbity's link
  cutoff: a broken chain, which the Cα break check reports instead).
- Rotamers: χ angles from MolProbity's atom definitions, scored on the Top8000 grids
  ``rota8000-*.data``; outlier below 0.003. GLY and ALA have no χ. The grids are read from
  ``MolProbityConfig.rotarama_dir``, else ``$STARMD_ROTARAMA_DIR``, else where libtbx finds
  ``chem_data/rotarama_data``. Residues whose grid is missing (our shared copy lacks ARG and
  LYS) are reported as not evaluated and left out of the rotamer outlier rate.

A frame's outlier rate is the fraction of evaluated residues that are outliers. The paper's
all-atom validity accepts a frame when both rates are at most the 99th percentile of the
reference MD's per-frame rates (:func:`aa_thresholds`).
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

import mdtraj
import numpy as np

from openmm_starmd.evaluation.structure import ProteinResidues
from openmm_starmd.units import NM_PER_ANGSTROM

RAMA_GENERAL, RAMA_GLYCINE, RAMA_CIS_PRO, RAMA_TRANS_PRO, RAMA_PRE_PRO, RAMA_ILE_VAL = range(6)
RAMA_CATEGORY_NAMES = ("general", "glycine", "cis-Pro", "trans-Pro", "pre-Pro", "Ile/Val")
RAMA_OUTLIER_CUTOFF = (0.0005, 0.001, 0.002, 0.001, 0.001, 0.001)  # by category
ROTAMER_OUTLIER_CUTOFF = 0.003
CIS_OMEGA_MAX_DEG = 90.0
PEPTIDE_LINK_MAX_NM = 2.0 * NM_PER_ANGSTROM
ROTARAMA_DIR_ENV = "STARMD_ROTARAMA_DIR"
INSTALL_HINT = "install cctbx-base with 'pip install cctbx-base' (the 'validate' extra)"

# χ atoms (MolProbity's sidechain_angles definitions); "A|B" accepts either name.
_CHI_N_CA_CB = ("N", "CA", "CB")
CHI_ATOMS: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "ARG": (_CHI_N_CA_CB + ("CG",), ("CA", "CB", "CG", "CD"), ("CB", "CG", "CD", "NE"), ("CG", "CD", "NE", "CZ")),
    "ASN": (_CHI_N_CA_CB + ("CG",), ("CA", "CB", "CG", "OD1")),
    "ASP": (_CHI_N_CA_CB + ("CG",), ("CA", "CB", "CG", "OD1")),
    "CYS": (_CHI_N_CA_CB + ("SG",),),
    "GLN": (_CHI_N_CA_CB + ("CG",), ("CA", "CB", "CG", "CD"), ("CB", "CG", "CD", "OE1")),
    "GLU": (_CHI_N_CA_CB + ("CG",), ("CA", "CB", "CG", "CD"), ("CB", "CG", "CD", "OE1")),
    "HIS": (_CHI_N_CA_CB + ("CG",), ("CA", "CB", "CG", "ND1")),
    "ILE": (_CHI_N_CA_CB + ("CG1",), ("CA", "CB", "CG1", "CD1|CD")),
    "LEU": (_CHI_N_CA_CB + ("CG",), ("CA", "CB", "CG", "CD1")),
    "LYS": (_CHI_N_CA_CB + ("CG",), ("CA", "CB", "CG", "CD"), ("CB", "CG", "CD", "CE"), ("CG", "CD", "CE", "NZ")),
    "MET": (_CHI_N_CA_CB + ("CG",), ("CA", "CB", "CG", "SD"), ("CB", "CG", "SD", "CE")),
    "PHE": (_CHI_N_CA_CB + ("CG",), ("CA", "CB", "CG", "CD1")),
    "PRO": (_CHI_N_CA_CB + ("CG",),),
    "SER": (_CHI_N_CA_CB + ("OG",),),
    "THR": (_CHI_N_CA_CB + ("OG1",),),
    "TRP": (_CHI_N_CA_CB + ("CG",), ("CA", "CB", "CG", "CD1")),
    "TYR": (_CHI_N_CA_CB + ("CG",), ("CA", "CB", "CG", "CD1")),
    "VAL": (_CHI_N_CA_CB + ("CG1",),),
}
# Top8000 grid file stem (rota8000-<stem>.data) per residue.
ROTAMER_TABLE: dict[str, str] = {name: name.lower() for name in CHI_ATOMS}
ROTAMER_TABLE.update(PHE="phetyr", TYR="phetyr")
MAX_CHI = 4


@dataclass(frozen=True)
class MolProbityConfig:
    """All-atom (MolProbity) validity options.

    Attributes:
        enabled: compute Ramachandran/rotamer outliers at all.
        rotarama_dir: directory with ``rota8000-*.data`` (None: environment, then libtbx).
        percentile: reference percentile that sets the per-frame outlier-rate thresholds.
        max_rama_outlier_rate / max_rotamer_outlier_rate: fixed thresholds (fractions) that
            replace the percentile rule when given.
    """

    enabled: bool = True
    rotarama_dir: str | None = None
    percentile: float = 99.0
    max_rama_outlier_rate: float | None = None
    max_rotamer_outlier_rate: float | None = None

    def validate(self) -> None:
        if not 0 < self.percentile <= 100:
            raise ValueError(f"MolProbityConfig.percentile: expected a value in (0, 100], got {self.percentile}")
        for name in ("max_rama_outlier_rate", "max_rotamer_outlier_rate"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise ValueError(f"MolProbityConfig.{name}: expected a fraction in [0, 1] or None, got {value}")
        if self.rotarama_dir is not None and not os.path.isdir(self.rotarama_dir):
            raise ValueError(f"MolProbityConfig.rotarama_dir: expected a directory, got {self.rotarama_dir!r}")


@dataclass
class MolProbityScores:
    """Per-frame, per-residue MolProbity outliers of one trajectory.

    Attributes:
        rama_outlier: [F, R1] bool, R1 residues with both φ and ψ.
        rama_evaluated: [F, R1] bool, False where a peptide bond of the residue is broken in
            that frame (then it is neither an outlier nor counted).
        rotamer_outlier: [F, R2] bool, R2 residues with χ angles and a rotamer grid.
        rama_labels / rotamer_labels: [R1] / [R2] residue labels.
        not_evaluated: residue label -> reason, for residues left out of a check.
        rotarama_dir: where the rotamer grids were read ("" when none was found).
    """

    rama_outlier: np.ndarray
    rama_evaluated: np.ndarray
    rotamer_outlier: np.ndarray
    rama_labels: list[str]
    rotamer_labels: list[str]
    not_evaluated: dict[str, str] = field(default_factory=dict)
    rotarama_dir: str = ""

    @property
    def rama_rate(self) -> np.ndarray:
        """[F] fraction of evaluated residues that are Ramachandran outliers (0 if none evaluated)."""
        counted = self.rama_evaluated.sum(axis=1)
        outliers = (self.rama_outlier & self.rama_evaluated).sum(axis=1)
        return np.divide(outliers, counted, out=np.zeros(len(counted)), where=counted > 0)

    @property
    def rotamer_rate(self) -> np.ndarray:
        """[F] fraction of evaluated residues that are rotamer outliers (0 if none evaluated)."""
        flags = self.rotamer_outlier
        return flags.mean(axis=1) if flags.shape[1] else np.zeros(flags.shape[0])


def unavailable_reason() -> str | None:
    """Why MolProbity scoring cannot run here, or None when cctbx-base is installed.

    Checks without importing cctbx (importing it after mdtraj would crash this process).
    """
    missing = [name for name in ("iotbx", "mmtbx") if importlib.util.find_spec(name) is None]
    if missing:
        return f"cctbx-base is not installed (no module {', '.join(missing)}); {INSTALL_HINT}"
    return None


def _atom_lookup(topology: mdtraj.Topology, residue_index: int) -> dict[str, int]:
    return {atom.name: atom.index for atom in topology.residue(residue_index).atoms}


def _find(atoms: dict[str, int], spec: str) -> int | None:
    return next((atoms[n] for n in spec.split("|") if n in atoms), None)


def _backbone_quads(topology: mdtraj.Topology, residues: ProteinResidues, not_evaluated: dict[str, str]):
    """Atom quadruples for φ, ψ and the preceding ω of every residue with both φ and ψ."""
    atoms = [_atom_lookup(topology, r) for r in residues.residue_indices]
    keep, phi, psi, omega, links, category = [], [], [], [], [], []
    N = residues.n_residues
    for i in range(N):
        has_prev = i > 0 and residues.neighbours[i - 1]
        has_next = i < N - 1 and residues.neighbours[i]
        if not (has_prev and has_next):
            not_evaluated[residues.labels[i]] = "Ramachandran: chain terminus (no phi or psi)"
            continue
        prev, cur, nxt = atoms[i - 1], atoms[i], atoms[i + 1]
        ids = [prev.get("C"), prev.get("CA"), cur.get("N"), cur.get("CA"), cur.get("C"), nxt.get("N")]
        if None in ids:
            not_evaluated[residues.labels[i]] = "Ramachandran: missing backbone atoms (N, CA, C)"
            continue
        c_prev, ca_prev, n, ca, c, n_next = ids
        keep.append(i)
        phi.append((c_prev, n, ca, c))
        psi.append((n, ca, c, n_next))
        omega.append((ca_prev, c_prev, n, ca))
        links.append(((c_prev, n), (c, n_next)))
        name, next_name = residues.names[i], residues.names[i + 1]
        if name == "GLY":
            category.append(RAMA_GLYCINE)
        elif name == "PRO":
            category.append(-1)  # cis or trans, decided per frame from ω
        elif next_name == "PRO":
            category.append(RAMA_PRE_PRO)
        elif name in ("ILE", "VAL"):
            category.append(RAMA_ILE_VAL)
        else:
            category.append(RAMA_GENERAL)
    quads = [np.asarray(q, dtype=np.int64).reshape(-1, 4) for q in (phi, psi, omega)]
    return keep, quads, np.asarray(links, dtype=np.int64).reshape(-1, 2, 2), np.asarray(category, dtype=np.int64)


def _chi_quads(topology: mdtraj.Topology, residues: ProteinResidues, not_evaluated: dict[str, str]):
    """Atom quadruples of every χ of every residue with a rotamer definition."""
    keep, quads, tables = [], [], []
    for i, (res_index, name) in enumerate(zip(residues.residue_indices, residues.names)):
        if name not in CHI_ATOMS:
            continue
        atoms = _atom_lookup(topology, res_index)
        chis = [[_find(atoms, spec) for spec in chi] for chi in CHI_ATOMS[name]]
        missing = sorted({spec for chi, ids in zip(CHI_ATOMS[name], chis) for spec, a in zip(chi, ids) if a is None})
        if missing:
            not_evaluated[residues.labels[i]] = f"rotamer: missing atoms {', '.join(missing)}"
            continue
        padded = chis + [chis[0]] * (MAX_CHI - len(chis))  # padding, masked to NaN below
        keep.append((i, len(chis)))
        quads.append(padded)
        tables.append(ROTAMER_TABLE[name])
    return keep, np.asarray(quads, dtype=np.int64).reshape(-1, MAX_CHI, 4), tables


def _dihedrals_deg(trajectory: mdtraj.Trajectory, quads: np.ndarray) -> np.ndarray:
    if len(quads) == 0:
        return np.zeros((trajectory.n_frames, 0))
    return np.degrees(mdtraj.compute_dihedrals(trajectory, quads, periodic=False))


def _run_worker(inputs: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    code = (
        "import iotbx.pdb, sys; from openmm_starmd.evaluation.molprobity_worker import main; "
        "sys.exit(main(sys.argv[1:]))"
    )
    with tempfile.TemporaryDirectory(prefix="starmd_molprobity_") as tmp:
        path_in, path_out = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
        np.savez(path_in, **inputs)
        env = dict(os.environ)  # make this very package importable even when it is not installed
        package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
        proc = subprocess.run(
            [sys.executable, "-c", code, path_in, path_out], capture_output=True, text=True, check=False, env=env
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"{source}: MolProbity scoring with cctbx-base failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}"
            )
        with np.load(path_out) as data:
            return {key: data[key] for key in data.files}


def molprobity_scores(
    trajectory: mdtraj.Trajectory,
    residues: ProteinResidues,
    config: MolProbityConfig | None = None,
    source: str = "trajectory",
) -> MolProbityScores:
    """Ramachandran and rotamer outliers of every frame.

    Args:
        trajectory: all-atom trajectory (positions in nm); needs backbone and side-chain atoms.
        residues: its protein residues (:func:`openmm_starmd.evaluation.structure.protein_residues`).
        config: options (rotamer grid directory).
        source: name for error messages.

    Raises:
        RuntimeError: cctbx-base is not installed (the message says how to install it), or
            the scoring process failed.
    """
    config = config or MolProbityConfig()
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"{source}: MolProbity validity unavailable: {reason}")
    not_evaluated: dict[str, str] = {}
    topology = trajectory.topology
    rama_keep, (phi_q, psi_q, omega_q), links, category = _backbone_quads(topology, residues, not_evaluated)
    chi_keep, chi_q, tables = _chi_quads(topology, residues, not_evaluated)
    F = trajectory.n_frames
    phi, psi, omega = (_dihedrals_deg(trajectory, q) for q in (phi_q, psi_q, omega_q))
    cis = np.abs(omega) < CIS_OMEGA_MAX_DEG
    if len(links):
        bond_nm = mdtraj.compute_distances(trajectory, links.reshape(-1, 2), periodic=False).reshape(F, -1, 2)
        linked = (bond_nm < PEPTIDE_LINK_MAX_NM).all(axis=-1)  # [F, R1]
    else:
        linked = np.zeros((F, 0), dtype=bool)
    rama_type = np.broadcast_to(category, (F, len(category))).copy()  # [F, R1]
    is_pro = category < 0
    rama_type[:, is_pro] = np.where(cis[:, is_pro], RAMA_CIS_PRO, RAMA_TRANS_PRO)
    chis = _dihedrals_deg(trajectory, chi_q.reshape(-1, 4)).reshape(F, len(chi_keep), MAX_CHI)
    for r, (_, n_chi) in enumerate(chi_keep):
        chis[:, r, n_chi:] = np.nan
    rotarama_dir = config.rotarama_dir or os.environ.get(ROTARAMA_DIR_ENV, "")
    if len(rama_keep) or len(chi_keep):
        out = _run_worker(
            dict(phi=phi, psi=psi, rama_type=rama_type, chis=chis,
                 rotamer_table=np.asarray(tables, dtype=str), rotarama_dir=np.asarray(rotarama_dir)),
            source,
        )
    else:  # nothing to score (e.g. a Cα-only trajectory): no need to start cctbx
        out = dict(rama_score=np.zeros((F, 0)), rotamer_score=np.zeros((F, 0)), rotarama_dir=np.asarray(rotarama_dir))
    cutoff = np.asarray(RAMA_OUTLIER_CUTOFF)[rama_type]  # [F, R1]
    rama_outlier = ~(out["rama_score"] >= cutoff)  # NaN (undefined angle) counts as an outlier
    missing = {str(t) for t in out.get("missing_tables", [])}
    scored = np.array([t not in missing for t in tables], dtype=bool)
    directory = str(out["rotarama_dir"])
    for (i, _), table, ok in zip(chi_keep, tables, scored):
        if not ok:
            where = directory or "no rotarama_data directory found"
            not_evaluated[residues.labels[i]] = f"rotamer: grid rota8000-{table}.data not found ({where})"
    return MolProbityScores(
        rama_outlier=rama_outlier & linked,
        rama_evaluated=linked,
        rotamer_outlier=~(out["rotamer_score"][:, scored] >= ROTAMER_OUTLIER_CUTOFF),
        rama_labels=[residues.labels[i] for i in rama_keep],
        rotamer_labels=[residues.labels[i] for (i, _), ok in zip(chi_keep, scored) if ok],
        not_evaluated=not_evaluated,
        rotarama_dir=directory,
    )


def aa_thresholds(reference: MolProbityScores, config: MolProbityConfig | None = None) -> tuple[float, float]:
    """Per-frame outlier-rate thresholds (Ramachandran, rotamer) from the reference MD.

    The threshold is the smallest rate that accepts at least ``config.percentile`` % of the
    reference frames, unless a fixed threshold is configured.
    """
    config = config or MolProbityConfig()
    q = config.percentile / 100.0

    def pick(fixed: float | None, rates: np.ndarray) -> float:
        if fixed is not None:
            return float(fixed)
        return float(np.quantile(rates, q, method="inverted_cdf")) if rates.size else 0.0

    return pick(config.max_rama_outlier_rate, reference.rama_rate), pick(config.max_rotamer_outlier_rate, reference.rotamer_rate)


def aa_valid(scores: MolProbityScores, max_rama_rate: float, max_rotamer_rate: float) -> np.ndarray:
    """[F] bool: frames whose Ramachandran and rotamer outlier rates are both within the thresholds."""
    return (scores.rama_rate <= max_rama_rate) & (scores.rotamer_rate <= max_rotamer_rate)
