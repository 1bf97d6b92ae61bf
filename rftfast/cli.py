"""The `rftfast` command."""

from __future__ import annotations

import argparse
import sys

from rftfast.data.record import RecordError


def _convert(args) -> int:
    import re
    from pathlib import Path

    from rftfast.data.convert import convert_file

    try:
        report = convert_file(args.format, args.input, args.output, args.on_error)
    except RecordError as e:  # bad input: the message starts with its file and line
        print(f"error: {e}", file=sys.stderr)
        if args.on_error == "stop" and re.match(re.escape(str(Path(args.input))) + r"(/[^:]*)?(:\d|\[)", str(e)):
            # One record is bad (it has a line or index), not the file: skipping may help.
            print("(use --on-error skip to skip bad records; they are counted)", file=sys.stderr)
        return 2
    except OSError as e:  # the output cannot be written
        print(f"error: {e.filename or args.output}: cannot write: {e.strerror or e}", file=sys.stderr)
        return 2
    print(report.summary())
    print(f"wrote {args.output}")
    return 0


def _eval(args) -> int:
    from rftfast.data.io import ensure_writable, write_jsonl_atomic
    from rftfast.eval.runner import evaluate, load_eval_records, load_model

    # Everything that can be wrong with the arguments is found before the (long) evaluation.
    try:
        if args.output:
            ensure_writable(args.output)
        records, skipped = load_eval_records(args.data, args.limit)
        if skipped.skipped:
            print(skipped.summary())
        if not records:
            print("error: no records to evaluate", file=sys.stderr)
            return 2
        model, tokenizer = load_model(args.model, args.device)
    except OSError as e:
        print(f"error: {e.filename}: {e.strerror}" if e.filename else f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # RecordError included: bad data, named by file and line
        print(f"error: {e}", file=sys.stderr)
        return 2
    report, rows = evaluate(
        model,
        tokenizer,
        records,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        call_format=args.format,
    )
    print(report.table())
    if args.output:
        write_jsonl_atomic(rows, args.output)
        print(f"wrote {len(rows)} judged outputs to {args.output}")
    return 0


def _run(args) -> int:
    import errno

    from rftfast.config import ConfigError, load_config
    from rftfast.pipeline import run
    from rftfast.stages.run_dir import RunDirError

    try:
        cfg = load_config(args.config, args.set)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    try:
        run(cfg, resume=args.resume, overwrite=args.overwrite, allow_config_change=args.allow_config_change)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except (RunDirError, RecordError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = e.filename or cfg.run_dir
        print(
            f"error: no space left on the device while writing {where} ({e.strerror}); the finished stages "
            f"are kept in {cfg.run_dir / 'manifest.json'}: free some space, then add --resume",
            file=sys.stderr,
        )
        return 3
    return 0


def _compare(args) -> int:
    from rftfast.compare import compare
    from rftfast.config import ConfigError, load_config
    from rftfast.stages.run_dir import RunDirError

    try:
        cfg = load_config(args.config, args.set)
        compare(cfg, args.seeds, args.arms)
    except (ConfigError, ValueError) as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except RunDirError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _bench(bench_args: list[str]) -> int:
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_dpo_step.py"
    if not script.exists():
        print("error: the benchmarks/ folder ships with the source checkout, not the wheel", file=sys.stderr)
        return 2
    return subprocess.call([sys.executable, str(script), *bench_args])


def build_parser() -> argparse.ArgumentParser:
    from rftfast.answer import ANSWER_FORMATS
    from rftfast.data.convert import FORMATS

    parser = argparse.ArgumentParser(prog="rftfast", description="Iterative reinforced fine-tuning for tool use.")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="tool-use data utilities").add_subparsers(dest="data_command", required=True)
    convert = data.add_parser("convert", help="convert a raw dataset file to canonical JSONL")
    convert.add_argument("--format", required=True, choices=FORMATS)
    convert.add_argument(
        "--on-error",
        choices=("stop", "skip"),
        default="stop",
        help="stop at the first bad record (default), or skip and count bad records",
    )
    convert.add_argument("input", help=".json/.jsonl/.parquet file, a hub dataset id, or (bfcl) a BFCL directory")
    convert.add_argument("output", help="canonical JSONL to write (atomically)")
    convert.set_defaults(func=_convert)

    run = sub.add_parser("run", help="run the whole method (no config: the embedded tool-world default on CPU)")
    run.add_argument("config", nargs="?", help="YAML config (default: the embedded default run)")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set search.rounds=8 (repeatable)",
    )
    run.add_argument("--resume", action="store_true", help="continue a killed run from its manifest")
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="delete an existing run of this name and start again (without it, a run is refused)",
    )
    run.add_argument(
        "--allow-config-change",
        action="store_true",
        help="with --resume: accept a config that differs from the run's (logged to config_changes.jsonl)",
    )
    run.set_defaults(func=_run)

    from rftfast.compare import ARMS

    cmp = sub.add_parser(
        "compare",
        help="the iterations against the same compute spent on SFT (three arms, same seeds, one table)",
    )
    cmp.add_argument("config", nargs="?", help="YAML config of the run to compare (default: the embedded default)")
    cmp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    cmp.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (each sets seed and data.seed)")
    cmp.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS, help="arms to run (iterations always)")
    cmp.set_defaults(func=_compare)

    # `rftfast bench ARGS...` hands every argument to the script (see main), so it is only listed here.
    sub.add_parser(
        "bench", help="the DPO-step benchmark (benchmarks/bench_dpo_step.py); arguments pass through", add_help=False
    )

    ev = sub.add_parser("eval", help="score a model on BFCL directories or canonical files")
    ev.add_argument("--model", required=True, help="path or hub id of a transformers causal LM")
    ev.add_argument("--data", required=True, nargs="+", help="BFCL data directories/files or canonical files")
    ev.add_argument("--limit", type=int, help="at most this many records per file (at least 1)")
    ev.add_argument("--max-new-tokens", type=int, default=128)
    ev.add_argument("--batch-size", type=int, default=8)
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--output", help="write each record's output and verdict to this JSONL")
    ev.add_argument(
        "--format",
        choices=ANSWER_FORMATS,
        default="auto",
        help="how the model writes its calls: pythonic, json (Llama-3.1), hermes (Qwen2.5 <tool_call>), or auto "
        "(default): per answer, JSON when it starts with { or [{, else hermes when it holds <tool_call>, else pythonic",
    )
    ev.set_defaults(func=_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        return _bench(argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
