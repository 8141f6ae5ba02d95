#!/usr/bin/env bash
# The test command: lint, type-check, then the test suite (real models, real data).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
