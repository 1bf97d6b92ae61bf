"""Under `torchrun`: each rank holds half the head's rows; writes OUT/rank<r>.pt with values and gradients."""

import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rftfast.ops.vocab_parallel import vocab_parallel_logprobs  # noqa: E402


def inputs(seed: int = 0, n: int = 37, h: int = 16, v: int = 50):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=g, dtype=torch.float64) * 2
    weight = torch.randn(v, h, generator=g, dtype=torch.float64)
    labels = torch.randint(0, v, (n,), generator=g)
    labels[::5] = -100
    upstream = torch.randn(n, generator=g, dtype=torch.float64)
    return hidden, weight, labels, upstream


if __name__ == "__main__":
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    hidden, weight, labels, upstream = inputs()
    rows = weight.shape[0] // world
    h = hidden.clone().requires_grad_()
    w = weight[rank * rows : (rank + 1) * rows].clone().requires_grad_()
    logp = vocab_parallel_logprobs(h, w, labels)
    (logp * upstream).sum().backward()
    torch.save(
        {"logp": logp.detach(), "grad_hidden": h.grad, "grad_weight": w.grad, "rows": rows},
        Path(sys.argv[1]) / f"rank{rank}.pt",
    )
    dist.destroy_process_group()
