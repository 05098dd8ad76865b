"""The training loop: Adam + warm-up/cosine, gradient clipping, EMA, bf16 on CUDA, DDP, resumable
checkpoints, a JSON-lines loss log and a loss plot.

Determinism: batch ``step`` of rank ``r`` is drawn from ``numpy.random.default_rng([seed, step, r])``
and the step's diffusion noise from torch's generator seeded with the same triple, so the data
sampler's whole state is the step counter and a run stopped and resumed from a checkpoint repeats
the uninterrupted run exactly (same data, same noise, same optimiser state).

Files written by rank 0:

* ``out`` — a model checkpoint (:func:`~openmm_starmd.model.checkpoint.save_checkpoint`: config,
  weights, EMA weights, meta) usable by ``load_model`` / ``--init``;
* ``out`` + ``.train.pt`` — everything needed to resume (optimiser, scheduler, step, RNG, log size);
* ``log_path`` (JSON lines, one per step) and ``plot_path`` (PNG).

Stopping: SIGINT (Ctrl-C, ``kill -INT``) or SIGTERM during :meth:`Trainer.run` finishes the step in
progress, writes the checkpoint and the training state at the step reached and returns; a second
signal stops at once (the files of the last checkpoint stay valid, they are replaced atomically).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from openmm_starmd.data.dataset import Batch, DatasetConfig, TrajectoryDataset, collate
from openmm_starmd.data.readers import find_sources
from openmm_starmd.model.checkpoint import (load_model, read_checkpoint, resolve_model_path, samples_with_ode, save_checkpoint,
                                            stage_steps)
from openmm_starmd.model.config import StarMDConfig, preset
from openmm_starmd.model.core import StarMDCore
from openmm_starmd.training.block_causal import BlockCausalModel, HistoryErrors, SelfHistory, batch_to, training_losses
from openmm_starmd.training.distributed import DistributedContext, all_reduce_mean, any_rank, any_ranks, barrier, resolve_device
from openmm_starmd.training.losses import LossConfig

TRAIN_STATE_SUFFIX = ".train.pt"
LOG_TERMS = ("total", "rot_score", "trans_score", "torsion", "bb_fape", "sc_fape", "bb_coord", "dist_map", "ca_bond", "ca_clash", "ca_rg", "ca_x0")


@dataclass
class TrainConfig:
    """Options of one training run (``starmd train``); paths may be str or Path.

    ``steps`` is the total number of optimiser steps of the run (a resumed run continues to it);
    the cosine decay reaches ``min_lr_factor · lr`` at ``steps``. ``max_wall_s`` > 0 stops early
    (with a checkpoint) after that many seconds of this process; ``stop_at`` > 0 stops (with a
    checkpoint) on reaching that step, the schedule still running to ``steps`` (equal-step
    comparisons of runs that continue later).
    """

    data: Path
    out: Path
    preset: str = "small"
    steps: int = 1000
    init: Optional[str] = None
    resume: bool = False
    lr: float = 2e-4
    warmup_steps: int = 100
    warmup_start_factor: float = 0.01
    min_lr_factor: float = 0.1
    batch_size: int = 4
    num_frames: int = 8
    min_frames: int = 0
    trim_relaxation: bool = False
    model_overrides: dict = field(default_factory=dict)
    warm_start: Optional[str] = None
    crop_residues: int = 256
    min_stride_ns: float = 0.01
    max_stride_ns: float = 10.0
    stride_first_fraction: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    checkpoint_every: int = 100
    plot_every: int = 100
    log_path: Optional[Path] = None
    plot_path: Optional[Path] = None
    seed: int = 0
    holdout: tuple = ()
    reindex_every: int = 0
    cache_dir: Optional[Path] = None
    device: str = "auto"
    bf16: bool = True
    progress: bool = True
    max_wall_s: float = 0.0
    stop_at: int = 0
    validate_every: int = 0
    validation_split: Optional[Path] = None
    validation_jumps: int = 10
    validation_num_steps: int = 25
    validation_noise_scale: float = 0.5
    validation_time_spacing: float = 1.0
    validation_noise_switch_t: float = 1.0
    validation_context_window: int = 0
    validation_context_sink: int = 0
    validation_strides_ns: tuple = (0.1, 1.25)
    validation_ode_from_stride_ns: Optional[float] = None  # strides from this one are sampled with the ODE
    loss: LossConfig = field(default_factory=LossConfig)
    history_errors: HistoryErrors = field(default_factory=HistoryErrors)
    low_t_fraction: float = 0.0
    self_history: SelfHistory = field(default_factory=SelfHistory)

    def __post_init__(self):
        self.data = Path(self.data)
        self.out = Path(self.out)
        self.log_path = Path(self.log_path) if self.log_path is not None else self.out.with_name(self.out.name + ".log.jsonl")
        self.plot_path = Path(self.plot_path) if self.plot_path is not None else self.out.with_name(self.out.name + ".loss.png")
        self.cache_dir = Path(self.cache_dir) if self.cache_dir is not None else None
        self.holdout = tuple(self.holdout)
        self.validation_split = Path(self.validation_split) if self.validation_split is not None else None
        self.validation_strides_ns = tuple(self.validation_strides_ns)

    def validate(self) -> "TrainConfig":
        positive = ("steps", "batch_size", "checkpoint_every", "plot_every", "crop_residues")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_frames < 2:
            raise ValueError(f"TrainConfig.num_frames must be >= 2, got {self.num_frames}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if self.validation_ode_from_stride_ns is not None and not self.validation_ode_from_stride_ns > 0:
            raise ValueError(f"validation_ode_from_stride_ns must be a stride > 0 ns, got {self.validation_ode_from_stride_ns}")
        if self.validate_every < 0 or (self.validate_every and self.validation_split is None):
            raise ValueError("validate_every needs a validation split (--holdout-file) and must be >= 0")
        if self.init is not None and self.warm_start is not None:
            raise ValueError("give --init (same network, all weights) or --warm-start (new network, matching weights), not both")
        if self.init is not None and self.model_overrides:
            raise ValueError("model overrides (--set) apply to a --preset; a model from --init keeps its configuration")
        if self.warmup_steps < 0 or self.reindex_every < 0 or self.max_wall_s < 0 or self.stop_at < 0:
            raise ValueError("TrainConfig.warmup_steps, reindex_every, max_wall_s and stop_at must be >= 0")
        if not 0 < self.warmup_start_factor <= 1 or not 0 <= self.min_lr_factor <= 1:
            raise ValueError(f"warmup_start_factor must lie in (0, 1] and min_lr_factor in [0, 1], "
                             f"got {self.warmup_start_factor} and {self.min_lr_factor}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"TrainConfig.ema_decay must lie in [0, 1), got {self.ema_decay}")
        if not self.grad_clip > 0:
            raise ValueError(f"TrainConfig.grad_clip must be > 0, got {self.grad_clip}")
        self.loss.validate()
        self.history_errors.validate()
        self.self_history.validate()
        if not 0.0 <= self.stride_first_fraction <= 1.0:
            raise ValueError(f"TrainConfig.stride_first_fraction must lie in [0, 1], got {self.stride_first_fraction}")
        if not 0.0 <= self.low_t_fraction <= 1.0:
            raise ValueError(f"TrainConfig.low_t_fraction must lie in [0, 1], got {self.low_t_fraction}")
        return self

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


# --------------------------------------------------------------------------- schedule and EMA
def lr_factor(step: int, total_steps: int, warmup_steps: int, start_factor: float, min_factor: float) -> float:
    """Linear warm-up from ``start_factor`` to 1 over ``warmup_steps``, then cosine down to ``min_factor`` at ``total_steps``."""
    if step < warmup_steps:
        return start_factor + (1.0 - start_factor) * step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class EMA:
    """Exponential moving average of parameters and buffers (fp32 copies).

    The decay used at update ``k`` is ``min(decay, (1 + k) / (10 + k))`` so early averages are not
    dominated by the random initialisation."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.shadow = {k: v.detach().float().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        for k, v in module.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].mul_(d).add_(v.detach().float(), alpha=1.0 - d)
            else:
                self.shadow[k].copy_(v)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state["decay"])
        self.updates = int(state["updates"])
        self.shadow = {k: v.clone() for k, v in state["shadow"].items()}


