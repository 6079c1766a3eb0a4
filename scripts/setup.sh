#!/usr/bin/env bash
# Set up fastpush on this machine and push a demo study: the README's first command.
#   - installs the real DICOM peers (Debian dcmtk, orthanc) if missing;
#   - builds and installs the package (Rust extension via maturin) with pip;
#   - runs `python3 -m fastpush demo`.
# Idempotent: safe to run again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

step "Debian peers"
ensure_peers

step "pip install . (builds the Rust extension)"
"$PYTHON" -m pip install .

step "demo"
# Run outside the source tree so the installed package (with its extension) is the one imported.
cd /
exec "$PYTHON" -m fastpush demo
