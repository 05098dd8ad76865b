"""StarMDGenerator: STAR-MD as a drop-in propagator for an ``openmm.app.Simulation``.

    from openmm_starmd import StarMDGenerator
    gen = StarMDGenerator(simulation, model="default", stride=1.25*unit.nanoseconds,
                          relax="minimize", seed=None)
    gen.step(n)          # n jumps of stride each
    gen.relax(steps)     # physical MD with the Simulation's own integrator
    gen.history          # mdtraj.Trajectory of the jumped frames
    gen.statistics       # jumps, resamples, fallbacks, wall time per phase

One jump: the KV-cached rollout (context = every frame so far) samples the protein's next
backbone frames and torsions; the validity gate (:mod:`.gate`) re-samples invalid frames; all
atoms are rebuilt in the Simulation's exact topology (:mod:`.rebuild`); ``relax`` hands back to
physics (None: nothing; ``"minimize"``: minimisation with the generated backbone restrained,
:mod:`.relax`; an int: that, then so many MD steps); velocities are reassigned at the
integrator's temperature; the context time advances by the stride and ``currentStep`` by
``round(stride / step size)``; every reporter attached to the Simulation receives the frame.

Reporters receive exactly one report per jump, whatever their interval (``Simulation.step``
would report at every interval boundary it crosses; a jump has only its end point). XTC files
store the real times; a DCD header assumes the reporter's interval between frames, so give a
DCDReporter ``interval = generator.steps_per_jump`` for a correct time axis.

Rejected intervals (validity gate policy ``"md"``) run at most ``fallback_md_steps`` MD steps,
then the clock is set to the end of the full stride like any other jump. The model's context does
not pretend a stride passed: the structure MD left behind replaces the last context frame (its
time axis stays one stride per frame), and the next jump draws fresh noise.

The frame that joins the model's context is the one the Simulation holds at the end of the jump
(after relaxation). If the Simulation moved between calls (``relax()``, ``simulation.step()``),
the last context frame is replaced by the current structure before the next jump.

Units: ``stride`` is an ``openmm.unit`` time or a bare number of nanoseconds; inside, nm and ps.
Errors in a call restore the Simulation (positions, velocities, time, step count) to where it
was before the call; reports already written by reporters stay written.
"""
from __future__ import annotations

import copy
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np
import openmm
import torch
from openmm import unit

from openmm_starmd.model.rollout import Frame, Rollout
from openmm_starmd.openmm.coarse_grain import ProteinMap, map_topology
from openmm_starmd.openmm.gate import GateConfig, InvalidFrameError, check_frame
from openmm_starmd.openmm.rebuild import CoarseFrame, coarse_grain, rebuild_positions
from openmm_starmd.openmm.relax import RelaxConfig, RestrainedMinimizer
from openmm_starmd.units import PS_PER_NS

CHECKPOINT_FORMAT = "openmm-starmd-generator"
CHECKPOINT_VERSION = 1
SYNC_TOLERANCE_NM = 1e-3  # the Simulation moved since the last frame if a CA moved more than this
BYTES_PER_FLOAT = 4


