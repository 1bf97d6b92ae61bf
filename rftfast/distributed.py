"""Several processes under `torchrun` or `accelerate launch`: who does what.

Every rank runs every stage. Training is data-parallel through torch's own engines (DDP, or FSDP2's
`fully_shard`); search, deficiency scoring and evaluation split their records across ranks and
gather the results in input order. Rank 0 alone writes files (data, checkpoints, manifest, report);
the others wait at a barrier and read them. With one process every helper here is a no-op, so the
single-process code path is the same code.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def launched() -> bool:
    """True when a launcher started several processes (it sets WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: str) -> str:
    """Join the process group the launcher describes (NCCL on CUDA, else gloo); returns this rank's device."""
    if not launched():
        return device
    if torch.device(device).type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.device(device).type == "cuda" else "gloo")
    return device


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share: every world_size-th item from its rank (balanced, and order-preserving once gathered)."""
    return list(items[rank():: world_size()])


def gather(local: Sequence[T]) -> list[T]:
    """Undo `shard`: every rank's share, merged back into the original order, on every rank."""
    if not active():
        return list(local)
    parts: list = [None] * world_size()
    dist.all_gather_object(parts, list(local))
    merged = []
    for i in range(max(len(p) for p in parts)):
        merged.extend(p[i] for p in parts if i < len(p))
    return merged


def all_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sum over ranks (float64, so counts and loss sums stay exact enough to compare)."""
    if not active():
        return list(values)
    device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast(obj: T) -> T:
    """Rank 0's `obj` on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
