"""One run on several processes with torchrun (torch.distributed): who am I, which slice is mine,
and gathering what the ranks computed. Without torchrun (WORLD_SIZE unset) everything here is a no-op.

    torchrun --standalone --nproc_per_node 2 train.py --seed 0 ...

Each step's global batch (--batch-size images per domain) is drawn from (seed, epoch) exactly as in
a one-process run and sliced by rank, so a run is the same run for any number of processes, up to
BatchNorm (per process unless --sync-bn) and float noise. Rank 0 alone scores checkpoints and writes files.
"""

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from submission.errors import KitError


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def on(self) -> bool:
        return self.world > 1


def ranks_from_env() -> Ranks:
    return Ranks(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))


def setup(device: torch.device) -> tuple[Ranks, torch.device]:
    """Join the process group torchrun set up (gloo on CPU, nccl on CUDA); one GPU per local rank."""
    r = ranks_from_env()
    if not r.on:
        return r, device
    if device.type == "cuda":
        if torch.cuda.device_count() <= r.local:
            raise KitError(f"local rank {r.local} has no GPU: {torch.cuda.device_count()} visible")
        torch.cuda.set_device(r.local)
        device = torch.device("cuda", r.local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return r, device


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(r: Ranks) -> None:
    if r.on:
        dist.barrier()


def shard(n: int, r: Ranks) -> np.ndarray:
    """This rank's contiguous share of range(n); concatenated in rank order they give range(n) back."""
    return np.array_split(np.arange(n), r.world)[r.rank]


def gather(array: np.ndarray, r: Ranks) -> np.ndarray:
    """Every rank's rows, concatenated in rank order (on every rank)."""
    if not r.on:
        return array
    parts = [None] * r.world
    dist.all_gather_object(parts, array)
    return np.concatenate(parts)


def broadcast(obj, r: Ranks):
    """Rank 0's object on every rank."""
    if not r.on:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