@dataclass
class GeneratorOptions:
    """Settings of :class:`StarMDGenerator` beyond the contract's arguments.

    Attributes:
        num_steps: reverse-diffusion steps per frame.
        noise_scale: multiplier of the reverse SDE's stochastic term (1: the exact SDE of SPEC §3;
            lower values trade per-jump motion for chain geometry). Default 0.5: on villin at 50 ps
            with the shipped weights it raised Cα validity from 10 % to 63 % while the per-jump Cα
            RMSD went from 0.94x to 0.57x MD (docs/model_card.md, 30 jumps, 50 steps).
        capacity_frames: initial KV-cache capacity (grown by replaying the history when needed).
        max_residues: refuse larger proteins (the error gives the memory estimate).
        device: torch device of the model (None: CUDA if available, else CPU; a loaded core keeps its own).
        progress: tqdm bar on ``step(n)``; None shows it only on a terminal.
        history: atoms kept in :attr:`StarMDGenerator.history`: "all", "protein" or "none".
        reassign_velocities: draw Maxwell-Boltzmann velocities after each jump.
        gate: validity gate settings; relax_config: restrained minimisation settings.
        scripted: compile the core with TorchScript when the model is given by name or path (about
            2x faster per frame on a CPU after a few seconds of compilation and warm-up; measured
            0.8-0.95 s against 1.5-1.6 s CPU time per 50-step villin-size frame).
    """

    num_steps: int = 50
    noise_scale: float = 0.5
    capacity_frames: int = 64
    max_residues: int = 1500
    device: Optional[str] = None
    progress: Optional[bool] = None
    history: str = "all"
    reassign_velocities: bool = True
    gate: GateConfig = field(default_factory=GateConfig)
    relax_config: RelaxConfig = field(default_factory=RelaxConfig)
    scripted: bool = False

    def validate(self) -> "GeneratorOptions":
        for name, low in (("num_steps", 2), ("capacity_frames", 2), ("max_residues", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"GeneratorOptions.{name}: expected an int >= {low}, got {value!r}")
        if self.history not in ("all", "protein", "none"):
            raise ValueError(f"GeneratorOptions.history: expected 'all', 'protein' or 'none', got {self.history!r}")
        if isinstance(self.noise_scale, bool) or not isinstance(self.noise_scale, (int, float)) or not self.noise_scale >= 0:
            raise ValueError(f"GeneratorOptions.noise_scale: expected a number >= 0, got {self.noise_scale!r}")
        self.gate.validate()
        self.relax_config.validate()
        return self


@dataclass
class GeneratorStatistics:
    """Counters and wall time (s) per phase: sample, rebuild, relax, report, fallback_md, md, context.

    ``repaired_frames``: accepted frames whose raw sample failed the Cα gate but whose relaxed
    structure passed it (only with ``GateConfig(judge="relaxed")``). ``relax_retries``: minimisations
    redone with the constraints kept because the fast flexible-bond pass collapsed
    (see :class:`~openmm_starmd.openmm.relax.RelaxConfig`)."""

    jumps: int = 0
    resamples: int = 0
    invalid_frames: int = 0
    repaired_frames: int = 0
    relax_retries: int = 0
    fallbacks: int = 0
    fallback_md_steps: int = 0
    md_steps: int = 0
    simulated_ns: float = 0.0
    wall_s: dict = field(default_factory=lambda: {k: 0.0 for k in ("sample", "rebuild", "relax", "report", "fallback_md",
                                                                    "md", "context")})

    def as_dict(self) -> dict:
        return {"jumps": self.jumps, "resamples": self.resamples, "invalid_frames": self.invalid_frames,
                "repaired_frames": self.repaired_frames, "relax_retries": self.relax_retries,
                "fallbacks": self.fallbacks, "fallback_md_steps": self.fallback_md_steps, "md_steps": self.md_steps,
                "simulated_ns": self.simulated_ns, "wall_s": dict(self.wall_s)}


class _RelaxFailed(RuntimeError):
    """A generated frame could not be relaxed (treated like a frame that fails the validity gate)."""


def stride_to_ns(stride) -> float:
    """An ``openmm.unit`` time or a bare number of nanoseconds -> float ns (> 0, finite)."""
    if unit.is_quantity(stride):
        if not stride.unit.is_compatible(unit.nanoseconds):
            raise TypeError(f"stride: expected a time (e.g. 1.25*unit.nanoseconds) or a number of ns, got a quantity in {stride.unit}")
        value = stride.value_in_unit(unit.nanoseconds)
    else:
        value = stride
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"stride: expected a time quantity or a number of nanoseconds, got {type(stride).__name__}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"stride: expected a positive finite time, got {value} ns")
    return value


def _check_relax(relax) -> Union[None, str, int]:
    if relax is None or relax == "minimize":
        return relax
    if isinstance(relax, bool) or not isinstance(relax, (int, np.integer)):
        raise TypeError(f"relax: expected None, 'minimize' or an int number of MD steps, got {relax!r}")
    if relax < 0:
        raise ValueError(f"relax: expected a number of MD steps >= 0, got {relax}")
    return int(relax)


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name}: expected an int >= 0, got {value}")
    return int(value)


def _resolve_model(model, device: Optional[str], scripted: bool = False):
    from openmm_starmd.model.core import StarMDCore

    if isinstance(model, (str, os.PathLike)):
        from openmm_starmd.model.checkpoint import load_model

        dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return load_model(model, device=dev, scripted=scripted)
    if isinstance(model, StarMDCore) or isinstance(model, torch.jit.ScriptModule):
        return model
    raise TypeError(f"model: expected 'default', a checkpoint path or a loaded StarMDCore, got {type(model).__name__}")


