"""``starmd simulate``: resumable implicit-solvent MD of offline structures (training data).

Each (structure, replica) is run in chunks of ``--chunk-ps``; every finished chunk is an
immutable XTC file of the protein heavy atoms, followed by a portable OpenMM state XML
from which the next chunk starts. Rerunning the same command continues where the last
one stopped, on any platform (CPU here, CUDA on a lent GPU). Several structures are run
round-robin, one chunk each in turn, or with ``--order sequential`` one after another (each
replica reaches ``--ns`` before the next starts, so that a long list of short runs finishes
systems one by one rather than all at the end).

Layout of ``OUT/<name>/`` (read directly by ``openmm_starmd.data.readers``)::

    <name>.pdb                   heavy-atom topology (first equilibrated frame)
    <name>_R1_c0000.xtc ...      replica 1, chunk 0, ... (frames every --frame-ps)
    <name>.json                  force field, temperature, step, ns done, ns/day, commands
    state/<name>_allatom.pdb     prepared all-atom structure (minimised)
    state/<name>_R1_next_c0007.xml  state from which chunk 7 of replica 1 starts
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from openmm_starmd.data.structures import STRUCTURES, expand_structure_names, get_structure
from openmm_starmd.openmm.md_setup import MDConfig
from openmm_starmd.units import PS_PER_NS

_MAX_RETRIES = 3


ORDERS = ("round-robin", "sequential")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("structures", nargs="+", metavar="NAME",
                        help=f"structures to simulate: {', '.join(STRUCTURES)}, seq:SEQUENCE for a peptide, bioemu:NAME or bioemu:all for the bioemu-benchmarks domains")
    parser.add_argument("--out", type=Path, default=Path("md_data"), help="output folder (default md_data); one sub-folder per structure")
    parser.add_argument("--ns", type=float, default=100.0, help="production length per replica in ns (default 100); the run stops when all reach it")
    parser.add_argument("--replicas", type=int, default=1, help="independent replicas per structure (R1..Rn, default 1)")
    parser.add_argument("--max-hours", type=float, default=math.inf, help="stop after the first chunk that ends past this wall time")
    defaults = MDConfig()
    parser.add_argument("--chunk-ps", type=float, default=defaults.chunk_ps, help=f"ps per chunk file and checkpoint (default {defaults.chunk_ps:g})")
    parser.add_argument("--frame-ps", type=float, default=defaults.frame_interval_ps, help=f"ps between saved frames (default {defaults.frame_interval_ps:g})")
    parser.add_argument("--timestep-fs", type=float, default=defaults.timestep_fs, help=f"integration step in fs (default {defaults.timestep_fs:g})")
    parser.add_argument("--temperature", type=float, default=defaults.temperature_k, help=f"K (default {defaults.temperature_k:g})")
    parser.add_argument("--hydrogen-mass", type=float, default=defaults.hydrogen_mass_amu, help=f"amu after repartitioning (default {defaults.hydrogen_mass_amu:g})")
    parser.add_argument("--equilibration-ps", type=float, default=defaults.equilibration_ps, help=f"unsaved MD before the first frame (default {defaults.equilibration_ps:g})")
    parser.add_argument("--platform", default=defaults.platform, help="OpenMM platform: CPU (default), CUDA, OpenCL, Reference")
    parser.add_argument("--threads", type=int, default=defaults.threads, help="CPU platform threads (default 1)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help=f"base random seed (default {defaults.seed})")
    parser.add_argument("--order", choices=ORDERS, default="round-robin",
                        help="round-robin: one chunk of each replica in turn (default); sequential: each replica "
                             "to --ns before the next starts, each locked only when it starts (another process may take later ones)")


INTERRUPTED = 130  # the shell's exit status for a process stopped by SIGINT


def run(args: argparse.Namespace) -> int:
    config = MDConfig(temperature_k=args.temperature, timestep_fs=args.timestep_fs, hydrogen_mass_amu=args.hydrogen_mass,
                      frame_interval_ps=args.frame_ps, chunk_ps=args.chunk_ps, equilibration_ps=args.equilibration_ps,
                      platform=args.platform, threads=args.threads, seed=args.seed)
    config.validate()
    if args.ns <= 0:
        raise ValueError(f"--ns must be > 0, got {args.ns}")
    if args.replicas < 1:
        raise ValueError(f"--replicas must be >= 1, got {args.replicas}")
    command = _command_line(args)
    n_chunks = int(math.ceil(args.ns * PS_PER_NS / config.chunk_ps - 1e-9))
    runs: list[ReplicaRun] = []
    start = time.monotonic()
    try:
        for name in expand_structure_names(args.structures):
            for r in range(1, args.replicas + 1):
                try:
                    runs.append(ReplicaRun(Path(args.out), name, r, config, command, lock_now=args.order != "sequential"))
                except ValueError as exc:  # an unknown name or a locked replica must not stop the others
                    if len(args.structures) == 1 and args.replicas == 1:
                        raise
                    print(f"skipping {name} R{r}: {exc}", flush=True)
        if not runs:
            raise ValueError("no structure can be simulated; see the messages above")
        while True:
            pending = [rr for rr in runs if rr.n_chunks_done < n_chunks]
            if not pending:
                break
            if args.order == "sequential":
                pending = pending[:1]
            for rr in pending:
                if not rr.started:  # another process may have run this replica since the count at the start
                    rr.n_chunks_done = rr._count_chunks()
                    if rr.n_chunks_done >= n_chunks:
                        continue
                try:
                    rr.run_chunk()
                except ValueError as exc:  # preparation failed or locked: one structure must not stop the others
                    if len(runs) == 1:
                        raise
                    print(f"skipping {rr.name} R{rr.replica}: {exc}", flush=True)
                    rr.close()
                    runs.remove(rr)
                    continue
                print(rr.progress_line(n_chunks), flush=True)
            if not runs:
                raise ValueError("no structure could be prepared; see the messages above")
            if (time.monotonic() - start) / 3600.0 > args.max_hours:
                print(f"stopping: --max-hours {args.max_hours:g} reached", flush=True)
                break
    except KeyboardInterrupt:  # Ctrl-C or kill -INT: every finished chunk is on disk, the one in progress is dropped
        done = ", ".join(f"{rr.name} R{rr.replica} {rr.n_chunks_done}" for rr in runs)
        print(f"stopped by an interrupt; finished chunks kept ({done or 'none'}), the chunk in progress dropped; "
              "run the same command again to resume", file=sys.stderr, flush=True)
        return INTERRUPTED
    finally:
        for rr in runs:
            rr.close()
    return 0


def _command_line(args: argparse.Namespace) -> str:
    """The command with every option spelled out, as recorded in each system's JSON."""
    options = [("--out", args.out), ("--ns", args.ns), ("--replicas", args.replicas), ("--chunk-ps", args.chunk_ps),
               ("--frame-ps", args.frame_ps), ("--timestep-fs", args.timestep_fs), ("--temperature", args.temperature),
               ("--hydrogen-mass", args.hydrogen_mass), ("--equilibration-ps", args.equilibration_ps),
               ("--platform", args.platform), ("--threads", args.threads), ("--seed", args.seed)]
    if args.order != "round-robin":
        options.append(("--order", args.order))
    if math.isfinite(args.max_hours):
        options.append(("--max-hours", args.max_hours))
    words = ["starmd", "simulate", *args.structures]
    for flag, value in options:
        words += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return " ".join(shlex.quote(w) for w in words)


