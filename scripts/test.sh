#!/usr/bin/env bash
# Run every test: the README's test command (and CI's, via .ci/run).
#   - installs the real DICOM peers (Debian dcmtk, orthanc; dicom-rs with cargo) if missing;
#   - installs the package editable with its test extras (tests run against this tree);
#   - lint (scripts/lint.sh), cargo test, the release wheel (scripts/build.sh), then pytest (unit
#     and interop tests; the docs site and the wheel in a fresh venv without Rust).
# Exits non-zero if anything fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

step "Debian peers"
ensure_peers

step "dicom-rs peers"
ensure_dicom_rs

step "pip install -e '.[test,docs,build]' (builds the Rust extension)"
"$PYTHON" -m pip install -e '.[test,docs,build]'

bash scripts/lint.sh

step "cargo test"
cargo test

step "release wheel (scripts/build.sh; kept when built from the same commit)"
bash scripts/build.sh --if-stale --x86_64-only

step "pytest (the docs build and the installed wheel included)"
"$PYTHON" -m pytest "$@"
