"""KV-cached autoregressive rollout of STAR-MD: the Python face of :class:`StarMDCore`.

Reproducibility: frame k is sampled under a seed derived from (seed, k, attempt) and its context
noise under (seed, k, "context"), each inside ``torch.random.fork_rng`` so the caller's RNG state
is untouched. A rollout can therefore be resumed exactly from its frame history alone
(:meth:`Rollout.state_dict` / :meth:`Rollout.from_state`).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Optional

import torch

from openmm_starmd.geometry.superpose import kabsch
from openmm_starmd.internal import warn_at_caller

NUM_STANDARD_RESTYPES = 20
_SEED_MODULUS = 2**62


def _derive_seed(seed: int, frame: int, stream: int) -> int:
    """Deterministic 62-bit seed for (seed, frame, stream) by SplitMix64-style mixing."""
    x = (seed * 0x9E3779B97F4A7C15 + frame * 0xBF58476D1CE4E5B9 + stream * 0x94D049BB133111EB) % 2**64
    x ^= x >> 31
    x = (x * 0xBF58476D1CE4E5B9) % 2**64
    x ^= x >> 27
    return x % _SEED_MODULUS


@dataclass
class Frame:
    """One generated frame for B replicas: rots ``[B, N, 3, 3]``, trans ``[B, N, 3]`` (nm), torsions ``[B, N, 7, 2]``."""

    rots: torch.Tensor
    trans: torch.Tensor
    torsions: torch.Tensor


def _as_batch(x: torch.Tensor, name: str, replicas: int, tail: int) -> torch.Tensor:
    """Accept ``[*shape]`` or ``[B, *shape]``; return ``[replicas, *shape]``."""
    if x.dim() == tail:
        return x.unsqueeze(0).expand((replicas,) + tuple(x.shape)).contiguous()
    if x.dim() == tail + 1:
        if x.shape[0] == replicas:
            return x
        if x.shape[0] == 1:
            return x.expand((replicas,) + tuple(x.shape[1:])).contiguous()
    raise ValueError(f"{name} must have {tail} or {tail + 1} dimensions with batch size {replicas}; got shape {tuple(x.shape)}")


def validate_stride(stride_ns: float, stride_min_ns: float, stride_max_ns: float) -> float:
    """Raise on a non-positive or non-finite stride; warn outside the trained range."""
    if isinstance(stride_ns, bool) or not isinstance(stride_ns, (int, float)):
        raise TypeError(f"stride_ns must be a number of nanoseconds, got {type(stride_ns).__name__}")
    if not math.isfinite(stride_ns) or stride_ns <= 0:
        raise ValueError(f"stride_ns must be a positive number of nanoseconds, got {stride_ns}")
    if not stride_min_ns <= stride_ns <= stride_max_ns:
        warn_at_caller(f"stride_ns={stride_ns} ns is outside the trained range [{stride_min_ns}, {stride_max_ns}] ns; "
                       "the model extrapolates", RuntimeWarning)
    return float(stride_ns)


def sample_frame_arguments(core) -> set:
    """Names of ``core.sample_frame``'s arguments (an eager core takes them all; a TorchScript core
    exported by an earlier version may lack the later ones)."""
    if isinstance(core, torch.jit.ScriptModule):
        return {a.name for a in core._c._get_method("sample_frame").schema.arguments}
    return {"time_spacing", "noise_switch_t", "ode_noise"}


def takes_time_spacing(core) -> bool:
    """Whether ``core.sample_frame`` takes a ``time_spacing`` argument (every eager core does; a
    TorchScript core exported by an earlier version does not)."""
    return "time_spacing" in sample_frame_arguments(core)


def check_time_spacing(core, time_spacing: float) -> bool:
    """Whether ``core.sample_frame`` takes a time spacing (:func:`takes_time_spacing`); ValueError
    when it does not and ``time_spacing`` asks for other than evenly spaced times."""
    takes = takes_time_spacing(core)
    if not takes and float(time_spacing) != 1.0:
        raise ValueError(f"time_spacing={float(time_spacing):g}: this exported core samples at evenly spaced times only "
                         "(it was exported before sample_frame took a time spacing); export it again with 'starmd export'")
    return takes


def check_noise_switch(core, noise_switch_t: float) -> float:
    """``noise_switch_t`` as a float in [0, 1]; ValueError outside it, or when it asks for a switch
    (< 1) that ``core.sample_frame`` cannot make (a core exported before it took one)."""
    value = float(noise_switch_t)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"noise_switch_t must be a diffusion time in [0, 1], got {noise_switch_t}")
    if value < 1.0 and "noise_switch_t" not in sample_frame_arguments(core):
        raise ValueError(f"noise_switch_t={value:g}: this exported core uses one noise scale at every step "
                         "(it was exported before sample_frame took a noise switch); export it again with 'starmd export'")
    return value


def check_ode_noise(core, ode_noise: float, ode: bool) -> float:
    """``ode_noise`` as a float in [0, 1]; ValueError outside it, when it is set without ``ode``, or
    when ``core.sample_frame`` cannot add it (a core exported before it took one)."""
    value = float(ode_noise)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"ode_noise must lie in [0, 1] (0: the probability-flow ODE, 1: the reverse SDE), got {ode_noise}")
    if value > 0.0 and not ode:
        raise ValueError(f"ode_noise={value:g} applies to the ODE sampler only; set ode=True, or use noise_scale for the SDE")
    if value > 0.0 and "ode_noise" not in sample_frame_arguments(core):
        raise ValueError(f"ode_noise={value:g}: this exported core samples the noise-free ODE only "
                         "(it was exported before sample_frame took ode_noise); export it again with 'starmd export'")
    return value


class Rollout:
    """Generate frames of B replicas of one protein with a singles-only KV cache.

    Args:
        core: a :class:`StarMDCore` (eager or ``torch.jit`` scripted/loaded).
        aatype: ``[N]`` or ``[B, N]`` residue types 0..19 (order ``ARNDCQEGHILKMFPSTWYV``).
        residue_index: ``[N]`` or ``[B, N]`` residue numbers (gaps allowed).
        stride_ns: physical time between frames (ns).
        replicas: B independent trajectories generated in one batch.
        seed: integer seed; None draws one from torch's generator.
        num_steps: reverse-diffusion steps per frame. ode: probability-flow ODE instead of SDE.
        noise_scale: multiplier of the reverse SDE's stochastic term (1: the exact SDE).
        time_spacing: power p of the reverse-diffusion times (``SE3Diffuser.timesteps``): 1 spaces
            them evenly in t, 2 crowds them toward t_min.
        noise_switch_t: reverse steps from diffusion times t > noise_switch_t take the exact SDE
            (noise scale 1), the later ones ``noise_scale``. 1 (the default): ``noise_scale`` at
            every step.
        ode_noise: with ``ode``, the noise each reverse step adds, with the drift raised so that
            the marginals stay the data's (0, the default: the probability-flow ODE; 1: the reverse
            SDE). ``noise_scale`` and ``noise_switch_t`` apply to the SDE only.
        capacity_frames: KV-cache capacity (context + generated frames); default the config's.
        chain_index: ``[N]`` chain of each residue (default all 0).
        align: superpose each generated frame's CA onto the previous frame's (Kabsch).
        context_window: frames each frame attends to, itself included (0: the whole history; 8:
            the longest context the model saw in training with L = 8).
        context_noise_t: diffusion time τ to which each frame is noised before it joins the
            context (None: the weights' own, ``core.context_noise_t``; 0: clean history).
        context_sink: with a context window, the first frames of the rollout (its given context)
            that every frame attends to as well, however far back they lie (attention sinks, as
            in the paper's windowed ConfRover baseline); 0: the window alone.
    """

    def __init__(self, core, aatype: torch.Tensor, residue_index: torch.Tensor, stride_ns: float, *, replicas: int = 1,
                 seed: Optional[int] = None, num_steps: int = 200, ode: bool = False, noise_scale: float = 1.0,
                 time_spacing: float = 1.0, capacity_frames: Optional[int] = None, chain_index: Optional[torch.Tensor] = None, align: bool = True,
                 noise_switch_t: float = 1.0, openfold_single: Optional[torch.Tensor] = None, openfold_pair: Optional[torch.Tensor] = None,
                 context_window: int = 0, context_noise_t: Optional[float] = None, context_sink: int = 0,
                 ode_noise: float = 0.0):
        if replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {replicas}")
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        if not 0.0 < float(time_spacing) < float("inf"):
            raise ValueError(f"time_spacing must be a number > 0, got {time_spacing}")
        aatype = torch.as_tensor(aatype, dtype=torch.long)
        residue_index = torch.as_tensor(residue_index, dtype=torch.long)
        if aatype.numel() == 0 or aatype.shape[-1] == 0:
            raise ValueError("aatype is empty: a protein needs at least one residue (N = 0 given)")
        if aatype.min() < 0 or aatype.max() >= NUM_STANDARD_RESTYPES:
            bad = aatype[(aatype < 0) | (aatype >= NUM_STANDARD_RESTYPES)].unique().tolist()
            raise ValueError(f"aatype must hold residue codes 0..19 (ARNDCQEGHILKMFPSTWYV); got unknown codes {bad}")
        if residue_index.shape != aatype.shape:
            raise ValueError(f"residue_index shape {tuple(residue_index.shape)} must equal aatype shape {tuple(aatype.shape)}")
        self.core = core
        self.stride_ns = validate_stride(stride_ns, float(core.stride_min_ns), float(core.stride_max_ns))
        self.replicas = replicas
        self.seed = int(torch.randint(0, 2**62, ()).item()) if seed is None else int(seed)
        self.num_steps = num_steps
        self.ode = ode
        self.noise_scale = float(noise_scale)
        self.time_spacing = float(time_spacing)
        check_time_spacing(core, self.time_spacing)
        self.noise_switch_t = check_noise_switch(core, noise_switch_t)
        takes = sample_frame_arguments(core)  # a core exported by an earlier version takes fewer
        self.ode_noise = check_ode_noise(core, ode_noise, ode)
        self._sampler_extra = tuple(v for name, v in (("time_spacing", self.time_spacing), ("noise_switch_t", self.noise_switch_t),
                                                      ("ode_noise", self.ode_noise))
                                    if name in takes)
        self.context_noise_t = float(core.context_noise_t) if context_noise_t is None else float(context_noise_t)
        if not 0.0 <= self.context_noise_t <= 1.0:
            raise ValueError(f"context_noise_t must be a diffusion time in [0, 1], got {context_noise_t}")
        self.align = align
        self.capacity_frames = int(capacity_frames or core.default_capacity)
        device = self._device()
        self.aatype = _as_batch(aatype, "aatype", replicas, 1).to(device)
        self.num_res = self.aatype.shape[1]
        self.residue_index = _as_batch(residue_index, "residue_index", replicas, 1).to(device)
        chain = torch.zeros_like(self.residue_index) if chain_index is None else _as_batch(torch.as_tensor(chain_index, dtype=torch.long), "chain_index", replicas, 1).to(device)
        self.chain_index = chain
        self.log10_stride = torch.full([replicas], math.log10(self.stride_ns), device=device)
        self.history_rots: list[torch.Tensor] = []
        self.history_trans: list[torch.Tensor] = []
        self.num_context = 0
        self.context_window = int(context_window)
        self.context_sink = int(context_sink)
        if self.context_sink < 0:
            raise ValueError(f"context_sink must be a number of frames >= 0, got {context_sink}")
        if self.context_sink and not hasattr(core, "set_sink"):
            raise ValueError("context_sink needs a core that has set_sink(); this one was exported by an earlier version")
        with self._engine():
            self.core.start(self.aatype, self.residue_index, self.chain_index, self.capacity_frames, openfold_single, openfold_pair)
            self.core.set_window(self.context_window)
            if hasattr(core, "set_sink"):
                self.core.set_sink(self.context_sink)

    def _engine(self):
        """The context every call of the core runs in: for a TorchScript core, the plain graph
        executor. The optimising one re-specialises a core that is started a second time wrongly
        (its frames then differ from the eager core's: tests/test_torchscript_restart.py); the plain
        one gives the eager frames and, measured on a CPU, is as fast."""
        return torch.jit.optimized_execution(False) if isinstance(self.core, torch.jit.ScriptModule) else contextlib.nullcontext()

    def _device(self) -> torch.device:
        for p in self.core.parameters():
            return p.device
        return torch.device("cpu")

    @property
    def num_frames(self) -> int:
        return len(self.history_trans)

    def _seeded(self, frame: int, stream: int):
        seed = _derive_seed(self.seed, frame, stream)
        devices = [torch.cuda.current_device()] if self._device().type == "cuda" else []
        ctx = torch.random.fork_rng(devices=devices)
        ctx.__enter__()
        torch.manual_seed(seed)
        return ctx

    def _append(self, rots: torch.Tensor, trans: torch.Tensor) -> None:
        k = self.num_frames
        if k >= self.capacity_frames:
            raise RuntimeError(f"the KV cache holds {self.capacity_frames} frames and is full; create the Rollout with a larger capacity_frames")
        ctx = self._seeded(k, 0)
        try:
            with self._engine():
                self.core.append_frame(rots, trans, self.log10_stride, self.context_noise_t)
        finally:
            ctx.__exit__(None, None, None)
        self.history_rots.append(rots)
        self.history_trans.append(trans)

    def add_context(self, rots: torch.Tensor, trans: torch.Tensor) -> None:
        """Append known frames (rots ``[N, 3, 3]`` / ``[B, N, 3, 3]``, trans ``[N, 3]`` / ``[B, N, 3]``, nm)."""
        rots = _as_batch(torch.as_tensor(rots, dtype=torch.float32), "rots", self.replicas, 3).to(self._device())
        trans = _as_batch(torch.as_tensor(trans, dtype=torch.float32), "trans", self.replicas, 2).to(self._device())
        if rots.shape[1] != self.num_res or trans.shape[1] != self.num_res:
            raise ValueError(f"context frames have {trans.shape[1]} residues; the rollout has {self.num_res}")
        if not (torch.isfinite(rots).all() and torch.isfinite(trans).all()):
            raise ValueError("context frames contain NaN or infinite values")
        self._append(rots, trans)
        self.num_context += 1

    def sample(self, attempt: int = 0) -> Frame:
        """Sample the next frame without committing it (see :meth:`accept`); ``attempt`` > 0 re-samples."""
        if self.num_frames == 0:
            raise RuntimeError("add_context() at least one frame before sampling")
        ctx = self._seeded(self.num_frames, 1 + attempt)
        try:
            with self._engine():
                rots, trans, tors = self.core.sample_frame(self.log10_stride, self.num_steps, self.ode, self.noise_scale,
                                                           *self._sampler_extra)
        finally:
            ctx.__exit__(None, None, None)
        if self.align:
            rot, t = kabsch(trans, self.history_trans[-1])
            rots = rot[:, None] @ rots
            trans = torch.einsum("bij,bnj->bni", rot, trans) + t[:, None]
        return Frame(rots, trans, tors)

    def accept(self, frame: Frame) -> None:
        """Commit a sampled frame: it joins the context (noised) and the history."""
        self._append(frame.rots, frame.trans)

    def step(self) -> Frame:
        """Sample the next frame and commit it."""
        frame = self.sample()
        self.accept(frame)
        return frame

    def run(self, num_frames: int, progress: bool = False) -> Frame:
        """Generate ``num_frames`` frames; returns them stacked on a new axis 1 (``[B, F, ...]``)."""
        if num_frames < 0:
            raise ValueError(f"num_frames must be >= 0, got {num_frames}")
        frames = []
        iterator = range(num_frames)
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(iterator, desc="STAR-MD frames", unit="frame")
        for _ in iterator:
            frames.append(self.step())
        if not frames:
            B, N = self.replicas, self.num_res
            return Frame(torch.zeros(B, 0, N, 3, 3), torch.zeros(B, 0, N, 3), torch.zeros(B, 0, N, 7, 2))
        return Frame(torch.stack([f.rots for f in frames], 1), torch.stack([f.trans for f in frames], 1),
                     torch.stack([f.torsions for f in frames], 1))

    # --- resumable state ----------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to resume exactly: seed, options and the frame history."""
        return {"seed": self.seed, "stride_ns": self.stride_ns, "replicas": self.replicas, "num_steps": self.num_steps,
                "ode": self.ode, "noise_scale": self.noise_scale, "time_spacing": self.time_spacing,
                "noise_switch_t": self.noise_switch_t, "ode_noise": self.ode_noise, "context_noise_t": self.context_noise_t, "align": self.align,
                "capacity_frames": self.capacity_frames, "num_context": self.num_context, "context_window": self.context_window,
                "context_sink": self.context_sink, "aatype": self.aatype[0].cpu(), "residue_index": self.residue_index[0].cpu(), "chain_index": self.chain_index[0].cpu(),
                "history_rots": torch.stack(self.history_rots, 1).cpu() if self.history_rots else None,
                "history_trans": torch.stack(self.history_trans, 1).cpu() if self.history_trans else None}

    @staticmethod
    def from_state(core, state: dict) -> "Rollout":
        """Rebuild a rollout (and its KV cache, by replaying the history) from :meth:`state_dict`."""
        r = Rollout(core, state["aatype"], state["residue_index"], state["stride_ns"], replicas=state["replicas"],
                    seed=state["seed"], num_steps=state["num_steps"], ode=state["ode"], noise_scale=state["noise_scale"],
                    time_spacing=state.get("time_spacing", 1.0), capacity_frames=state["capacity_frames"], chain_index=state["chain_index"], align=state["align"],
                    context_window=state.get("context_window", 0), noise_switch_t=state.get("noise_switch_t", 1.0),
                    context_noise_t=state.get("context_noise_t"), context_sink=state.get("context_sink", 0),
                    ode_noise=state.get("ode_noise", 0.0))
        if state["history_trans"] is not None:
            device = r._device()
            for k in range(state["history_trans"].shape[1]):
                r._append(state["history_rots"][:, k].to(device), state["history_trans"][:, k].to(device))
        r.num_context = state["num_context"]
        return r
