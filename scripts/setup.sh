#!/usr/bin/env bash
# Create .venv and install specmem with its test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
# The CPU build of torch first: installed later, as a dependency of sentence-transformers, it would pull CUDA.
.venv/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
echo "specmem installed in .venv: .venv/bin/specmem --help" >&2
