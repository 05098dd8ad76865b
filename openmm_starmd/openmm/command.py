"""``starmd generate PDB --frames N --stride 1.25ns --out traj.xtc``: jump a protein with STAR-MD.

The structure is prepared as ``examples/jump_then_relax.py`` does: water and ions removed,
missing hydrogens added, Amber ff14SB with OpenMM's native ``GBSAOBCForce`` (OBC2), hydrogen
mass repartitioning and a 4 fs LangevinMiddle integrator at 300 K. Every jump is relaxed
(restrained minimisation by default), written to ``--out`` (.xtc or .dcd, chosen by extension)
by an ordinary OpenMM reporter, and the last frame to ``--out`` with a ``.pdb`` extension.

Every argument and the structure are checked before the set-up (force field, model loading), in
:meth:`JumpRunConfig.validate`: a bad value ends the command with one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from openmm_starmd.internal import LOGGER
from openmm_starmd.units import PS_PER_NS

_STRIDE_RE = re.compile(r"^\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ns|ps|fs)?\s*$")
MINIMIZE_ITERATIONS = 200  # of the prepared structure, before the first jump
_PER_NS = {"ns": 1.0, "ps": 1.0 / PS_PER_NS, "fs": 1.0 / (PS_PER_NS * 1000.0), None: 1.0}
RECOMMENDED = "recommended"  # --stride: the model's recommended stride
STRUCTURE_SUFFIXES = (".pdb", ".ent", ".cif", ".pdbx", ".mmcif")
STRIPPED_RESIDUES = ("HOH", "WAT", "NA", "Na", "CL", "Cl", "K")  # water and ions, removed before the set-up


def parse_stride_ns(text: str) -> float:
    """'1.25ns', '500ps', '2' (ns) -> float ns (the sign is kept; :meth:`JumpRunConfig.validate` wants > 0)."""
    match = _STRIDE_RE.match(str(text))
    if not match:
        raise ValueError(f"--stride: expected a time such as 1.25ns, 500ps or a number of ns, got {text!r}")
    return float(match.group(1)) * _PER_NS[match.group(2)]


def parse_fallback_steps(text):
    """'full' -> None (MD for the whole interval), else an int number of MD steps."""
    if text == "full":
        return None
    try:
        return int(text)
    except (TypeError, ValueError):
        raise ValueError(f"--fallback-md-steps: expected a number of MD steps or 'full', got {text!r}") from None


def parse_relax(text):
    """'minimize', 'none'/None, or a number of MD steps -> the Generator's ``relax`` argument."""
    if text is None or text == "none":
        return None
    if text == "minimize":
        return "minimize"
    try:
        return int(text)
    except (TypeError, ValueError):
        raise ValueError(f"--relax: expected 'minimize', 'none' or a number of MD steps, got {text!r}") from None


