# Shared helpers for scripts/setup.sh and scripts/test.sh (sourced, not run).
# shellcheck shell=bash

# Print a step heading on stderr.
step() {
    printf '\n==> %s\n' "$*" >&2
}

# Install the real DICOM peers (DCMTK storescp/storescu, Orthanc), the system zlib headers and
# headless Chromium with chromedriver (the status page's browser test) from Debian when missing.
# Idempotent: apt is only touched if /usr/bin/storescp or /usr/sbin/Orthanc is absent, and
# `apt-get update` runs at most once per shell. Without root, prints what to install and fails.
_fastpush_apt_updated=0
ensure_peers() {
    local missing=()
    [[ -x /usr/bin/storescp ]] || missing+=(dcmtk)
    [[ -x /usr/sbin/Orthanc ]] || missing+=(orthanc)
    # The Rust core links the system zlib (flate2's zlib backend) so that it deflates exactly
    # as Python's zlib module does; without the headers libz-sys would build its own copy.
    [[ -f /usr/include/zlib.h ]] || missing+=(zlib1g-dev pkg-config)
    # The router's status page is tested in a real browser: headless Chromium, driven by
    # Selenium through chromedriver.
    [[ -x /usr/bin/chromium ]] || missing+=(chromium)
    [[ -x /usr/bin/chromedriver ]] || missing+=(chromium-driver)
    if ((${#missing[@]} == 0)); then
        echo "DCMTK, Orthanc, zlib headers and Chromium already installed" >&2
        return 0
    fi
    if [[ $(id -u) -ne 0 ]]; then
        echo "missing Debian packages: ${missing[*]}" >&2
        echo "install them as root:  apt-get update && apt-get install -y ${missing[*]}" >&2
        return 1
    fi
    step "installing ${missing[*]} (apt)"
    if ((_fastpush_apt_updated == 0)); then
        apt-get update
        _fastpush_apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

# Install dicom-rs's storage SCP and SCU (interop tests, receive benchmark) into
# $CARGO_HOME/bin when missing. Idempotent: cargo only runs if a binary is absent; the build
# takes about 3 minutes on two cores.
DICOM_RS_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
ensure_dicom_rs() {
    if [[ -x $DICOM_RS_BIN/dicom-storescp && -x $DICOM_RS_BIN/dicom-storescu ]]; then
        echo "dicom-rs storescp and storescu already installed" >&2
        return 0
    fi
    step "cargo install dicom-storescp dicom-storescu (a few minutes)"
    cargo install --locked dicom-storescp dicom-storescu
}

# The Python interpreter to use (override with PYTHON=...).
PYTHON=${PYTHON:-python3}
