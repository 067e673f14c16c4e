#!/usr/bin/env bash
# Lint, format and type checks, as CI runs them before the tests (.ci/run). Run it before committing.
set -euo pipefail
cd "$(dirname "$0")/.."
paths=(specmem indexer server tests scripts)
.venv/bin/ruff check "${paths[@]}"
.venv/bin/ruff format --check "${paths[@]}"
.venv/bin/python scripts/typecheck.py
.venv/bin/python scripts/complexity.py
