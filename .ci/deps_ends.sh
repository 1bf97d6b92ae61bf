#!/usr/bin/env bash
# The dependency ranges pyproject.toml states, tested at their ends: a fresh venv per end with every requirement
# of the package and of its `dev` and `monitor` extras, the pins below on top, the package built into it, then
# the tests that exercise those dependencies. Not part of .ci/run: it downloads and builds (minutes, ~1 GB).
#
#   .ci/deps_ends.sh lower     [pytest args]  each runtime range at its lowest release (LOWER); TRL left out (its
#                                             tests skip) with `dev`'s transformers >= 5: the `trl` extra's floor
#   .ci/deps_ends.sh trl-lower [pytest args]  the `trl` extra at its lowest: TRL 1.15.0 with transformers 5.0.0,
#                                             the lowest datasets TRL accepts and the lowest peft; the rest resolves
#                                             freely
#   .ci/deps_ends.sh upper     [pytest args]  the newest release each range admits (what pip picks unpinned)
#
# Pytest args replace the default subset (`tests` for the whole suite). torch stays 2.13.0 at every end: it is
# the CPU wheel this project's machines carry, and any other torch is a multi-GB CUDA download. A venv goes under
# $RFTFAST_DEPS_VENVS (default /tmp/rftfast-deps)/<end>, made anew on each call.
set -euo pipefail
end=${1:-}
[[ $end == lower || $end == trl-lower || $end == upper ]] || {
    echo "usage: $0 lower|trl-lower|upper [pytest args...]" >&2
    exit 2
}
shift
cd "$(dirname "$0")/.."
root=${RFTFAST_DEPS_VENVS:-/tmp/rftfast-deps}/$end

# The lowest release of each range in pyproject.toml (keep the two in step). What the dependencies pull in and
# the project does not import itself (huggingface-hub, safetensors, accelerate, pandas) resolves freely, but for
# pyarrow: pip would pick the newest, which fails at import under NumPy 1.x.
LOWER=(
    "numpy==1.24.0"
    "numba==0.59.0"
    "transformers==4.53.0"
    "tokenizers==0.21.0"   # transformers 4.53 needs >= 0.21
    "datasets==2.21.0"
    "pyarrow==15.0.0"      # the lowest datasets 2.21 accepts (pyarrow 26 needs NumPy >= 2, undeclared)
    "pyyaml==6.0"
    "tqdm==4.66.3"         # datasets 2.21 needs >= 4.66.3
    "matplotlib==3.7.0"
    "peft==0.10.0"
    "tensorboard==2.14.0"
    "wandb==0.19.10"
)
# TRL < 1.15 fails the oracle tests (its DPO loss reads the model's `logits`, not the per-token `log_probs` the
# oracle gives it; before 1.9 `compute_ref_log_probs` takes no model); under transformers 4.56.2 and 4.57.6
# FusedDPOTrainer is ~1e-4 off TRL's trainer and its bf16 backward fails (fused_dpo.py: index_copy_ of bf16 into
# fp32), so the `trl` extra asks for transformers >= 5.
TRL_LOWER=(
    "trl==1.15.0"
    "transformers==5.0.0"
    "datasets==4.7.0"      # the lowest TRL 1.15 accepts
    "peft==0.10.0"
)
# The tests that reach transformers (models, generation, chat templates, checkpoints, the pipeline), TRL (the
# losses' oracle and the trainer integration), numba (the MCTS forest), datasets (importers, pairs files), peft
# (LoRA) and the monitoring mirrors.
SUBSET=(
    tests/generation tests/train tests/pipeline tests/integrations tests/mcts tests/data tests/eval
    tests/losses/test_objectives.py tests/losses/test_fused_dpo.py
)
case $end in
    lower) pins=("${LOWER[@]}") drop="trl transformers" ;;  # dropped from the extras; the package's own stay
    trl-lower) pins=("${TRL_LOWER[@]}") drop="" ;;
    upper) pins=() drop="" ;;
esac

rm -rf "$root"
mkdir -p "$root"
python3 -m venv "$root/venv"
# shellcheck disable=SC1091
. "$root/venv/bin/activate"
python -m pip install --quiet --upgrade pip
# The requirements of the package, `dev` and `monitor`, as pyproject.toml states them (the extras less `drop`).
python - "$drop" >"$root/requirements.txt" <<'EOF'
import re, sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = project["optional-dependencies"]
print(*project["dependencies"], sep="\n")
for req in [*extras["dev"], *extras["monitor"]]:
    if re.match(r"[A-Za-z0-9_.-]+", req).group(0).lower() not in sys.argv[1].split():
        print(req)
EOF
printf '%s\n' "${pins[@]}" >"$root/constraints.txt"
python -m pip install --quiet torch==2.13.0
python -m pip install --quiet -r "$root/requirements.txt" -c "$root/constraints.txt" torch==2.13.0
# The package itself (its C++ extension built into this venv's own folder, not build/, the working venv's).
python -m pip install --quiet --no-deps -e . --config-settings=build-dir="$root/build"
python -m pip install --quiet --no-deps bfcl-eval==2026.3.23  # as .ci/run: the checker's oracle, without its SDKs
python -m pip check | grep -v '^bfcl-eval ' || true  # bfcl-eval's are expected: installed without its dependencies
python - <<'EOF'
from importlib.metadata import PackageNotFoundError, version
names = ["torch", "numpy", "numba", "transformers", "tokenizers", "huggingface-hub", "datasets", "pyarrow",
         "pyyaml", "tqdm", "matplotlib", "trl", "accelerate", "peft", "tensorboard", "wandb"]
def v(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return "-"
print("versions:", ", ".join(f"{n}=={v(n)}" for n in names))
EOF
args=("$@")
[[ ${#args[@]} -gt 0 ]] || args=("${SUBSET[@]}")
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} python -m pytest -q -p no:cacheprovider "${args[@]}"
