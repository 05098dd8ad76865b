"""A training campaign that can stop and resume at any time: MD and training side by side.

    python -m openmm_starmd.training.campaign --hours 2          # resume both, one core each
    python -m openmm_starmd.training.campaign --pack              # only write the compact state

The campaign is described by ``md_data/campaign.json``: the structures ``starmd simulate`` runs
(round-robin, resumable chunks under ``md_data/``) and the ``starmd train`` arguments of the
model being trained. Optional earlier stages run first, in order, each with its own structures
and ``args`` (with ``--ns``, the length it brings them to): the ``simulate.stages`` list (e.g.
many new systems to 0.5 ns, ``--order sequential``), then ``simulate.long`` (a few chosen systems
extended to long trajectories, e.g. ``--ns 10``); the broad round-robin gets the MD core's
remaining hours. The live training state (fp32 weights, EMA, Adam moments, schedule, RNG)
is kept under ``runs/campaign/`` (not committed). When the campaign stops, and with ``--pack``,
it is packed into ``md_data/training/<name>.state.pt``: the EMA weights in float16 (about 5 MB
for ``small_v2``) with the step, schedule and RNG, so the next machine resumes from it (the packed
state is unpacked when no live state exists). Resuming from the packed state is a warm restart:
the weights start from the EMA weights and Adam's moments start afresh; the step count, learning
-rate schedule and data order continue. When MD ran, the table of systems in ``md_data/README.md``
is brought up to date (``openmm_starmd.data.inventory``).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from openmm_starmd.data.inventory import inventory, markdown, write_readme
from openmm_starmd.internal import restore_interrupt
from openmm_starmd.openmm.simulate import INTERRUPTED
from openmm_starmd.training.trainer import TRAIN_STATE_SUFFIX
from openmm_starmd.training.validation import read_split

CAMPAIGN_FILE = Path("md_data/campaign.json")
LIVE_DIR = Path("runs/campaign")
PACKED_DIR = Path("md_data/training")


def _cast_floats(value, dtype: torch.dtype):
    """``value`` with every floating tensor (at any depth of dicts and lists) cast to ``dtype``."""
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, dict):
        return {k: _cast_floats(v, dtype) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cast_floats(v, dtype) for v in value)
    return value


def pack_state(state_path: Path, packed_path: Path) -> int:
    """Write the size-bounded form of the training state ``state_path`` to ``packed_path``: EMA
    weights in float16, no raw weights, no Adam moments (see the module doc); returns bytes."""
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    keep = {k: v for k, v in state.items() if k not in ("rng_cpu", "model", "optimizer")}
    packed = _cast_floats(keep, torch.float16)
    packed["optimizer"] = {"state": {}, "param_groups": state["optimizer"]["param_groups"]}
    packed["rng_cpu"] = state["rng_cpu"]
    packed["packed_from"] = state_path.name
    packed_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = packed_path.with_name(packed_path.name + ".tmp")
    torch.save(packed, tmp)
    os.replace(tmp, packed_path)
    return packed_path.stat().st_size


def unpack_state(packed_path: Path, state_path: Path) -> None:
    """The inverse of :func:`pack_state`: floats back to float32, written where ``--resume`` reads them."""
    packed = torch.load(packed_path, map_location="cpu", weights_only=True)
    packed.pop("packed_from", None)
    rng = packed.pop("rng_cpu")
    state = _cast_floats(packed, torch.float32)
    state["model"] = {k: v.clone() for k, v in state["ema"]["shadow"].items()}  # warm restart from the EMA weights
    state["rng_cpu"] = rng
    state_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, state_path)


def read_campaign(path: Path = CAMPAIGN_FILE) -> dict:
    if not path.is_file():
        raise ValueError(f"campaign file {str(path)!r} not found; run from the repository root")
    campaign = json.loads(path.read_text())
    for key in ("name", "simulate", "train"):
        if key not in campaign:
            raise ValueError(f"{path}: missing key {key!r}")
    return campaign


def md_stages(campaign: dict) -> list[tuple[list[str], list[str]]]:
    """The MD stages in the order they run: ``(structures, starmd simulate args)`` of each entry of
    the optional ``simulate.stages`` list (e.g. many systems brought to 0.5 ns one after another),
    then of the optional ``simulate.long`` stage (systems extended to long trajectories), then of the
    broad round-robin ``simulate`` itself. Every stage before the broad one needs ``--ns`` in its
    ``args``: it ends when its systems reach that length."""
    simulate = campaign["simulate"]
    earlier = [(f"simulate.stages[{k}]", stage) for k, stage in enumerate(simulate.get("stages", []))]
    if simulate.get("long") is not None:
        earlier.append(("simulate.long", simulate["long"]))
    stages = []
    for label, stage in earlier:
        if not stage.get("structures") or "--ns" not in stage.get("args", []):
            raise ValueError(f"campaign: {label} needs 'structures' and 'args' with --ns (the length to reach)")
        stages.append((list(stage["structures"]), list(stage["args"])))
    stages.append((list(simulate["structures"]), list(simulate.get("args", []))))
    return stages


def simulate_command(structures: list[str], args: list[str], hours: float) -> list[str]:
    """One ``starmd simulate`` command line of the campaign's MD core."""
    return [sys.executable, "-m", "openmm_starmd.cli", "simulate", *structures, "--out", "md_data", "--threads", "1",
            "--max-hours", f"{hours:g}", *args]


