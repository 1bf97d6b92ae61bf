#!/usr/bin/env bash
# The GPU suite in one command, from the repository root of a GPU machine (nothing needs the network):
#
#     bash benchmarks/gpu/run.sh              # install carried wheels, build, env, GPU tests, bench, pipeline
#     bash benchmarks/gpu/run.sh --dry-run    # the plumbing only (automatic when torch sees no CUDA)
#     bash benchmarks/gpu/run.sh --only env,tests --budget 300
#
# Everything lands flat under $OUT (default ./gpu-out): summary.json, env.json, tests.json, bench.json,
# pipeline.json and log.txt (this script's whole output). Missing packages (liger-kernel, cut-cross-entropy,
# trl, datasets and theirs) come from wheels in .whl/, fetched beforehand by benchmarks/gpu/fetch-wheels.sh
# on a machine with a package registry. The parts and their limits are in benchmarks/gpu/suite.py.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2

OUT="${OUT:-./gpu-out}"
BUDGET=470
args=("$@")
while (($#)); do
  case "$1" in
    -h|--help) exec "${PYTHON:-python3}" benchmarks/gpu/suite.py --help ;;
    --out) OUT="${2:?--out needs a folder}"; shift ;;
    --out=*) OUT="${1#--out=}" ;;
    --budget) BUDGET="${2:?--budget needs seconds}"; shift ;;
    --budget=*) BUDGET="${1#--budget=}" ;;
  esac
  shift
done
case "$BUDGET" in
  ''|*[!0-9.]*) echo "error: --budget must be a number of seconds, got '$BUDGET'" >&2; exit 2 ;;
esac
PY="${PYTHON:-python3}"
if ! command -v "$PY" >/dev/null; then
  echo "error: no $PY on PATH (set PYTHON to the interpreter that has torch)" >&2
  exit 2
fi
mkdir -p "$OUT" || exit 2
export OUT PYTHONUNBUFFERED=1
# A hard stop a little past the suite's own budget, whatever a part does (the suite keeps its summary).
HARD=$(( ${BUDGET%.*} + 10 ))
timeout -k 5 "$HARD" "$PY" benchmarks/gpu/suite.py --out "$OUT" "${args[@]}" 2>&1 | tee "$OUT/log.txt"
exit "${PIPESTATUS[0]}"
