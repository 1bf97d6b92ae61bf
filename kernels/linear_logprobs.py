"""Fused linear head + log-softmax gather: per-token log-probs without the M x V logits.

logits z = (hidden @ weight.T + bias) / temperature, optionally z = softcap * tanh(z / softcap);
logp[i] = z[i, labels[i]] - logsumexp(z[i, :]).

Forward: one program per block of BLOCK_M tokens walks the vocabulary in BLOCK_V tiles, each tile a
K-loop of ``tl.dot`` over the hidden size with fp32 accumulation, folded into an online (running max,
running sum) log-sum-exp whose sum leaves the label's own term out, so that the host can finish with
log1p and keep a confident token's tiny log-prob exact. An optional second set of rows (``ref_hidden``)
reuses every weight tile.
Backward: one program per (token block, vocab block) recomputes its logits tile, forms dz in fp32 and
scatters dz @ W into grad_hidden and dz^T @ h into grad_weight with fp32 atomics. Only the gradients
asked for are formed (a frozen head under LoRA skips the weight's product, its atomics and its V x H
buffer), the rule the torch backend follows through `needs_input_grad`.
"""

import torch
import triton
import triton.language as tl

# Finite stand-in for -inf: exp(NEG_BIG - m) underflows to 0, and NEG_BIG - NEG_BIG is 0, never NaN.
NEG_BIG: tl.constexpr = tl.constexpr(-1e30)


@triton.jit
def _tanh_and_grad(x):
    """(tanh(x), 1 - tanh(x)**2) from e = exp(-2|x|) <= 1: never overflows, needs no tl.tanh (missing on
    some backends/versions), and the derivative 4e / (1 + e)**2 keeps full relative precision where tanh
    saturates; 1 - t*t would cancel to garbage there."""
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -t, t), 4.0 * e / ((1.0 + e) * (1.0 + e))


