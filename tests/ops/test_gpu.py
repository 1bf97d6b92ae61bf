"""GPU checks: the compiled Triton kernels and the fused loss on CUDA (skipped without a GPU).

Run on a GPU machine by `bash benchmarks/gpu/run.sh` (its `tests` part), or alone:
`python -m pytest -m gpu tests/ops/test_gpu.py`. Errors are measured as ‖out − ref‖ / ‖ref‖ against float64
references (or the CPU path) and, with RFTFAST_GPU_REPORT set to a file, appended to it as JSON lines.
"""

import functools
import json
import os

import pytest
import torch

from rftfast import FusedDPOLoss, linear_logprobs, linear_logprobs_with_reference
from tests.support.reference import assert_close, f64_leaf, logprobs_f64

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

H_LLAMA, V_LLAMA = 4096, 128256  # Llama-3 8B's head
# Relative-norm bounds. fp32: IEEE dots in Triton, full fp32 matmuls in torch. bf16: products are exact in fp32,
# but the backward feeds dz to the tensor cores in bf16 and the grads come back in bf16.
BOUNDS = {torch.float32: dict(logp=1e-5, grad=1e-4, loss=1e-5), torch.bfloat16: dict(logp=1e-4, grad=1e-2, loss=1e-2)}


@pytest.fixture(autouse=True)
def _free_cuda_memory():
    yield
    torch.cuda.empty_cache()


def relerr(actual, expected) -> float:
    a, e = actual.detach().double().flatten().cpu(), expected.detach().double().flatten().cpu()
    den = float(e.norm()) or float(a.norm()) or 1.0
    return float((a - e).norm()) / den


