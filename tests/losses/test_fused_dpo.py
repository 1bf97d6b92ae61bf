"""FusedDPOLoss (both strategies) against a float64 materialised-logits DPO, and against Liger."""

import pytest
import torch

from rftfast import FusedDPOLoss
from rftfast.losses import Pairs, preference_losses
from rftfast.losses.objectives import ObjectiveParams
from tests.support.reference import IGNORE_INDEX, assert_close, f64_leaf, logprobs_f64


def _batch(b=3, t=11, h=16, v=41, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(2 * b, t, h, generator=g).to(dtype).requires_grad_()
    weight = (torch.randn(v, h, generator=g) / h**0.5).to(dtype).requires_grad_()
    bias = (torch.randn(v, generator=g) * 0.1).to(dtype).requires_grad_()
    ref_hidden = hidden.detach() + 0.3 * torch.randn(hidden.shape, generator=g).to(dtype)
    labels = torch.randint(0, v, (2 * b, t), generator=g)
    for row in range(2 * b):  # a prompt of random length, then the completion
        labels[row, : int(torch.randint(1, t // 2, (1,), generator=g))] = IGNORE_INDEX
    return hidden, weight, bias, ref_hidden, labels


def _reference_dpo(hidden, weight, labels, ref_hidden, ref_weight, bias, loss_fn, **head):
    """Float64: materialised logits, sequence sums, the module's objective; loss, grads and seq log-probs."""
    h64, w64 = f64_leaf(hidden), f64_leaf(weight)
    b64 = f64_leaf(bias) if bias is not None else None
    tok = logprobs_f64(h64, w64, labels, b64, **head)
    seq = tok.sum(1)
    p = seq.shape[0] // 2
    lengths = (labels != IGNORE_INDEX).sum(1).double()
    ref = None
    if ref_hidden is not None:
        ref = logprobs_f64(
            ref_hidden.double(), ref_weight.double(), labels, b64.detach() if b64 is not None else None, **head
        ).sum(1)
    pairs = Pairs(
        seq[:p], seq[p:], None if ref is None else ref[:p], None if ref is None else ref[p:], lengths[:p], lengths[p:]
    )
    chosen = labels[:p] != IGNORE_INDEX
    nll = -(tok[:p] * chosen).sum() / chosen.sum()
    loss = loss_fn._pair_losses(pairs).mean() + loss_fn.nll_weight * nll
    params = [h64, w64] + ([b64] if b64 is not None else [])
    return loss, torch.autograd.grad(loss, params), seq.detach(), ref


CASES = [
    dict(loss_type="sigmoid"),
    dict(loss_type="sigmoid", label_smoothing=0.1, nll_weight=0.5),
    dict(loss_type="ipo", beta=0.5),
    dict(loss_type="simpo", gamma=0.3),
    dict(loss_type="orpo"),
    dict(loss_type="apo_zero"),
    dict(loss_type="sigmoid_norm"),
    dict(loss_type=["sigmoid", "bco_pair", "sppo_hard"], loss_weights=[1.0, 0.5, 0.01]),
    dict(loss_type="discopop", average_logprobs=True),
]
# aot couples pairs, so only the recompute strategy (and "auto", which picks it) applies.
STRATEGY_CASES = [(c, s) for c in CASES for s in ("fused", "recompute")] + [
    (dict(loss_type="aot"), "recompute"),
    (dict(loss_type="aot"), "auto"),
]


@pytest.mark.parametrize(
    "case,strategy", STRATEGY_CASES, ids=lambda c: str(c["loss_type"]) if isinstance(c, dict) else c
)
def test_matches_float64_reference(case, strategy):
    hidden, weight, bias, ref_hidden, labels = _batch(seed=len(str(case)))
    # A small group budget forces the fused strategy through several groups of pairs.
    fn = FusedDPOLoss(**case, strategy=strategy, group_bytes=4 * 41 * 24)
    ref_weight = weight.detach() + 0.01
    out = fn(hidden, weight, labels, ref_hidden=ref_hidden, ref_weight=ref_weight, bias=bias, ref_bias=bias.detach())
    grads = torch.autograd.grad(out.loss, (hidden, weight, bias))
    loss64, grads64, seq64, ref64 = _reference_dpo(hidden, weight, labels, ref_hidden, ref_weight, bias, fn)
    assert_close(out.loss, loss64, atol=1e-5, what="loss")
    for name, g, r in zip(["hidden", "weight", "bias"], grads, grads64):
        assert_close(g, r, atol=2e-5 * max(1.0, float(r.abs().max())), what=f"grad {name}")
    p = seq64.shape[0] // 2
    assert_close(out.chosen_logps, seq64[:p], atol=1e-4, what="chosen logps")
    assert_close(out.rejected_logps, seq64[p:], atol=1e-4, what="rejected logps")
    assert 0.0 <= float(out.reward_accuracy) <= 1.0
    assert_close(out.margins, out.chosen_rewards - out.rejected_rewards, atol=1e-7, what="margins")


@pytest.mark.parametrize("strategy", ["fused", "recompute"])
def test_reference_modes_agree(strategy):
    """ref_hidden with the shared head, a separate head equal to it, and precomputed ref_logps."""
    hidden, weight, _, ref_hidden, labels = _batch(seed=21)
    fn = FusedDPOLoss("sigmoid", beta=0.2, strategy=strategy)
    shared = fn(hidden, weight, labels, ref_hidden=ref_hidden)
    g_shared = torch.autograd.grad(shared.loss, (hidden, weight))
    separate = fn(hidden, weight, labels, ref_hidden=ref_hidden, ref_weight=weight.detach().clone())
    ref_seq = logprobs_f64(ref_hidden.double(), weight.detach().double(), labels).sum(1).float()
    pre = fn(hidden, weight, labels, ref_logps=ref_seq)
    g_pre = torch.autograd.grad(pre.loss, (hidden, weight))
    for other in (separate, pre):
        assert_close(other.loss, shared.loss, atol=1e-5, what="loss")
        assert_close(other.chosen_rewards, shared.chosen_rewards, atol=1e-5, what="rewards")
    for a, b in zip(g_pre, g_shared):
        assert_close(a, b, atol=1e-5, what="grads with precomputed reference")
    tup = fn(hidden, weight, labels, ref_logps=(ref_seq[:3], ref_seq[3:]))
    assert_close(tup.loss, pre.loss, atol=0, what="tuple ref_logps")


def test_packed_layout_with_pair_ids_matches_padded():
    hidden, weight, bias, ref_hidden, labels = _batch(b=3, seed=5)
    fn = FusedDPOLoss("sigmoid", beta=0.3, nll_weight=0.2)
    # Padded pair k is rows (k, k + 3). Packed, the sequences come interleaved; a pair's first one is chosen.
    order = [1, 0, 2, 4, 5, 3]
    pair_ids = torch.tensor([1, 0, 2, 1, 2, 0])
    lengths = [int(labels.shape[1]) - k for k in (0, 2, 1, 3, 0, 4)]  # ragged: cut padding off the end
    pieces_h = [hidden[r, :n] for r, n in zip(order, lengths)]
    pieces_r = [ref_hidden[r, :n] for r, n in zip(order, lengths)]
    pieces_y = [labels[r].clone() for r in order]
    for y, n in zip(pieces_y, lengths):
        y[n:] = IGNORE_INDEX
    cut = [y[:n] for y, n in zip(pieces_y, lengths)]
    # Labels beyond each cut must not count in the padded run either.
    padded_labels = labels.clone()
    for r, n in zip(order, lengths):
        padded_labels[r, n:] = IGNORE_INDEX
    padded = fn(hidden, weight, padded_labels, ref_hidden=ref_hidden, bias=bias)
    g_padded = torch.autograd.grad(padded.loss, (hidden, weight))
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
    packed = fn(
        torch.cat(pieces_h),
        weight,
        torch.cat(cut),
        ref_hidden=torch.cat(pieces_r),
        bias=bias,
        cu_seqlens=cu,
        pair_ids=pair_ids,
    )
    g_packed = torch.autograd.grad(packed.loss, (hidden, weight))
    assert_close(packed.loss, padded.loss, atol=1e-6, what="packed loss")
    assert_close(packed.chosen_logps, padded.chosen_logps, atol=1e-5, what="packed chosen logps")
    for a, b in zip(g_packed, g_padded):
        assert_close(a, b, atol=1e-6, what="packed grads")


def test_upstream_gradient_scales_and_no_grad_forward():
    hidden, weight, _, ref_hidden, labels = _batch(seed=9)
    fn = FusedDPOLoss("sigmoid", strategy="fused")
    out = fn(hidden, weight, labels, ref_hidden=ref_hidden)
    g1 = torch.autograd.grad(out.loss, weight)[0]
    out = fn(hidden, weight, labels, ref_hidden=ref_hidden)
    g3 = torch.autograd.grad(out.loss * 3.0, weight)[0]
    assert_close(g3, 3 * g1, atol=1e-6, what="scaled upstream grad")
    with torch.no_grad():
        evaluated = fn(hidden, weight, labels, ref_hidden=ref_hidden)
    assert_close(evaluated.loss, out.loss, atol=1e-6, what="no-grad loss")
    assert not evaluated.loss.requires_grad


def test_bf16_inputs():
    hidden, weight, _, ref_hidden, labels = _batch(seed=10, dtype=torch.bfloat16)
    fn = FusedDPOLoss("sigmoid", beta=0.5)
    out = fn(hidden, weight, labels, ref_hidden=ref_hidden)
    gh, gw = torch.autograd.grad(out.loss, (hidden, weight))
    assert gh.dtype == gw.dtype == torch.bfloat16
    loss64, grads64, *_ = _reference_dpo(hidden, weight, labels, ref_hidden, weight.detach(), None, fn)
    assert_close(out.loss, loss64, atol=1e-3, what="bf16 loss")
    assert_close(gw, grads64[1], atol=2e-2 * float(grads64[1].abs().max()), what="bf16 grad weight")


@pytest.mark.parametrize("strategy", ["fused", "recompute"])
@pytest.mark.parametrize("hidden_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("backward_inside", [False, True])
def test_inside_a_bf16_autocast_region(strategy, hidden_dtype, backward_inside):
    # A trainer's bf16 mode (TRL's, on CPU or GPU) calls the loss inside autocast: fp32 master weights, hidden
    # states in fp32 or, from an autocast model, in bf16. The loss must neither mix dtypes in its fp32 buffers
    # (index_copy_ raised) nor refuse the bf16 hidden states against the fp32 head, and must match the float64
    # reference at each precision, its gradients reaching the fp32 weight.
    hidden, weight, _, ref_hidden, labels = _batch(seed=21)
    fn = FusedDPOLoss("sigmoid", beta=0.5, strategy=strategy)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fn(hidden.to(hidden_dtype), weight, labels, ref_hidden=ref_hidden.to(hidden_dtype))
        if backward_inside:
            out.loss.backward()
    if not backward_inside:
        out.loss.backward()
    assert weight.grad.dtype == hidden.grad.dtype == torch.float32
    loss64, grads64, *_ = _reference_dpo(hidden, weight, labels, ref_hidden, weight.detach(), None, fn)
    exact = hidden_dtype == torch.float32
    assert_close(out.loss, loss64, atol=1e-5 if exact else 1e-2, what="loss under autocast")
    scale = float(grads64[1].abs().max())
    assert_close(weight.grad, grads64[1], atol=(1e-5 if exact else 2e-2) * scale, what="grad weight under autocast")


LIGER_CASES = ["sigmoid", "hinge", "nca_pair", "apo_down"]


@pytest.mark.parametrize("loss_type", LIGER_CASES)
def test_matches_liger_dpo(loss_type):
    liger = pytest.importorskip("liger_kernel.chunked_loss")
    hidden, weight, bias, ref_hidden, labels = _batch(seed=13)
    ref_weight = weight.detach() * 1.05
    theirs_fn = liger.LigerFusedLinearDPOLoss(beta=0.2, loss_type=loss_type, compiled=False)
    h2, w2 = hidden.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_()
    theirs, aux = theirs_fn(w2, h2, labels, bias.detach(), ref_hidden, ref_weight, bias.detach())
    theirs.backward()
    ours = FusedDPOLoss(loss_type, beta=0.2)(
        hidden, weight, labels, ref_hidden=ref_hidden, ref_weight=ref_weight, bias=bias.detach(), ref_bias=bias.detach()
    )
    ours.loss.backward()
    assert_close(ours.loss, theirs, atol=1e-5, what="loss vs Liger")
    assert_close(ours.chosen_logps, aux[0], atol=1e-4, what="chosen logps vs Liger")
    assert_close(ours.chosen_rewards, aux[-2], atol=1e-5, what="chosen rewards vs Liger")
    assert_close(hidden.grad, h2.grad, atol=1e-5, what="grad hidden vs Liger")
    assert_close(weight.grad, w2.grad, atol=1e-5, what="grad weight vs Liger")


@pytest.mark.parametrize("strategy", ["fused", "recompute"])
@pytest.mark.parametrize("average_logprobs", [False, True])
@pytest.mark.parametrize("loss_type", ["simpo", "orpo"])
def test_simpo_orpo_match_liger(loss_type, average_logprobs, strategy):
    """Liger's SimPO and ORPO length-average once (its average_log_prob=True), whatever our
    average_logprobs says (it used to divide a second time, silently), and
    report rewards β × the mean log-prob."""
    liger = pytest.importorskip("liger_kernel.chunked_loss")
    hidden, weight, _, _, labels = _batch(seed=17)
    kw = dict(average_logprobs=average_logprobs, strategy=strategy)
    if loss_type == "simpo":
        theirs_fn = liger.LigerFusedLinearSimPOLoss(beta=2.0, gamma=0.7, alpha=1.0, compiled=False)
        ours_fn = FusedDPOLoss("simpo", beta=2.0, gamma=0.7, nll_weight=1.0, **kw)
    else:
        theirs_fn = liger.LigerFusedLinearORPOLoss(beta=0.3, compiled=False)
        ours_fn = FusedDPOLoss("orpo", beta=0.3, **kw)  # nll_weight defaults to 1 for ORPO, as in the paper
    h2, w2 = hidden.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_()
    theirs, aux = theirs_fn(w2, h2, labels)
    theirs.backward()
    ours = ours_fn(hidden, weight, labels)
    ours.loss.backward()
    assert_close(ours.loss, theirs, atol=1e-5, what=f"{loss_type} loss vs Liger")
    assert_close(ours.nll, aux[4], atol=1e-5, what=f"{loss_type} NLL vs Liger")
    assert_close(ours.chosen_rewards, aux[5], atol=1e-5, what=f"{loss_type} chosen rewards vs Liger")
    assert_close(ours.rejected_rewards, aux[6], atol=1e-5, what=f"{loss_type} rejected rewards vs Liger")
    assert_close(hidden.grad, h2.grad, atol=1e-5, what="grad hidden vs Liger")
    assert_close(weight.grad, w2.grad, atol=1e-5, what="grad weight vs Liger")


@pytest.mark.parametrize("strategy", ["fused", "recompute"])
@pytest.mark.parametrize("loss_type", ["ipo", "sigmoid_norm"])
def test_average_logprobs_normalises_ipo_and_sigmoid_norm_once(loss_type, strategy):
    """TRL's DPO trainer length-normalises ipo and sigmoid_norm once; average_logprobs must not add a
    second division (it did, silently). Float64 through TRL's own loss code."""
    from tests.support.trl_oracle import trl_dpo_loss  # skips without TRL

    hidden, weight, _, ref_hidden, labels = _batch(seed=41)
    h64, w64 = f64_leaf(hidden), f64_leaf(weight)
    seq = logprobs_f64(h64, w64, labels).sum(1)
    ref = logprobs_f64(ref_hidden.double(), weight.detach().double(), labels).sum(1)
    lengths = (labels != IGNORE_INDEX).sum(1).double()
    p = seq.shape[0] // 2
    theirs = trl_dpo_loss(seq[:p], seq[p:], ref[:p], ref[p:], lengths[:p], lengths[p:], loss_type=loss_type, beta=0.5)
    rh, rw = torch.autograd.grad(theirs, (h64, w64))
    for average in (False, True):
        fn = FusedDPOLoss(loss_type, beta=0.5, strategy=strategy, average_logprobs=average)
        out = fn(hidden, weight, labels, ref_hidden=ref_hidden)
        gh, gw = torch.autograd.grad(out.loss, (hidden, weight))
        assert_close(out.loss, theirs, atol=1e-5, what=f"loss (average_logprobs={average})")
        assert_close(gh, rh, atol=2e-5 * float(rh.abs().max()), what=f"grad hidden (average_logprobs={average})")
        assert_close(gw, rw, atol=2e-5 * float(rw.abs().max()), what=f"grad weight (average_logprobs={average})")
        # Rewards: β × log-ratio, summed as in TRL's DPO trainer, or averaged when asked to.
        ratio = (seq - ref).detach() / (lengths if average else 1)
        assert_close(out.chosen_rewards, 0.5 * ratio[:p], atol=1e-5, what="chosen rewards")
        assert_close(out.rejected_rewards, 0.5 * ratio[p:], atol=1e-5, what="rejected rewards")


@pytest.mark.parametrize("average_logprobs", [False, True])
def test_average_logprobs_sigmoid_matches_liger_dpo(average_logprobs):
    liger = pytest.importorskip("liger_kernel.chunked_loss")
    hidden, weight, bias, ref_hidden, labels = _batch(seed=43)
    theirs_fn = liger.LigerFusedLinearDPOLoss(beta=0.2, compiled=False, average_log_prob=average_logprobs)
    h2, w2 = hidden.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_()
    theirs, aux = theirs_fn(w2, h2, labels, None, ref_hidden, weight.detach())
    theirs.backward()
    ours = FusedDPOLoss("sigmoid", beta=0.2, average_logprobs=average_logprobs)(
        hidden, weight, labels, ref_hidden=ref_hidden
    )
    ours.loss.backward()
    assert_close(ours.loss, theirs, atol=1e-5, what="loss vs Liger")
    assert_close(ours.chosen_rewards, aux[5], atol=1e-5, what="chosen rewards vs Liger")
    assert_close(ours.rejected_rewards, aux[6], atol=1e-5, what="rejected rewards vs Liger")
    assert_close(hidden.grad, h2.grad, atol=1e-5, what="grad hidden vs Liger")
    assert_close(weight.grad, w2.grad, atol=1e-5, what="grad weight vs Liger")


@pytest.mark.parametrize("average_logprobs", [False, True])
def test_reference_free_sigmoid_is_cpo_with_summed_rewards(average_logprobs):
    """Reference-free DPO objectives are CPO: Liger's CPO (and TRL's CPO trainer) report β × Σ logp, not
    β × the mean (as before), unless log-probs are averaged; cDPO label smoothing as in both."""
    liger = pytest.importorskip("liger_kernel.chunked_loss")
    hidden, weight, _, _, labels = _batch(seed=47)
    theirs_fn = liger.LigerFusedLinearCPOLoss(
        beta=0.2, alpha=1.0, label_smoothing=0.1, compiled=False, average_log_prob=average_logprobs
    )
    h2, w2 = hidden.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_()
    theirs, aux = theirs_fn(w2, h2, labels)
    theirs.backward()
    ours = FusedDPOLoss(
        "sigmoid", beta=0.2, label_smoothing=0.1, nll_weight=1.0, reference_free=True, average_logprobs=average_logprobs
    )(hidden, weight, labels)
    ours.loss.backward()
    lengths = (labels != IGNORE_INDEX).sum(1).float()
    p = lengths.shape[0] // 2
    expected = 0.2 * torch.cat([ours.chosen_logps, ours.rejected_logps]) / (lengths if average_logprobs else 1)
    assert_close(ours.chosen_rewards, expected[:p], atol=1e-6, what="chosen rewards")
    assert_close(ours.loss, theirs, atol=1e-5, what="loss vs Liger CPO")
    assert_close(ours.chosen_rewards, aux[5], atol=1e-5, what="chosen rewards vs Liger CPO")
    assert_close(ours.rejected_rewards, aux[6], atol=1e-5, what="rejected rewards vs Liger CPO")
    assert_close(hidden.grad, h2.grad, atol=1e-5, what="grad hidden vs Liger CPO")
    assert_close(weight.grad, w2.grad, atol=1e-5, what="grad weight vs Liger CPO")


@pytest.mark.parametrize("loss_type", ["sigmoid", "simpo"])
def test_reference_free_losses_and_rewards_match_trl_cpo(loss_type):
    """TRL's CPO trainer (its `cpo_loss`, run for real on float64 sequence log-probs): sigmoid on summed
    log-probs with summed rewards, SimPO on averaged ones with averaged rewards; cDPO smoothing in both."""
    cpo = pytest.importorskip("trl.experimental.cpo.cpo_trainer")
    hidden, weight, _, _, labels = _batch(seed=53)
    beta, gamma, eps = 0.4, 0.3, 0.1
    fn = FusedDPOLoss(loss_type, beta=beta, gamma=gamma, label_smoothing=eps, nll_weight=0.0, reference_free=True)
    out = fn(hidden, weight, labels)
    seq = logprobs_f64(hidden.detach().double(), weight.detach().double(), labels).sum(1)
    lengths = (labels != IGNORE_INDEX).sum(1).double()
    logps = seq / lengths if loss_type == "simpo" else seq  # CPO averages for simpo (and ipo) only
    p = seq.shape[0] // 2
    trainer = object.__new__(cpo.CPOTrainer)
    trainer.__dict__.update(
        alpha=0.0,
        beta=beta,
        loss_type=loss_type,
        label_smoothing=eps,
        simpo_gamma=gamma,
        accelerator=type("A", (), {"device": torch.device("cpu")})(),
    )
    losses, chosen_rewards, rejected_rewards = cpo.CPOTrainer.cpo_loss(trainer, logps[:p], logps[p:])
    assert_close(out.loss, losses.mean(), atol=1e-5, what="loss vs TRL CPO")
    assert_close(out.chosen_rewards, chosen_rewards, atol=1e-5, what="chosen rewards vs TRL CPO")
    assert_close(out.rejected_rewards, rejected_rewards, atol=1e-5, what="rejected rewards vs TRL CPO")


def test_objective_helpers_are_the_ones_the_module_uses():
    # The module's per-pair losses are exactly rftfast.losses.preference_losses.
    pairs = Pairs(
        torch.tensor([-3.0]),
        torch.tensor([-4.0]),
        torch.tensor([-3.5]),
        torch.tensor([-3.9]),
        torch.tensor([2.0]),
        torch.tensor([3.0]),
    )
    fn = FusedDPOLoss("ipo", beta=0.4)
    assert_close(
        fn._pair_losses(pairs), preference_losses(pairs, "ipo", params=ObjectiveParams(beta=0.4)), atol=0, what="ipo"
    )


def test_fused_strategy_refuses_batch_coupled_objective():
    with pytest.raises(ValueError, match="strategy: 'fused' needs per-pair objectives"):
        FusedDPOLoss("aot", strategy="fused")


@pytest.mark.parametrize("strategy", ["fused", "recompute"])
def test_frozen_head_gets_no_gradient_and_hidden_gradient_is_unchanged(strategy):
    """LoRA-style: the head is frozen, so its gradient (a whole matmul) is skipped."""
    hidden, weight, _, ref_hidden, labels = _batch(seed=23)
    fn = FusedDPOLoss("sigmoid", strategy=strategy)
    full = torch.autograd.grad(fn(hidden, weight, labels, ref_hidden=ref_hidden).loss, hidden)[0]
    frozen = weight.detach()
    out = fn(hidden, frozen, labels, ref_hidden=ref_hidden)
    out.loss.backward()
    assert frozen.grad is None
    assert_close(hidden.grad, full, atol=1e-7, what="hidden grad with a frozen head")