@dataclass
class JumpRunConfig:
    """One jump-then-relax run: structure, model, jumps and outputs."""

    pdb: str
    out: str = "traj.xtc"
    frames: int = 8
    stride_ns: Optional[float] = None  # None: the model's recommended stride
    model: str = "default"
    relax: Optional[str] = "minimize"
    seed: Optional[int] = None
    num_steps: Optional[int] = None  # None: the weights' recommended sampler (GeneratorOptions)
    noise_scale: Optional[float] = None
    time_spacing: Optional[float] = None
    noise_switch_t: Optional[float] = None
    ode: Optional[bool] = None  # GeneratorOptions.ode: the probability-flow ODE (None: the weights' choice for the stride)
    context_window: Optional[int] = None
    context_sink: Optional[int] = None
    gate_judge: str = "sample"
    fallback_md_steps: Optional[int] = 500  # None: MD for the whole interval
    platform: str = "CPU"
    threads: int = 1
    progress: Optional[bool] = None
    scripted: bool = False  # GeneratorOptions.scripted
    md_after_ps: float = 0.0  # plain MD with the Simulation's own integrator after the last jump

    def validate(self) -> "JumpRunConfig":
        """Raise ValueError/TypeError/FileNotFoundError, naming the option, on a bad value; reads the
        structure (a fraction of a second) but builds nothing."""
        for name, option, low in (("frames", "--frames", 0), ("num_steps", "--num-steps", 2),
                                  ("fallback_md_steps", "--fallback-md-steps", 0), ("threads", "--threads", 1)):
            value = getattr(self, name)
            if name in ("fallback_md_steps", "num_steps") and value is None:  # MD for the whole interval; the weights' steps
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{option}: expected an int >= {low}, got {value!r}")
        if self.stride_ns is not None and (not self.stride_ns > 0 or self.stride_ns == float("inf")):
            raise ValueError(f"--stride: expected a positive time, got {self.stride_ns:g} ns")
        if self.noise_scale is not None and not 0 <= self.noise_scale < float("inf"):
            raise ValueError(f"--noise-scale: expected a number >= 0, got {self.noise_scale}")
        if self.time_spacing is not None and not 0 < self.time_spacing < float("inf"):
            raise ValueError(f"--time-spacing: expected a number > 0, got {self.time_spacing}")
        if self.noise_switch_t is not None and not 0 <= self.noise_switch_t <= 1:
            raise ValueError(f"--noise-switch-t: expected a diffusion time in [0, 1], got {self.noise_switch_t}")
        if self.context_window is not None and (self.context_window < 0 or self.context_window == 1):
            raise ValueError(f"--context-window: expected 0 (the whole history) or a number of frames >= 2, got {self.context_window}")
        if self.context_sink is not None and self.context_sink < 0:
            raise ValueError(f"--context-sink: expected a number of frames >= 0, got {self.context_sink}")
        if self.gate_judge not in ("sample", "relaxed"):
            raise ValueError(f"--gate-judge: expected 'sample' or 'relaxed', got {self.gate_judge!r}")
        parse_relax(self.relax)
        out = Path(self.out)
        if out.suffix.lower() not in (".xtc", ".dcd"):
            raise ValueError(f"--out: expected a .xtc or .dcd file, got {self.out!r}")
        if out.is_dir():
            raise ValueError(f"--out: {self.out} is a directory; give a file such as {out / 'traj.xtc'}")
        check_structure(self.pdb)
        _check_model(self.model)
        _check_platform(self.platform)
        if isinstance(self.md_after_ps, bool) or not 0 <= self.md_after_ps < float("inf"):
            raise ValueError(f"--md-after-ps: expected a number of ps >= 0, got {self.md_after_ps!r}")
        return self


def _check_model(model: str) -> None:
    from openmm_starmd.model.checkpoint import SHIPPED, resolve_model_path

    if model in SHIPPED:
        resolve_model_path(model)
    elif not Path(model).is_file():
        raise FileNotFoundError(f"--model: no such checkpoint file: {model} (give 'default' or the path of a file "
                                "written by 'starmd train')")


def _check_platform(name: str) -> None:
    import openmm

    names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
    if name not in names:
        raise ValueError(f"--platform: expected one of {', '.join(names)}, got {name!r}")


def read_structure(path: str):
    """Topology and positions of a PDB or PDBx/mmCIF file; ValueError/FileNotFoundError naming the file."""
    from openmm import app

    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"structure not found: {path}")
    if not file.is_file():
        raise ValueError(f"structure: {path} is not a file")
    if file.suffix.lower() not in STRUCTURE_SUFFIXES:
        raise ValueError(f"structure: expected a PDB (.pdb, .ent) or PDBx/mmCIF (.cif, .pdbx) file, got {path}")
    if file.stat().st_size == 0:
        raise ValueError(f"structure: {path} is empty")
    is_pdb = file.suffix.lower() in (".pdb", ".ent")
    no_atoms = ValueError(f"structure: {path} has no atoms (no ATOM/HETATM records)")
    if is_pdb:
        with open(file, errors="replace") as handle:
            if not any(line.startswith(("ATOM  ", "HETATM")) for line in handle):
                raise no_atoms
    reader = app.PDBFile if is_pdb else app.PDBxFile
    try:
        structure = reader(str(file))
    except Exception as exc:  # the readers raise many kinds on malformed files
        raise ValueError(f"structure: cannot read {path} ({type(exc).__name__}: {exc})") from None
    if structure.topology.getNumAtoms() == 0 or len(structure.positions) == 0:
        raise no_atoms
    return structure.topology, structure.positions