def record(case: str, **errors) -> None:
    path = os.environ.get("RFTFAST_GPU_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"case": case, **{k: float(v) for k, v in errors.items()}}) + "\n")


def check(case: str, bounds: dict, **pairs) -> None:
    """Every (actual, expected, kind) in `pairs` finite and within bounds[kind]; all errors recorded first."""
    errors = {name: relerr(a, e) for name, (a, e, _) in pairs.items()}
    record(case, **errors)
    for name, (a, _, kind) in pairs.items():
        assert torch.isfinite(a).all(), f"{case}: {name} has non-finite values"
        assert errors[name] <= bounds[kind], f"{case}: {name} relative error {errors[name]:.2e} > {bounds[kind]:.0e}"


# ----------------------------------------------------------------------------- Triton kernels, small shapes


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


# ----------------------------------------------------------------------------- Triton kernels, real shapes

# (dtype, N, H, V, softcap, temperature, bias, ignore_index, margin of the confident rows or None)
REAL = [
    pytest.param(torch.bfloat16, 512, H_LLAMA, V_LLAMA, None, 1.0, False, -100, None, id="bf16-llama3"),
    pytest.param(
        torch.bfloat16, 512, H_LLAMA, V_LLAMA, 30.0, 0.7, True, -100, 24.0, id="bf16-llama3-softcap-temp-bias-confident"
    ),
    pytest.param(torch.float32, 256, H_LLAMA, V_LLAMA, None, 1.0, False, -100, 24.0, id="fp32-llama3-confident"),
    pytest.param(torch.float32, 300, 2048, 50257, 50.0, 1.3, True, -1, None, id="fp32-odd-softcap-temp-bias"),
    pytest.param(torch.bfloat16, 777, 1536, 32003, 30.0, 1.0, False, -1, 24.0, id="bf16-odd-softcap-confident"),
]


def _head_inputs(seed, dtype, n, h, v, bias, ignore_index, margin):
    g = torch.Generator(device="cuda").manual_seed(seed)
    hidden = torch.randn(n, h, device="cuda", generator=g)
    weight = torch.randn(v, h, device="cuda", generator=g) / h**0.5
    labels = torch.randint(0, v, (n,), device="cuda", generator=g)
    if margin is not None:
        # Every third row points at its label's weight row: that logit is `margin`, the others ~N(0, margin/sqrt(H)),
        # so the token is confident and its log-prob tiny (about -V·exp(-margin), -5e-6 at 24 and V=128256).
        w_label = weight[labels[::3]]
        hidden[::3] = w_label * (margin / w_label.norm(dim=1, keepdim=True) ** 2)
    labels[1::5] = ignore_index
    b = (0.5 * torch.randn(v, device="cuda", generator=g)).to(dtype).requires_grad_() if bias else None
    return hidden.to(dtype).requires_grad_(), weight.to(dtype).requires_grad_(), b, labels


@pytest.mark.parametrize("dtype,n,h,v,softcap,temperature,bias,ignore_index,margin", REAL)
def test_triton_real_shapes_match_float64(request, dtype, n, h, v, softcap, temperature, bias, ignore_index, margin):
    hidden, weight, b, labels = _head_inputs(1, dtype, n, h, v, bias, ignore_index, margin)
    upstream = torch.randn(n, device="cuda", generator=torch.Generator(device="cuda").manual_seed(2))
    head = dict(temperature=temperature, softcap=softcap, ignore_index=ignore_index)
    out = linear_logprobs(hidden, weight, labels, bias=b, backend="triton", **head)
    params = (hidden, weight) + ((b,) if b is not None else ())
    grads = torch.autograd.grad((out * upstream).sum(), params)

    leaves = [f64_leaf(t) for t in params]
    ref = logprobs_f64(leaves[0], leaves[1], labels, leaves[2] if b is not None else None, **head)
    ref_grads = torch.autograd.grad((ref * upstream.double()).sum(), leaves)

    ignored = labels == ignore_index
    assert bool((out[ignored] == 0).all()), "ignored labels must give exactly 0"
    assert bool((grads[0][ignored] == 0).all()), "ignored rows must get exactly 0 gradient"
    # A confident token's log-prob is tiny: it must keep its own relative precision, not only the batch's.
    confident = ~ignored & (ref.detach() > -1e-2) & (ref.detach() < 0)
    if margin is not None:
        assert int(confident.sum()) >= n // 5, "the confident rows should be confident"
        worst = float(((out.double() - ref.detach()).abs() / ref.detach().abs())[confident].max())
        record(request.node.callspec.id, confident_tokens=int(confident.sum()), confident_max_relerr=worst)
        assert worst <= 1e-3, f"a confident token's log-prob is off by {worst:.2e} of itself"
    names = ("grad_hidden", "grad_weight", "grad_bias")
    check(
        request.node.callspec.id,
        BOUNDS[dtype],
        logp=(out, ref, "logp"),
        **{names[i]: (grads[i], ref_grads[i], "grad") for i in range(len(params))},
    )


def test_triton_with_reference_real_shape_matches_float64():
    """The reference rows ride in the same kernel as the policy rows (each weight tile read once)."""
    hidden, weight, _, labels = _head_inputs(3, torch.bfloat16, 512, H_LLAMA, V_LLAMA, False, -100, None)
    ref_hidden = (hidden.detach().float() + 0.1 * torch.randn(hidden.shape, device="cuda")).to(torch.bfloat16)
    logp, ref_logp = linear_logprobs_with_reference(hidden, weight, labels, ref_hidden, backend="triton")
    upstream = torch.randn(labels.shape[0], device="cuda")
    gh, gw = torch.autograd.grad((logp * upstream).sum(), (hidden, weight))
    h64, w64 = f64_leaf(hidden), f64_leaf(weight)
    want = logprobs_f64(h64, w64, labels)
    want_ref = logprobs_f64(ref_hidden.double(), w64.detach(), labels)
    rh, rw = torch.autograd.grad((want * upstream.double()).sum(), (h64, w64))
    assert not ref_logp.requires_grad
    check(
        "bf16-llama3-with-reference",
        BOUNDS[torch.bfloat16],
        logp=(logp, want, "logp"),
        ref_logp=(ref_logp, want_ref, "logp"),
        grad_hidden=(gh, rh, "grad"),
        grad_weight=(gw, rw, "grad"),
    )


# ----------------------------------------------------------------------------- FusedDPOLoss: CUDA against CPU


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


DPO_CASES = {
    "sigmoid": dict(loss_type="sigmoid"),
    "ipo-softcap-temp-nll": dict(loss_type="ipo", beta=0.5, temperature=0.8, softcap=30.0, nll_weight=0.5),
}
PAIRS, T, H_MID, V_MID = 4, 256, 1024, 32003


def _dpo_batch(seed=4):
    """fp32 CPU tensors; the prompt (a random length per row) carries no labels."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(2 * PAIRS, T, H_MID, generator=g)
    ref_hidden = hidden + 0.1 * torch.randn(hidden.shape, generator=g)
    weight = torch.randn(V_MID, H_MID, generator=g) / H_MID**0.5
    labels = torch.randint(0, V_MID, (2 * PAIRS, T), generator=g)
    for row in range(2 * PAIRS):
        labels[row, : int(torch.randint(8, T // 2, (1,), generator=g))] = -100
    return hidden, ref_hidden, weight, labels


def _dpo_run(case, strategy, device, dtype, backend):
    hidden, ref_hidden, weight, labels = _dpo_batch()
    h = hidden.to(device, dtype).requires_grad_()
    w = weight.to(device, dtype).requires_grad_()
    fn = FusedDPOLoss(**DPO_CASES[case], strategy=strategy, backend=backend)
    out = fn(h, w, labels.to(device), ref_hidden=ref_hidden.to(device, dtype))
    out.loss.backward()
    return {
        "loss": out.loss.detach().cpu(),
        "chosen_logps": out.chosen_logps.cpu(),
        "rejected_logps": out.rejected_logps.cpu(),
        "grad_hidden": h.grad.cpu(),
        "grad_weight": w.grad.cpu(),
    }


@functools.cache
def _cpu_result(case, strategy, dtype):
    """The CPU path (torch backend, fp32) on the same values as the CUDA run (a bf16 batch upcast exactly)."""
    hidden, ref_hidden, weight, labels = _dpo_batch()
    h = hidden.to(dtype).float().requires_grad_()
    w = weight.to(dtype).float().requires_grad_()
    fn = FusedDPOLoss(**DPO_CASES[case], strategy=strategy, backend="torch")
    out = fn(h, w, labels, ref_hidden=ref_hidden.to(dtype).float())
    out.loss.backward()
    return {
        "loss": out.loss.detach(),
        "chosen_logps": out.chosen_logps,
        "rejected_logps": out.rejected_logps,
        "grad_hidden": h.grad,
        "grad_weight": w.grad,
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("strategy", ["fused", "recompute"])
@pytest.mark.parametrize("case", list(DPO_CASES))
def test_fused_dpo_loss_cuda_matches_cpu(case, strategy, dtype):
    got = _dpo_run(case, strategy, "cuda", dtype, "triton")
    want = _cpu_result(case, strategy, dtype)
    kinds = {
        "loss": "loss",
        "chosen_logps": "logp",
        "rejected_logps": "logp",
        "grad_hidden": "grad",
        "grad_weight": "grad",
    }
    check(
        f"dpo-{case}-{strategy}-{str(dtype)[6:]}-vs-cpu",
        BOUNDS[dtype],
        **{k: (got[k], want[k], kinds[k]) for k in kinds},
    )


# ----------------------------------------------------------------------------- FusedDPOLoss: real shape, float64


@pytest.mark.parametrize("strategy", ["fused", "recompute"])
def test_fused_dpo_loss_real_shape_matches_float64(strategy):
    pairs, t, beta = 2, 256, 0.1
    g = torch.Generator(device="cuda").manual_seed(5)
    hidden = torch.randn(2 * pairs, t, H_LLAMA, device="cuda", generator=g)
    ref_hidden = (hidden + 0.1 * torch.randn(hidden.shape, device="cuda", generator=g)).bfloat16()
    hidden = hidden.bfloat16().requires_grad_()
    weight = (torch.randn(V_LLAMA, H_LLAMA, device="cuda", generator=g) / H_LLAMA**0.5).bfloat16().requires_grad_()
    labels = torch.randint(0, V_LLAMA, (2 * pairs, t), device="cuda", generator=g)
    labels[:, : t // 4] = -100
    out = FusedDPOLoss("sigmoid", beta=beta, strategy=strategy, backend="triton")(
        hidden, weight, labels, ref_hidden=ref_hidden
    )
    out.loss.backward()

    h64, w64 = f64_leaf(hidden), f64_leaf(weight)
    seq = logprobs_f64(h64.flatten(0, 1), w64, labels.flatten()).view(labels.shape).sum(-1)
    with torch.no_grad():
        ref = logprobs_f64(ref_hidden.double().flatten(0, 1), w64, labels.flatten()).view(labels.shape).sum(-1)
    delta = (seq[:pairs] - ref[:pairs]) - (seq[pairs:] - ref[pairs:])
    loss = -torch.nn.functional.logsigmoid(beta * delta).mean()
    rh, rw = torch.autograd.grad(loss, (h64, w64))
    check(
        f"dpo-llama3-{strategy}-bf16-vs-float64",
        BOUNDS[torch.bfloat16],
        loss=(out.loss, loss, "loss"),
        chosen_logps=(out.chosen_logps, seq[:pairs], "logp"),
        rejected_logps=(out.rejected_logps, seq[pairs:], "logp"),
        grad_hidden=(hidden.grad, rh, "grad"),
        grad_weight=(weight.grad, rw, "grad"),
    )
