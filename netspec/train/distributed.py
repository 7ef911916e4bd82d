"""Running the same command on several processes (``torchrun --nproc_per_node=N``).

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK (plus MASTER_ADDR/PORT); when WORLD_SIZE
is above 1 we join the process group from those variables: NCCL between GPUs, gloo on
CPU. Without torchrun everything here degrades to a single process and no collective is
ever called, so the one-process path has no distributed dependency at all.

Rules the rest of the package keeps: every rank runs the same steps (same number of
batches, from DistributedSampler), only rank 0 prints and writes files, and a collective
is called by every rank in the same order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

#: test hook: when set to a folder, every rank writes its final weights there as
#: ``rank{R}.safetensors``, so a test can check all ranks ended identical. The one
#: exception to "only rank 0 writes files"; nothing else reads it.
DUMP_RANKS_ENV = "NETSPEC_TEST_DUMP_RANKS"


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def env_world() -> tuple[int, int, int]:
    """(world size, rank, local rank) from torchrun's variables; (1, 0, 0) without."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


def init(device: torch.device) -> Dist:
    """Join the process group when launched by torchrun with more than one process."""
    world, rank, local = env_world()
    if world <= 1:
        return Dist()
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        # env:// reads MASTER_ADDR, MASTER_PORT, RANK and WORLD_SIZE; passing the device
        # lets NCCL bind this rank's GPU eagerly instead of guessing on the first collective
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, init_method="env://", **kwargs)
    return Dist(rank=rank, world=world, local_rank=local, backend=backend)


def shutdown(d: Dist) -> None:
    if d.active and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensors: list[torch.Tensor], d: Dist) -> None:
    """Sum in place across ranks (the tensors must live where the backend wants them:
    on this rank's GPU for NCCL)."""
    if d.active:
        for t in tensors:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)


def gather_equal(t: torch.Tensor, d: Dist, device: torch.device) -> list[torch.Tensor]:
    """Every rank's copy of a same-shaped tensor, on the host, in rank order (for RNG
    states, which are uint8 tensors of a fixed length)."""
    if not d.active:
        return [t.cpu()]
    # NCCL only moves GPU tensors; gloo is fine with host ones
    src = t.to(device) if d.backend == "nccl" else t.cpu()
    out = [torch.empty_like(src) for _ in range(d.world)]
    dist.all_gather(out, src)
    return [o.cpu() for o in out]


def barrier(d: Dist) -> None:
    if d.active:
        dist.barrier()


def wrap_ddp(model: nn.Module, d: Dist, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model`` (itself when single-process). DDP
    broadcasts rank 0's parameters and buffers at construction, so all ranks start
    identical; gradients are averaged in backward, so parameters stay identical."""
    if not d.active:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    # broadcast_buffers=False: by default DDP copies rank 0's BN statistics over every
    # rank's before each forward, so only rank 0's batches would ever count; instead each
    # rank averages its own batches and ``average_buffers`` merges them after each epoch
    return DDP(model, device_ids=ids, broadcast_buffers=False)


def average_buffers(model: nn.Module, d: Dist) -> None:
    """Average the floating-point buffers (BN running mean and variance) over ranks, so
    every rank evaluates and saves the same statistics, drawn from every rank's batches.
    (Integer buffers — BN's step counter — are equal on all ranks already.)"""
    if not d.active:
        return
    for buf in model.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)
            buf.div_(d.world)


def dump_rank_weights(tensors: dict, d: Dist) -> None:
    """The test hook of ``DUMP_RANKS_ENV`` (see there)."""
    folder = os.environ.get(DUMP_RANKS_ENV)
    if not folder:
        return
    from safetensors.numpy import save_file

    save_file(tensors, str(Path(folder) / f"rank{d.rank}.safetensors"))
