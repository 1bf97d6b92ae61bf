"""Evaluation: BFCL's AST rules, the judge, one greedy decode-and-judge loop, one report, the CLI runner.

checker.py  BFCL's AST rules for one answer's calls (`check`)
judge.py    a model's answer text parsed in its call format and checked against a record (`judge`, `possible_answer`)
loop.py     greedy decoding and judging, split across ranks and gathered (`judge_greedy`)
report.py   one aggregation by group: the CLI's table (with BFCL's live / non-live aggregates) and the pipeline's
            held-out metrics (`EvalReport`)
runner.py   `rftfast eval`: model and records loaded, evaluated, reported
"""

from rftfast.eval.checker import CATEGORIES, CheckResult, check
from rftfast.eval.judge import check_judgeable, infer_category, judge, possible_answer
from rftfast.eval.loop import Judged, end_token_ids, generate_greedy, greedy_token_ids, judge_greedy
from rftfast.eval.report import EvalReport, difficulty_of, is_live

__all__ = [
    "CATEGORIES",
    "CheckResult",
    "EvalReport",
    "Judged",
    "check",
    "check_judgeable",
    "difficulty_of",
    "end_token_ids",
    "generate_greedy",
    "greedy_token_ids",
    "infer_category",
    "is_live",
    "judge",
    "judge_greedy",
    "possible_answer",
]
