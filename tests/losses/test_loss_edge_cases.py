"""Edge cases of the preference losses: near-certain sequences, empty sequences and batches, bad options.

Values are checked against float64 (and TRL's own ORPO code), with tolerances from fp32 round-off.
"""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rftfast import FusedDPOLoss, linear_logprobs, linear_logprobs_with_reference, preference_loss
from rftfast.losses import Pairs
from rftfast.losses.objectives import log1mexp
from tests.support.reference import IGNORE_INDEX, assert_close, f64_leaf, logprobs_f64

U32 = 2.0**-24  # fp32 unit round-off


# ----------------------------------------------------------------------------- ORPO near certainty


def _trl_orpo(chosen_mean, rejected_mean, beta):
    """TRL's ORPO odds-ratio loss per pair (its `odds_ratio_loss`, run for real), and its rewards."""
    orpo = pytest.importorskip("trl.experimental.orpo.orpo_trainer")
    trainer = object.__new__(orpo.ORPOTrainer)
    trainer.__dict__.update(beta=beta, accelerator=SimpleNamespace(device=chosen_mean.device))
    losses, chosen_rewards, rejected_rewards, *_ = orpo.ORPOTrainer.odds_ratio_loss(trainer, chosen_mean, rejected_mean)
    return -losses, chosen_rewards, rejected_rewards  # TRL subtracts this term from the NLL


def _orpo_f64(chosen, rejected, beta):
    """float64 ORPO: log(1 - p) as log(-expm1(log p)), accurate for every log p < 0 in float64."""

    def log1m(x):
        return torch.log(-torch.expm1(x))

    log_odds = (chosen - rejected) - (log1m(chosen) - log1m(rejected))
    return -beta * torch.nn.functional.logsigmoid(log_odds), log_odds


CHOSEN = [-3.0, -0.7, -0.6931, -1e-3]
REJECTED = [-1e-8, -1e-5, -0.5, -0.6931, -0.7, -2.0, -30.0]


def test_orpo_is_accurate_up_to_certainty():
    """Mean log-probs from -30 to -1e-8, in fp32: before, -1e-8 gave an infinite loss and gradient (1 - exp(x)
    is 0 in fp32) and -1e-5 was 1e-4 off. Now within fp32 round-off of float64 and of TRL's ORPO."""
    beta = 0.25
    c, r = (t.flatten() for t in torch.meshgrid(torch.tensor(CHOSEN), torch.tensor(REJECTED), indexing="ij"))
    ones = torch.ones_like(c)
    leaves = [c.clone().requires_grad_(), r.clone().requires_grad_()]
    ours = preference_loss(*leaves, loss_type="orpo", beta=beta, chosen_lengths=ones, rejected_lengths=ones)
    grads = torch.autograd.grad(ours, leaves)  # pair k's loss / P, so pair by pair
    c64, r64 = f64_leaf(c), f64_leaf(r)
    ref, log_odds = _orpo_f64(c64, r64, beta)
    ref_grads = torch.autograd.grad(ref.mean(), (c64, r64))
    # fp32 round-off: a few ulps in each of expm1, log, the subtractions and logsigmoid, relative to the
    # magnitudes that enter the log-odds (|log(1 - p)| is 18 at p = 1 - 1e-8).
    scale = (1 + c.abs() + r.abs() + log1mexp(c.double()).abs() + log1mexp(r.double()).abs()).mean()
    assert torch.isfinite(ours) and all(torch.isfinite(g).all() for g in grads)
    assert_close(ours, ref.mean(), atol=8 * U32 * beta * float(scale), rtol=8 * U32, what="ORPO loss")
    rel = 16 * U32 * (4 + float(log_odds.detach().abs().max()))
    for name, g, rg in zip(["chosen", "rejected"], grads, ref_grads):
        assert_close(g, rg, atol=0, rtol=rel, what=f"ORPO grad {name}")
    # TRL's ORPO (fp32 inside, its own stable log1mexp) agrees within fp32 round-off, pair by pair.
    theirs, *_ = _trl_orpo(c, r, beta)
    ours_pairs = FusedDPOLoss("orpo", beta=beta)._pair_losses(Pairs(c, r, None, None, ones, ones))
    assert_close(ours_pairs, theirs, atol=16 * U32 * beta * float(scale), rtol=16 * U32, what="ORPO vs TRL")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log1mexp_matches_expm1_and_log1p_on_their_own_ranges(dtype):
    x = -torch.logspace(-12, 2, 200, dtype=torch.float64).to(dtype)
    x64 = x.double()
    # Independent float64 values: log(-expm1) is accurate for x > -ln 2, log1p(-exp) below it.
    ref = torch.where(x64 > -math.log(2), torch.log(-torch.expm1(x64)), torch.log1p(-torch.exp(x64)))
    u, subnormal = torch.finfo(dtype).eps / 2, torch.finfo(dtype).tiny * torch.finfo(dtype).eps
    # (relative precision down to the subnormals, where the spacing is fixed: -e^-100 is one in fp32)
    assert_close(log1mexp(x), ref, atol=4 * subnormal, rtol=8 * u, what="log1mexp")
    leaf = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(log1mexp(leaf).sum(), leaf)
    assert_close(g, -1 / torch.expm1(-x64), atol=4 * subnormal, rtol=8 * u, what="log1mexp gradient")