# --------------------------------------------------------------------------- data
def build_dataset(cfg: TrainConfig) -> TrajectoryDataset:
    """Every trajectory under ``cfg.data`` except the held-out systems (``name``) or replicas (``name/replica``)."""
    sources = [s for s in find_sources(cfg.data) if s.name not in cfg.holdout and s.key not in cfg.holdout]
    if not sources:
        raise ValueError(f"no training trajectories left under {str(cfg.data)!r} after holding out {list(cfg.holdout)}")
    dcfg = DatasetConfig(num_frames=cfg.num_frames, min_frames=cfg.min_frames, min_stride_ns=cfg.min_stride_ns, max_stride_ns=cfg.max_stride_ns,
                         crop_residues=cfg.crop_residues, cache_dir=cfg.cache_dir, seed=cfg.seed,
                         trim_relaxation=cfg.trim_relaxation, stride_first_fraction=cfg.stride_first_fraction)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short trajectories are skipped; describe() lists what is used
        return TrajectoryDataset(sources, dcfg)


def draw_batch(dataset: TrajectoryDataset, step: int, rank: int, batch_size: int, seed: int) -> Batch:
    """Batch ``step`` of rank ``rank``: one trajectory with one stride and L
    (:meth:`~openmm_starmd.data.dataset.TrajectoryDataset.draw_trajectory_window`: the trajectory
    drawn uniformly, or for a fraction of the batches the stride first), ``batch_size`` examples of
    it (own start and crop each; one stride and L for the batch, so its frames stack);
    deterministic in (seed, step, rank)."""
    rng = np.random.default_rng([seed, step, rank])
    trajectory, window = dataset.draw_trajectory_window(rng)
    return collate([dataset.example(trajectory, rng, window=window) for _ in range(batch_size)])


