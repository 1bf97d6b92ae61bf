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
        global _joined
        dist.init_process_group("nccl" if torch.device(device).type == "cuda" else "gloo")
        _joined = True
    return device


_joined = False  # whether `init` created the process group (one a caller set up is the caller's to end)


def leave() -> None:
    """End the process group `init` created. Left to the interpreter's exit, gloo's teardown can abort a
    finished process ("terminate called without an active exception"), failing the launch."""
    global _joined
    if _joined and dist.is_initialized():
        dist.destroy_process_group()
    _joined = False


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


def shard(items: Sequence[T], part: int | None = None, parts: int | None = None) -> list[T]:
    """Share `part` of `parts` (default: this rank of the world): every parts-th item from `part`, so the
    shares are balanced and `gather` restores the original order."""
    part, parts = (rank(), world_size()) if part is None else (part, parts)
    return list(items[part::parts])


def gather(local: Sequence[T], part: int | None = None, parts: int | None = None) -> list[T]:
    """Undo `shard`: every share merged back into the original order, on every rank. Ranks holding the
    same `part` (a tensor-parallel group of one vLLM data-parallel replica) hold the same share; one is kept."""
    if not active():
        return list(local)
    part, parts = (rank(), world_size()) if part is None else (part, parts)
    received: list = [None] * world_size()
    dist.all_gather_object(received, (part, list(local)))
    shares = dict(received)
    merged = []
    for i in range(max(len(s) for s in shares.values())):
        merged.extend(shares[p][i] for p in range(parts) if i < len(shares[p]))
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