def test_orpo_of_a_certain_sequence_is_finite():
    """A mean log-prob of exactly 0 (each token certain to working precision): the odds are infinite, but the
    loss and gradients stay finite and push the right way (rejected down; a certain chosen costs nothing)."""
    c = torch.tensor([-0.5, 0.0], requires_grad=True)
    r = torch.tensor([0.0, -0.5], requires_grad=True)
    ones = torch.ones(2)
    loss = preference_loss(c, r, loss_type="orpo", beta=0.1, chosen_lengths=ones, rejected_lengths=ones)
    gc, gr = torch.autograd.grad(loss, (c, r))
    assert torch.isfinite(loss) and torch.isfinite(gc).all() and torch.isfinite(gr).all()
    assert float(gr[0]) > 0  # lowering the certain rejected sequence lowers the loss


def _near_certain_batch(b=3, t=6, v=24, seed=0):
    """Padded pairs whose rejected tokens are near-certain (logit margins of 12..20 nats, so the rejected mean
    log-prob is about -1e-6..-1e-8). The head is a diagonal of powers of two and the hidden states multiples
    of 1/64, so the fp32 logits are exact and the error measured is the loss path's own."""
    g = torch.Generator().manual_seed(seed)
    diag = 2.0 ** torch.randint(-1, 2, (v,), generator=g).double() * (torch.randint(0, 2, (v,), generator=g) * 2 - 1)
    weight = torch.diag(diag)
    labels = torch.randint(0, v, (2 * b, t), generator=g)
    hidden = torch.randint(-128, 129, (2 * b, t, v), generator=g).double() / 64
    for row in range(b, 2 * b):  # the rejected rows: lift each label's logit `margin` above the rest
        for pos in range(t):
            z = hidden[row, pos] * diag
            y = int(labels[row, pos])
            margin = 12 + 8 * float(torch.rand((), generator=g))
            others = torch.cat([z[:y], z[y + 1 :]]).max()
            hidden[row, pos, y] = torch.round((others + margin) * 64) / 64 / diag[y]
    labels[:, 0] = IGNORE_INDEX  # a prompt token
    return hidden.float().requires_grad_(), weight.float().requires_grad_(), labels