def commands(campaign: dict, hours: float) -> tuple[list[list[str]], list[str], Path]:
    """The ``starmd simulate`` command lines of the campaign's MD stages (each as if it had all
    ``hours``; a later stage gets the hours left when it starts), the ``starmd train`` command line,
    and the live checkpoint."""
    simulate = [simulate_command(structures, args, hours) for structures, args in md_stages(campaign)]
    ckpt = LIVE_DIR / f"{campaign['name']}.pt"
    train = [sys.executable, "-m", "openmm_starmd.cli", "train", "--data", "md_data", "--out", str(ckpt), "--resume",
             "--threads", "1", "--no-progress", "--max-wall-s", f"{hours * 3600:g}", *campaign["train"]["args"]]
    return simulate, train, ckpt


class MDStages:
    """The MD core's stages run one after another, each with the hours left (a stage that ends early,
    its systems at their length, hands the core to the next); ``poll``, ``send_signal`` and ``wait``
    act on the stage running, as on a ``subprocess.Popen``."""

    MIN_HOURS = 2.0 / 60.0  # a stage is not started with less than two minutes left

    def __init__(self, stages: list[tuple[list[str], list[str]]], hours: float, env: dict):
        self.stages, self.hours, self.env = list(stages), hours, env
        self.start = time.monotonic()
        self.job: Optional[subprocess.Popen] = None
        self.returncode: Optional[int] = None
        self.stopped = False
        self.args: list[str] = []  # the command line of the stage started last
        if not self._next():
            self.returncode = 0

    def _next(self) -> bool:
        left = self.hours - (time.monotonic() - self.start) / 3600.0
        if self.stopped or not self.stages or left < self.MIN_HOURS:
            return False
        command = simulate_command(*self.stages.pop(0), left)
        print("MD:       " + shlex.join(command), flush=True)
        self.args = command
        self.job = subprocess.Popen(command, env=self.env)
        return True

    def poll(self) -> Optional[int]:
        if self.returncode is not None:
            return self.returncode
        rc = self.job.poll()
        if rc is None or (rc == 0 and self._next()):
            return None
        self.returncode = rc
        return rc

    def send_signal(self, sig) -> None:
        self.stopped = True
        if self.job is not None and self.job.poll() is None:
            self.job.send_signal(sig)

    def wait(self) -> int:
        while self.poll() is None:
            time.sleep(1)
        return self.returncode


def update_inventory(data: Path) -> None:
    """Rewrite the table of systems in ``data/README.md`` (a bad record is reported, not fatal)."""
    split_file = data / "validation_split.txt"
    try:
        rows = inventory(data, read_split(split_file) if split_file.is_file() else ())
        write_readme(data / "README.md", markdown(rows, time.strftime("%Y-%m-%d")))
    except ValueError as exc:
        print(f"the table of systems in {data / 'README.md'} was not updated: {exc}", file=sys.stderr)
        return
    print(f"updated the table of systems in {data / 'README.md'}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openmm_starmd.training.campaign", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=1.0, help="stop both jobs after this long (default 1)")
    parser.add_argument("--campaign", type=Path, default=CAMPAIGN_FILE, help="campaign file (default md_data/campaign.json)")
    parser.add_argument("--no-md", action="store_true", help="train only")
    parser.add_argument("--no-train", action="store_true", help="run MD only")
    parser.add_argument("--pack", action="store_true", help="only pack the live training state into md_data/training/")
    parser.add_argument("--dry-run", action="store_true", help="print the two commands and stop")
    args = parser.parse_args(argv)
    restore_interrupt()  # kill -INT stops a backgrounded campaign, which forwards it to its jobs
    if args.hours <= 0:
        parser.error(f"--hours must be > 0, got {args.hours:g}")
    campaign = read_campaign(args.campaign)
    try:
        simulate, train, ckpt = commands(campaign, args.hours)
    except ValueError as exc:
        parser.error(str(exc))
    live_state = ckpt.with_name(ckpt.name + TRAIN_STATE_SUFFIX)
    packed = PACKED_DIR / f"{campaign['name']}.state.pt"
    if args.dry_run:
        for command in simulate:
            print(shlex.join(command))
        print(shlex.join(train))
        return 0
    if args.pack:
        if not live_state.is_file():
            print(f"no live training state at {live_state}; nothing to pack", file=sys.stderr)
            return 1
        print(f"packed {live_state} -> {packed} ({pack_state(live_state, packed) / 1e6:.1f} MB)")
        return 0
    if not args.no_train and not live_state.is_file() and packed.is_file():
        unpack_state(packed, live_state)
        print(f"resuming training from the packed state {packed}")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    jobs = []
    if not args.no_md:
        jobs.append(MDStages(md_stages(campaign), args.hours, env))
    if not args.no_train:
        print("training: " + shlex.join(train), flush=True)
        jobs.append(subprocess.Popen(train, env=env))
    try:
        while any(job.poll() is None for job in jobs):
            time.sleep(5)
    except KeyboardInterrupt:
        for job in jobs:
            job.send_signal(signal.SIGINT)
        for job in jobs:
            job.wait()
    if not args.no_train and live_state.is_file():
        print(f"packed {live_state} -> {packed} ({pack_state(live_state, packed) / 1e6:.1f} MB)")
    if not args.no_md:
        update_inventory(Path("md_data"))
    failed = [job.args[3] for job in jobs if job.returncode not in (0, None, -signal.SIGINT, INTERRUPTED)]
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
