"""linear_logprobs / sequence_logprobs against the float64 reference, gradients included."""

import pytest
import torch

from rftfast import linear_logprobs, linear_logprobs_with_reference, sequence_lengths, sequence_logprobs
from rftfast.ops import head
from tests.support.reference import IGNORE_INDEX, assert_close, f64_leaf, logprobs_f64

TOL = {torch.float32: 2e-5, torch.bfloat16: 2e-2}
# Where the Triton backend runs: CUDA, else the CPU interpreter (tests/conftest.py sets TRITON_INTERPRET=1
# when there is no GPU; with one, the triton backend refuses CPU tensors).
TRITON_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _inputs(n, h, v, dtype, seed, scale=1.0, ignore_frac=0.25, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    hidden = (torch.randn(n, h, generator=g) * scale).to(dtype)
    weight = (torch.randn(v, h, generator=g) / h**0.5).to(dtype)
    bias = torch.randn(v, generator=g).to(dtype)
    labels = torch.randint(0, v, (n,), generator=g)
    labels[torch.rand(n, generator=g) < ignore_frac] = IGNORE_INDEX
    upstream = torch.randn(n, generator=g)
    leaves = [t.to(device).requires_grad_() for t in (hidden, weight, bias)]
    return (*leaves, labels.to(device), upstream.to(device))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("temperature,softcap", [(1.0, None), (0.7, None), (1.3, 5.0)])
def test_values_and_gradients_match_float64(dtype, with_bias, temperature, softcap):
    hidden, weight, bias, labels, upstream = _inputs(53, 24, 97, dtype, seed=hash((dtype, with_bias, softcap)) % 1000)
    bias = bias if with_bias else None
    out = linear_logprobs(hidden, weight, labels, bias=bias, temperature=temperature, softcap=softcap, chunk_rows=16)
    assert out.dtype == torch.float32 and out.shape == (53,)
    params = [hidden, weight] + ([bias] if with_bias else [])
    grads = torch.autograd.grad((out * upstream).sum(), params)

    ref_params = [f64_leaf(p) for p in params]
    ref = logprobs_f64(ref_params[0], ref_params[1], labels, ref_params[2] if with_bias else None, temperature, softcap)
    ref_grads = torch.autograd.grad((ref * upstream.double()).sum(), ref_params)
    tol = TOL[dtype]
    assert_close(out, ref, atol=tol, what="logp")
    assert (out[labels == IGNORE_INDEX] == 0).all()
    for name, g, r in zip(["hidden", "weight", "bias"], grads, ref_grads):
        assert g.dtype == dtype
        assert_close(g, r, atol=tol * max(1.0, float(r.abs().max())), what=f"grad {name}")


def test_huge_logits_stay_finite_and_exact():
    # Logits up to about ±1e4: a naive exp would overflow; the online log-sum-exp must not.
    hidden, weight, _, labels, upstream = _inputs(19, 16, 61, torch.float32, seed=3, scale=1.0)
    with torch.no_grad():
        weight.mul_(1e4 / (hidden @ weight.T).abs().max())
    out = linear_logprobs(hidden, weight, labels, chunk_rows=8)
    gh, gw = torch.autograd.grad((out * upstream).sum(), (hidden, weight))
    h64, w64 = f64_leaf(hidden), f64_leaf(weight)
    ref = logprobs_f64(h64, w64, labels)
    rh, rw = torch.autograd.grad((ref * upstream.double()).sum(), (h64, w64))
    assert float((hidden @ weight.T).detach().abs().max()) > 9e3
    assert_close(out, ref, atol=1e-2, rtol=1e-5, what="logp at 1e4")
    assert_close(gh, rh, atol=1e-2 * float(rh.abs().max()), what="grad hidden at 1e4")
    assert_close(gw, rw, atol=1e-2 * float(rw.abs().max()), what="grad weight at 1e4")


def test_all_ignored_gives_zeros_and_zero_gradients():
    hidden, weight, _, labels, _ = _inputs(7, 8, 11, torch.float32, seed=4)
    out = linear_logprobs(hidden, weight, torch.full_like(labels, IGNORE_INDEX))
    assert (out == 0).all()
    (out.sum()).backward()
    assert hidden.grad is None or (hidden.grad == 0).all()


def test_custom_ignore_index_and_int32_labels():
    hidden, weight, _, labels, _ = _inputs(29, 8, 13, torch.float32, seed=5, ignore_frac=0.0)
    labels[::3] = 7  # 7 is a valid class id, but here it is the ignore index
    out = linear_logprobs(hidden, weight, labels.to(torch.int32), ignore_index=7)
    ref = logprobs_f64(hidden.double(), weight.double(), labels, ignore_index=7)
    assert_close(out, ref, atol=2e-5, what="ignore_index=7")


def test_policy_and_reference_in_one_call():
    hidden, weight, bias, labels, upstream = _inputs(41, 16, 37, torch.float32, seed=6)
    ref_hidden = torch.randn_like(hidden)
    # Shared head (LoRA/PEFT case): one pass over the weight for both.
    logp, ref = linear_logprobs_with_reference(hidden, weight, labels, ref_hidden, bias=bias)
    assert not ref.requires_grad
    assert_close(logp, linear_logprobs(hidden, weight, labels, bias=bias), atol=1e-6, what="policy")
    assert_close(ref, linear_logprobs(ref_hidden, weight, labels, bias=bias), atol=1e-6, what="reference")
    gh, gw = torch.autograd.grad((logp * upstream).sum(), (hidden, weight))
    h64, w64, b64 = f64_leaf(hidden), f64_leaf(weight), bias.detach().double()
    rh, rw = torch.autograd.grad((logprobs_f64(h64, w64, labels, b64) * upstream.double()).sum(), (h64, w64))
    assert_close(gh, rh, atol=2e-5, what="grad hidden")
    assert_close(gw, rw, atol=2e-5, what="grad weight")
    # A distinct reference head.
    ref_weight = torch.randn_like(weight)
    _, ref2 = linear_logprobs_with_reference(hidden, weight, labels, ref_hidden, ref_weight)
    assert_close(ref2, logprobs_f64(ref_hidden.double(), ref_weight.double(), labels), atol=2e-5, what="ref head")


def test_sequence_logprobs_padded_packed_and_average():
    g = torch.Generator().manual_seed(7)
    b, t, h, v = 3, 10, 8, 19
    hidden = torch.randn(b, t, h, generator=g, requires_grad=True)
    weight = torch.randn(v, h, generator=g)
    labels = torch.randint(0, v, (b, t), generator=g)
    labels[0, :4] = IGNORE_INDEX
    labels[2, 7:] = IGNORE_INDEX
    per_token = logprobs_f64(hidden.double().reshape(-1, h), weight.double(), labels.reshape(-1)).reshape(b, t)
    summed = sequence_logprobs(hidden, weight, labels)
    assert_close(summed, per_token.sum(1), atol=1e-4, what="padded sum")
    lengths = sequence_lengths(labels)
    assert lengths.tolist() == [6, 10, 7]
    assert_close(
        sequence_logprobs(hidden, weight, labels, average=True),
        per_token.sum(1) / lengths,
        atol=1e-5,
        what="padded average",
    )
    # Packed: drop the padding, concatenate, describe with cu_seqlens.
    keep = torch.ones_like(labels, dtype=torch.bool)
    keep[2, 7:] = False
    packed_h, packed_y = hidden[keep], labels[keep]
    cu = torch.tensor([0, 10, 20, 27])
    assert_close(
        sequence_logprobs(packed_h, weight, packed_y, cu_seqlens=cu), per_token.sum(1), atol=1e-4, what="packed sum"
    )
    summed.sum().backward()
    assert hidden.grad[2, 7:].abs().sum() == 0  # ignored positions get no gradient


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_backend_matches_torch_backend(dtype):
    pytest.importorskip("triton")
    hidden, weight, bias, labels, upstream = _inputs(21, 32, 45, dtype, seed=8, device=TRITON_DEVICE)
    outs = {}
    for backend in ("torch", "triton"):
        out = linear_logprobs(hidden, weight, labels, bias=bias, temperature=0.9, softcap=4.0, backend=backend)
        outs[backend] = (out, *torch.autograd.grad((out * upstream).sum(), (hidden, weight, bias)))
    tol = TOL[dtype]
    for name, a, b in zip(["logp", "hidden", "weight", "bias"], outs["triton"], outs["torch"]):
        assert_close(a, b, atol=tol * max(1.0, float(b.abs().max())), what=f"triton vs torch {name}")


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("frozen", ["hidden", "weight", "bias"])
def test_both_backends_form_only_the_gradients_asked_for(backend, frozen, monkeypatch):
    """One rule for both backends: a gradient is formed only for an input that requires one (a frozen
    head under LoRA saves the weight gradient's matmul), and those formed are the full computation's."""
    if backend == "triton":
        pytest.importorskip("triton")
    device = TRITON_DEVICE if backend == "triton" else "cpu"
    hidden, weight, bias, labels, upstream = _inputs(21, 32, 45, torch.float32, seed=9, device=device)
    names = ("hidden", "weight", "bias")
    inputs = dict(zip(names, (hidden, weight, bias)))
    inputs[frozen].requires_grad_(False)
    formed = []  # per backward call (or chunk): which of hidden, weight, bias got a gradient
    if backend == "triton":
        import rftfast.kernels.linear_logprobs as kernels

        def spy(*args, real=kernels.linear_logprobs_backward, **kwargs):
            grads = real(*args, **kwargs)
            formed.append(tuple(g is not None for g in grads))
            return grads

        monkeypatch.setattr(kernels, "linear_logprobs_backward", spy)
    else:

        def spy(grad_logits, rows, weight, buffers, want_hidden=True, real=head.accumulate_head_grads):
            grad_weight, grad_bias = buffers
            formed.append((want_hidden, grad_weight is not None, grad_bias is not None))
            return real(grad_logits, rows, weight, buffers, want_hidden)

        monkeypatch.setattr(head, "accumulate_head_grads", spy)
    out = linear_logprobs(hidden, weight, labels, bias=bias, backend=backend)
    wanted = [t for t in (hidden, weight, bias) if t.requires_grad]
    grads = torch.autograd.grad((out * upstream).sum(), wanted)
    assert formed and set(formed) == {tuple(name != frozen for name in names)}
    ref_inputs = {name: f64_leaf(t) if t.requires_grad else t.double() for name, t in inputs.items()}
    ref = logprobs_f64(ref_inputs["hidden"], ref_inputs["weight"], labels, ref_inputs["bias"])
    ref_grads = torch.autograd.grad((ref * upstream.double()).sum(), [ref_inputs[n] for n in names if n != frozen])
    for g, r in zip(grads, ref_grads, strict=True):
        assert_close(g, r, atol=TOL[torch.float32] * max(1.0, float(r.abs().max())), what=f"{frozen} frozen")


# ----------------------------------------------------------------------------- confident tokens

U32 = 2.0**-24  # fp32 unit round-off
U64 = 2.0**-53


def _confident_rows(n, v, margin, seed):
    """Logits that are exact in fp32 (multiples of 1/256) reached through one-hot hidden states, so the
    matmul adds no error and what is measured is the log-softmax's own; each label is `margin` above
    the rest of its row."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randint(-1024, 1025, (n, v), generator=g).double() / 256
    labels = torch.randint(0, v, (n,), generator=g)
    logits[torch.arange(n), labels] = logits.max(1).values + margin
    return torch.eye(n), logits.T.contiguous().float(), labels, logits, torch.randn(n, generator=g)


def _exact_logp_and_dz(logits, labels, upstream):
    """float64 log-prob of the label as -log1p(Σ_{v≠y} exp(z_v - z_y)): every term keeps its relative
    precision however small (log_softmax's 1 + Σ loses what is under 2^-53 of it), and the logit
    gradient g·(onehot - p) with the label's entry g·(1 - p_y) = -g·expm1(logp_y)."""
    rows = torch.arange(logits.shape[0])
    shifted = logits - logits[rows, labels][:, None]
    terms = shifted.exp()
    terms[rows, labels] = 0
    logp = -torch.log1p(terms.sum(1))
    dz = -upstream.double()[:, None] * terms * logp.exp()[:, None]
    dz[rows, labels] = -upstream.double() * torch.expm1(logp)
    return logp, dz


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("margin", [16.0, 20.0, 30.0])
def test_confident_tokens_keep_relative_precision(backend, margin):
    """A logit margin of 16 makes logp ≈ -8e-7·(V-1)/7: below fp32's eps next to 1, so 1 + Σ rounds
    it away (the old head returned exactly 0). It must come out to fp32 relative precision, and so
    must the label's gradient 1 - p, which ORPO multiplies by ~1/|mean logp|."""
    if backend == "triton":
        pytest.importorskip("triton")
    device = "cuda" if backend == "triton" and torch.cuda.is_available() else "cpu"  # else the interpreter
    n, v = 12, 64
    hidden, weight, labels, logits, upstream = _confident_rows(n, v, margin, seed=int(margin))
    hidden, weight = hidden.to(device).requires_grad_(), weight.to(device).requires_grad_()
    out = linear_logprobs(hidden, weight, labels.to(device), backend=backend)
    gh, gw = torch.autograd.grad((out * upstream.to(device)).sum(), (hidden, weight))
    out, gh, gw = out.cpu(), gh.cpu(), gw.cpu()
    exact, dz = _exact_logp_and_dz(logits, labels, upstream)

    # Round-off of the fp32 path: up to V - 1 additions in the sum, a few ulps in exp/log1p/expm1, and
    # the (GPU: approximate) exp of arguments up to |z - max| and of z - lse, whose rounding is |lse|·u.
    lse = logits.logsumexp(1)
    spread = (logits - lse[:, None]).abs().max()
    rel = 4 * U32 * (v + 8 + float(lse.abs().max()) + float(spread))
    assert (out < 0).all()
    assert_close(out, exact, atol=0, rtol=rel, what=f"logp at margin {margin}")
    # float64 log_softmax agrees within its own round-off (a few 2^-53 next to 1: 1e-4 relative at margin 30).
    lsm = logits.log_softmax(1)[torch.arange(n), labels]
    assert_close(out, lsm, atol=8 * U64 * float(lse.abs().max() + 1), rtol=rel, what="logp vs float64 log_softmax")
    # Weight gradient: d/dW[v, i] = dz[i, v] (one-hot hidden), entry by entry, the tiny label entries included.
    assert_close(gw.T, dz, atol=0, rtol=rel, what=f"logit grad at margin {margin}")
    # Hidden gradient: dz @ W sums V products of either sign; bound by the sum of their magnitudes.
    bound = (rel + 2 * v * U32) * (dz.abs() @ logits.T.abs()) + 1e-45
    assert ((gh.double() - dz @ logits.T).abs() <= bound).all(), "hidden grad at margin"
