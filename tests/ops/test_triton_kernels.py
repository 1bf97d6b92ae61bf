"""Fused linear log-prob kernels vs a float64 torch reference (Triton interpreter on CPU when no GPU)."""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # must precede the first triton import

import pytest  # noqa: E402

pytest.importorskip("triton")

from rftfast.kernels.linear_logprobs import linear_logprobs_backward, linear_logprobs_forward  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _inputs(M, H, V, dtype, bias, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = (torch.randn(M, H, generator=g) * scale).to(dtype)
    w = (torch.randn(V, H, generator=g) * scale / H**0.5).to(dtype)
    b = (torch.randn(V, generator=g) * scale).to(dtype) if bias else None
    labels = torch.randint(0, V, (M,), generator=g)
    return h.to(DEVICE), w.to(DEVICE), b.to(DEVICE) if b is not None else None, labels.to(DEVICE)


def _reference(h, w, labels, b=None, temperature=1.0, softcap=None, grad_logp=None):
    """float64 logp / lse from materialised logits; grads of sum(grad_logp * logp) if grad_logp is given."""
    h64, w64 = h.double().cpu().requires_grad_(), w.double().cpu().requires_grad_()
    b64 = b.double().cpu().requires_grad_() if b is not None else None
    z = h64 @ w64.T
    if b64 is not None:
        z = z + b64
    z = z / temperature
    if softcap:
        z = softcap * torch.tanh(z / softcap)
    lse = torch.logsumexp(z, dim=-1)
    logp = torch.log_softmax(z, dim=-1).gather(1, labels.cpu()[:, None]).squeeze(1)
    grads = None
    if grad_logp is not None:
        (logp * grad_logp.double().cpu()).sum().backward()
        grads = (h64.grad, w64.grad, b64.grad if b64 is not None else None)
    return logp.detach(), lse.detach(), grads


def _close(actual, expected, rtol, atol):
    torch.testing.assert_close(actual.double().cpu(), expected, rtol=rtol, atol=atol)


# (M, H, V, dtype, bias, temperature, softcap): odd sizes so every mask path (rows, vocab, hidden) is hit.
CASES = [
    (1, 16, 50, torch.float32, False, 1.0, None),
    (7, 40, 97, torch.float32, True, 0.7, None),
    (33, 40, 97, torch.float32, True, 1.3, 2.0),
    (33, 16, 50, torch.bfloat16, False, 1.0, None),
    (7, 40, 97, torch.bfloat16, True, 0.7, 3.0),
    (17, 40, 50, torch.float16, True, 1.0, None),
]


@pytest.mark.parametrize("M,H,V,dtype,bias,temperature,softcap", CASES)
def test_forward_backward_match_float64_reference(M, H, V, dtype, bias, temperature, softcap):
    torch.manual_seed(0)
    h, w, b, labels = _inputs(M, H, V, dtype, bias, scale=2.0)
    grad_logp = torch.randn(M, device=DEVICE)
    ref_logp, ref_lse, (ref_gh, ref_gw, ref_gb) = _reference(h, w, labels, b, temperature, softcap, grad_logp)

    logp, lse, none = linear_logprobs_forward(h, w, labels, b, temperature, softcap)
    assert none is None and logp.dtype == lse.dtype == torch.float32 and logp.shape == (M,)
    # Inputs are exactly representable, products are exact in fp32, so only accumulation rounding remains.
    _close(logp, ref_logp, rtol=1e-5, atol=1e-4)
    _close(lse, ref_lse, rtol=1e-5, atol=1e-4)

    gh, gw, gb = linear_logprobs_backward(h, w, labels, lse, grad_logp, b, temperature, softcap)
    assert gh.dtype == h.dtype and gw.dtype == w.dtype and gh.shape == h.shape and gw.shape == w.shape
    # Low-precision runs feed dz to the matmul in the input dtype and round the result to it.
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    _close(gh, ref_gh, **tol)
    _close(gw, ref_gw, **tol)
    if bias:
        assert gb.dtype == b.dtype
        _close(gb, ref_gb, **tol)
    else:
        assert gb is None


@pytest.mark.parametrize("dtype,softcap", [(torch.float32, None), (torch.bfloat16, 4.0)])
def test_ref_hidden_shares_weight(dtype, softcap):
    torch.manual_seed(1)
    M, H, V = 33, 40, 97
    h, w, b, labels = _inputs(M, H, V, dtype, bias=True, scale=2.0, seed=1)
    ref_h = (h.float() + 0.5 * torch.randn(M, H, device=DEVICE)).to(dtype)

    logp, lse, ref_logp = linear_logprobs_forward(h, w, labels, b, 0.9, softcap, ref_hidden=ref_h)
    alone, alone_lse, _ = linear_logprobs_forward(h, w, labels, b, 0.9, softcap)
    # The reference rows must not perturb the policy result at all.
    torch.testing.assert_close(logp, alone, rtol=0, atol=0)
    torch.testing.assert_close(lse, alone_lse, rtol=0, atol=0)
    _close(ref_logp, _reference(ref_h, w, labels, b, 0.9, softcap)[0], rtol=1e-5, atol=1e-4)
    _close(logp, _reference(h, w, labels, b, 0.9, softcap)[0], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("softcap", [None, 50.0])
def test_large_logits_stay_finite(softcap):
    torch.manual_seed(2)
    M, H, V = 7, 16, 97
    h, w, b, labels = _inputs(M, H, V, torch.float32, bias=True, scale=60.0, seed=2)
    logits = h.double() @ w.double().T + b.double()
    assert logits.abs().max() > 1e4  # the point of the test: logits around +-1e4

    grad_logp = torch.randn(M, device=DEVICE)
    ref_logp, ref_lse, (ref_gh, ref_gw, ref_gb) = _reference(h, w, labels, b, 1.0, softcap, grad_logp)
    logp, lse, ref = linear_logprobs_forward(h, w, labels, b, softcap=softcap, ref_hidden=h)
    for t in (logp, lse, ref):
        assert torch.isfinite(t).all()
    # fp32 rounding of ~1e4-sized logits: ~1e-3 absolute.
    _close(logp, ref_logp, rtol=1e-5, atol=1e-2)
    _close(lse, ref_lse, rtol=1e-5, atol=1e-2)
    _close(ref, ref_logp, rtol=1e-5, atol=1e-2)

    grads = linear_logprobs_backward(h, w, labels, lse, grad_logp, b, softcap=softcap)
    for got, want in zip(grads, (ref_gh, ref_gw, ref_gb), strict=True):
        assert torch.isfinite(got).all()
        _close(got, want, rtol=1e-4, atol=1e-5 * want.abs().max().item())


@pytest.mark.parametrize("need", [(True, False, True), (False, True, True), (True, True, False), (False, False, False)])
def test_backward_forms_only_the_gradients_asked_for(need):
    """need = (hidden, weight, bias): a gradient not asked for is None (not computed), the others unchanged."""
    torch.manual_seed(4)
    M, H, V = 17, 40, 50
    h, w, b, labels = _inputs(M, H, V, torch.float32, bias=True, seed=4)
    grad_logp = torch.randn(M, device=DEVICE)
    _, lse, _ = linear_logprobs_forward(h, w, labels, b)
    full = linear_logprobs_backward(h, w, labels, lse, grad_logp, b)
    part = linear_logprobs_backward(
        h, w, labels, lse, grad_logp, b, need_hidden=need[0], need_weight=need[1], need_bias=need[2]
    )
    for wanted, got, want in zip(need, part, full, strict=True):
        if wanted:
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)  # atomics: any order on a GPU
        else:
            assert got is None


def test_non_contiguous_inputs_and_empty_batch():
    torch.manual_seed(3)
    h, w, b, labels = _inputs(9, 40, 50, torch.float32, bias=False, seed=3)
    h_strided = torch.stack([h, -h], dim=2).reshape(9, 80)[:, ::2]  # == h, strides (80, 2)
    logp, lse, _ = linear_logprobs_forward(h_strided, w, labels)
    _close(logp, _reference(h, w, labels)[0], rtol=1e-5, atol=1e-4)

    logp, lse, ref = linear_logprobs_forward(h[:0], w, labels[:0], ref_hidden=h[:0])
    assert logp.shape == lse.shape == ref.shape == (0,)
    gh, gw, gb = linear_logprobs_backward(h[:0], w, labels[:0], lse, logp, b)
    assert gh.shape == (0, 40) and (gw == 0).all() and gb is None