def _step_seed(seed: int, step: int, rank: int) -> int:
    return int(np.random.default_rng([seed, step, rank, 7]).integers(2**62))


def warm_start(core: StarMDCore, name_or_path: str) -> dict:
    """Copy into ``core`` every weight of a model (EMA weights; ``"default"`` or a checkpoint path)
    whose name and shape match; the rest (new inputs, changed layers) keep their initialisation.
    Returns the counts of copied and kept tensors."""
    parent = load_model(name_or_path, use_ema=True)
    source = parent.net.state_dict()
    target = core.net.state_dict()
    copied = {k: v for k, v in source.items() if k in target and target[k].shape == v.shape}
    target.update(copied)
    core.net.load_state_dict(target)
    return {"copied": len(copied), "kept": len(target) - len(copied), "from": str(name_or_path)}


class StopRequests:
    """While active (a context manager), SIGINT and SIGTERM set :attr:`requested` instead of
    stopping the process, so a training loop can finish its step and write a checkpoint first. A
    second signal raises ``KeyboardInterrupt`` at once. Outside the main thread (where Python
    cannot set handlers) it does nothing and the signals keep their usual effect."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)
    REPEAT_S = 2.0  # a repeat this soon is the same request (Ctrl-C reaches a job and its launcher both)

    def __init__(self):
        self.requested = False
        self._first: Optional[float] = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        now = time.monotonic()
        if self.requested:
            if now - self._first < self.REPEAT_S:
                return
            raise KeyboardInterrupt
        self.requested, self._first = True, now
        print(f"starmd train: {signal.Signals(signum).name} received; stopping after this step "
              "(send it again to stop at once)", flush=True)

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


# --------------------------------------------------------------------------- the trainer
class Trainer:
    """Builds the model, data, optimiser and schedule from a :class:`TrainConfig` and runs it."""

    def __init__(self, cfg: TrainConfig, ctx: Optional[DistributedContext] = None):
        self.cfg = cfg.validate()
        self.ctx = ctx or DistributedContext(device=resolve_device(cfg.device))
        self.device = self.ctx.device
        self.state_path = cfg.out.with_name(cfg.out.name + TRAIN_STATE_SUFFIX)
        self.parent_stage_steps: list[int] = []  # optimiser steps of the --init checkpoint's training stages
        self.warm_started: Optional[dict] = None
        self.model_cfg, core = self._initial_model()
        self.diffuser = core.diffuser.to(self.device)
        self.net = core.net.to(self.device)
        self.model = BlockCausalModel(self.net)
        if self.ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            # with the first architecture the last block's pair update feeds nothing downstream, so
            # some parameters get no gradient; later configurations drop it
            self.model = DistributedDataParallel(self.model, device_ids=ids,
                                                 find_unused_parameters=self.model_cfg.last_edge_transition)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, cfg.steps, cfg.warmup_steps, cfg.warmup_start_factor, cfg.min_lr_factor))
        self.ema = EMA(self.net, cfg.ema_decay)
        self.step = 0
        self.wall_s = 0.0
        self.examples_seen = 0
        self.interrupted = False  # set by run() when a signal stopped it early
        if cfg.resume and self.state_path.is_file():
            self._load_state()
        self.dataset = build_dataset(cfg)

    def _initial_model(self) -> tuple[StarMDConfig, StarMDCore]:
        if self.cfg.init is None:
            torch.manual_seed(self.cfg.seed)
            model_cfg = dataclasses.replace(preset(self.cfg.preset), **self.cfg.model_overrides).validate()
            core = StarMDCore(model_cfg)
            if self.cfg.warm_start is not None:
                self.warm_started = warm_start(core, self.cfg.warm_start)
            return model_cfg, core
        path, _ = resolve_model_path(self.cfg.init)
        parent = read_checkpoint(path)
        model_cfg = StarMDConfig.from_dict(parent["config"])
        self.parent_stage_steps = stage_steps(parent.get("meta", {}))
        core = load_model(self.cfg.init, use_ema=True)  # checks the shipped model's SHA-256
        core.train()
        return model_cfg, core

    # --- checkpoints ---------------------------------------------------------------------
    def _meta(self) -> dict:
        return {"step": self.step, "steps": self.cfg.steps, "examples_seen": self.examples_seen, "wall_s": round(self.wall_s, 1),
                "data": str(self.cfg.data), "holdout": list(self.cfg.holdout), "preset": self.cfg.preset,
                "init": self.cfg.init, "warm_start": self.warm_started, "world_size": self.ctx.world_size, "batch_size": self.cfg.batch_size,
                "stage_steps": [*self.parent_stage_steps, self.step],
                "trajectories": [json.loads(line) for line in self.dataset.describe().splitlines()]}

    def save(self) -> None:
        """Write the model checkpoint and the resumable training state (rank 0; atomic)."""
        if not self.ctx.is_main:
            return
        self.cfg.out.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(self.cfg.out, self.model_cfg, self.net.state_dict(), self.ema.shadow, self._meta())
        state = {"model_config": self.model_cfg.to_dict(), "model": self.net.state_dict(), "ema": self.ema.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "step": self.step,
                 "wall_s": self.wall_s, "examples_seen": self.examples_seen, "rng_cpu": torch.get_rng_state(),
                 "train_config": json.dumps(self.cfg.to_dict(), default=str)}
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.state_path)

    def _load_state(self) -> None:
        state = torch.load(self.state_path, map_location="cpu", weights_only=True)
        saved_cfg = StarMDConfig.from_dict(state["model_config"])
        if saved_cfg.to_dict() != self.model_cfg.to_dict():
            raise ValueError(f"--resume: {self.state_path} was trained with another model configuration than "
                             f"preset {self.cfg.preset!r} / init {self.cfg.init!r}; pass the same --preset/--init as the first run")
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.ema.load_state_dict(state["ema"])
        self.step = int(state["step"])
        self.wall_s = float(state["wall_s"])
        self.examples_seen = int(state["examples_seen"])
        torch.set_rng_state(state["rng_cpu"])
        if self.ctx.is_main and self.cfg.log_path.is_file():
            _truncate_log(self.cfg.log_path, self.step)

    # --- validation on unseen proteins --------------------------------------------------
    @property
    def validation_log_path(self) -> Path:
        return self.cfg.out.with_name(self.cfg.out.name + ".val.jsonl")

    @property
    def best_path(self) -> Path:
        return self.cfg.out.with_name(self.cfg.out.stem + ".best" + self.cfg.out.suffix)

    def validate(self) -> dict:
        """Score the EMA weights on the validation split (raw rollouts, see ``training.validation``),
        append the record to ``CKPT.val.jsonl``, redraw ``CKPT.val.png`` and keep ``CKPT.best.pt``
        when the mean Cα validity over the strides is the best so far (ties: the larger attractor ratio)."""
        from openmm_starmd.training.validation import score_core

        cfg = self.cfg
        core = StarMDCore(self.model_cfg)
        core.net.load_state_dict({k: v.detach().cpu() for k, v in self.ema.shadow.items()})
        core.eval()
        rng_state = torch.get_rng_state()  # validation must not change the training's random stream
        start = time.monotonic()
        groups = {ode: [s for s in cfg.validation_strides_ns
                        if samples_with_ode(s, cfg.validation_ode_from_stride_ns) == ode] for ode in (False, True)}
        summary, systems, samplers = {}, [], {}
        for ode, strides in groups.items():
            if not strides:
                continue
            report = score_core(core, cfg.data, cfg.validation_split, strides_ns=strides,
                                jumps=cfg.validation_jumps, num_steps=cfg.validation_num_steps,
                                noise_scale=cfg.validation_noise_scale, time_spacing=cfg.validation_time_spacing,
                                noise_switch_t=cfg.validation_noise_switch_t, context_window=cfg.validation_context_window,
                                context_sink=cfg.validation_context_sink, seed=cfg.seed, ode=ode)
            summary.update(report["summary"])
            systems += report["systems"]
            samplers.update({key: report["settings"]["sampler"] for key in report["summary"]})
        torch.set_rng_state(rng_state)
        valid = [v["ca_valid"] for v in summary.values() if v["ca_valid"] is not None]
        attract = [v["attractor_mean"] for v in summary.values() if v["attractor_mean"] is not None]
        record = {"step": self.step, "score": float(np.mean(valid)) if valid else 0.0,
                  "attractor": float(np.mean(attract)) if attract else 0.0, "summary": summary, "samplers": samplers,
                  "systems": systems, "wall_s": round(time.monotonic() - start, 1)}
        previous = read_log(self.validation_log_path) if self.validation_log_path.is_file() else []
        previous = [r for r in previous if r["step"] < self.step]
        best = max(previous, key=lambda r: (r["score"], r["attractor"]), default=None)
        record["best"] = best is None or (record["score"], record["attractor"]) > (best["score"], best["attractor"])
        with open(self.validation_log_path, "w") as f:
            for r in previous + [record]:
                f.write(json.dumps(r) + "\n")
        if record["best"]:
            save_checkpoint(self.best_path, self.model_cfg, self.net.state_dict(), self.ema.shadow,
                            {**self._meta(), "validation": {"score": record["score"], "summary": summary}})
        plot_validation(self.validation_log_path, self.validation_log_path.with_suffix(".png"))
        return record

    # --- one step ------------------------------------------------------------------------
    def train_step(self) -> dict:
        """One optimiser step; returns the logged record (losses averaged over ranks)."""
        cfg = self.cfg
        batch = batch_to(draw_batch(self.dataset, self.step, self.ctx.rank, cfg.batch_size, cfg.seed), self.device)
        torch.manual_seed(_step_seed(cfg.seed, self.step, self.ctx.rank))
        self.model.train()
        terms = training_losses(self.model, self.diffuser, batch, self.model_cfg, cfg.loss,
                                torch.bfloat16 if cfg.bf16 else None, cfg.history_errors,
                                cfg.low_t_fraction, cfg.self_history)
        self.optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip)
        finite = bool(torch.isfinite(grad_norm)) and bool(torch.isfinite(terms["total"]))
        if any_rank(not finite, self.ctx):
            self.optimizer.zero_grad(set_to_none=True)  # skip the update everywhere; the schedule still advances
        else:
            self.optimizer.step()
            self.ema.update(self.net)
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        values = all_reduce_mean(torch.stack([terms[k].detach().float() for k in LOG_TERMS]), self.ctx).cpu()
        record = {"step": self.step + 1, "lr": lr, "grad_norm": float(grad_norm), "skipped": not finite,
                  "residues": int(batch.trans.shape[2]), "stride_ns": float(batch.stride_ns.mean()), "key": batch.keys[0]}
        record.update({k: float(v) for k, v in zip(LOG_TERMS, values)})
        self.step += 1
        self.examples_seen += cfg.batch_size * self.ctx.world_size
        return record

    # --- the loop --------------------------------------------------------------------------
    def run(self) -> list[dict]:
        """Train up to ``cfg.steps``; returns this process's records. Checkpoints every
        ``checkpoint_every`` steps and at the end. SIGINT or SIGTERM stops it after the step in
        progress, with a checkpoint at that step (:attr:`interrupted` is then True)."""
        with StopRequests() as stop:
            return self._run(stop)

    def _run(self, stop: StopRequests) -> list[dict]:
        cfg = self.cfg
        records: list[dict] = []
        bar = None
        if cfg.progress and self.ctx.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, desc="starmd train", unit="step", dynamic_ncols=True)
        start = time.monotonic()
        last = start
        if self.ctx.is_main:
            cfg.log_path.parent.mkdir(parents=True, exist_ok=True)
        end = min(cfg.steps, cfg.stop_at) if cfg.stop_at > 0 else cfg.steps
        while self.step < end:
            if cfg.reindex_every and self.step % cfg.reindex_every == 0 and records:
                self.dataset = build_dataset(cfg)
            record = self.train_step()
            now = time.monotonic()
            self.wall_s += now - last
            last = now
            record["wall_s"] = round(self.wall_s, 2)
            records.append(record)
            if self.ctx.is_main:
                with open(cfg.log_path, "a") as f:
                    f.write(json.dumps(record) + "\n")
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{record['total']:.3f}", lr=f"{record['lr']:.2e}")
            out_of_time = (cfg.max_wall_s > 0 and now - start > cfg.max_wall_s) or (cfg.stop_at > 0 and self.step >= cfg.stop_at)
            self.interrupted, out_of_time = any_ranks([stop.requested, out_of_time], self.ctx)  # one all-reduce
            out_of_time = out_of_time or self.interrupted
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps or out_of_time:
                self.save()
            if self.ctx.is_main and (self.step % cfg.plot_every == 0 or self.step == cfg.steps or out_of_time):
                plot_log(cfg.log_path, cfg.plot_path)
            if cfg.validate_every and self.ctx.is_main and (self.step % cfg.validate_every == 0 or self.step == cfg.steps):
                self.validate()
            if out_of_time:
                break
        if bar is not None:
            bar.close()
        barrier(self.ctx)
        return records


def _truncate_log(path: Path, step: int) -> None:
    """Keep the log lines of steps <= ``step`` (a resumed run rewrites what follows)."""
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _stamp(fig) -> None:
    """Date and package version, small in the lower right corner, in a strip the tight layout leaves free."""
    from openmm_starmd import __version__

    fig.text(0.995, 0.005, f"drawn {time.strftime('%Y-%m-%d', time.gmtime())} · openmm-starmd {__version__}",
             ha="right", va="bottom", fontsize=6, color="0.45")
    fig.tight_layout(rect=(0, 0.03, 1, 1))


def plot_log(log_path: Path, plot_path: Path, window: int = 25) -> None:
    """Loss curves (each weighted term and the total, moving average over ``window`` steps) to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_log(log_path)
    if not records:
        return
    steps = np.array([r["step"] for r in records])
    fig, ax = plt.subplots(figsize=(8, 5))
    for name in LOG_TERMS:
        y = np.array([r.get(name, np.nan) for r in records], dtype=float)  # a term added later: NaN before it
        w = min(window, len(y))
        smooth = np.convolve(y, np.ones(w) / w, mode="valid")
        ax.plot(steps[w - 1:], smooth, label=name, lw=2.0 if name == "total" else 1.0)
    ax.set_yscale("log")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(f"loss (moving average over {window} steps)")
    ax.set_title(f"STAR-MD training loss: {log_path.name.removesuffix('.log.jsonl')}")
    ax.legend(fontsize=8, ncol=2)
    _stamp(fig)
    tmp = plot_path.with_name(plot_path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, plot_path)


