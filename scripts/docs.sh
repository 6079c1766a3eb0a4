#!/usr/bin/env bash
# Build the documentation site into site/ with `mkdocs build --strict`: a broken link, a page
# left out of the nav, a `::: fastpush.NAME` that does not resolve, or a public name without a
# docstring (docs/hooks/docstrings.py) fails it. Run by scripts/test.sh.
#   bash scripts/docs.sh            build site/
#   bash scripts/docs.sh --serve    preview on http://127.0.0.1:8000 (rebuilds on change)
# The API pages are read from the source tree (python/) by mkdocstrings; the package need not be
# installed. Installs MkDocs, Material and mkdocstrings with pip when missing (the `docs` extra).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

if ! "$PYTHON" -c 'import mkdocs, material, mkdocstrings, mkdocstrings_handlers.python' \
    >/dev/null 2>&1; then
    step "pip install mkdocs mkdocs-material 'mkdocstrings[python]'"
    "$PYTHON" -m pip install 'mkdocs>=1.6' 'mkdocs-material>=9.5' 'mkdocstrings[python]>=0.26'
fi

export NO_MKDOCS_2_WARNING=1 # Material's end-of-life banner
if [[ ${1:-} == --serve ]]; then
    exec "$PYTHON" -m mkdocs serve --strict
fi

step "mkdocs build --strict (site/)"
"$PYTHON" -m mkdocs build --strict --clean

