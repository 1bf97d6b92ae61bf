"""Evaluation: BFCL's AST rules for judging a model's function calls."""

from rftfast.eval.checker import CATEGORIES, CheckResult, check

__all__ = ["CATEGORIES", "CheckResult", "check"]
