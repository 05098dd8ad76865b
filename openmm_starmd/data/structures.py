"""Protein structures reachable offline, by name.

Nothing here can be downloaded (SPEC §8): the training MD starts from structures that
ship inside installed PyPI packages, or from peptides built from their sequence. This
module only says where each one lives and what it is; turning it into an OpenMM
system (stripping solvent, adding missing atoms and hydrogens) is done by
``openmm_starmd.openmm.md_setup``.

Sources:

* ``pdb``      a PDB file inside an installed package; non-protein residues are dropped.
* ``sequence`` a peptide built from its one-letter sequence (extended backbone,
               side chains and hydrogens added by PDBFixer).
* ``bioemu:NAME`` one of the 97 full-atom small domains (34-72 residues) that the
               MIT-licensed PyPI package ``bioemu-benchmarks`` ships as reference wild
               types of its folding free-energy benchmark; ``bioemu:all`` names every one
               of them. Install it without its pinned dependencies (only its data files are
               read): ``pip install --no-deps bioemu-benchmarks==0.0.2.post1``.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

ONE_TO_THREE: dict[str, str] = {
    "A": "ALA", "R": "ARG", "N": "ASN", "D": "ASP", "C": "CYS", "Q": "GLN", "E": "GLU",
    "G": "GLY", "H": "HIS", "I": "ILE", "L": "LEU", "K": "LYS", "M": "MET", "F": "PHE",
    "P": "PRO", "S": "SER", "T": "THR", "W": "TRP", "Y": "TYR", "V": "VAL",
}


@dataclass(frozen=True)
class StructureSource:
    """Where one offline structure comes from.

    Attributes:
        name: short identifier, used for folder and file names (``md_data/<name>/``).
        kind: ``"pdb"`` or ``"sequence"``.
        package: installed package holding the file(s) (``pdb`` kind).
        files: paths inside ``package``: one PDB.
        sequence: one-letter amino-acid sequence (``sequence`` kind).
        n_residues: number of protein residues after preparation.
        description: one line for humans.
    """

    name: str
    kind: str
    package: str = ""
    files: tuple[str, ...] = ()
    sequence: str = ""
    n_residues: int = 0
    description: str = ""

    def paths(self) -> tuple[Path, ...]:
        """Absolute paths of the source files inside the installed package."""
        if self.kind == "sequence":
            return ()
        spec = importlib.util.find_spec(self.package)
        if spec is None or spec.origin is None:
            raise ValueError(f"structure {self.name!r} needs the package {self.package!r}; install it with 'pip install {self.package}'")
        root = Path(spec.origin).parent
        paths = tuple(root / f for f in self.files)
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise ValueError(f"structure {self.name!r}: file(s) not found in package {self.package!r}: {missing}")
        return paths


STRUCTURES: dict[str, StructureSource] = {
    s.name: s
    for s in (
        StructureSource("villin", "pdb", "openmm", ("app/data/test.pdb",), n_residues=35,
                        description="villin headpiece HP35 N68H (OpenMM test system; water and ions removed)"),
        StructureSource("villin_nmr", "pdb", "pdbfixer", ("tests/data/test.pdb",), n_residues=36,
                        description="villin headpiece HP36, NMR model (PDB 1VII, heavy atoms)"),
        StructureSource("1ap4", "pdb", "openmmtools", ("data/amoeba/1AP4_14_wat.pdb",), n_residues=89,
                        description="cardiac troponin C regulatory domain (PDB 1AP4; water and ions removed)"),
        StructureSource("t4_lysozyme", "pdb", "openmmtools", ("data/T4-lysozyme-L99A-implicit/receptor.pdb",), n_residues=162,
                        description="T4 lysozyme L99A (openmmtools implicit-solvent receptor)"),
        StructureSource("src_kinase", "pdb", "openmmtools", ("data/src-implicit/1yi6-pdbfixer.pdb",), n_residues=276,
                        description="Src kinase domain (PDB 1YI6, openmmtools)"),
        StructureSource("er1", "pdb", "iotbx", ("regression/data/2ERL.pdb",), n_residues=40,
                        description="pheromone Er-1 (PDB 2ERL, 1.0 A X-ray, 3 disulfides; first altloc, ethanol and water removed; cctbx-base)"),
        StructureSource("chignolin", "sequence", sequence="GYDPETGTWG", n_residues=10,
                        description="chignolin, built extended from sequence"),
        StructureSource("trpzip2", "sequence", sequence="SWTWENGKWTWK", n_residues=12,
                        description="tryptophan zipper 2 (PDB 1LE1 sequence, no amide cap), built extended from sequence"),
        StructureSource("trp_cage", "sequence", sequence="NLYIQWLKDGGPSSGRPPPS", n_residues=20,
                        description="Trp-cage TC5b, built extended from sequence"),
    )
}


BIOEMU_PACKAGE = "bioemu_benchmarks"
BIOEMU_WILDTYPES = "assets/folding_free_energies_benchmark_0.1/folding_free_energies/reference_wildtypes"
_BIOEMU_INSTALL = "pip install --no-deps bioemu-benchmarks==0.0.2.post1"
BIOEMU_DOMAINS = 97  # reference wild types in bioemu-benchmarks 0.0.2.post1 (0.0.1 ships 42)


def _bioemu_version() -> str:
    try:
        return importlib.metadata.version("bioemu-benchmarks")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def bioemu_names() -> list[str]:
    """Names (file stems) of the reference wild-type domains shipped by ``bioemu-benchmarks``, sorted."""
    spec = importlib.util.find_spec(BIOEMU_PACKAGE)
    if spec is None or spec.origin is None:
        raise ValueError(f"'bioemu:' structures need the package bioemu-benchmarks; install it with '{_BIOEMU_INSTALL}'")
    folder = Path(spec.origin).parent / BIOEMU_WILDTYPES
    if not folder.is_dir():
        raise ValueError(f"this version of bioemu-benchmarks has no folder {BIOEMU_WILDTYPES}; install it with '{_BIOEMU_INSTALL}'")
    return sorted(p.stem for p in folder.glob("*.pdb"))


def expand_structure_names(names: list[str]) -> list[str]:
    """``names`` with ``bioemu:all`` replaced by one ``bioemu:NAME`` per shipped domain (order kept, no repeats)."""
    out: list[str] = []
    for name in names:
        for n in ([f"bioemu:{b}" for b in bioemu_names()] if name == "bioemu:all" else [name]):
            if n not in out:
                out.append(n)
    return out


def _bioemu_structure(stem: str) -> StructureSource:
    names = bioemu_names()
    if stem not in names:
        hint = ""
        if len(names) < BIOEMU_DOMAINS:
            hint = (f"; the installed version {_bioemu_version()} ships only {len(names)} of the {BIOEMU_DOMAINS} "
                    f"domains of 0.0.2.post1: install that with '{_BIOEMU_INSTALL}'")
        raise ValueError(f"bioemu-benchmarks ships no domain {stem!r}; 'bioemu:all' names all {len(names)}{hint}")
    return StructureSource(f"bioemu_{stem}", "pdb", BIOEMU_PACKAGE, (f"{BIOEMU_WILDTYPES}/{stem}.pdb",),
                           description=f"{stem}: reference wild type of the bioemu-benchmarks folding free-energy set")


def get_structure(name: str) -> StructureSource:
    """Look up an offline structure by name, or build a ``sequence`` source from ``seq:ACDEF...``.

    Args:
        name: a key of :data:`STRUCTURES`, ``"seq:"`` followed by a one-letter sequence
            (the folder name is then ``pep_<sequence>``), or ``"bioemu:"`` followed by the name of a
            bioemu-benchmarks domain (folder ``bioemu_<name>``).
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if name.startswith("bioemu:"):
        return _bioemu_structure(name[len("bioemu:"):])
    if name.startswith("seq:"):
        sequence = name[4:].strip().upper()
        bad = sorted(set(sequence) - set(ONE_TO_THREE))
        if not sequence or bad:
            raise ValueError(f"name {name!r}: expected 'seq:' + one-letter amino acids, found invalid letters {bad}")
        return StructureSource(f"pep_{sequence}", "sequence", sequence=sequence, n_residues=len(sequence),
                               description=f"peptide {sequence}, built extended from sequence")
    if name not in STRUCTURES:
        raise ValueError(f"unknown structure {name!r}; expected one of {sorted(STRUCTURES)}, 'seq:SEQUENCE' or 'bioemu:NAME'")
    return STRUCTURES[name]
