#!/usr/bin/env bash
# Build the distributions into dist/: an abi3 manylinux_2_28 wheel for x86_64 (Python >= 3.10,
# one wheel for every CPython) and an sdist. Run by scripts/test.sh; tests/test_wheel.py installs
# the wheel into a fresh virtual environment with no Rust toolchain on PATH.
#   - built from the committed tree (HEAD, exported with `git archive` into target/wheel-source),
#     never from uncommitted edits: what is shipped is a commit;
#   - maturin links with zig (`ziglang` from PyPI), so no manylinux container is needed: zig
#     targets glibc 2.28 whatever the host's glibc is;
#   - release profile (lto = "fat", codegen-units = 1 from Cargo.toml), symbols stripped
#     (--strip), in its own target folder (target/wheel) so it does not rebuild the editable
#     install's target/;
#   - `auditwheel show` confirms the platform tag; the wheel's size is printed.
#
#   bash scripts/build.sh                 x86_64 and aarch64 wheels (aarch64 cross-built by the
#                                         same command when rustup can add the target), sdist
#   bash scripts/build.sh --x86_64-only   no aarch64 wheel (what the tests need)
#   bash scripts/build.sh --if-stale      do nothing when dist/ was built from the same sources
# From scratch the x86_64 wheel takes about 1.5 minutes on 2 cores (fat LTO), the aarch64 one
# about 1 more; later builds recompile only fastpush itself (the dependencies stay in target/wheel).
#
# Installs maturin, ziglang and auditwheel with pip when missing (the `build` extra).
# dist/BUILD-STAMP holds the fingerprint of the sources the wheel was built from.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

if_stale=0
aarch64=1
for arg in "$@"; do
    case $arg in
        --if-stale) if_stale=1 ;;
        --x86_64-only) aarch64=0 ;;
        *)
            echo "usage: bash scripts/build.sh [--if-stale] [--x86_64-only]" >&2
            exit 2
            ;;
    esac
done

# What goes into the distributions, as of HEAD: the git object ids of the package, the crate and
# the metadata (a commit that touches none of them does not call for a rebuild; nor does one
# that touches only the README, the long description).
# Outside a git checkout (a source tarball), the tree as it is, by content.
in_git=0
git rev-parse --verify -q HEAD >/dev/null 2>&1 && in_git=1
source_fingerprint() {
    if ((in_git)); then
        git ls-tree HEAD -- python rust Cargo.toml Cargo.lock pyproject.toml
    else
        find python rust Cargo.toml Cargo.lock pyproject.toml -type f \
            ! -name '*.so' ! -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum
    fi | sha256sum | cut -d' ' -f1
}

stamp=dist/BUILD-STAMP
fingerprint=$(source_fingerprint)
if ((if_stale)) && [[ -f $stamp && $(cat "$stamp") == "$fingerprint" ]] &&
    compgen -G 'dist/fastpush-*-cp310-abi3-manylinux_2_28_x86_64.whl' >/dev/null; then
    echo "dist/ is up to date with the sources ($fingerprint): not rebuilding" >&2
    exit 0
fi

step "build tools (maturin, ziglang, auditwheel)"
if ! "$PYTHON" -m maturin --version >/dev/null 2>&1 ||
    ! "$PYTHON" -c 'import ziglang' >/dev/null 2>&1 ||
    ! "$PYTHON" -m auditwheel --version >/dev/null 2>&1; then
    "$PYTHON" -m pip install 'maturin>=1.9.4,<2' ziglang auditwheel
else
    echo "already installed" >&2
fi

rm -rf dist
mkdir -p dist
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/wheel}
# The same folder every time, so cargo reuses the compiled dependencies.
dist_dir=$PWD/dist
if ((in_git)); then
    source_dir=$PWD/target/wheel-source
    rm -rf "$source_dir"
    mkdir -p "$source_dir"
    git archive HEAD | tar -x -C "$source_dir"
    echo "sources: $(git rev-parse --short HEAD) (git archive HEAD)" >&2
else
    source_dir=$PWD
    echo "sources: this folder (not a git checkout)" >&2
fi

step "wheel: maturin build --release --compatibility manylinux_2_28 --zig --strip (x86_64)"
start=$SECONDS
"$PYTHON" -m maturin build --release --strip --compatibility manylinux_2_28 --zig \
    --interpreter "$PYTHON" --out "$dist_dir" \
    --manifest-path "$source_dir/Cargo.toml"
echo "built in $((SECONDS - start)) s" >&2

if ((aarch64)); then
    step "wheel: aarch64 (cross-built with zig)"
    if ! command -v rustup >/dev/null 2>&1; then
        echo "rustup is not installed: skipping aarch64" >&2
    elif ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu &&
        ! rustup target add aarch64-unknown-linux-gnu; then
        echo "rustup could not add aarch64-unknown-linux-gnu: skipping aarch64" >&2
    else
        start=$SECONDS
        "$PYTHON" -m maturin build --release --strip --compatibility manylinux_2_28 --zig \
            --target aarch64-unknown-linux-gnu --interpreter "$PYTHON" --out "$dist_dir" \
            --manifest-path "$source_dir/Cargo.toml"
        echo "built in $((SECONDS - start)) s" >&2
    fi
fi

step "sdist: maturin sdist"
"$PYTHON" -m maturin sdist --out "$dist_dir" --manifest-path "$source_dir/Cargo.toml"

step "auditwheel show"
for wheel in dist/*.whl; do
    "$PYTHON" -m auditwheel show "$wheel"
done

step "sizes"
for dist in dist/*.whl dist/*.tar.gz; do
    printf '%8s KiB  %s\n' "$(($(stat -c %s "$dist") / 1024))" "$dist"
done

echo "$fingerprint" >"$stamp"
