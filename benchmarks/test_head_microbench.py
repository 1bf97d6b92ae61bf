"""pytest-benchmark microbenchmarks of the head (run: `pytest benchmarks --benchmark-only`).

Forward + backward of per-token log-probs at N=2048, H=512, V=16000 (fp32, CPU): rftfast's
chunked backend against the materialised-logits baseline, in the same run.
"""

import pytest
import torch

from rftfast import linear_logprobs

N, H, V = 2048, 512, 16000


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(N, H, generator=g).requires_grad_()
    weight = (torch.randn(V, H, generator=g) / H**0.5).requires_grad_()
    labels = torch.randint(0, V, (N,), generator=g)
    return hidden, weight, labels


def _materialised(hidden, weight, labels):
    return (hidden @ weight.T).log_softmax(-1).gather(-1, labels[:, None]).squeeze(-1)


@pytest.mark.parametrize("impl", ["rftfast", "materialised"])
def test_logprobs_forward_backward(benchmark, inputs, impl):
    hidden, weight, labels = inputs
    fn = linear_logprobs if impl == "rftfast" else _materialised

    def step():
        out = fn(hidden, weight, labels)
        torch.autograd.grad(out.sum(), (hidden, weight))

    benchmark.group = "linear log-probs fwd+bwd, N=2048 H=512 V=16000"
    benchmark.pedantic(step, rounds=3, warmup_rounds=1)
