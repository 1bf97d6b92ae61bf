"""Two training runs that must take the same update (one process vs two, whole batch vs accumulated
micro-batches, with and without checkpointing), compared with a bound that holds on any CPU.

The runs use SGD, not the AdamW of the training loops: SGD's update is linear in the gradient, so the
runs differ by lr × (the gradients' fp32 round-off) plus the round-off of storing the weights. AdamW
divides by sqrt(v) + eps, which turns the round-off of a near-zero gradient (the reduction order
changes with the batch split and the thread count) into a difference the size of an update, on one
CPU and not on another.
"""

import torch


def sgd(params, lr, weight_decay=0.0):
    """A drop-in for `torch.optim.AdamW(params, lr=..., weight_decay=...)`, the loops' optimiser call."""
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)


def use_sgd(monkeypatch) -> None:
    monkeypatch.setattr(torch.optim, "AdamW", sgd)


def assert_same_update(initial: dict, a: dict, b: dict, what: str = "") -> None:
    """State dicts `a` and `b`, both trained from `initial`, took the same update.

    Per tensor: a few ulps of its largest weight (the weights are rounded when stored, once per step)
    plus 1e-3 of its largest update (the gradients' round-off is orders below that). A gradient that
    is wrongly scaled, or not averaged over ranks or micro-batches, is off by a share of the update.
    """
    eps = torch.finfo(torch.float32).eps
    for name, weight in a.items():
        update = weight - initial[name]
        assert update.abs().max() > 1e-5, f"{what} {name}: did not move, so the comparison could not fail"
        bound = 4 * eps * weight.abs().max() + 1e-3 * update.abs().max()
        diff = (b[name] - weight).abs().max()
        assert diff <= bound, f"{what} {name}: differs by {float(diff):.3g} > {float(bound):.3g}"
