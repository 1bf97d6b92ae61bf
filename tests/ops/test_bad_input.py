"""Bad input gets a ValueError that names the argument and says what is wrong."""

import numpy as np
import pytest
import torch

from rftfast import FusedDPOLoss, linear_logprobs

H, V = 8, 13


def _ok(n=6):
    return torch.randn(n, H), torch.randn(V, H), torch.randint(0, V, (n,))


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda h, w, y: (h[None], w, y), r"hidden: expected 2-D \[N, H\]"),
        (lambda h, w, y: (h[:, :5], w, y), "hidden: hidden size 5 does not match weight's 8"),
        (lambda h, w, y: (h, w.double(), y), "weight: dtype torch.float64 differs"),
        (lambda h, w, y: (h, w, y.float()), "labels: expected int64 or int32"),
        (lambda h, w, y: (h, w, y[:3]), r"labels: expected 1-D \[N=6\]"),
        (lambda h, w, y: (h, w, torch.tensor([0, 1, 2, 13, 4, 5])), r"labels: label 13 is out of range \[0, 13\)"),
        (lambda h, w, y: (h, w, torch.tensor([0, 1, -5, 3, 4, 5])), "labels: label -5 is out of range"),
        (lambda h, w, y: (h.long(), w.long(), y), "hidden: expected a floating dtype"),
        (lambda h, w, y: (h.to("meta"), w, y), "hidden: on meta, but weight is on cpu"),
    ],
)
def test_linear_logprobs_rejects(mutate, match):
    with pytest.raises(ValueError, match=match):
        linear_logprobs(*mutate(*_ok()))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(bias=torch.zeros(V + 1)), r"bias: expected shape \(13,\)"),
        (dict(temperature=0.0), "temperature: must be > 0"),
        (dict(softcap=-1.0), "softcap: must be > 0 or None"),
        (dict(backend="cuda"), "backend: unknown backend 'cuda'"),
    ],
)
def test_linear_logprobs_rejects_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        linear_logprobs(*_ok(), **kwargs)


def _pairs(rows=4, t=5):
    return torch.randn(rows, t, H), torch.randn(V, H), torch.randint(0, V, (rows, t))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda f, h, w, y: f(h[:3], w, y[:3], ref_logps=torch.zeros(3)), "labels: paired layout needs an even number"),
        (lambda f, h, w, y: f(h, w, y), "ref_logps: loss types .* need a reference"),
        (lambda f, h, w, y: f(h, w, y, ref_logps=torch.zeros(3)), r"ref_logps: expected shape \(4,\)"),
        (lambda f, h, w, y: f(h, w, y, ref_hidden=h, ref_logps=torch.zeros(4)), "pass either ref_hidden or ref_logps"),
        (lambda f, h, w, y: f(h, w, y, ref_hidden=h[:, :2]), "ref_hidden: shape .* differs"),
        (lambda f, h, w, y: f(h, w, y[:, :3], ref_logps=torch.zeros(4)), "labels: expected shape"),
        (lambda f, h, w, y: f(h.reshape(-1, H), w, y.reshape(-1), ref_logps=torch.zeros(4)), "needs cu_seqlens"),
        (
            lambda f, h, w, y: f(
                h.reshape(-1, H),
                w,
                y.reshape(-1),
                ref_logps=torch.zeros(4),
                cu_seqlens=torch.tensor([1, 5, 10, 15, 20]),
            ),
            "cu_seqlens: must start at 0",
        ),
        (
            lambda f, h, w, y: f(
                h.reshape(-1, H),
                w,
                y.reshape(-1),
                ref_logps=torch.zeros(4),
                cu_seqlens=torch.tensor([0, 5, 10, 15, 20]),
                pair_ids=torch.tensor([0, 0, 0, 1]),
            ),
            "pair_ids: each pair id",
        ),
    ],
)
def test_fused_dpo_rejects(call, match):
    with pytest.raises(ValueError, match=match):
        call(FusedDPOLoss("sigmoid"), *_pairs())


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(loss_type="dpo"), "loss_type: unknown loss type 'dpo'"),
        (dict(strategy="fast"), "strategy: unknown strategy 'fast'"),
        (dict(loss_type="robust", label_smoothing=0.6), "label_smoothing: must lie in"),
    ],
)
def test_fused_dpo_rejects_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FusedDPOLoss(**kwargs)


def test_cpp_extension_common_prefix_length():
    from hypothesis import given
    from hypothesis import strategies as st

    from rftfast import _C

    @given(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=40), st.lists(st.integers(-3, 3), max_size=40))
    def check(a, b):
        b = a[: len(b) // 2] + b  # share a prefix often
        expected = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        assert _C.common_prefix_length(np.array(a, dtype=np.int32), np.array(b, dtype=np.int32)) == expected

    check()
    with pytest.raises(TypeError):
        _C.common_prefix_length(np.zeros((2, 2), dtype=np.int32), np.array([1], dtype=np.int32))
