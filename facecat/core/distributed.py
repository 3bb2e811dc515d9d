"""Multi-process runs under ``torchrun``: joining the process group, shards, gathers.

``torchrun --nproc_per_node N facecat train ...`` starts N copies of the command; each calls
:func:`join_process_group`, which reads torchrun's environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``), initialises ``torch.distributed`` (gloo on CPU, NCCL on CUDA) and gives each
process its device. Without torchrun every function here is the single-process identity, so
library code calls them unconditionally.

Work is split into contiguous shards (:func:`shard_bounds`); per-sample results are gathered
back in sample order (:func:`gather_rows`), so a sharded run produces the same arrays as a
single process. The group joined here is destroyed when the process exits normally, while
the interpreter is still alive: a gloo group left to interpreter finalization can abort the
process (SIGABRT, "terminate called without an active exception") after its work is done.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclass(frozen=True)
class World:
    """This process's place in the group.

    Attributes:
        rank: global rank (0 writes results and checkpoints).
        size: number of processes (1 without torchrun).
    """

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def current_world() -> World:
    """The initialised process group's rank and size, or the single-process world."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def join_process_group(device: str | torch.device) -> tuple[World, torch.device]:
    """Join torchrun's process group when started by torchrun with more than one process.

    Args:
        device: the requested device; ``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun.

    Returns:
        The world and this process's device.
    """
    device = torch.device(device)
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return current_world(), device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        atexit.register(_leave_process_group)
    return current_world(), device


def _leave_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def shard_bounds(n: int, world: World) -> tuple[int, int]:
    """The contiguous ``[start, stop)`` share of ``n`` items that ``world.rank`` handles.

    Shares differ in size by at most one; the first ``n % size`` ranks get the larger ones.
    """
    base, extra = divmod(n, world.size)
    start = world.rank * base + min(world.rank, extra)
    return start, start + base + (1 if world.rank < extra else 0)


def barrier(world: World) -> None:
    """Wait for every process (no-op in a single process)."""
    if world.distributed:
        dist.barrier()


def broadcast_value(value: object, world: World) -> object:
    """Rank 0's ``value`` on every rank (a picklable object of this program's own making)."""
    if not world.distributed:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather_rows(local: Tensor, total: int, world: World) -> Tensor:
    """Concatenate every rank's shard (from :func:`shard_bounds`) in rank order.

    Args:
        local: this rank's rows, (n_rank, ...), on a device the backend supports.
        total: number of rows over all ranks.

    Returns:
        All rows, (total, ...), on every rank.
    """
    if not world.distributed:
        return local
    counts = [shard_bounds(total, World(r, world.size)) for r in range(world.size)]
    longest = max(stop - start for start, stop in counts)
    padded = local.new_zeros((longest, *local.shape[1:]))
    padded[: len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(world.size)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[: stop - start] for p, (start, stop) in zip(parts, counts, strict=True)])


def mean_over_ranks(value: Tensor, world: World) -> Tensor:
    """Element-wise mean of ``value`` over the ranks (in place where possible)."""
    if not world.distributed:
        return value
    summed = value.clone()
    dist.all_reduce(summed)
    return summed / world.size


def float_buffers(module: nn.Module) -> list[Tensor]:
    """The floating-point buffers of ``module`` (BatchNorm running statistics)."""
    return [b for b in module.buffers() if b.is_floating_point()]
