"""Triton kernels (installed as ``rftfast.kernels``)."""

from .linear_logprobs import linear_logprobs_backward, linear_logprobs_forward

__all__ = ["linear_logprobs_forward", "linear_logprobs_backward"]
