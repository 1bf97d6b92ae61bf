"""Plain float64 torch references: materialised logits, log_softmax, autograd. Slow and obviously right."""

import torch

from rftfast.ops.logprob import IGNORE_INDEX


def logprobs_f64(hidden, weight, labels, bias=None, temperature=1.0, softcap=None, ignore_index=IGNORE_INDEX):
    """Per-token label log-probs in float64 (0 where ignored); differentiable in its float64 inputs."""
    z = hidden @ weight.T
    if bias is not None:
        z = z + bias
    z = z / temperature
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    keep = labels != ignore_index
    lp = z.log_softmax(-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return torch.where(keep, lp, torch.zeros_like(lp))


def f64_leaf(t):
    return t.detach().to(torch.float64).requires_grad_()


def assert_close(actual, expected, atol, rtol=1e-4, what=""):
    actual, expected = actual.detach().to(torch.float64), expected.detach().to(torch.float64)
    assert torch.isfinite(actual).all(), f"{what}: non-finite values"
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol, msg=lambda m: f"{what}: {m}")