class StrideOutsideTrainingWarning(UserWarning):
    """The stride lies outside the strides the model's training examples were drawn at."""


def _trained_strides(model) -> Optional[tuple[float, float]]:
    """The model's trained stride range (ns) when its checkpoint records it, else None."""
    if not isinstance(model, (str, os.PathLike)):
        return None
    from openmm_starmd.model.checkpoint import checkpoint_meta, trained_stride_range

    return trained_stride_range(checkpoint_meta(model))


def memory_estimate_bytes(core, num_residues: int, num_frames: int) -> tuple[int, int]:
    """(KV cache, pair activations) bytes: layers x 2 x L x N x c_s x 4 and N^2 x c_z x 4."""
    c_s = int(core.st_heads) * int(core.st_head_dim)
    try:
        c_z = int(core.net.pair_embed.distogram.out_features)
    except AttributeError:  # a TorchScript core hides its submodules' attributes
        c_z = c_s
    kv = int(core.num_st_layers) * 2 * num_frames * num_residues * c_s * BYTES_PER_FLOAT
    return kv, num_residues * num_residues * c_z * BYTES_PER_FLOAT


def _integrator_temperature(simulation) -> Optional[float]:
    integrator = simulation.integrator
    if hasattr(integrator, "getTemperature"):
        return integrator.getTemperature().value_in_unit(unit.kelvin)
    for force in simulation.system.getForces():
        if isinstance(force, openmm.AndersenThermostat):
            return force.getDefaultTemperature().value_in_unit(unit.kelvin)
    return None


def _derived_seed(seed: int, jump: int) -> int:
    """A positive int32 seed for OpenMM from (generator seed, jump index)."""
    return int(np.random.SeedSequence([seed % 2**63, jump]).generate_state(1)[0] % (2**31 - 2)) + 1


