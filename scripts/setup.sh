#!/usr/bin/env bash
# Set up fastpush on this machine and push a demo study: the README's first command.
#   - installs the real DICOM peers (Debian dcmtk, orthanc) if missing;
#   - builds and installs the package (Rust extension via maturin) with pip, with its pixel-data
#     codecs (the `codecs` extra), so a JPEG study pushed to a PACS that accepts only
#     uncompressed syntaxes is decompressed rather than refused;
#   - runs `python3 -m fastpush demo`.
# Idempotent: safe to run again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

step "Debian peers"
ensure_peers

step "pip install '.[codecs]' (builds the Rust extension)"
"$PYTHON" -m pip install '.[codecs]'

step "demo"
# (The package lives under python/, so the repo root does not shadow the installed copy.)
exec "$PYTHON" -m fastpush demo
