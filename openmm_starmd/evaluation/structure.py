"""The protein residues of an mdtraj topology, their Cα atoms and chain neighbours.

Every metric of the evaluation is defined on the protein residues that carry a Cα atom,
in topology order. Waters, ions, ligands and caps (ACE/NME, which have no Cα) are ignored.
Two residues are *chain neighbours* when they are adjacent in topology order, lie in the same
chain and their residue numbers differ by exactly one; a numbering gap marks a missing
segment, which is not a chain break of the model.
"""
from __future__ import annotations

from dataclasses import dataclass

import mdtraj
import numpy as np

# Amber/CHARMM variants and modified residues mapped to their parent amino acid.
PARENT_RESIDUE: dict[str, str] = {
    "HID": "HIS", "HIE": "HIS", "HIP": "HIS", "HSD": "HIS", "HSE": "HIS", "HSP": "HIS",
    "CYX": "CYS", "CYM": "CYS", "ASH": "ASP", "GLH": "GLU", "LYN": "LYS", "MSE": "MET",
}

STANDARD_RESIDUES = frozenset(
    "ALA ARG ASN ASP CYS GLN GLU GLY HIS ILE LEU LYS MET PHE PRO SER THR TRP TYR VAL".split()
)


@dataclass(frozen=True)
class ProteinResidues:
    """Protein residues with a Cα atom, in topology order.

    Attributes:
        ca_indices: [N] atom index of each residue's Cα in the topology.
        residue_indices: [N] mdtraj residue index of each residue.
        names: [N] parent residue names ("HIS" for HID/HIE/HIP, ...).
        labels: [N] short labels for reports, e.g. "LEU1:A".
        neighbours: [N-1] True where residues i and i+1 are chain neighbours.
    """

    ca_indices: np.ndarray
    residue_indices: np.ndarray
    names: tuple[str, ...]
    labels: tuple[str, ...]
    neighbours: np.ndarray

    @property
    def n_residues(self) -> int:
        return len(self.names)


def parent_name(name: str) -> str:
    """The parent amino-acid name of a residue name (variants mapped, others unchanged)."""
    upper = name.upper()
    return PARENT_RESIDUE.get(upper, upper)


def protein_residues(topology: mdtraj.Topology, source: str = "topology") -> ProteinResidues:
    """Find the protein residues that carry a Cα atom.

    Args:
        topology: the mdtraj topology.
        source: a name for error messages (usually the file the topology came from).

    Raises:
        ValueError: when the topology holds no protein residue with a Cα atom.
    """
    ca, res_idx, names, labels, chains, seq = [], [], [], [], [], []
    for residue in topology.residues:
        if not (residue.is_protein or parent_name(residue.name) in STANDARD_RESIDUES):
            continue  # mdtraj does not know some Amber names (HID, HIE, CYX, ASH)
        atom = next((a for a in residue.atoms if a.name == "CA"), None)
        if atom is None:
            continue
        ca.append(atom.index)
        res_idx.append(residue.index)
        names.append(parent_name(residue.name))
        chain_id = (residue.chain.chain_id or "").strip() or str(residue.chain.index)
        labels.append(f"{residue.name}{residue.resSeq}:{chain_id}")
        chains.append(residue.chain.index)
        seq.append(residue.resSeq)
    if not ca:
        raise ValueError(
            f"{source}: expected a protein (residues with a CA atom); found none among "
            f"{topology.n_residues} residues and {topology.n_atoms} atoms (non-protein atoms only?)"
        )
    chains_arr, seq_arr = np.asarray(chains), np.asarray(seq)
    neighbours = (chains_arr[1:] == chains_arr[:-1]) & (seq_arr[1:] - seq_arr[:-1] == 1)
    return ProteinResidues(
        ca_indices=np.asarray(ca, dtype=np.int64),
        residue_indices=np.asarray(res_idx, dtype=np.int64),
        names=tuple(names),
        labels=tuple(labels),
        neighbours=neighbours,
    )


def check_same_protein(
    reference: ProteinResidues, generated: ProteinResidues, reference_name: str, generated_name: str
) -> None:
    """Raise ValueError unless both trajectories hold the same residue sequence."""
    if reference.names != generated.names:
        n_ref, n_gen = reference.n_residues, generated.n_residues
        first = next(
            (i for i, (a, b) in enumerate(zip(reference.names, generated.names)) if a != b), min(n_ref, n_gen)
        )
        raise ValueError(
            f"{generated_name}: protein residues do not match {reference_name}: "
            f"{n_gen} vs {n_ref} residues, first difference at residue position {first}"
        )


def check_frames(trajectory: mdtraj.Trajectory, source: str, min_frames: int = 1) -> None:
    """Raise ValueError when a trajectory has fewer than ``min_frames`` frames."""
    if trajectory.n_frames < min_frames:
        raise ValueError(f"{source}: expected at least {min_frames} frame(s), got {trajectory.n_frames}")