def check_structure(path: str) -> None:
    """The structure holds a protein the Generator accepts, and nothing but protein, water and ions
    (the amber14 implicit-solvent set-up has no parameters for anything else)."""
    from openmm import app, unit

    from openmm_starmd.geometry.residue_constants import CAP_RESIDUE_NAMES, is_modelled_residue
    from openmm_starmd.openmm.coarse_grain import check_chirality, check_finite_positions, map_topology

    topology, positions = read_structure(path)
    modeller = app.Modeller(topology, positions)
    modeller.delete([r for r in modeller.topology.residues() if r.name in STRIPPED_RESIDUES])
    other = sorted({r.name for r in modeller.topology.residues()
                    if not is_modelled_residue(r.name) and r.name.strip().upper() not in CAP_RESIDUE_NAMES})
    try:
        pos = np.asarray(modeller.positions.value_in_unit(unit.nanometer), dtype=np.float64).reshape(-1, 3)
        check_finite_positions(modeller.topology, pos, "structure")
        pmap = map_topology(modeller.topology, pos)
        check_chirality(pmap, pos)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    if other:
        raise ValueError(f"{path}: residues {other[:8]} are not amino acids, caps, water or ions; 'starmd generate' "
                         "builds an amber14 implicit-solvent system, which has no parameters for them (remove them, "
                         "or build the Simulation yourself and use StarMDGenerator)")


def build_implicit_simulation(pdb_path: str, platform: str = "CPU", threads: int = 1, seed: int = 1):
    """Simulation of the protein in ``pdb_path`` (water/ions stripped, H added): amber14 + native OBC2, HMR, 4 fs."""
    from openmm import app

    from openmm_starmd.openmm.md_setup import MDConfig, create_implicit_system, create_simulation

    t0 = time.perf_counter()
    topology, positions = read_structure(pdb_path)
    modeller = app.Modeller(topology, positions)
    modeller.delete([r for r in modeller.topology.residues() if r.name in STRIPPED_RESIDUES])
    forcefield = app.ForceField("amber14-all.xml", "implicit/obc2.xml")
    modeller.addHydrogens(forcefield)
    LOGGER.info("set-up: %s read, water and ions removed, hydrogens added: %d residues, %d atoms (%.1f s)", pdb_path,
                modeller.topology.getNumResidues(), modeller.topology.getNumAtoms(), time.perf_counter() - t0)
    t0 = time.perf_counter()
    config = MDConfig(platform=platform, threads=threads)
    system = create_implicit_system(modeller.topology, config)
    simulation = create_simulation(modeller.topology, system, config, seed)
    simulation.context.setPositions(modeller.positions)
    LOGGER.info("set-up: Amber ff14SB + OBC2 implicit-solvent system on the %s platform (%.1f s)", platform,
                time.perf_counter() - t0)
    t0 = time.perf_counter()
    simulation.minimizeEnergy(maxIterations=MINIMIZE_ITERATIONS)
    LOGGER.info("set-up: energy minimised (at most %d iterations, %.1f s)", MINIMIZE_ITERATIONS, time.perf_counter() - t0)
    return simulation


