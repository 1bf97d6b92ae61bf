"""GPU checks: the compiled Triton kernels and the fused loss on CUDA (skipped without a GPU)."""

import pytest
import torch

from rftfast import FusedDPOLoss, linear_logprobs
from tests.reference import assert_close, f64_leaf, logprobs_f64

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("softcap", [None, 30.0])
def test_triton_kernels_on_gpu_match_float64(dtype, tol, softcap):
    g = torch.Generator(device="cuda").manual_seed(0)
    n, h, v = 1000, 256, 5003  # deliberately not multiples of any block size
    hidden = torch.randn(n, h, device="cuda", generator=g).to(dtype).requires_grad_()
    weight = (torch.randn(v, h, device="cuda", generator=g) / h**0.5).to(dtype).requires_grad_()
    labels = torch.randint(0, v, (n,), device="cuda", generator=g)
    labels[::7] = -100
    upstream = torch.randn(n, device="cuda", generator=g)
    out = linear_logprobs(hidden, weight, labels, softcap=softcap, backend="triton")
    gh, gw = torch.autograd.grad((out * upstream).sum(), (hidden, weight))
    h64, w64 = f64_leaf(hidden), f64_leaf(weight)
    ref = logprobs_f64(h64, w64, labels, softcap=softcap)
    rh, rw = torch.autograd.grad((ref * upstream.double()).sum(), (h64, w64))
    assert_close(out, ref, atol=tol, what="logp")
    assert_close(gh, rh, atol=tol * float(rh.abs().max()), what="grad hidden")
    assert_close(gw, rw, atol=tol * float(rw.abs().max()), what="grad weight")


def test_fused_dpo_on_gpu_matches_cpu():
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(8, 64, 128, generator=g)
    weight = torch.randn(4099, 128, generator=g) / 128**0.5
    ref_hidden = hidden + 0.1 * torch.randn(hidden.shape, generator=g)
    labels = torch.randint(0, 4099, (8, 64), generator=g)
    labels[:, :10] = -100
    results = []
    for device in ("cpu", "cuda"):
        h = hidden.to(device).requires_grad_()
        w = weight.to(device).requires_grad_()
        out = FusedDPOLoss("sigmoid")(h, w, labels.to(device), ref_hidden=ref_hidden.to(device))
        out.loss.backward()
        results.append((out.loss.cpu(), h.grad.cpu(), w.grad.cpu()))
    for name, a, b in zip(["loss", "grad hidden", "grad weight"], *results):
        assert_close(a, b, atol=1e-4 * max(1.0, float(b.abs().max())), what=name)