class ReplicaRun:
    """One replica of one structure: prepares it once (lazily, before its first chunk, so that a
    round-robin over many structures starts writing data at once), then runs and stores chunks.

    Args:
        out: the data root; files go to ``out/<structure name>/``.
        name: structure name or ``seq:SEQUENCE`` (see ``data.structures.get_structure``).
        replica: 1-based replica number (file tag ``R<replica>``).
        config: MD settings; must match those of earlier chunks (checked against the JSON).
        command: the command line recorded in the JSON.
    """

    def __init__(self, out: Path, name: str, replica: int, config: MDConfig, command: str, lock_now: bool = True):
        self.source = get_structure(name)
        self.name, self.replica, self.config, self.command = self.source.name, replica, config, command
        self.folder = out / self.name
        self.state_dir = self.folder / "state"  # made when the replica is locked: none for a structure never reached
        self._lock = self.state_dir / f"{self.name}_R{replica}.lock"
        self.locked = False
        if lock_now:
            self._acquire_lock()
        try:
            self.meta = self._load_meta()
            self.n_chunks_done = self._count_chunks()
        except BaseException:
            self.close()
            raise
        self.started = False  # preparation and equilibration wait for this replica's first chunk

    def start(self) -> None:
        """Prepare the structure (first run) or pick up the last resume state; once, before the first chunk."""
        if not self.started:
            if not self.locked:
                self._acquire_lock()
            self._start()
            self.started = True

    def _start(self) -> None:
        """Prepare the structure (first run) or pick up the last resume state."""
        from openmm import app

        allatom = self.state_dir / f"{self.name}_allatom.pdb"
        if not allatom.exists():
            self._prepare(allatom)
        pdb = app.PDBFile(str(allatom))
        self.topology = pdb.topology
        self.n_chunks_done = self._count_chunks()
        self._build_simulation(seed_offset=self.n_chunks_done)
        state_path = self._state_path(self.n_chunks_done)
        if state_path.exists():
            self.simulation.loadState(str(state_path))
        elif self.n_chunks_done == 0:
            self._equilibrate(pdb.positions)
        else:
            raise ValueError(f"{self.folder}: {self.n_chunks_done} chunks of R{self.replica} but no resume state {state_path.name}")
        self._clean_old_states()

    # ----------------------------------------------------------------- setup
    def _acquire_lock(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self._lock.exists():
            pid = int(self._lock.read_text().strip() or 0)
            if pid and _pid_alive(pid):
                raise ValueError(f"{self.name} R{self.replica} is already being simulated by process {pid} (lock {self._lock})")
        self._lock.write_text(str(os.getpid()))
        self.locked = True

    def close(self) -> None:
        if self._lock.exists() and self._lock.read_text().strip() == str(os.getpid()):
            self._lock.unlink()

    def _prepare(self, allatom: Path) -> None:
        from openmm import app

        from openmm_starmd.openmm.md_setup import create_implicit_system, create_simulation, prepare_structure

        topology, positions = prepare_structure(self.source)
        simulation = create_simulation(topology, create_implicit_system(topology, self.config), self.config, self.config.seed)
        simulation.context.setPositions(positions)
        simulation.minimizeEnergy()
        state = simulation.context.getState(getPositions=True)
        _atomic_write_text(allatom, _pdb_text(app, topology, state.getPositions()))

    def _build_simulation(self, seed_offset: int) -> None:
        from openmm_starmd.openmm.md_setup import create_implicit_system, create_simulation, heavy_protein_atom_indices

        self.seed = self.config.seed + 1000 * self.replica + seed_offset
        self.simulation = create_simulation(self.topology, create_implicit_system(self.topology, self.config), self.config, self.seed)
        self.heavy = heavy_protein_atom_indices(self.topology)

    def _equilibrate(self, positions) -> None:
        from openmm import unit

        self.simulation.context.setPositions(positions)
        self.simulation.context.setVelocitiesToTemperature(self.config.temperature_k * unit.kelvin, self.seed)
        self.simulation.step(int(round(self.config.equilibration_ps * 1000.0 / self.config.timestep_fs)))
        self.simulation.context.setTime(0.0)
        self.simulation.context.setStepCount(0)
        self._write_state(0)
        heavy_pdb = self.folder / f"{self.name}.pdb"
        if not heavy_pdb.exists():
            import mdtraj

            xyz = self._heavy_positions_nm()[None]
            traj = mdtraj.Trajectory(xyz, mdtraj.Topology.from_openmm(self.topology).subset(self.heavy))
            tmp = heavy_pdb.with_suffix(".tmp.pdb")
            traj.save_pdb(str(tmp))
            os.replace(tmp, heavy_pdb)

    # ----------------------------------------------------------------- files
    def _chunk_path(self, k: int) -> Path:
        return self.folder / f"{self.name}_R{self.replica}_c{k:04d}.xtc"

    def _state_path(self, k: int) -> Path:
        return self.state_dir / f"{self.name}_R{self.replica}_next_c{k:04d}.xml"

    def _count_chunks(self) -> int:
        k = 0
        while self._chunk_path(k).exists():
            k += 1
        return k

    def _write_state(self, k: int) -> None:
        path = self._state_path(k)
        tmp = path.with_suffix(".tmp")
        self.simulation.saveState(str(tmp))
        os.replace(tmp, path)

    def _clean_old_states(self) -> None:
        keep = self._state_path(self.n_chunks_done)
        for p in self.state_dir.glob(f"{self.name}_R{self.replica}_next_c*.xml"):
            if p != keep:
                p.unlink()

    def _heavy_positions_nm(self) -> np.ndarray:
        from openmm_starmd.openmm.md_setup import positions_nm

        return positions_nm(self.simulation.context.getState(getPositions=True))[self.heavy]

    # ----------------------------------------------------------------- running
    def run_chunk(self) -> None:
        """Run one chunk, write its XTC, the next resume state and the JSON (retrying on blow-ups)."""
        import openmm

        self.start()
        k = self.n_chunks_done
        for attempt in range(_MAX_RETRIES + 1):
            t0 = time.monotonic()
            try:
                xyz, times_ps = self._run_frames(k)
                break
            except (openmm.OpenMMException, FloatingPointError) as err:
                if attempt == _MAX_RETRIES:
                    raise
                print(f"{self.name} R{self.replica} chunk {k}: {err}; restarting the chunk with a new seed", flush=True)
                self._build_simulation(seed_offset=k + 100 * (attempt + 1))
                self.simulation.loadState(str(self._state_path(k)))
        wall_s = time.monotonic() - t0
        self._write_state(k + 1)
        self._write_xtc(k, xyz, times_ps)
        self.n_chunks_done = k + 1
        self._clean_old_states()
        self._update_meta(wall_s)

    def _run_frames(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        frames = self.config.frames_per_chunk
        xyz = np.empty((frames, len(self.heavy), 3), dtype=np.float32)
        for j in range(frames):
            self.simulation.step(self.config.steps_per_frame)
            pos = self._heavy_positions_nm()
            if not np.all(np.isfinite(pos)):
                raise FloatingPointError(f"non-finite positions at frame {j}")
            xyz[j] = pos
        times_ps = (k * frames + np.arange(1, frames + 1)) * self.config.frame_interval_ps
        return xyz, times_ps.astype(np.float32)

    def _write_xtc(self, k: int, xyz: np.ndarray, times_ps: np.ndarray) -> None:
        from mdtraj.formats import XTCTrajectoryFile

        path = self._chunk_path(k)
        tmp = path.with_suffix(".tmp.xtc")
        with XTCTrajectoryFile(str(tmp), "w") as f:
            f.write(xyz, time=times_ps)
        os.replace(tmp, path)

    # ----------------------------------------------------------------- metadata
    def _meta_path(self) -> Path:
        return self.folder / f"{self.name}.json"

    def _settings(self) -> dict:
        c = asdict(self.config)
        return {key: c[key] for key in ("temperature_k", "friction_per_ps", "timestep_fs", "hydrogen_mass_amu", "frame_interval_ps", "chunk_ps")}

    def _load_meta(self) -> dict:
        path = self._meta_path()
        if path.exists():
            meta = json.loads(path.read_text())
            if meta["settings"] != self._settings():
                raise ValueError(f"{path}: settings of earlier chunks {meta['settings']} differ from this run's {self._settings()}; "
                                 "use another --out folder to change them")
            return meta
        return {
            "structure": self.name, "description": self.source.description, "sequence": self.source.sequence,
            "force_field": "amber14-all.xml (Amber ff14SB) + native GBSAOBCForce with the OBC2 parameters of implicit/obc2.xml "
                           "(radius offset 0.009 nm, scale = sr/or), no cutoff, solvent dielectric 78.5, ACE surface term",
            "integrator": "LangevinMiddleIntegrator", "constraints": "HBonds", "settings": self._settings(),
            "stored_atoms": "protein heavy atoms, XTC precision 0.001 nm", "replicas": {}, "commands": [],
        }

    def _update_meta(self, wall_s: float) -> None:
        import openmm

        meta = json.loads(self._meta_path().read_text()) if self._meta_path().exists() else self.meta
        rep = meta["replicas"].setdefault(f"R{self.replica}", {"ns": 0.0, "n_chunks": 0, "wall_s_by_platform": {}, "ns_by_platform": {}})
        chunk_ns = self.config.chunk_ps / PS_PER_NS
        rep["n_chunks"] = self.n_chunks_done
        rep["ns"] = round(self.n_chunks_done * chunk_ns, 6)
        plat = f"{self.config.platform}x{self.config.threads}" if self.config.platform == "CPU" else self.config.platform
        rep["wall_s_by_platform"][plat] = round(rep["wall_s_by_platform"].get(plat, 0.0) + wall_s, 1)
        rep["ns_by_platform"][plat] = round(rep["ns_by_platform"].get(plat, 0.0) + chunk_ns, 6)
        rep["ns_per_day_by_platform"] = {p: round(rep["ns_by_platform"][p] / rep["wall_s_by_platform"][p] * 86400.0, 2)
                                         for p in rep["wall_s_by_platform"] if rep["wall_s_by_platform"][p] > 0}
        rep["last_chunk_ns_per_day"] = round(chunk_ns / wall_s * 86400.0, 2)
        meta["n_atoms_all"] = self.topology.getNumAtoms()
        meta["n_heavy_atoms"] = int(len(self.heavy))
        meta["n_residues"] = self.topology.getNumResidues()
        meta["openmm_version"] = openmm.__version__
        if self.command not in meta["commands"]:
            meta["commands"].append(self.command)
        self.meta = meta
        _atomic_write_text(self._meta_path(), json.dumps(meta, indent=1) + "\n")

    def progress_line(self, n_chunks_target: int) -> str:
        rep = self.meta["replicas"][f"R{self.replica}"]
        return (f"{time.strftime('%Y-%m-%d %H:%M:%S')} {self.name} R{self.replica}: chunk {self.n_chunks_done}/{n_chunks_target} "
                f"({rep['ns']:.2f} ns), {rep['last_chunk_ns_per_day']:.1f} ns/day")


def _pdb_text(app, topology, positions) -> str:
    import io

    handle = io.StringIO()
    app.PDBFile.writeFile(topology, positions, handle, keepIds=True)
    return handle.getvalue()


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