class StarMDGenerator:
    """Jump an OpenMM Simulation's protein forward in time with STAR-MD.

    Args:
        simulation: an ``openmm.app.Simulation`` (any platform; implicit or explicit solvent).
        model: ``"default"`` (the shipped weights), a checkpoint path, or a loaded ``StarMDCore``.
        stride: time per jump, an ``openmm.unit`` time or a bare number of nanoseconds.
        relax: None, ``"minimize"`` (backbone-restrained minimisation) or an int (minimise, then
            that many MD steps with the Simulation's integrator) after every jump.
        seed: integer seed of the rollout and of the velocity draws (None: random).
        options: :class:`GeneratorOptions`.
    """

    def __init__(self, simulation, model="default", stride=1.25 * unit.nanoseconds, relax="minimize",
                 seed: Optional[int] = None, options: Optional[GeneratorOptions] = None):
        if not all(hasattr(simulation, a) for a in ("context", "topology", "integrator", "reporters")):
            raise TypeError(f"simulation: expected an openmm.app.Simulation, got {type(simulation).__name__}")
        self.options = (options or GeneratorOptions()).validate()
        self.stride_ns = stride_to_ns(stride)
        self.relax_mode = _check_relax(relax)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"seed: expected an int or None, got {type(seed).__name__}")
        self.seed = int(np.random.SeedSequence().entropy % 2**62) if seed is None else int(seed)
        self.simulation = simulation
        positions = self._positions()
        self.pmap: ProteinMap = map_topology(simulation.topology, positions)
        self.core = _resolve_model(model, self.options.device, self.options.scripted)
        self.trained_stride_ns = _trained_strides(model)
        self._check_size()
        self._residue_of_atom = np.array([a.residue.index for a in simulation.topology.atoms()], dtype=np.int64)
        dt_ps = simulation.integrator.getStepSize().value_in_unit(unit.picoseconds)
        self.steps_per_jump = max(1, int(round(self.stride_ns * PS_PER_NS / dt_ps)))
        self.temperature_k = _integrator_temperature(simulation)
        self.statistics = GeneratorStatistics()
        self._minimizer = RestrainedMinimizer(simulation, self.pmap.backbone_atoms, self.options.relax_config)
        self._history_atoms = self._select_history_atoms()
        self._history_xyz: list[np.ndarray] = []
        self._history_time_ps: list[float] = []
        self._history_box: list[Optional[np.ndarray]] = []
        current = coarse_grain(self.pmap, positions)
        self.rollout = Rollout(self.core, self.pmap.aatype, self.pmap.residue_index, self.stride_ns, seed=self.seed,
                               num_steps=self.options.num_steps, noise_scale=self.options.noise_scale,
                               chain_index=self.pmap.chain_index,
                               capacity_frames=self.options.capacity_frames)
        self.rollout.add_context(current.rots, current.trans)
        self._draw_offset = 0  # sampling attempts already spent on the next frame index (after MD fallbacks)
        self._warn_untrained_stride()

    def _warn_untrained_stride(self) -> None:
        if self.trained_stride_ns is None:
            return
        lo, hi = self.trained_stride_ns
        if not lo * (1 - 1e-6) <= self.stride_ns <= hi * (1 + 1e-6):
            warnings.warn(
                f"stride {self.stride_ns:g} ns lies outside the strides this model was trained at "
                f"({lo:g}-{hi:g} ns): its frames are extrapolation and may mostly fail the validity gate "
                "(see statistics and docs/model_card.md)", StrideOutsideTrainingWarning, stacklevel=3)

    # --- public API ------------------------------------------------------------------------
    @property
    def stride(self) -> unit.Quantity:
        return self.stride_ns * unit.nanoseconds

    @property
    def history(self):
        """``mdtraj.Trajectory`` of the jumped frames (positions after relaxation; time in ps)."""
        import mdtraj

        top = mdtraj.Topology.from_openmm(self.simulation.topology)
        if self.options.history == "protein":
            top = top.subset(self._history_atoms)
        n = len(self._history_atoms)
        xyz = np.stack(self._history_xyz) if self._history_xyz else np.zeros((0, n, 3), dtype=np.float32)
        traj = mdtraj.Trajectory(xyz, top, time=np.asarray(self._history_time_ps, dtype=np.float64))
        if self._history_box and self._history_box[0] is not None:
            traj.unitcell_vectors = np.stack(self._history_box).astype(np.float32)
        return traj

    def step(self, n: int) -> None:
        """Make ``n`` jumps of ``stride`` each (see the module docstring for what one jump does)."""
        n = _check_count(n, "n")
        if n == 0:
            return
        snapshot = self._snapshot()
        try:
            self._sync_context()
            self._ensure_capacity(self.rollout.num_frames + n + 1)
            from tqdm.auto import tqdm

            show = self.options.progress if self.options.progress is not None else sys.stderr.isatty()
            for _ in tqdm(range(n), desc="STAR-MD jumps", unit="jump", disable=not show or n < 2):
                self._jump()
        except BaseException:
            self._restore(snapshot)
            raise

    def relax(self, steps: int) -> None:
        """Hand back to physical MD: ``simulation.step(steps)`` (reporters report as usual)."""
        steps = _check_count(steps, "steps")
        t0 = time.perf_counter()
        self.simulation.step(steps)
        self.statistics.md_steps += steps
        self.statistics.wall_s["md"] += time.perf_counter() - t0

    def saveCheckpoint(self, path) -> None:  # noqa: N802 (OpenMM naming)
        """Write the rollout (seed, frame history), the generator's history and counters and the
        Simulation's state to ``path``; :meth:`loadCheckpoint` resumes exactly."""
        state = self.simulation.context.getState(getPositions=True, getVelocities=True, getParameters=True)
        rollout = self.rollout.state_dict()
        payload = {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "seed": self.seed, "stride_ns": self.stride_ns,
            "num_atoms": self.simulation.topology.getNumAtoms(), "rollout": rollout,
            "history_xyz": torch.as_tensor(np.stack(self._history_xyz)) if self._history_xyz else None,
            "history_time_ps": torch.as_tensor(self._history_time_ps, dtype=torch.float64),
            "history_box": torch.as_tensor(np.stack(self._history_box)) if self._history_box and self._history_box[0] is not None else None,
            "statistics": self.statistics.as_dict(), "state_xml": openmm.XmlSerializer.serialize(state),
            "current_step": int(self.simulation.currentStep), "draw_offset": self._draw_offset,
        }
        tmp = f"{os.fspath(path)}.tmp"
        torch.save(payload, tmp)
        os.replace(tmp, path)

    def loadCheckpoint(self, path) -> None:  # noqa: N802 (OpenMM naming)
        """Restore what :meth:`saveCheckpoint` wrote (same system and protein required)."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"generator checkpoint not found: {path}")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt or foreign file
            raise ValueError(f"cannot read generator checkpoint {path}: {type(exc).__name__}: {exc}") from exc
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a StarMDGenerator checkpoint (missing format tag {CHECKPOINT_FORMAT!r})")
        if payload.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"{path} has generator checkpoint version {payload.get('version')}; expected {CHECKPOINT_VERSION}")
        if payload["num_atoms"] != self.simulation.topology.getNumAtoms() or not torch.equal(
                payload["rollout"]["aatype"], self.pmap.aatype):
            raise ValueError(f"{path} was written for a different system ({payload['num_atoms']} atoms); "
                             f"this Simulation has {self.simulation.topology.getNumAtoms()}")
        t0 = time.perf_counter()
        rollout = Rollout.from_state(self.core, payload["rollout"])
        self.statistics.wall_s["context"] += time.perf_counter() - t0
        self.simulation.context.setState(openmm.XmlSerializer.deserialize(payload["state_xml"]))
        self.simulation.currentStep = payload["current_step"]
        self.rollout, self.seed, self.stride_ns = rollout, payload["seed"], payload["stride_ns"]
        self._draw_offset = int(payload.get("draw_offset", 0))
        xyz, box = payload["history_xyz"], payload["history_box"]
        self._history_xyz = [] if xyz is None else list(xyz.numpy())
        self._history_time_ps = payload["history_time_ps"].tolist()
        self._history_box = [None] * len(self._history_xyz) if box is None else list(box.numpy())
        stats = payload["statistics"]
        self.statistics = GeneratorStatistics(**{k: v for k, v in stats.items() if k != "wall_s"}, wall_s=dict(stats["wall_s"]))

    # --- one jump --------------------------------------------------------------------------
    def _sample(self, attempt: int) -> CoarseFrame:
        """Propose the next protein conformation (the model; tests may override this)."""
        frame = self.rollout.sample(attempt=self._draw_offset + attempt)
        return CoarseFrame(frame.rots[0].cpu().float(), frame.trans[0].cpu().float(), frame.torsions[0].cpu().float())

    def _gated_sample(self, finish=None):
        """Sample until a frame passes the gate: Cα validity, then ``finish(frame)`` (rebuild and
        minimise; returns the result or raises :class:`_RelaxFailed`). With ``judge="relaxed"`` and
        relaxation on, the Cα test is made on ``finish``'s positions instead of the sample's.
        Returns ``(frame, result)``, or None when every attempt failed and the policy is ``"md"``."""
        gate = self.options.gate
        after_relax = gate.judge == "relaxed" and finish is not None and self.relax_mode is not None
        reasons = []
        for attempt in range(gate.max_attempts):
            t0 = time.perf_counter()
            frame = self._sample(attempt)
            self.statistics.wall_s["sample"] += time.perf_counter() - t0
            ok, reason = check_frame(frame.trans.numpy(), self.pmap.neighbours, frame.rots.numpy(), frame.torsions.numpy(),
                                     config=gate.validity)
            if ok or (after_relax and reason != "non-finite coordinates"):
                sample_ok = ok
                if finish is None:
                    return frame, None
                try:
                    result = finish(frame)
                    if after_relax:
                        ok, reason = check_frame(result[self.pmap.ca_atoms], self.pmap.neighbours,
                                                 config=gate.validity)
                        reason = reason and f"after relaxation: {reason}"
                    if ok:
                        self.statistics.repaired_frames += int(not sample_ok)
                        return frame, result
                except _RelaxFailed as exc:
                    ok, reason = False, str(exc)
            reasons.append(reason)
            self.statistics.invalid_frames += 1
            if attempt + 1 < gate.max_attempts:
                self.statistics.resamples += 1
        if gate.policy == "raise":
            raise InvalidFrameError(f"jump {self.statistics.jumps + 1}: all {gate.max_attempts} samples failed the validity "
                                    f"gate ({'; '.join(reasons)}); the Simulation is restored")
        return None

    def _rebuild_and_minimize(self, frame: CoarseFrame, positions_nm: np.ndarray, box: Optional[np.ndarray]) -> np.ndarray:
        """All-atom positions for ``frame``, minimised when relax is on. A minimisation that fails or
        ends with non-finite coordinates raises :class:`_RelaxFailed` (the frame is then rejected);
        it runs in a private Context, so the user's Simulation is untouched either way."""
        t1 = time.perf_counter()
        new = rebuild_positions(self.pmap, positions_nm, frame, self._residue_of_atom, box)
        t2 = time.perf_counter()
        self.statistics.wall_s["rebuild"] += t2 - t1
        if self.relax_mode is not None:
            box_vectors = None if box is None else [openmm.Vec3(*row) for row in box] * unit.nanometer
            try:
                new = self._minimizer.minimize(new, box_vectors)
            except openmm.OpenMMException as exc:
                raise _RelaxFailed(f"restrained minimisation failed ({str(exc).strip()})") from None
            finally:
                self.statistics.wall_s["relax"] += time.perf_counter() - t2
                self.statistics.relax_retries = self._minimizer.constrained_retries
            if not np.isfinite(new).all():
                raise _RelaxFailed("restrained minimisation gave non-finite coordinates")
        return new

    def _jump(self) -> None:
        sim, stats = self.simulation, self.statistics
        context = sim.context
        t_start = context.getState().getTime().value_in_unit(unit.picoseconds)
        step_start = sim.currentStep
        state = context.getState(getPositions=True)
        box = self._box(state)
        before = self._positions(state)
        accepted = self._gated_sample(lambda frame: self._rebuild_and_minimize(frame, before, box))
        if accepted is None:  # policy "md": physical MD stands in for this interval
            t1 = time.perf_counter()
            steps = min(self.steps_per_jump, self.options.gate.fallback_md_steps)
            sim.integrator.step(steps)
            stats.fallbacks += 1
            stats.fallback_md_steps += steps
            stats.wall_s["fallback_md"] += time.perf_counter() - t1
            self._draw_offset += self.options.gate.max_attempts
        else:
            t2 = time.perf_counter()
            self._hand_back(accepted[1], stats.jumps)
            stats.wall_s["relax"] += time.perf_counter() - t2
        context.setTime((t_start + self.stride_ns * PS_PER_NS) * unit.picoseconds)
        sim.currentStep = step_start + self.steps_per_jump
        stats.jumps += 1
        stats.simulated_ns += self.stride_ns
        t3 = time.perf_counter()
        state = context.getState(getPositions=True)
        positions = self._positions(state)
        current = coarse_grain(self.pmap, positions)
        if accepted is None:
            self._replace_last_context(current)
        else:
            self.rollout.accept(Frame(current.rots[None], current.trans[None], current.torsions[None]))
            self._draw_offset = 0
        self._record(positions, state)
        self._report()
        stats.wall_s["report"] += time.perf_counter() - t3

    def _hand_back(self, positions_nm: np.ndarray, jump: int) -> None:
        """Write the rebuilt (and minimised) positions, apply constraints, draw velocities, run MD steps."""
        context = self.simulation.context
        context.setPositions(positions_nm * unit.nanometer)
        if self.simulation.system.getNumConstraints() > 0:
            context.applyConstraints(1e-6)
        if self.options.reassign_velocities and self.temperature_k is not None:
            context.setVelocitiesToTemperature(self.temperature_k * unit.kelvin, _derived_seed(self.seed, jump))
        if isinstance(self.relax_mode, int) and self.relax_mode > 0:
            self.simulation.integrator.step(self.relax_mode)

    def _report(self) -> None:
        """Give every reporter the current state, as ``Simulation.step`` does at a report step."""
        sim = self.simulation
        wrapped, unwrapped = [], []
        for reporter in sim.reporters:
            desc = reporter.describeNextReport(sim)
            if isinstance(desc, tuple):  # the old tuple format
                include = [k for k, flag in zip(("positions", "velocities", "forces", "energy"), desc[1:5]) if flag]
                desc = {"steps": desc[0], "periodic": desc[5] if len(desc) > 5 else None, "include": include}
            periodic = sim._usesPBC if desc.get("periodic") is None else desc["periodic"]
            (wrapped if periodic else unwrapped).append((reporter, desc))
        for group, periodic in ((wrapped, True), (unwrapped, False)):
            if not group:
                continue
            include = set().union(*[set(d["include"]) for _, d in group])
            state = sim.context.getState(groups=sim.context.getIntegrator().getIntegrationForceGroups(),
                                         enforcePeriodicBox=periodic, parameters=True,
                                         **{k: True for k in include})
            for reporter, _ in group:
                reporter.report(sim, state)

    # --- bookkeeping -----------------------------------------------------------------------
    def _positions(self, state=None) -> np.ndarray:
        state = state or self.simulation.context.getState(getPositions=True)
        return np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer), dtype=np.float64)

    def _box(self, state) -> Optional[np.ndarray]:
        if not self.simulation.system.usesPeriodicBoundaryConditions():
            return None
        return np.asarray(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer), dtype=np.float64)

    def _check_size(self) -> None:
        n = self.pmap.num_residues
        if n > self.options.max_residues:
            kv, pair = memory_estimate_bytes(self.core, n, self.options.capacity_frames)
            raise ValueError(f"the protein has {n} residues, more than GeneratorOptions.max_residues="
                             f"{self.options.max_residues}; it would need about {kv / 2**30:.2f} GiB of KV cache for "
                             f"{self.options.capacity_frames} frames plus {pair / 2**30:.2f} GiB per pair activation; "
                             "raise max_residues if the device has the memory")

    def _select_history_atoms(self) -> np.ndarray:
        if self.options.history == "protein":
            other = set(self.pmap.other_atoms.tolist())
            return np.array([i for i in range(self.simulation.topology.getNumAtoms()) if i not in other], dtype=np.int64)
        if self.options.history == "none":
            return np.zeros(0, dtype=np.int64)
        return np.arange(self.simulation.topology.getNumAtoms())

    def _record(self, positions_nm: np.ndarray, state) -> None:
        if self.options.history == "none":
            return
        self._history_xyz.append(positions_nm[self._history_atoms].astype(np.float32))
        self._history_time_ps.append(state.getTime().value_in_unit(unit.picoseconds))
        self._history_box.append(self._box(state))

    def _snapshot(self) -> tuple:
        state = self.simulation.context.getState(getPositions=True, getVelocities=True, getParameters=True)
        return (state, self.simulation.currentStep, self.rollout, self.rollout.num_frames, len(self._history_xyz),
                copy.deepcopy(self.statistics), self._draw_offset)

    def _restore(self, snapshot: tuple) -> None:
        state, step, rollout, num_frames, num_history, stats, self._draw_offset = snapshot
        self.simulation.context.setState(state)
        self.simulation.currentStep = step
        if rollout is not self.rollout or rollout.num_frames != num_frames:
            saved = rollout.state_dict()
            saved["history_rots"] = saved["history_rots"][:, :num_frames]
            saved["history_trans"] = saved["history_trans"][:, :num_frames]
            saved["capacity_frames"] = max(saved["capacity_frames"], self.rollout.capacity_frames)
            self.rollout = Rollout.from_state(self.core, saved)
        del self._history_xyz[num_history:], self._history_time_ps[num_history:], self._history_box[num_history:]
        self.statistics = stats

    def _replay(self, state: dict) -> None:
        t0 = time.perf_counter()
        self.rollout = Rollout.from_state(self.core, state)
        self.statistics.wall_s["context"] += time.perf_counter() - t0

    def _ensure_capacity(self, frames: int) -> None:
        """Grow the KV cache (by replaying the history) to hold ``frames`` frames."""
        if frames <= self.rollout.capacity_frames:
            return
        state = self.rollout.state_dict()
        state["capacity_frames"] = max(frames, 2 * self.rollout.capacity_frames)
        self._replay(state)

    def _sync_context(self) -> None:
        """If the Simulation moved since the last context frame, that frame becomes the current structure."""
        self._replace_last_context(coarse_grain(self.pmap, self._positions()))

    def _replace_last_context(self, current: CoarseFrame) -> None:
        """The last context frame becomes ``current`` (KV cache replayed) unless they already agree."""
        last = self.rollout.history_trans[-1][0].cpu()
        if float((current.trans - last).norm(dim=-1).max()) <= SYNC_TOLERANCE_NM:
            return
        state = self.rollout.state_dict()
        state["history_rots"][:, -1] = current.rots
        state["history_trans"][:, -1] = current.trans
        self._replay(state)


__all__ = ["StarMDGenerator", "GeneratorOptions", "GeneratorStatistics", "InvalidFrameError", "stride_to_ns",
           "memory_estimate_bytes"]
