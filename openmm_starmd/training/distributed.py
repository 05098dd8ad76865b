"""Process-group set-up for ``torchrun`` (DDP: gloo on CPU, nccl on CUDA) and small collectives.

A single process (no ``WORLD_SIZE`` in the environment, or 1) runs without a process group and
every helper here degrades to the identity.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits: rank, world_size, its device and whether it writes files."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} requested but CUDA is not available")
    return device


def init_distributed(device: str = "auto") -> DistributedContext:
    """Join the ``torchrun`` process group when ``WORLD_SIZE`` > 1 (env:// rendezvous).

    On CUDA each rank takes ``cuda:LOCAL_RANK`` and nccl; on CPU, gloo."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    base = resolve_device(device)
    if world_size <= 1:
        return DistributedContext(0, 1, base)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if base.type == "cuda":
        torch.cuda.set_device(local_rank)
        base = torch.device("cuda", local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if base.type == "cuda" else "gloo")
    return DistributedContext(rank, world_size, base)


def all_reduce_mean(values: torch.Tensor, ctx: DistributedContext) -> torch.Tensor:
    """Mean of ``values`` over ranks (a copy; the identity in a single process)."""
    values = values.detach().clone()
    if ctx.enabled:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= ctx.world_size
    return values


def any_rank(flag: bool, ctx: DistributedContext) -> bool:
    """True on every rank when ``flag`` is True on at least one."""
    return any_ranks([flag], ctx)[0]


def any_ranks(flags: list[bool], ctx: DistributedContext) -> list[bool]:
    """Each flag True on every rank when it is True on at least one: one all-reduce for all of them."""
    if not ctx.enabled:
        return [bool(f) for f in flags]
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v > 0) for v in t.tolist()]


def barrier(ctx: DistributedContext) -> None:
    if ctx.enabled:
        dist.barrier()


def shutdown(ctx: DistributedContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


__all__ = ["DistributedContext", "resolve_device", "init_distributed", "all_reduce_mean", "any_rank", "barrier", "shutdown"]
