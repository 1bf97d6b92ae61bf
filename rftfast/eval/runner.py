"""`rftfast eval`: load a model and evaluation records, greedy-decode and judge them (`rftfast.eval.loop`), and
report by BFCL category (`rftfast.eval.report`).

Records come from BFCL directories (test files with `possible_answer/` beside them) or canonical
files. A canonical record's own answer becomes its possible answer (each value the only one
accepted) and its category is inferred from its shape (`rftfast.eval.judge`). Answers are read in
the model's call format: pythonic, JSON (Llama-3.1), Hermes (Qwen2.5's `<tool_call>` blocks), or
"auto", the format each answer's text shows (`rftfast.answer.detect_format`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rftfast.answer import detect_format
from rftfast.data.chat import render_example
from rftfast.data.record import Record
from rftfast.eval.judge import check_judgeable, infer_category
from rftfast.eval.loop import judge_greedy
from rftfast.eval.report import EvalReport

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from rftfast.data.convert import ConvertReport


def evaluate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Record],
    *,
    max_new_tokens: int = 128,
    batch_size: int = 8,
    progress: bool = True,
    call_format: str = "pythonic",
) -> tuple[EvalReport, list[dict]]:
    """Score `model` on `records`; returns the report (by category) and one row per record (output and verdict).

    `call_format`: how the model writes its calls, one of `rftfast.answer.ANSWER_FORMATS` ("auto": each answer
    is read in the format its text shows; its row's "call_format" says which).
    """
    prompts = [render_example(r, tokenizer).prompt_ids for r in records]
    judged = judge_greedy(
        model,
        tokenizer,
        records,
        prompts,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        desc="eval",
        progress=progress,
        call_format=call_format,
    )
    report, rows = EvalReport(), []
    for record, (output, result, _) in zip(records, judged, strict=True):
        category = infer_category(record)
        report.add(category, result)
        rows.append(
            {
                "id": record.id,
                "category": category,
                "output": output,
                "call_format": detect_format(output.strip()) if call_format == "auto" else call_format,
                "valid": result.valid,
                "failure": result.category,
                "message": result.message,
            }
        )
    return report, rows


def load_eval_records(paths: Sequence[str | Path], limit: int | None = None) -> tuple[list[Record], ConvertReport]:
    """Records from BFCL directories/files (`BFCL_*.json`) and canonical files, at most `limit` per file.

    Returns (records, report): entries BFCL's AST categories cannot judge (multi-turn) are skipped
    and counted in the report, never dropped silently.
    """
    from rftfast.data.convert import ConvertReport, bfcl_test_files, import_file
    from rftfast.data.io import read_records

    if limit is not None and limit < 1:  # a slice would read -1 as "all but the last"
        raise ValueError(f"limit: expected at least 1 record per file, got {limit}")
    records, report = [], ConvertReport()
    for path in map(Path, paths):
        for f in bfcl_test_files(path):  # a directory without test files raises RecordError
            rs = import_file("bfcl", f, "skip", report) if f.name.startswith("BFCL_") else list(read_records(f))
            rs = rs[:limit] if limit is not None else rs
            for r in rs:
                try:
                    check_judgeable(r)
                except ValueError as e:
                    raise ValueError(f"{f}: record {r.id!r} cannot be judged: {e}") from None
            records.extend(rs)
    return records, report


# Any of these beside a model's weights lets AutoTokenizer load it.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "spiece.model",
    "tekken.json",
)


def load_model(path: str, device: str = "cpu") -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model, tokenizer) of a causal LM to evaluate, from a folder or a hub id.

    Raises ValueError saying what is wrong: no such folder, no tokenizer beside the weights (transformers
    would blame a missing sentencepiece), or a checkpoint without tensors the model needs (transformers
    would initialise them at random and evaluate that).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rftfast.data.io import looks_like_hub_id

    folder = Path(path)
    if folder.is_dir():
        if not any((folder / name).exists() for name in TOKENIZER_FILES):
            raise ValueError(
                f"{folder}: no tokenizer files (expected one of {', '.join(TOKENIZER_FILES)}); save "
                "the tokenizer beside the model with tokenizer.save_pretrained(folder)"
            )
    elif folder.exists():
        raise ValueError(f"{path}: not a folder; expected a model folder (config.json, weights, tokenizer)")
    elif not looks_like_hub_id(str(path)):
        raise ValueError(f"{path}: no such model folder")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True)
    except Exception as e:  # noqa: BLE001 - whatever transformers raises, name the model and the cause
        raise ValueError(f"{path}: cannot load the model: {type(e).__name__}: {e}") from None
    missing = sorted(map(str, info.get("missing_keys") or ())) + sorted(map(str, info.get("mismatched_keys") or ()))
    if missing:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        raise ValueError(
            f"{path}: the checkpoint lacks {len(missing)} tensor(s) the model needs, or has them in "
            f"another shape (they would be random): {shown}"
        )
    return model.to(device).eval(), tokenizer