@pytest.mark.parametrize("strategy", ["fused", "recompute"])
def test_orpo_on_near_certain_rejected_sequences_matches_float64(strategy):
    """End to end from hidden states: the head must keep logp ≈ -1e-7 (not round it to 0) and the label's
    gradient 1 - p ≈ 1e-7 (not 0), since ORPO scales it by ~1/|mean logp|. Before, the loss was infinite."""
    hidden, weight, labels = _near_certain_batch(seed=3 if strategy == "fused" else 4)
    fn = FusedDPOLoss("orpo", beta=0.2, strategy=strategy, group_bytes=4 * 24 * 8)
    out = fn(hidden, weight, labels)
    gh, gw = torch.autograd.grad(out.loss, (hidden, weight))
    h64, w64 = hidden.detach().double(), weight.detach().double()
    z64 = (h64 @ w64.T).requires_grad_()  # exact: the fp32 logits are exact too
    tok = logprobs_f64(z64, torch.eye(z64.shape[-1], dtype=torch.float64), labels)  # log_softmax of z64
    p = labels.shape[0] // 2
    seq, lengths = tok.sum(1), (labels != IGNORE_INDEX).sum(1).double()
    chosen = labels[:p] != IGNORE_INDEX
    nll = -(tok[:p] * chosen).sum() / chosen.sum()
    ref_loss = fn._pair_losses(Pairs(seq[:p], seq[p:], None, None, lengths[:p], lengths[p:])).mean() + nll
    (dz,) = torch.autograd.grad(ref_loss, z64)
    rh, rw = dz @ w64, torch.einsum("btv,btk->vk", dz, h64)
    assert float((seq[p:] / lengths[p:]).detach().max()) > -1e-5  # the rejected sequences are near-certain
    v, n = weight.shape[0], labels.numel()
    # fp32 round-off, relative: the token log-probs and logit gradients (V-term sums, exp/log1p/expm1,
    # |lse| ulps), the T-term sequence sums (ORPO's 1/|mean logp| passes their relative error on), then
    # the weight gradient's sum over the N tokens, bounded by the sum of its terms' magnitudes.
    lse = z64.detach().logsumexp(-1).abs().max()
    rel = 16 * U32 * (v + labels.shape[1] + 16 + float(lse))
    assert_close(out.loss, ref_loss, atol=0, rtol=rel, what="ORPO loss")
    assert_close(out.rejected_logps, seq[p:], atol=0, rtol=rel, what="near-certain rejected log-probs")
    magnitude_h = dz.abs() @ w64.abs()
    magnitude_w = torch.einsum("btv,btk->vk", dz.abs(), h64.abs())
    assert ((gh.double() - rh).abs() <= rel * magnitude_h).all(), "grad hidden"
    assert ((gw.double() - rw).abs() <= (rel + 2 * n * U32) * magnitude_w).all(), "grad weight"


# ----------------------------------------------------------------------------- empty sequences and batches


