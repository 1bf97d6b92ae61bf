"""BFCL's own AST checker and data (the `bfcl-eval` wheel), as the oracle for rftfast's checker.

Install with `pip install --no-deps bfcl-eval==2026.3.23`: the wheel declares ~30 dependencies (provider
SDKs, vllm extras, faiss, sentence-transformers) that its AST checker never uses. The checker module
imports three things: `constants.enums` and `constants.type_mappings` (plain Python) and
`constants.model_config`, which imports every model handler and with them the SDKs. It reads one flag
from that module, `underscore_to_dot` per model name, so we register a stand-in for the module before
the import, with two pretend models: one keeps dots in function names, one has its dots read as
underscores. `bfcl_eval.utils` (the runner's output-shape checks) needs only `filelock`, which torch
already brings.
"""

from __future__ import annotations

import importlib.resources
import json
import sys
import types
from dataclasses import dataclass

MODEL_KEEPING_DOTS = "rftfast-keeps-dots"
MODEL_WITHOUT_DOTS = "rftfast-without-dots"  # BFCL looks models up with "_" read as "/": keep "_" out


@dataclass(frozen=True)
class _ModelConfig:
    underscore_to_dot: bool


def _install_model_config_stand_in() -> None:
    name = "bfcl_eval.constants.model_config"
    if name in sys.modules:
        return
    stand_in = types.ModuleType(name)
    stand_in.MODEL_CONFIG_MAPPING = {
        MODEL_KEEPING_DOTS: _ModelConfig(underscore_to_dot=False),
        MODEL_WITHOUT_DOTS: _ModelConfig(underscore_to_dot=True),
    }
    sys.modules[name] = stand_in


_install_model_config_stand_in()

from bfcl_eval import utils as bfcl_utils  # noqa: E402  (after the stand-in, on purpose)
from bfcl_eval.constants.enums import Language  # noqa: E402
from bfcl_eval.eval_checker.ast_eval import ast_checker as bfcl_ast  # noqa: E402

DATA = importlib.resources.files("bfcl_eval") / "data"
VERSION = "v4"


def bfcl_valid(functions, decoded, possible_answer, category: str, *, dots_to_underscores: bool = False) -> bool:
    """BFCL's verdict on already-decoded calls, as its eval runner reaches it after decoding."""
    if "relevance" in category:  # irrelevance and relevance: did the model call anything?
        made_a_call = not bfcl_utils.is_empty_output(decoded)
        return not made_a_call if "irrelevance" in category else made_a_call
    if not bfcl_utils.is_function_calling_format_output(decoded):
        return False
    model = MODEL_WITHOUT_DOTS if dots_to_underscores else MODEL_KEEPING_DOTS
    result = bfcl_ast.ast_checker(functions, decoded, possible_answer, _language(category), category, model)
    return result["valid"]


def _language(category: str) -> Language:
    if bfcl_utils.is_java(category):
        return Language.JAVA
    return Language.JAVASCRIPT if bfcl_utils.is_js(category) else Language.PYTHON


def load_entries(category: str) -> list[dict]:
    """BFCL's test entries for a category: `id`, `question`, `function` (the docs)."""
    return _read_jsonl(DATA / f"BFCL_{VERSION}_{category}.json")


def load_ground_truth(category: str) -> list[dict]:
    """BFCL's possible answers for a category, one `{id, ground_truth}` per entry, in entry order."""
    return _read_jsonl(DATA / "possible_answer" / f"BFCL_{VERSION}_{category}.json")


def _read_jsonl(path) -> list[dict]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]