def run_jumps(cfg: JumpRunConfig) -> dict:
    """Build the simulation, jump ``cfg.frames`` times, write the trajectory and final PDB; returns a summary."""
    from openmm import app, unit

    from openmm_starmd.evaluation.validity import ca_valid
    from openmm_starmd.openmm.gate import GateConfig
    import torch

    from openmm_starmd.openmm.generator import GeneratorOptions, StarMDGenerator

    cfg.validate()
    torch.set_num_threads(cfg.threads)  # an oversubscribed OpenMP pool on a busy machine costs minutes per frame
    t0 = time.perf_counter()
    simulation = build_implicit_simulation(cfg.pdb, cfg.platform, cfg.threads)
    relax = parse_relax(cfg.relax)
    stride = None if cfg.stride_ns is None else cfg.stride_ns * unit.nanoseconds
    gen = StarMDGenerator(simulation, model=cfg.model, stride=stride, relax=relax, seed=cfg.seed,
                          options=GeneratorOptions(num_steps=cfg.num_steps, noise_scale=cfg.noise_scale,
                                                   time_spacing=cfg.time_spacing, noise_switch_t=cfg.noise_switch_t,
                                                   ode=cfg.ode, context_window=cfg.context_window, context_sink=cfg.context_sink,
                                                   progress=cfg.progress,
                                                   scripted=cfg.scripted, torch_threads=cfg.threads,
                                                   gate=GateConfig(fallback_md_steps=cfg.fallback_md_steps, judge=cfg.gate_judge)))
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    reporter_cls = {".xtc": app.XTCReporter, ".dcd": app.DCDReporter}[out.suffix.lower()]
    simulation.reporters.append(reporter_cls(str(out), gen.steps_per_jump))
    t_setup = time.perf_counter() - t0
    gen.step(cfg.frames)
    if cfg.md_after_ps > 0:
        md_steps = max(1, round(cfg.md_after_ps / simulation.integrator.getStepSize().value_in_unit(unit.picoseconds)))
        t_md = time.perf_counter()
        gen.relax(md_steps)  # ordinary MD from the last generated structure; reporters report as usual
        LOGGER.info("MD after the jumps: %d steps (%.1f ps) in %.1f s", md_steps, cfg.md_after_ps, time.perf_counter() - t_md)
    state = simulation.context.getState(getPositions=True)
    pdb_out = out.with_suffix(".pdb")
    with open(pdb_out, "w") as handle:
        app.PDBFile.writeFile(simulation.topology, state.getPositions(), handle)
    history = gen.history
    ca = history.xyz[:, gen.pmap.ca_atoms] if history.n_frames else np.zeros((0, gen.pmap.num_residues, 3))
    valid = ca_valid(ca, gen.pmap.neighbours) if history.n_frames and gen.pmap.num_residues > 1 else np.ones(len(ca), bool)
    stats = gen.statistics.as_dict()
    generated = stats["jumps"] - stats["fallbacks"]  # intervals whose frame came from the model (passed the gate)
    stats["generated_ns"] = generated * gen.stride_ns
    step_ps = simulation.integrator.getStepSize().value_in_unit(unit.picoseconds)
    stats["fallback_md_ps"] = stats["fallback_md_steps"] * step_ps
    sidecar = write_sidecar(out.with_suffix(".json"), gen, valid)
    return {"out": str(out), "pdb": str(pdb_out), "sidecar": str(sidecar), "stride_ns": gen.stride_ns,
            "ns": stats["simulated_ns"], "wall_s": time.perf_counter() - t0,
            "setup_s": t_setup, "valid_fraction": float(valid.mean()) if len(valid) else float("nan"),
            "generated_frames": generated, "sampler": sampler_settings(gen.options),
            "sampled_valid_fraction": (generated / (generated + stats["invalid_frames"])
                                       if generated + stats["invalid_frames"] else float("nan")),
            "statistics": stats}


def sampler_settings(options) -> dict:
    """The sampler a Generator ran with (its resolved :class:`GeneratorOptions`), as plain values."""
    return {"num_steps": int(options.num_steps), "ode": bool(options.ode), "noise_scale": float(options.noise_scale),
            "noise_switch_t": float(options.noise_switch_t), "time_spacing": float(options.time_spacing),
            "context_window": int(options.context_window), "context_sink": int(options.context_sink)}


def describe_sampler(sampler: dict) -> str:
    """One line for :func:`sampler_settings`' dict, e.g. '50 reverse steps, SDE: exact above t = 0.1, noise
    0.25 below; context window 8 frames + 1 sink frame(s)'."""
    if sampler["ode"]:
        kind = "probability-flow ODE"
    elif sampler["noise_switch_t"] < 1.0:
        kind = f"SDE: exact above t = {sampler['noise_switch_t']:g}, noise {sampler['noise_scale']:g} below"
    else:
        kind = f"SDE: noise {sampler['noise_scale']:g}"
    spacing = "" if sampler["time_spacing"] == 1.0 else f", time spacing {sampler['time_spacing']:g}"
    window = ("whole history" if sampler["context_window"] == 0 else
              f"context window {sampler['context_window']} frames + {sampler['context_sink']} sink frame(s)")
    return f"{sampler['num_steps']} reverse steps, {kind}{spacing}; {window}"


