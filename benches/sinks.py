"""The receiving ends: DCMTK ``storescp --ignore`` (Nagle off or as shipped, or over TLS with
Nagle off) and Orthanc.

Each run gets a fresh sink on a free loopback port, stopped by PID afterwards, so no run inherits
another's state (Orthanc's database, a half-closed association). Only binaries from the Debian
packages are used, by absolute path: pynetdicom installs ``storescp``/``storescu`` scripts that
shadow DCMTK's on ``PATH``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import stop_pid

__all__ = [
    "OPENSSL",
    "ORTHANC",
    "PARALLEL_SINKS",
    "SINKS",
    "STORESCP",
    "TLS_SINK",
    "Sink",
    "start_sink",
]

STORESCP = "/usr/bin/storescp"
ORTHANC = "/usr/sbin/Orthanc"
STARTUP_TIMEOUT = 30.0

SINKS = ("storescp-nodelay", "storescp-shipped", "orthanc", "storescp-implicit")
"""Sink names, in table order."""
PARALLEL_SINKS = ("storescp-fork-nodelay", "storescp-fork-shipped", "orthanc")
TLS_SINK = "storescp-tls"
"""storescp with Nagle off over DICOM TLS (issue 5)."""
OPENSSL = "/usr/bin/openssl"
"""Sinks that serve several associations at once (storescp --fork: a process each)."""

# Proxies in the environment must not capture loopback REST calls to our Orthanc.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Sink:
    """A running storage SCP on 127.0.0.1."""

    name: str
    port: int
    aet: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    http_port: int | None = None
    ca: Path | None = None
    """TLS sinks: the PEM certificate senders must verify the sink against."""

    def stop(self) -> float:
        """Stop it; the CPU seconds it used (user + system), start-up included."""
        return stop_pid(self.proc)

    def stored_count(self) -> int | None:
        """Instances the sink holds, when it can tell (Orthanc); ``None`` for ``--ignore``."""
        if self.http_port is None:
            return None
        stats: dict[str, Any] = json.loads(_http_get(self.http_port, "/statistics"))
        return int(stats["CountInstances"])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _http_get(port: int, path: str, timeout: float = 10.0) -> bytes:
    with _NO_PROXY.open(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
        body: bytes = resp.read()
        return body


def _wait_ready(proc: subprocess.Popen[bytes], port: int, http_port: int | None) -> None:
    """Block until the server accepts DICOM connections (and answers ``/system`` if Orthanc).

    Neither server can tell us it is ready, so we probe with short retries until a deadline.
    """
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before it was ready")
        try:
            if http_port is not None:
                _http_get(http_port, "/system", timeout=1.0)
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except (OSError, urllib.error.URLError):
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {STARTUP_TIMEOUT:.0f} s") from None
            time.sleep(0.05)


def _self_signed(workdir: Path) -> tuple[Path, Path]:
    """A key and a self-signed certificate for 127.0.0.1 (RSA 2048, as DCMTK's BCP 195 profile
    and every client take): the certificate is also the one CA the senders trust."""
    key, cert = workdir / "sink.key", workdir / "sink.pem"
    command = [OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
    command += ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=fastpush-bench"]
    command += ["-addext", "subjectAltName=IP:127.0.0.1"]
    command += ["-addext", "basicConstraints=critical,CA:FALSE"]
    subprocess.run(command, check=True, capture_output=True)
    return key, cert


def _start_storescp(
    name: str, workdir: Path, nodelay: bool, *options: str, tls: bool = False
) -> Sink:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "TCP_NODELAY"}
    if nodelay:
        env["TCP_NODELAY"] = "1"  # DCMTK reads this variable and disables Nagle on its sockets
    log_path = workdir / f"{name}.log"
    # --ignore: receive and acknowledge, store nothing, so the disk is not what we measure.
    # -dhl: no reverse DNS lookup per association.
    cmd = [STORESCP, "--ignore", "-dhl", *options, "--aetitle", "STORESCP", str(port)]
    ca = None
    if tls:
        # -ic: no client certificate asked for (senders authenticate the sink, not vice versa).
        key, ca = _self_signed(workdir)
        cmd[1:1] = ["+tls", str(key), str(ca), "-ic"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
        )
    return Sink(name, port, "STORESCP", proc, log_path, ca=ca)


def _start_orthanc(workdir: Path) -> Sink:
    port, http_port = free_port(), free_port()
    while http_port == port:
        http_port = free_port()
    storage = workdir / "orthanc-storage"
    config = {
        "Name": "fastpush-bench",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "DicomAet": "ORTHANC",
        "DicomPort": port,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": False,
        "UnknownSopClassAccepted": True,
        "Plugins": [],
    }
    config_path = workdir / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    log_path = workdir / "orthanc.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [ORTHANC, str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    return Sink("orthanc", port, "ORTHANC", proc, log_path, http_port=http_port)


def start_sink(name: str, workdir: Path) -> Sink:
    """Start sink ``name`` (one of :data:`SINKS`), its files in ``workdir``; wait until ready."""
    workdir.mkdir(parents=True, exist_ok=True)
    if name == "storescp-nodelay":
        sink = _start_storescp(name, workdir, nodelay=True)
    elif name == "storescp-shipped":
        sink = _start_storescp(name, workdir, nodelay=False)
    elif name == "storescp-fork-nodelay":
        sink = _start_storescp(name, workdir, True, "--fork")
    elif name == "storescp-fork-shipped":
        sink = _start_storescp(name, workdir, False, "--fork")
    elif name == "storescp-implicit":
        # +xi: Implicit VR LE only, so every Explicit VR file must be converted by the sender.
        sink = _start_storescp(name, workdir, True, "+xi")
    elif name == TLS_SINK:
        sink = _start_storescp(name, workdir, True, tls=True)
    elif name == "orthanc":
        sink = _start_orthanc(workdir)
    else:
        raise ValueError(f"unknown sink {name!r}")
    try:
        _wait_ready(sink.proc, sink.port, sink.http_port)
    except (RuntimeError, TimeoutError) as exc:
        sink.stop()
        raise RuntimeError(f"sink {name} did not start: {exc}\n{sink.log()}") from None
    return sink
