"""Build implicit-solvent OpenMM simulations of offline structures (training-data MD).

The system is Amber ff14SB (``amber14-all.xml``) with OpenMM's native
``GBSAOBCForce`` carrying the OBC2 parameters of ``implicit/obc2.xml``. Loading the
xml gives a ``CustomGBForce``; the native force computes the same energy about five
times faster on the CPU (SPEC §7). The conversion reads the per-particle parameters
``[charge, or, sr]`` of the custom force (``or`` = radius − 0.009 nm offset,
``sr`` = scale · ``or``) and gives the native force ``radius = or + 0.009`` and
``scale = sr / or``; solvent 78.5, solute 1, ACE surface term 2.25936 kJ/mol/nm² as in
the xml.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import openmm
from openmm import app, unit

from openmm_starmd.data.structures import ONE_TO_THREE, StructureSource

OBC_RADIUS_OFFSET_NM = 0.009  # Amber/OpenMM dielectric offset of the OBC radii
SOLVENT_DIELECTRIC = 78.5
SOLUTE_DIELECTRIC = 1.0
_MAX_CA_CA_NM = 0.43  # longest consecutive CA-CA distance of an intact chain (3.8 A + margin; cis peptides are shorter)

# Ideal backbone geometry for the peptide builder (Engh & Huber), Angstrom and degrees.
_BOND_N_CA_A, _BOND_CA_C_A, _BOND_C_N_A, _BOND_C_O_A = 1.458, 1.525, 1.329, 1.231
_ANGLE_N_CA_C, _ANGLE_CA_C_N, _ANGLE_C_N_CA, _ANGLE_CA_C_O = 111.2, 116.2, 121.7, 120.5
_EXTENDED_PHI, _EXTENDED_PSI, _TRANS_OMEGA = -120.0, 130.0, 180.0


@dataclass
class MDConfig:
    """Settings of a training-data MD run.

    Attributes:
        temperature_k: Langevin bath temperature.
        friction_per_ps: Langevin collision rate.
        timestep_fs: integration step (4 fs needs HMR + HBonds constraints).
        hydrogen_mass_amu: repartitioned hydrogen mass (heavy atom loses the difference).
        frame_interval_ps: time between saved frames.
        chunk_ps: time per immutable chunk file (and per resume checkpoint).
        equilibration_ps: unsaved MD after minimisation, before the first frame.
        platform: OpenMM platform name ("CPU", "CUDA", "OpenCL", "Reference").
        threads: CPU platform threads (ignored elsewhere).
        seed: base random seed (replica r uses seed + r).
    """

    temperature_k: float = 300.0
    friction_per_ps: float = 1.0
    timestep_fs: float = 4.0
    hydrogen_mass_amu: float = 4.0
    frame_interval_ps: float = 10.0
    chunk_ps: float = 100.0
    equilibration_ps: float = 20.0
    platform: str = "CPU"
    threads: int = 1
    seed: int = 2602

    @property
    def steps_per_frame(self) -> int:
        return int(round(self.frame_interval_ps * 1000.0 / self.timestep_fs))

    @property
    def frames_per_chunk(self) -> int:
        return int(round(self.chunk_ps / self.frame_interval_ps))

    def validate(self) -> None:
        """Raise ValueError on inconsistent settings."""
        for field in ("temperature_k", "friction_per_ps", "timestep_fs", "hydrogen_mass_amu", "frame_interval_ps", "chunk_ps"):
            if getattr(self, field) <= 0:
                raise ValueError(f"{field} must be > 0, got {getattr(self, field)}")
        if self.equilibration_ps < 0:
            raise ValueError(f"equilibration_ps must be >= 0, got {self.equilibration_ps}")
        steps = self.frame_interval_ps * 1000.0 / self.timestep_fs
        if abs(steps - round(steps)) > 1e-6:
            raise ValueError(f"frame_interval_ps ({self.frame_interval_ps}) must be a whole number of timesteps ({self.timestep_fs} fs)")
        frames = self.chunk_ps / self.frame_interval_ps
        if frames < 1 or abs(frames - round(frames)) > 1e-6:
            raise ValueError(f"chunk_ps ({self.chunk_ps}) must be a positive multiple of frame_interval_ps ({self.frame_interval_ps})")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")


def build_peptide_backbone_pdb(sequence: str) -> str:
    """PDB text of an extended peptide backbone (N, CA, C, O per residue) for ``sequence``.

    Atoms are placed by the natural-extension reference frame (NeRF) method with ideal
    bond lengths and angles and (φ, ψ, ω) = (−120°, 130°, 180°). Side chains, OXT and
    hydrogens are left to PDBFixer.
    """
    names = [ONE_TO_THREE[a] for a in sequence]
    chain = [np.array([0.0, 0.0, 0.0]), np.array([_BOND_N_CA_A, 0.0, 0.0])]
    ang = math.radians(_ANGLE_N_CA_C)
    chain.append(chain[1] + _BOND_CA_C_A * np.array([-math.cos(ang), math.sin(ang), 0.0]))
    # Atom k+3 is placed from atoms k, k+1, k+2 with (bond, angle, torsion) of the cycle N-CA-C.
    cycle = [(_BOND_C_N_A, _ANGLE_CA_C_N, _EXTENDED_PSI), (_BOND_N_CA_A, _ANGLE_C_N_CA, _TRANS_OMEGA),
             (_BOND_CA_C_A, _ANGLE_N_CA_C, _EXTENDED_PHI)]
    for k in range(3 * len(names) - 3):
        bond, angle, torsion = cycle[k % 3]
        chain.append(_nerf(chain[-3], chain[-2], chain[-1], bond, angle, torsion))
    lines, serial = [], 1
    for i, res in enumerate(names):
        n, ca, c = chain[3 * i: 3 * i + 3]
        # O in the peptide plane, trans to the next N: torsion N-CA-C-O = psi + 180.
        o = _nerf(n, ca, c, _BOND_C_O_A, _ANGLE_CA_C_O, _EXTENDED_PSI + 180.0)
        for atom, xyz in (("N", n), ("CA", ca), ("C", c), ("O", o)):
            lines.append(f"ATOM  {serial:5d}  {atom:<3s} {res:3s} A{i + 1:4d}    {xyz[0]:8.3f}{xyz[1]:8.3f}{xyz[2]:8.3f}  1.00  0.00          {atom[0]:>2s}")
            serial += 1
    lines.append("TER")
    lines.append("END")
    return "\n".join(lines) + "\n"


def _nerf(a: np.ndarray, b: np.ndarray, c: np.ndarray, bond: float, angle_deg: float, torsion_deg: float) -> np.ndarray:
    """Place d so that |cd| = bond, angle bcd = angle, torsion abcd = torsion."""
    angle, torsion = math.radians(angle_deg), math.radians(torsion_deg)
    bc = (c - b) / np.linalg.norm(c - b)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.stack([bc, np.cross(n, bc), n], axis=1)
    d_local = bond * np.array([-math.cos(angle), math.sin(angle) * math.cos(torsion), math.sin(angle) * math.sin(torsion)])
    return c + m @ d_local


def prepare_structure(source: StructureSource) -> tuple[app.Topology, unit.Quantity]:
    """Protein-only, all-atom topology and positions for an offline structure.

    Solvent, ions and ligands are removed; missing heavy atoms (including OXT and built
    side chains) and hydrogens at pH 7 are added by PDBFixer; non-standard residues are
    replaced by their parents. Returns (topology, positions in nm).
    """
    from pdbfixer import PDBFixer

    if source.kind == "pdb":
        fixer = PDBFixer(filename=str(source.paths()[0]))
    elif source.kind == "sequence":
        fixer = PDBFixer(pdbfile=io.StringIO(build_peptide_backbone_pdb(source.sequence)))
    else:
        raise ValueError(f"source.kind must be 'pdb' or 'sequence', got {source.kind!r}")
    fixer.findNonstandardResidues()
    fixer.replaceNonstandardResidues()
    fixer.removeHeterogens(keepWater=False)
    _keep_first_protein_chain(fixer)
    fixer.findMissingResidues()
    chain_lengths = [len(list(c.residues())) for c in fixer.topology.chains()]
    # Model missing internal loops (SEQRES), never missing termini.
    fixer.missingResidues = {key: names for key, names in fixer.missingResidues.items() if 0 < key[1] < chain_lengths[key[0]]}
    fixer.findMissingAtoms()
    fixer.addMissingAtoms(seed=0)
    fixer.addMissingHydrogens(7.0)
    _check_no_chain_break(fixer.topology, fixer.positions)
    return fixer.topology, fixer.positions


def _check_no_chain_break(topology: app.Topology, positions: unit.Quantity) -> None:
    """Raise if consecutive CA atoms of a chain are farther apart than a peptide bond allows."""
    xyz = np.asarray(positions.value_in_unit(unit.nanometer))
    for chain in topology.chains():
        ca = [(r, a.index) for r in chain.residues() for a in r.atoms() if a.name == "CA"]
        for (r0, i), (r1, j) in zip(ca[:-1], ca[1:]):
            if np.linalg.norm(xyz[i] - xyz[j]) > _MAX_CA_CA_NM:
                raise ValueError(f"chain {chain.id} breaks between residues {r0.name}{r0.id} and {r1.name}{r1.id} "
                                 f"(CA-CA {np.linalg.norm(xyz[i] - xyz[j]):.2f} nm); the structure has a gap PDBFixer could not fill")


def _keep_first_protein_chain(fixer) -> None:
    """Drop every chain but the first one that holds amino acids."""
    chains = list(fixer.topology.chains())
    keep = next((c.index for c in chains if any(r.name in app.PDBFile._standardResidues[:20] or r.name in ("HIE", "HID", "HIP", "CYX") for r in c.residues())), None)
    if keep is None:
        raise ValueError("structure holds no protein chain")
    drop = [c.index for c in chains if c.index != keep]
    if drop:
        fixer.removeChains(chainIndices=drop)


def create_implicit_system(topology: app.Topology, config: MDConfig) -> openmm.System:
    """Amber ff14SB + native GBSAOBCForce (OBC2) system with HMR and H-bond constraints."""
    forcefield = app.ForceField("amber14-all.xml", "implicit/obc2.xml")
    system = forcefield.createSystem(topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds,
                                     hydrogenMass=config.hydrogen_mass_amu * unit.amu)
    replace_custom_obc2_with_native(system)
    return system


def replace_custom_obc2_with_native(system: openmm.System) -> None:
    """Swap the CustomGBForce made by ``implicit/obc2.xml`` for an equivalent GBSAOBCForce, in place."""
    index = [i for i, f in enumerate(system.getForces()) if isinstance(f, openmm.CustomGBForce)]
    if len(index) != 1:
        raise ValueError(f"system must contain exactly one CustomGBForce (from implicit/obc2.xml), found {len(index)}")
    custom = system.getForce(index[0])
    names = [custom.getPerParticleParameterName(k) for k in range(custom.getNumPerParticleParameters())]
    if names != ["charge", "or", "sr"]:
        raise ValueError(f"CustomGBForce per-particle parameters must be ['charge', 'or', 'sr'] (OBC2), got {names}")
    native = openmm.GBSAOBCForce()
    native.setNonbondedMethod(openmm.GBSAOBCForce.NoCutoff)
    native.setSolventDielectric(SOLVENT_DIELECTRIC)
    native.setSoluteDielectric(SOLUTE_DIELECTRIC)
    for i in range(custom.getNumParticles()):
        charge, offset_radius, scaled_radius = custom.getParticleParameters(i)
        native.addParticle(charge, offset_radius + OBC_RADIUS_OFFSET_NM, scaled_radius / offset_radius)
    native.setForceGroup(custom.getForceGroup())
    system.removeForce(index[0])
    system.addForce(native)


def make_platform(config: MDConfig) -> tuple[openmm.Platform, dict[str, str]]:
    """The OpenMM platform and its properties (CPU threads, GPU mixed precision)."""
    try:
        platform = openmm.Platform.getPlatformByName(config.platform)
    except Exception as err:  # OpenMMException carries the list of available platforms
        names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
        raise ValueError(f"platform {config.platform!r} is not available; available: {names}") from err
    properties: dict[str, str] = {}
    if config.platform == "CPU":
        properties["Threads"] = str(config.threads)
    elif config.platform in ("CUDA", "OpenCL", "HIP"):
        properties["Precision"] = "mixed"
    return platform, properties


def create_simulation(topology: app.Topology, system: openmm.System, config: MDConfig, seed: int) -> app.Simulation:
    """A Simulation with a LangevinMiddleIntegrator at the configured temperature and step."""
    integrator = openmm.LangevinMiddleIntegrator(config.temperature_k * unit.kelvin, config.friction_per_ps / unit.picosecond,
                                                 config.timestep_fs * unit.femtosecond)
    integrator.setRandomNumberSeed(seed)
    platform, properties = make_platform(config)
    return app.Simulation(topology, system, integrator, platform, properties)


def heavy_protein_atom_indices(topology: app.Topology) -> np.ndarray:
    """Indices [A] of the non-hydrogen atoms (the atoms stored in training data)."""
    return np.array([a.index for a in topology.atoms() if a.element is not None and a.element.symbol != "H"], dtype=np.int64)


def positions_nm(state: openmm.State) -> np.ndarray:
    """Positions [atoms, 3] in nm as a float64 array."""
    return np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))


__all__ = [
    "MDConfig", "build_peptide_backbone_pdb", "prepare_structure", "create_implicit_system",
    "replace_custom_obc2_with_native", "make_platform", "create_simulation", "heavy_protein_atom_indices",
    "positions_nm",
]
