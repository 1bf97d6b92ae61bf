#!/usr/bin/env bash
# Download, on a CPU machine with a package registry, the wheels the GPU image lacks into .whl/ (git-ignored),
# for CPython 3.12 on manylinux x86_64, without their dependencies: each one the image lacks is named here.
#
#     bash benchmarks/gpu/fetch-wheels.sh        # then carry .whl with the run; run.sh installs them
#
# The image already has torch 2.11, triton 3.6, transformers 5.17, accelerate, pyarrow, pandas, xxhash,
# fsspec, huggingface-hub, tqdm, numba, peft, pytest, scikit-build-core, nanobind, cmake and ninja.
# Missing there: the three baselines (liger-kernel, cut-cross-entropy, trl) and what they or rftfast need
# at import: datasets (rftfast's dependency and trl's), and datasets' own dill and multiprocess.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

WHEELS=(
  liger-kernel==0.8.5
  cut-cross-entropy==25.1.1
  trl==1.16.0
  datasets==5.2.0
  dill==0.4.1
  multiprocess==0.70.19
)
PY="${PYTHON:-python3}"
mkdir -p .whl  # pip keeps the wheels already there; nothing else in .whl is touched
"$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
# One version of each: two of one package stop the whole install there.
dupes=$(ls .whl | sed -E 's/-[0-9][^-]*-.*//' | tr 'A-Z-' 'a-z_' | sort | uniq -d)
if [ -n "$dupes" ]; then echo "error: more than one wheel of: $dupes" >&2; exit 1; fi
ls -l .whl
du -sh .whl
