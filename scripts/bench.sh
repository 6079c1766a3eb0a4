#!/usr/bin/env bash
# Run the benchmarks: the framing micro-benchmarks, then the end-to-end side-by-side harness.
#   - installs the peers and tools if missing (Debian dcmtk, orthanc, time);
#   - builds and installs the package editable with its test extras (release Rust extension,
#     pynetdicom, pytest-benchmark);
#   - python -m pytest benches/bench_framing.py --benchmark-only;
#   - python benches/e2e.py "$@"   (e.g. --quick, --only rust,storescu, --data DIR).
# The e2e report goes to stdout: scripts/bench.sh > benches/results/latest.md keeps a record.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

step "Debian peers"
ensure_peers

# The harness reads each sender's peak RSS through GNU time (see benches/runner.py).
if [[ ! -x /usr/bin/time ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "missing /usr/bin/time: apt-get install -y time (as root)" >&2
        exit 1
    fi
    step "installing time (apt)"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends time
fi

step "pip install -e '.[test]' (release build of the Rust extension, pynetdicom, pytest-benchmark)"
"$PYTHON" -m pip install -q -e '.[test]'

profile=$("$PYTHON" -c 'from fastpush import _core; print(_core.BUILD_PROFILE)')
if [[ $profile != release ]]; then
    echo "fastpush._core is a $profile build; benchmarks need a release build" >&2
    exit 1
fi

step "micro-benchmarks: framing in memory, Rust vs Python"
"$PYTHON" -m pytest benches/bench_framing.py --benchmark-only -p no:cacheprovider >&2

step "end-to-end: fastpush (Rust, Python), pynetdicom, DCMTK storescu"
exec "$PYTHON" benches/e2e.py "$@"
