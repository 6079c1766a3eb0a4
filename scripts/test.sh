#!/usr/bin/env bash
# Run every test: the README's test command (and CI's, via .ci/run).
#   - installs the real DICOM peers (Debian dcmtk, orthanc; dicom-rs with cargo) if missing;
#   - installs the package editable with its test extras (tests run against this tree);
#   - lint (scripts/lint.sh), cargo test, then pytest (unit and interop tests).
# Exits non-zero if anything fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

step "Debian peers"
ensure_peers

step "dicom-rs peers"
ensure_dicom_rs

step "pip install -e '.[test]' (builds the Rust extension)"
"$PYTHON" -m pip install -e '.[test]'

bash scripts/lint.sh

step "cargo test"
cargo test

step "pytest"
"$PYTHON" -m pytest "$@"