def _batch(b=2, t=6, h=8, v=13, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(2 * b, t, h, generator=g, requires_grad=True)
    weight = torch.randn(v, h, generator=g, requires_grad=True)
    labels = torch.randint(0, v, (2 * b, t), generator=g)
    labels[:, :2] = IGNORE_INDEX
    return hidden, weight, labels, (hidden + 0.1 * torch.randn(hidden.shape, generator=g)).detach()


@pytest.mark.parametrize("strategy", ["fused", "recompute"])
@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge", "orpo", "simpo"])
def test_all_ignored_batch_is_refused_by_both_strategies(strategy, loss_type):
    """Before: loss 0 with "fused" and log 2 / 25 / 1 / NaN with "recompute". An empty sequence has no
    log-prob to prefer; both strategies now refuse it alike."""
    hidden, weight, labels, ref_hidden = _batch()
    fn = FusedDPOLoss(loss_type, strategy=strategy)
    with pytest.raises(ValueError, match=r"labels: 4 sequence\(s\) have no counted tokens .*pair 0's chosen"):
        fn(hidden, weight, torch.full_like(labels, IGNORE_INDEX), ref_hidden=ref_hidden)


@pytest.mark.parametrize("strategy", ["fused", "recompute"])
def test_one_empty_side_names_the_pair(strategy):
    hidden, weight, labels, ref_hidden = _batch(b=3)
    labels[4] = IGNORE_INDEX  # pair 1's rejected
    with pytest.raises(ValueError, match=r"1 sequence\(s\) have no counted tokens .*: pair 1's rejected;"):
        FusedDPOLoss("sigmoid", strategy=strategy)(hidden, weight, labels, ref_hidden=ref_hidden)


def test_one_token_sequences_agree_across_strategies():
    """The smallest valid sequences: both strategies agree and match float64, gradients included."""
    hidden, weight, labels, ref_hidden = _batch(b=3, seed=2)
    labels[:, :-1] = IGNORE_INDEX
    outs = {}
    for strategy in ("fused", "recompute"):
        out = FusedDPOLoss("ipo", beta=0.3, strategy=strategy, group_bytes=1)(
            hidden, weight, labels, ref_hidden=ref_hidden
        )
        outs[strategy] = (out.loss, *torch.autograd.grad(out.loss, (hidden, weight)))
    for name, a, b in zip(["loss", "grad hidden", "grad weight"], outs["fused"], outs["recompute"]):
        assert_close(a, b, atol=1e-6 * max(1.0, float(b.abs().max())), what=name)


@pytest.mark.parametrize("strategy", ["fused", "recompute"])
def test_empty_batch_is_refused(strategy):
    hidden, weight, labels, _ = _batch()
    fn = FusedDPOLoss("sigmoid", strategy=strategy)
    with pytest.raises(ValueError, match="policy_hidden: the batch holds no pairs"):
        fn(hidden[:0], weight, labels[:0], ref_logps=torch.zeros(0))
    with pytest.raises(ValueError, match="policy_hidden: the batch holds no pairs"):
        FusedDPOLoss("simpo", strategy=strategy)(hidden[:0], weight, labels[:0])


# ----------------------------------------------------------------------------- reference log-probs


@pytest.mark.parametrize(
    "ref_logps,match",
    [
        ((torch.zeros(1), torch.zeros(3)), r"ref_logps: \(chosen, rejected\) must both have shape \(2,\)"),
        ((torch.zeros(2), torch.zeros(2), torch.zeros(2)), "ref_logps: a tuple must be"),
        ([-1.0, -2.0, -3.0, -4.0], "ref_logps: a list must be .* got 4 items of type float"),
        (np.zeros(4), "ref_logps: expected a torch.Tensor .* got ndarray"),
        (torch.zeros(2, 2), r"ref_logps: expected shape \(4,\)"),
        (torch.zeros(4, dtype=torch.int64), "ref_logps: expected a floating dtype"),
        (torch.tensor([0.0, float("nan"), 0.0, 0.0]), "ref_logps: must be finite"),
        (torch.tensor([0.0, -float("inf"), 0.0, 0.0]), "ref_logps: must be finite"),
    ],
)
def test_bad_ref_logps_are_refused(ref_logps, match):
    hidden, weight, labels, _ = _batch()
    with pytest.raises(ValueError, match=match):
        FusedDPOLoss("sigmoid")(hidden, weight, labels, ref_logps=ref_logps)


def test_ref_logps_tuple_is_paired_in_order():
    hidden, weight, labels, _ = _batch()
    ref = torch.tensor([-3.0, -4.0, -5.0, -6.0])
    flat = FusedDPOLoss("sigmoid")(hidden, weight, labels, ref_logps=ref)
    for pair in ((ref[:2], ref[2:]), [ref[:2], ref[2:]]):
        assert_close(
            FusedDPOLoss("sigmoid")(hidden, weight, labels, ref_logps=pair).loss,
            flat.loss,
            atol=0,
            what="tuple ref_logps",
        )


# ----------------------------------------------------------------------------- options and input types

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(beta=INF), "beta: must be > 0 and finite, got inf"),
        (dict(beta=NAN), "beta: must be > 0 and finite, got nan"),
        (dict(beta=-1.0), "beta: must be > 0"),
        (dict(label_smoothing=NAN), "label_smoothing: must lie in"),
        (dict(loss_type="simpo", gamma=NAN), "gamma: must be finite"),
        (dict(loss_type="simpo", gamma=INF), "gamma: must be finite"),
        (dict(loss_type="discopop", discopop_tau=NAN), "discopop_tau: must be > 0 and finite"),
        (dict(discopop_tau=INF), "discopop_tau: must be > 0 and finite"),
        (dict(loss_type=["sigmoid", "ipo"], loss_weights=[1.0, NAN]), "loss_weights: must be finite"),
        (dict(temperature=INF), "temperature: must be > 0 and finite"),
        (dict(temperature=NAN), "temperature: must be > 0 and finite"),
        (dict(temperature=0.0), "temperature: must be > 0"),
        (dict(softcap=INF), "softcap: must be > 0 or None, and finite"),
        (dict(softcap=NAN), "softcap: must be > 0 or None"),
        (dict(softcap=0.0), "softcap: must be > 0 or None"),
        (dict(nll_weight=NAN), "nll_weight: must be >= 0 and finite"),
        (dict(nll_weight=INF), "nll_weight: must be >= 0 and finite"),
        (dict(nll_weight=-1.0), "nll_weight: must be >= 0"),
        (dict(group_bytes=0), "group_bytes: must be a positive int"),
        (dict(group_bytes=-5), "group_bytes: must be a positive int"),
        (dict(ignore_index=1.5), "ignore_index: must be an int"),
        (dict(backend="cuda"), "backend: unknown backend 'cuda'"),
    ],
)
def test_bad_options_are_refused_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FusedDPOLoss(**kwargs)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(beta=INF), "beta: must be > 0 and finite"),
        (dict(loss_type="simpo", gamma=NAN), "gamma: must be finite"),
        (dict(label_smoothing=NAN), "label_smoothing: must lie in"),
    ],
)
def test_functional_loss_refuses_bad_options(kwargs, match):
    x = torch.tensor([-1.0])
    with pytest.raises(ValueError, match=match):
        preference_loss(x, x, x, x, chosen_lengths=torch.ones(1), rejected_lengths=torch.ones(1), **kwargs)


