#!/usr/bin/env bash
# The checks the tree must pass: ruff (lint and format), mypy --strict on the package,
# cargo fmt and clippy with warnings as errors. Run by scripts/test.sh; needs '.[test]' installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

step "ruff"
"$PYTHON" -m ruff check python tests benches
"$PYTHON" -m ruff format --check python tests benches

step "import contracts (import-linter: layers, no cycles)"
# (Through the interpreter, not the console script: PATH may not have it.)
PYTHONPATH=python "$PYTHON" -c 'from importlinter.cli import lint_imports_command as c; c()' --no-cache

step "mypy"
"$PYTHON" -m mypy

step "cargo fmt, clippy"
cargo fmt --check
cargo clippy --all-targets -- -D warnings