@triton.jit
def _dot(a, b, acc, DOT_PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    # The CPU interpreter multiplies bf16 tiles as their raw uint16 bits, so it gets fp32 copies instead;
    # exact, since bf16/fp16 products are exact in fp32 and accumulation is fp32 on the GPU too.
    if UPCAST:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    return tl.dot(a, b, acc, input_precision=DOT_PRECISION)


@triton.jit
def _finish_logits(acc, bias, v_mask, inv_temp, softcap, HAS_SOFTCAP: tl.constexpr):
    """fp32 matmul tile -> (z, dcap): tempered and capped logits with NEG_BIG in padded vocab columns, and
    the cap's derivative dz/d(raw / temperature) for the backward (1 when uncapped; unused in forward)."""
    z = (acc + bias[None, :]) * inv_temp
    dcap = 1.0
    if HAS_SOFTCAP:
        t, dcap = _tanh_and_grad(z / softcap)
        z = softcap * t
    return tl.where(v_mask[None, :], z, NEG_BIG), dcap


@triton.jit
def _linear_logprobs_fwd_kernel(
    h_ptr,
    r_ptr,
    w_ptr,
    b_ptr,
    lab_ptr,
    zlab_ptr,
    max_ptr,
    rest_ptr,
    ref_zlab_ptr,
    ref_max_ptr,
    ref_rest_ptr,
    M,
    V,
    H,
    stride_hm,
    stride_rm,
    stride_wv,
    inv_temp,
    softcap,
    HAS_BIAS: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr,
    HAS_REF: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pid = tl.program_id(0)
    # int64 row offsets: M * H and V * H can exceed 2**31 for long batches / big vocabularies.
    offs_m = (pid * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    m_mask = offs_m < M
    labels = tl.load(lab_ptr + offs_m, mask=m_mask, other=0)

    # Running state of the online log-sum-exp, and the picked label logit, for policy (and reference) rows.
    # The sum leaves the label's own term out: for a confident token (label = max) 1 + rest would round
    # rest away, so the host finishes with log1p (see _finish_rows).
    run_max = tl.full((BLOCK_M,), NEG_BIG, dtype=tl.float32)
    run_sum = tl.zeros((BLOCK_M,), dtype=tl.float32)
    z_label = tl.zeros((BLOCK_M,), dtype=tl.float32)
    ref_max = tl.full((BLOCK_M,), NEG_BIG, dtype=tl.float32)
    ref_sum = tl.zeros((BLOCK_M,), dtype=tl.float32)
    ref_label = tl.zeros((BLOCK_M,), dtype=tl.float32)

    for v0 in range(0, V, BLOCK_V):
        offs_v = v0 + tl.arange(0, BLOCK_V)
        v_mask = offs_v < V
        # The policy and reference rows share each weight tile: one W load, two dots.
        acc = tl.zeros((BLOCK_M, BLOCK_V), dtype=tl.float32)
        ref_acc = tl.zeros((BLOCK_M, BLOCK_V), dtype=tl.float32)
        for k0 in range(0, H, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            k_mask = offs_k < H
            wt = tl.load(
                w_ptr + offs_v[None, :].to(tl.int64) * stride_wv + offs_k[:, None],
                mask=v_mask[None, :] & k_mask[:, None],
                other=0.0,
            )
            hk_mask = m_mask[:, None] & k_mask[None, :]
            h = tl.load(h_ptr + offs_m[:, None] * stride_hm + offs_k[None, :], mask=hk_mask, other=0.0)
            acc = _dot(h, wt, acc, DOT_PRECISION, UPCAST)
            if HAS_REF:
                r = tl.load(r_ptr + offs_m[:, None] * stride_rm + offs_k[None, :], mask=hk_mask, other=0.0)
                ref_acc = _dot(r, wt, ref_acc, DOT_PRECISION, UPCAST)

        bias = tl.zeros((BLOCK_V,), dtype=tl.float32)
        if HAS_BIAS:
            bias = tl.load(b_ptr + offs_v, mask=v_mask, other=0.0).to(tl.float32)
        is_label = offs_v[None, :] == labels[:, None]

        z, _ = _finish_logits(acc, bias, v_mask, inv_temp, softcap, HAS_SOFTCAP)
        # Every tile has >= 1 valid column, so new_max is a real logit and both exps are well defined.
        new_max = tl.maximum(run_max, tl.max(z, axis=1))
        run_sum = run_sum * tl.exp(run_max - new_max) + tl.sum(
            tl.where(is_label, 0.0, tl.exp(z - new_max[:, None])), axis=1
        )
        run_max = new_max
        z_label += tl.sum(tl.where(is_label, z, 0.0), axis=1)

        if HAS_REF:
            zr, _ = _finish_logits(ref_acc, bias, v_mask, inv_temp, softcap, HAS_SOFTCAP)
            new_max = tl.maximum(ref_max, tl.max(zr, axis=1))
            ref_sum = ref_sum * tl.exp(ref_max - new_max) + tl.sum(
                tl.where(is_label, 0.0, tl.exp(zr - new_max[:, None])), axis=1
            )
            ref_max = new_max
            ref_label += tl.sum(tl.where(is_label, zr, 0.0), axis=1)

    tl.store(zlab_ptr + offs_m, z_label, mask=m_mask)
    tl.store(max_ptr + offs_m, run_max, mask=m_mask)
    tl.store(rest_ptr + offs_m, run_sum, mask=m_mask)
    if HAS_REF:
        tl.store(ref_zlab_ptr + offs_m, ref_label, mask=m_mask)
        tl.store(ref_max_ptr + offs_m, ref_max, mask=m_mask)
        tl.store(ref_rest_ptr + offs_m, ref_sum, mask=m_mask)


@triton.jit
def _linear_logprobs_bwd_kernel(
    h_ptr,
    w_ptr,
    b_ptr,
    lab_ptr,
    lse_ptr,
    g_ptr,
    lg_ptr,
    gh_ptr,
    gw_ptr,
    gb_ptr,
    M,
    V,
    H,
    stride_hm,
    stride_wv,
    inv_temp,
    softcap,
    HAS_BIAS: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr,
    HAS_LABEL_GRAD: tl.constexpr,
    NEED_GH: tl.constexpr,
    NEED_GW: tl.constexpr,
    NEED_GB: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_v = tl.program_id(1)
    offs_m = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    offs_v = (pid_v * BLOCK_V + tl.arange(0, BLOCK_V)).to(tl.int64)
    m_mask = offs_m < M
    v_mask = offs_v < V

    # Recompute this logits tile exactly as the forward did (same K order, same fp32 accumulation).
    acc = tl.zeros((BLOCK_M, BLOCK_V), dtype=tl.float32)
    for k0 in range(0, H, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        k_mask = offs_k < H
        h = tl.load(
            h_ptr + offs_m[:, None] * stride_hm + offs_k[None, :], mask=m_mask[:, None] & k_mask[None, :], other=0.0
        )
        wt = tl.load(
            w_ptr + offs_v[None, :] * stride_wv + offs_k[:, None], mask=v_mask[None, :] & k_mask[:, None], other=0.0
        )
        acc = _dot(h, wt, acc, DOT_PRECISION, UPCAST)
    bias = tl.zeros((BLOCK_V,), dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(b_ptr + offs_v, mask=v_mask, other=0.0).to(tl.float32)
    z, dcap = _finish_logits(acc, bias, v_mask, inv_temp, softcap, HAS_SOFTCAP)

    labels = tl.load(lab_ptr + offs_m, mask=m_mask, other=0)
    lse = tl.load(lse_ptr + offs_m, mask=m_mask, other=0.0)
    # Padded rows get g = 0 and padded columns are masked, so their dz is exactly 0 (no atomics pollution).
    g = tl.load(g_ptr + offs_m, mask=m_mask, other=0.0).to(tl.float32)
    prob = tl.exp(tl.minimum(z - lse[:, None], 0.0))  # z <= lse up to rounding; the clamp keeps it <= 1
    is_label = offs_v[None, :] == labels[:, None]
    if HAS_LABEL_GRAD:  # the host's g * (1 - p_label) = -g * expm1(logp): exact where p_label rounds to 1
        lg = tl.load(lg_ptr + offs_m, mask=m_mask, other=0.0)
        dz = tl.where(is_label, lg[:, None], -g[:, None] * prob)
    else:
        dz = g[:, None] * (is_label.to(tl.float32) - prob)
    dz = tl.where(m_mask[:, None] & v_mask[None, :], dz * dcap * inv_temp, 0.0)

    if NEED_GB:
        tl.atomic_add(gb_ptr + offs_v, tl.sum(dz, axis=0), mask=v_mask)
    # Feed the tensor cores in the input dtype (as a bf16 matmul would); accumulation stays fp32.
    dz_in = dz.to(h_ptr.dtype.element_ty)
    # grad_hidden[m, k] += sum_v dz[m, v] W[v, k];  grad_weight[v, k] += sum_m dz[m, v] h[m, k]
    for k0 in range(0, H, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        k_mask = offs_k < H
        if NEED_GH:
            hk_mask = m_mask[:, None] & k_mask[None, :]
            w = tl.load(
                w_ptr + offs_v[:, None] * stride_wv + offs_k[None, :], mask=v_mask[:, None] & k_mask[None, :], other=0.0
            )
            gh = _dot(dz_in, w, None, DOT_PRECISION, UPCAST)
            tl.atomic_add(gh_ptr + offs_m[:, None] * H + offs_k[None, :], gh, mask=hk_mask)
        if NEED_GW:
            wk_mask = v_mask[:, None] & k_mask[None, :]
            h = tl.load(
                h_ptr + offs_m[:, None] * stride_hm + offs_k[None, :], mask=m_mask[:, None] & k_mask[None, :], other=0.0
            )
            gw = _dot(tl.trans(dz_in), h, None, DOT_PRECISION, UPCAST)
            tl.atomic_add(gw_ptr + offs_v[:, None] * H + offs_k[None, :], gw, mask=wk_mask)


def _launch_config(t: torch.Tensor):
    """Block sizes: small tiles keep the CPU interpreter fast; 64/128/64 feeds H100/H200 tensor cores.
    fp32 inputs use IEEE dots: tf32 would cost ~1e-3 relative error in the log-probs, which policy ratios
    exp(logp - old_logp) amplify. bf16/fp16 products are exact in fp32 whatever the precision flag."""
    precision = "ieee" if t.dtype == torch.float32 or not t.is_cuda else "tf32"
    if t.is_cuda:
        return dict(
            BLOCK_M=64, BLOCK_V=128, BLOCK_K=64, DOT_PRECISION=precision, UPCAST=False, num_warps=8, num_stages=3
        )
    return dict(BLOCK_M=16, BLOCK_V=32, BLOCK_K=32, DOT_PRECISION=precision, UPCAST=True)


def linear_logprobs_forward(hidden, weight, labels, bias=None, temperature=1.0, softcap=None, ref_hidden=None):
    """hidden [M,H], weight [V,H] (same float dtype: fp32/bf16/fp16), labels [M] int64 all in [0,V)
    (already compacted: no ignore_index here), bias [V] or None, ref_hidden [M,H] or None.
    Returns (logp fp32[M], lse fp32[M], ref_logp fp32[M] or None).
    logits z = (hidden @ weight.T + bias) / temperature, then if softcap: z = softcap * tanh(z / softcap).
    logp[i] = z[i, labels[i]] - logsumexp(z[i, :]).  lse is that logsumexp (saved for backward).
    When ref_hidden is given, the reference log-probs under the SAME weight are computed in the same
    kernel: each weight tile is loaded once and used for both the policy and the reference rows
    (the LoRA/PEFT case where reference and policy share the head)."""
    hidden, weight, labels = hidden.contiguous(), weight.contiguous(), labels.contiguous()
    bias = bias.contiguous() if bias is not None else None
    ref_hidden = ref_hidden.contiguous() if ref_hidden is not None else None
    M, H = hidden.shape
    V = weight.shape[0]
    has_ref = ref_hidden is not None
    # Per row: the label's logit, the row max and the sum of exp(z - max) over the other columns.
    f32 = dict(dtype=torch.float32, device=hidden.device)
    parts = torch.empty(6 if has_ref else 3, M, **f32)
    if M > 0:
        cfg = _launch_config(hidden)
        grid = (triton.cdiv(M, cfg["BLOCK_M"]),)
        # Unused pointer arguments get a harmless stand-in; the constexpr flags compile their uses away.
        ref_parts = parts[3:] if has_ref else parts
        _linear_logprobs_fwd_kernel[grid](
            hidden,
            ref_hidden if has_ref else hidden,
            weight,
            bias if bias is not None else weight,
            labels,
            parts[0],
            parts[1],
            parts[2],
            ref_parts[0],
            ref_parts[1],
            ref_parts[2],
            M,
            V,
            H,
            hidden.stride(0),
            ref_hidden.stride(0) if has_ref else 0,
            weight.stride(0),
            1.0 / float(temperature),
            float(softcap) if softcap else 1.0,
            HAS_BIAS=bias is not None,
            HAS_SOFTCAP=bool(softcap),
            HAS_REF=has_ref,
            **cfg,
        )
    logp, lse = _finish_rows(*parts[:3])
    ref_logp = _finish_rows(*parts[3:])[0] if has_ref else None
    return logp, lse, ref_logp


def _finish_rows(label_logit, row_max, rest):
    """(logp, lse) from the kernel's per-row parts: log Σ exp(z - max) = log1p(rest + expm1(label - max)),
    which keeps a confident token's logp (≈ -rest, far below fp32's eps next to 1) exact; the same
    formula as `rftfast.ops.head.log_softmax_parts`. Done here in torch for its accurate log1p and expm1."""
    shifted = label_logit - row_max
    log_sum = torch.log1p(rest + torch.expm1(shifted))
    return shifted - log_sum, row_max + log_sum


def linear_logprobs_backward(
    hidden,
    weight,
    labels,
    lse,
    grad_logp,
    bias=None,
    temperature=1.0,
    softcap=None,
    logp=None,
    *,
    need_hidden=True,
    need_weight=True,
    need_bias=True,
):
    """Gradients of sum_i grad_logp[i] * logp[i] with respect to hidden, weight and bias.
    Returns (grad_hidden [M,H] in hidden.dtype, grad_weight [V,H] in weight.dtype, grad_bias [V] in bias.dtype);
    each is None when not asked for (`need_*` False; grad_bias also without a bias), and is then not computed.
    dz[i,v] = grad_logp[i] * (onehot(labels[i])[v] - exp(z[i,v] - lse[i])); then through softcap (multiply by
    1 - tanh(raw/softcap)**2) and the temperature (divide by temperature). With the forward's `logp`, the
    label's entry grad_logp * (1 - p) is taken as -grad_logp * expm1(logp), exact where p rounds to 1."""
    hidden, weight, labels = hidden.contiguous(), weight.contiguous(), labels.contiguous()
    lse, grad_logp = lse.contiguous(), grad_logp.contiguous()
    bias = bias.contiguous() if bias is not None else None
    label_grad = (-grad_logp * torch.expm1(logp.to(torch.float32))).contiguous() if logp is not None else None
    M, H = hidden.shape
    V = weight.shape[0]
    need_hidden, need_weight, need_bias = bool(need_hidden), bool(need_weight), bool(need_bias and bias is not None)
    # fp32 buffers for the atomics, only for the gradients asked for; cast once at the end.
    f32 = dict(dtype=torch.float32, device=hidden.device)
    gh = torch.zeros(M, H, **f32) if need_hidden else None
    gw = torch.zeros(V, H, **f32) if need_weight else None
    gb = torch.zeros(V, **f32) if need_bias else None
    if M > 0 and (need_hidden or need_weight or need_bias):
        cfg = _launch_config(hidden)
        grid = (triton.cdiv(M, cfg["BLOCK_M"]), triton.cdiv(V, cfg["BLOCK_V"]))
        # Unused pointer arguments get a harmless stand-in; the constexpr flags compile their uses away.
        _linear_logprobs_bwd_kernel[grid](
            hidden,
            weight,
            bias if bias is not None else weight,
            labels,
            lse,
            grad_logp,
            label_grad if label_grad is not None else grad_logp,
            *(g if g is not None else lse for g in (gh, gw, gb)),
            M,
            V,
            H,
            hidden.stride(0),
            weight.stride(0),
            1.0 / float(temperature),
            float(softcap) if softcap else 1.0,
            HAS_BIAS=bias is not None,
            HAS_SOFTCAP=bool(softcap),
            HAS_LABEL_GRAD=label_grad is not None,
            NEED_GH=need_hidden,
            NEED_GW=need_weight,
            NEED_GB=need_bias,
            **cfg,
        )
    return (
        gh.to(hidden.dtype) if gh is not None else None,
        gw.to(weight.dtype) if gw is not None else None,
        gb.to(bias.dtype) if gb is not None else None,
    )