def write_sidecar(path: Path, gen, ca_valid_frames: np.ndarray) -> Path:
    """Per-frame provenance of the written trajectory as JSON: time (ps), ``fallback`` (True where MD stood
    in for the model) and Cα validity of each frame, plus the sampler and the Generator's statistics."""
    import json

    stats = gen.statistics.as_dict()
    record = {"stride_ns": gen.stride_ns, "steps_per_jump": gen.steps_per_jump, "sampler": sampler_settings(gen.options),
              "frames": [{"time_ps": float(t), "fallback": bool(f), "ca_valid": bool(v)}
                         for t, f, v in zip(gen.history.time, gen.fallback_frames, ca_valid_frames)],
              "statistics": {k: (None if isinstance(v, float) and v != v else v) for k, v in stats.items()}}
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def print_summary(summary: dict) -> None:
    """Print what was simulated. Frames from the model and frames from the MD fallback are counted apart:
    the trajectory's Cα validity includes fallback frames, the model's does not."""
    s = summary["statistics"]
    print(f"simulated {summary['ns']:.3f} ns in {summary['wall_s']:.1f} s wall ({summary['setup_s']:.1f} s set-up): "
          f"{s['generated_ns']:.3f} ns generated by the model; the clock also advanced over {s['fallbacks']} "
          f"rejected interval(s), for which only {s['fallback_md_ps']:.1f} ps of MD were run in all")
    print(f"jumps {s['jumps']}: {summary['generated_frames']} generated by the model, {s['fallbacks']} replaced by "
          f"MD fallback ({s['fallback_md_steps']} MD steps); sampled frames passing the validity gate "
          f"{summary['sampled_valid_fraction']:.0%} ({s['invalid_frames']} rejected, {s['resamples']} resamples)"
          + (f"; {s['repaired_frames']} accepted only after the minimisation repaired their Cα chain"
             if s.get("repaired_frames") else ""))
    if s["fallbacks"]:
        print(f"warning: {s['fallbacks']} of {s['jumps']} intervals were MD fallbacks, not the model's (model fraction "
              f"{s['model_fraction']:.0%}): the clock advanced {summary['ns']:.3f} ns but only {s['physical_ns']:.4f} ns were "
              f"simulated ({s['model_ns']:.3f} ns by the model, {s['fallback_md_ps']:.1f} ps of MD). Use a stride the model "
              "was validated at (--stride, default: the model's recommended one), fine-tune it on this protein, or "
              "--fallback-md-steps full for a correct clock")
    print(f"Cα-valid frames in the written trajectory (model and fallback frames): {summary['valid_fraction']:.0%}")
    print("sampler: " + describe_sampler(summary["sampler"]))
    print("wall time per phase (s): " + ", ".join(f"{k} {v:.1f}" for k, v in s["wall_s"].items()))
    print(f"trajectory: {summary['out']}  last frame: {summary['pdb']}  per-frame sources: {summary['sidecar']}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # a value such as "-1ns" is read as a value, not as an unknown option (then refused with its reason)
    parser._negative_number_matcher = re.compile(r"^-\.?[0-9]")
    parser.add_argument("pdb", help="input structure (PDB); water and ions are removed, hydrogens added")
    parser.add_argument("--frames", type=int, default=8, help="number of jumps")
    parser.add_argument("--stride", default=RECOMMENDED,
                        help=f"time per jump, e.g. 50ps, 1.25ns or a number of ns; '{RECOMMENDED}': the stride the model's "
                             "checkpoint recommends (0.05 ns for the shipped weights, where their validation passed)")
    parser.add_argument("--out", default="traj.xtc", help="output trajectory (.xtc or .dcd); the last frame goes to .pdb")
    parser.add_argument("--model", default="default", help="'default' (shipped weights) or a checkpoint path")
    parser.add_argument("--relax", default="minimize", help="'minimize', 'none', or a number of MD steps after minimising")
    parser.add_argument("--seed", type=int, default=None,
                        help="integer seed of the model's samples and the velocity draws; the same seed repeats a run "
                             "(default: a random seed)")
    parser.add_argument("--num-steps", type=int, default=None,
                        help="reverse-diffusion steps per frame (default: the number the weights were validated with; 50 for the shipped weights)")
    parser.add_argument("--noise-scale", type=float, default=None,
                        help="multiplier of the reverse SDE's noise (default: the one the weights were validated with, 0.25 for the "
                             "shipped weights; 1: the exact SDE; lower: more "
                             "Cα-valid frames, smaller per-jump motion; see docs/model_card.md)")
    parser.add_argument("--time-spacing", type=float, default=None,
                        help="power p of the reverse-diffusion times t = t_min + (1 - t_min) u^p (default: the one the "
                             "weights were validated with; 1: evenly spaced; 2: more steps near t_min, where the chain "
                             "geometry is set)")
    parser.add_argument("--noise-switch-t", type=float, default=None,
                        help="diffusion time above which the reverse steps take the exact SDE (noise scale 1) and below "
                             "which --noise-scale (default: the one the weights were validated with, else 1: --noise-scale "
                             "at every step)")
    parser.add_argument("--ode", action=argparse.BooleanOptionalAction, default=None,
                        help="--ode integrates the probability-flow ODE instead of the reverse SDE (--noise-scale and "
                             "--noise-switch-t are then unused): larger jumps, fewer valid frames; --no-ode the SDE "
                             "(default: the weights' choice for the stride; see docs/model_card.md)")
    parser.add_argument("--context-window", type=int, default=None,
                        help="frames each generated frame attends to, itself included (default: the number the weights "
                             "were validated with, else 0: the whole history)")
    parser.add_argument("--context-sink", type=int, default=None,
                        help="with a context window, the first frames (the starting structure) every generated frame "
                             "attends to as well (default: the number the weights were validated with, else 0)")
    parser.add_argument("--gate-judge", choices=("sample", "relaxed"), default="sample",
                        help="check Cα validity (no clash, no chain break) on the generated frame, as the STAR-MD paper does "
                             "('sample', the default), or on the structure after the restrained minimisation ('relaxed')")
    parser.add_argument("--fallback-md-steps", type=parse_fallback_steps, default=500,
                        help="MD steps run for an interval whose frames all fail the validity gate (the clock still "
                             "advances a full stride), or 'full' for MD over the whole interval (a correct clock)")
    parser.add_argument("--platform", default="CPU", help="OpenMM platform")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for OpenMM's CPU platform and for torch")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from openmm import OpenMMException

    from openmm_starmd.openmm.gate import InvalidFrameError

    try:
        stride_ns = None if args.stride == RECOMMENDED else parse_stride_ns(args.stride)
        cfg = JumpRunConfig(pdb=args.pdb, out=args.out, frames=args.frames, stride_ns=stride_ns,
                            model=args.model, relax=args.relax, seed=args.seed, num_steps=args.num_steps,
                            noise_scale=args.noise_scale, time_spacing=args.time_spacing,
                            noise_switch_t=args.noise_switch_t, ode=args.ode, context_window=args.context_window,
                            context_sink=args.context_sink,
                            gate_judge=args.gate_judge,
                            fallback_md_steps=args.fallback_md_steps,
                            platform=args.platform, threads=args.threads,
                            progress=False if args.no_progress else None).validate()
        summary = run_jumps(cfg)
    except (ValueError, TypeError, OSError, MemoryError, OpenMMException) as exc:
        print(f"starmd generate: {exc}", file=sys.stderr)
        return 2
    except InvalidFrameError as exc:  # the model failed (policy 'raise' or too many fallbacks): not a usage error
        print(f"starmd generate: {exc}", file=sys.stderr)
        return 1
    print_summary(summary)
    return 0