def plot_validation(log_path: Path, plot_path: Path) -> None:
    """Cα validity, per-jump RMSD ratio and attractor ratio on the validation split against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_log(log_path)
    if not records:
        return
    steps = [r["step"] for r in records]
    strides = list(records[-1]["summary"])
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    panels = [("ca_valid", "Cα-valid fraction (raw samples)", 100.0), ("rmsd_ratio_median", "per-jump Cα RMSD / MD", 1.0),
              ("attractor_mean", "rollout separation / MD spread", 1.0)]
    for ax, (key, label, scale) in zip(axes, panels):
        for s in strides:
            y = [np.nan if r["summary"].get(s, {}).get(key) is None else scale * r["summary"][s][key] for r in records]
            line, = ax.plot(steps, y, "o-", label=f"Δt = {s.replace('ns', ' ns')}")
            if key == "rmsd_ratio_median":  # against MD without its relaxation from the start structure
                y_eq = [np.nan if r["summary"].get(s, {}).get("rmsd_ratio_equilibrium_median") is None
                        else r["summary"][s]["rmsd_ratio_equilibrium_median"] for r in records]
                if not all(np.isnan(y_eq)):
                    ax.plot(steps, y_eq, "s--", color=line.get_color(), label=f"Δt = {s.replace('ns', ' ns')}, MD at equilibrium")
        ax.set_xlabel("optimiser step")
        ax.set_ylabel(label if scale == 1.0 else label.replace("fraction", "%"))
        ax.legend(fontsize=8)
    axes[1].axhspan(0.5, 2.0, color="0.9", zorder=0)
    best = [r for r in records if r.get("best")]
    fig.suptitle(f"validation on unseen proteins: {log_path.name}" + (f" (best at step {best[-1]['step']})" if best else ""))
    _stamp(fig)
    tmp = plot_path.with_name(plot_path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, plot_path)


__all__ = ["TrainConfig", "Trainer", "plot_validation", "EMA", "lr_factor", "build_dataset", "draw_batch", "plot_log", "read_log",
           "TRAIN_STATE_SUFFIX"]