def test_non_tensor_inputs_are_refused():
    hidden, weight, labels, ref_hidden = _batch()
    fn = FusedDPOLoss("sigmoid")
    ref = torch.zeros(4)
    cases = [
        (lambda: fn(hidden.detach().numpy(), weight, labels, ref_logps=ref), "policy_hidden: expected a torch.Tensor"),
        (lambda: fn(hidden, weight.detach().numpy(), labels, ref_logps=ref), "lm_head_weight: expected a torch.Tensor"),
        (lambda: fn(hidden, weight, labels.tolist(), ref_logps=ref), "labels: expected a torch.Tensor, got list"),
        (lambda: fn(hidden, weight, labels, ref_hidden=ref_hidden.numpy()), "ref_hidden: expected a torch.Tensor or"),
        (lambda: fn(hidden, weight, labels, ref_logps=ref, bias=np.zeros(13)), "bias: expected a torch.Tensor or None"),
    ]
    for call, match in cases:
        with pytest.raises(ValueError, match=match):
            call()


@pytest.mark.parametrize("chunk_rows", [-1, 0, 1.5, True])
def test_bad_chunk_rows_are_refused(chunk_rows):
    hidden, weight, labels, ref_hidden = _batch()
    h, y = hidden.reshape(-1, 8), labels.reshape(-1)
    with pytest.raises(ValueError, match="chunk_rows: must be a positive int or None"):
        linear_logprobs(h, weight, y, chunk_rows=chunk_rows)
    with pytest.raises(ValueError, match="chunk_rows: must be a positive int or None"):
        linear_logprobs_with_reference(h, weight, y, ref_hidden.reshape(-1, 8), chunk_rows=chunk_rows)


def test_one_row_chunks_match_float64():
    hidden, weight, labels, _ = _batch(seed=5)
    h, y = hidden.reshape(-1, 8), labels.reshape(-1)
    out = linear_logprobs(h, weight, y, chunk_rows=1)
    assert_close(out, logprobs_f64(h.double(), weight.double(), y), atol=2e-5, what="chunk_rows=1")
