"""Real DICOM peers for the tests, started on 127.0.0.1 and a free port, stopped by PID.

Nothing here imports fastpush except :mod:`fastpush.synthetic` (in conftest): these helpers are
the independent side of every interop test.

* :class:`StoreSCP` — DCMTK ``/usr/bin/storescp`` (always by absolute path: pynetdicom installs
  console scripts with the same names that shadow DCMTK's on ``PATH``).
* :class:`Orthanc` — ``/usr/sbin/Orthanc`` with its own config, storage and ports; REST helpers.
* :class:`PynetdicomSCP` — a pynetdicom storage SCP in a thread with scripted statuses.
* :func:`dataset_bytes` — the dataset bytes of a Part-10 file, parsed here independently.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any, Protocol

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    RLELossless,
)

STORESCP = "/usr/bin/storescp"
STORESCU = "/usr/bin/storescu"
ECHOSCU = "/usr/bin/echoscu"
DCMDUMP = "/usr/bin/dcmdump"
ORTHANC = "/usr/sbin/Orthanc"

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0

# --------------------------------------------------------------------------------------------
# helpers


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(
    port: int, *, timeout: float = STARTUP_TIMEOUT, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until 127.0.0.1:port accepts a TCP connection; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                msg = f"nothing listening on 127.0.0.1:{port} after {timeout}s"
                raise TimeoutError(msg) from None
            time.sleep(0.02)


def stop_process(proc: subprocess.Popen[bytes], *, timeout: float = STOP_TIMEOUT) -> None:
    """Terminate ``proc`` by PID, then kill it if it has not exited within ``timeout``."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


# --------------------------------------------------------------------------------------------
# Part-10 parsing, independent of fastpush

# Explicit VRs with 2 reserved bytes and a 4-byte length.
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)


def dataset_offset(data: bytes) -> int:
    """Offset of the dataset in Part-10 ``data``: after the preamble, ``DICM`` and group 0002.

    Group 0002 is always Explicit VR Little Endian; elements are walked one by one until the
    group changes (the group length element is not trusted).
    """
    if len(data) < 132 or data[128:132] != b"DICM":
        raise ValueError("not a Part-10 file (no DICM prefix at offset 128)")
    pos = 132
    while pos + 8 <= len(data):
        group, _element = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            break
        vr = data[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            (length,) = struct.unpack_from("<I", data, pos + 8)
            pos += 12 + length
        else:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            pos += 8 + length
    return pos


def pydicom_test_files() -> list[Path]:
    """The Part-10 test files pydicom ships (no download: ``get_testdata_files`` tries the
    network for its extra files and waits for it to fail)."""
    import pydicom.data

    folder = Path(pydicom.data.__file__).parent / "test_files"
    return sorted(folder.glob("*.dcm"))


def encode_dataset(ds: Dataset, syntax: str) -> bytes:
    """``ds`` encoded in the uncompressed ``syntax`` (deflated: Explicit VR LE, raw deflate)."""
    uid = UID(syntax)
    buffer = DicomBytesIO()
    buffer.is_little_endian = uid.is_little_endian
    buffer.is_implicit_VR = uid.is_implicit_VR
    write_dataset(buffer, ds)
    data = buffer.getvalue()
    if uid.is_deflated:
        z = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        data = z.compress(data) + z.flush()
    return data


def dataset_bytes(path: Path | str) -> bytes:
    """The bytes of the dataset that follows the file meta of the Part-10 file at ``path``."""
    with open(path, "rb") as f:
        head = f.read(64 * 1024)
        offset = dataset_offset(head)
        f.seek(offset)
        return f.read()


# --------------------------------------------------------------------------------------------
# DCMTK storescp


@dataclass
class StoreSCP:
    """A running ``/usr/bin/storescp``."""

    port: int
    outdir: Path
    aet: str
    log_path: Path
    args: tuple[str, ...]
    proc: subprocess.Popen[bytes]
    host: str = "127.0.0.1"

    def stored_files(self) -> list[Path]:
        """Files written to ``outdir`` so far (``+B`` names them ``<SOP class abbrev>.<UID>``)."""
        return sorted(p for p in self.outdir.iterdir() if p.is_file())

    def log(self) -> str:
        """Everything storescp wrote to stdout/stderr so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc)


def start_storescp(
    workdir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    aet: str = "STORESCP",
    attempts: int = 3,
    port: int | None = None,
) -> StoreSCP:
    """Start storescp with ``-dhl --aetitle AET -od OUTDIR ARGS... PORT`` on a free port (or
    on ``port``).

    ``env`` is added to a copy of the current environment (e.g. ``{"TCP_NODELAY": "1"}``).
    Retries on a fresh port if the chosen one was taken in the meantime.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    last_error: Exception | None = None
    fixed = port
    for attempt in range(attempts if fixed is None else 1):
        port = free_port() if fixed is None else fixed
        outdir = workdir / f"out-{port}"
        outdir.mkdir()
        log_path = workdir / f"storescp-{port}.log"
        cmd = [STORESCP, "-dhl", "--aetitle", aet, "-od", str(outdir), *args, str(port)]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env
            )
        scp = StoreSCP(port, outdir, aet, log_path, tuple(args), proc)
        try:
            wait_for_port(port, proc=proc)
            return scp
        except (RuntimeError, TimeoutError) as exc:
            scp.stop()
            last_error = RuntimeError(f"storescp {cmd} (attempt {attempt + 1}): {exc}\n{scp.log()}")
    assert last_error is not None
    raise last_error


# --------------------------------------------------------------------------------------------
# Orthanc

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Orthanc:
    """A running ``/usr/sbin/Orthanc`` with a private config, storage and ports."""

    dicom_port: int
    http_port: int
    workdir: Path
    log_path: Path
    proc: subprocess.Popen[bytes]
    aet: str = "ORTHANC"
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def request(
        self, method: str, path: str, *, body: bytes | None = None, timeout: float = 30.0
    ) -> bytes:
        """One REST call (proxies bypassed); returns the body, raises ``HTTPError`` on 4xx/5xx."""
        req = urllib.request.Request(self.url + path, data=body, method=method)
        with _NO_PROXY.open(req, timeout=timeout) as resp:
            body: bytes = resp.read()
            return body

    def get_json(self, path: str) -> Any:
        return json.loads(self.request("GET", path))

    def system(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get_json("/system")
        return result

    def instances(self) -> list[str]:
        """Orthanc IDs of every stored instance."""
        result: list[str] = self.get_json("/instances")
        return result

    def instance_file(self, instance_id: str) -> bytes:
        """The stored Part-10 file (Orthanc may rewrite the file meta: compare datasets)."""
        return self.request("GET", f"/instances/{instance_id}/file")

    def instance_tags(self, instance_id: str) -> dict[str, Any]:
        """``/instances/{id}/simplified-tags``: keyword -> value."""
        result: dict[str, Any] = self.get_json(f"/instances/{instance_id}/simplified-tags")
        return result

    def sop_instance_uids(self) -> set[str]:
        return {self.instance_tags(i)["SOPInstanceUID"] for i in self.instances()}

    def statistics(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get_json("/statistics")
        return result

    def clear(self) -> None:
        """Delete every stored instance, so a test starts from an empty PACS."""
        for instance_id in self.instances():
            try:
                self.request("DELETE", f"/instances/{instance_id}")
            except urllib.error.HTTPError as exc:  # deleted with its parent meanwhile
                if exc.code != 404:
                    raise
        remaining = self.instances()
        if remaining:
            raise RuntimeError(f"Orthanc still holds {len(remaining)} instances after clear()")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc, timeout=10.0)


def orthanc_config(workdir: Path, dicom_port: int, http_port: int) -> dict[str, Any]:
    storage = workdir / "storage"
    return {
        "Name": "fastpush-test",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "DicomAet": "ORTHANC",
        "DicomPort": dicom_port,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": False,
        "UnknownSopClassAccepted": True,
        "Plugins": [],
    }


def start_orthanc(workdir: Path, *, attempts: int = 3) -> Orthanc:
    """Write a config into ``workdir``, start Orthanc and wait until ``/system`` answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    last_error: Exception | None = None
    for attempt in range(attempts):
        dicom_port, http_port = free_port(), free_port()
        while http_port == dicom_port:
            http_port = free_port()
        config = workdir / f"orthanc-{dicom_port}.json"
        config.write_text(json.dumps(orthanc_config(workdir, dicom_port, http_port), indent=2))
        log_path = workdir / f"orthanc-{dicom_port}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [ORTHANC, str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=workdir,
            )
        server = Orthanc(dicom_port, http_port, workdir, log_path, proc)
        try:
            _wait_for_http(server)
            wait_for_port(dicom_port, proc=proc)
            return server
        except (RuntimeError, TimeoutError) as exc:
            server.stop()
            last_error = RuntimeError(f"Orthanc (attempt {attempt + 1}): {exc}\n{server.log()}")
    assert last_error is not None
    raise last_error


def _wait_for_http(server: Orthanc, timeout: float = STARTUP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {server.proc.returncode}")
        try:
            server.system()
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            if time.monotonic() > deadline:
                raise TimeoutError(f"Orthanc /system did not answer within {timeout}s") from None
            time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# pynetdicom storage SCP

IdentityCheck = Callable[[int, bytes, bytes | None], tuple[bool, bytes | None]]
"""``(user identity type, primary field, secondary field) -> (accepted, server response)``."""

DEFAULT_SCP_TRANSFER_SYNTAXES: tuple[str, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEG2000Lossless,
    RLELossless,
)


@dataclass
class ReceivedStore:
    """One C-STORE the pynetdicom SCP received."""

    index: int
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    context_id: int
    calling_aet: str
    called_aet: str
    raw: bytes
    status: int

    def dataset(self) -> Dataset:
        """Decode :attr:`raw` in the negotiated transfer syntax."""
        ts = UID(self.transfer_syntax)
        if ts == DeflatedExplicitVRLittleEndian:
            data = zlib.decompress(self.raw, -zlib.MAX_WBITS)
        else:
            data = self.raw
        return read_dataset(
            BytesIO(data), is_implicit_VR=ts.is_implicit_VR, is_little_endian=ts.is_little_endian
        )


@dataclass
class PynetdicomSCP:
    """A pynetdicom storage SCP serving in a background thread."""

    port: int
    aet: str
    server: Any
    received: list[ReceivedStore] = field(default_factory=list)
    host: str = "127.0.0.1"

    @property
    def received_uids(self) -> list[str]:
        return [r.sop_instance_uid for r in self.received]

    def stop(self) -> None:
        self.server.shutdown()


def start_pynetdicom_scp(
    *,
    statuses: Callable[[int], int] | None = None,
    require_called_aet: str | None = None,
    sop_classes: Sequence[str] | None = None,
    transfer_syntaxes: Sequence[str] = DEFAULT_SCP_TRANSFER_SYNTAXES,
    aet: str = "PYNETDICOM",
    max_pdu: int = 16382,
    ssl_context: ssl.SSLContext | None = None,
    identity: IdentityCheck | None = None,
) -> PynetdicomSCP:
    """Start a threaded pynetdicom storage SCP on a free port.

    ``statuses(n)`` gives the status for the n-th C-STORE received (0-based, counted across
    associations); default 0x0000. ``require_called_aet`` makes it reject associations whose
    Called AE title differs (and uses that title). ``sop_classes`` restricts the abstract syntaxes
    it supports (others are refused at negotiation); default: every storage SOP class.
    ``ssl_context`` (a server-side ``ssl.SSLContext``) makes it a DICOM TLS server.
    ``identity(type, primary, secondary) -> (accepted, server_response)`` answers User Identity
    negotiation (``EVT_USER_ID``): an association whose identity it refuses is rejected.
    """
    from pynetdicom import AE, AllStoragePresentationContexts, evt

    title = require_called_aet or aet
    ae = AE(ae_title=title)
    ae.maximum_pdu_size = max_pdu
    if require_called_aet is not None:
        ae.require_called_aet = True
    if sop_classes is None:
        for cx in AllStoragePresentationContexts:
            assert cx.abstract_syntax is not None
            ae.add_supported_context(cx.abstract_syntax, list(transfer_syntaxes))
    else:
        for sop_class in sop_classes:
            ae.add_supported_context(sop_class, list(transfer_syntaxes))

    lock = threading.Lock()
    received: list[ReceivedStore] = []

    def on_c_store(event: Any) -> int:
        request = event.request
        raw = request.DataSet.getvalue() if request.DataSet is not None else b""
        assoc = event.assoc
        with lock:
            index = len(received)
            status = statuses(index) if statuses is not None else 0x0000
            received.append(
                ReceivedStore(
                    index=index,
                    sop_class_uid=str(request.AffectedSOPClassUID),
                    sop_instance_uid=str(request.AffectedSOPInstanceUID),
                    transfer_syntax=str(event.context.transfer_syntax),
                    context_id=int(event.context.context_id),
                    calling_aet=str(assoc.requestor.ae_title),
                    called_aet=str(assoc.acceptor.ae_title),
                    raw=raw,
                    status=status,
                )
            )
        return status

    handlers: list[tuple[Any, Callable[..., Any]]] = [(evt.EVT_C_STORE, on_c_store)]
    if identity is not None:
        check = identity

        def on_user_id(event: Any) -> tuple[bool, bytes | None]:
            return check(event.user_id_type, event.primary_field, event.secondary_field)

        handlers.append((evt.EVT_USER_ID, on_user_id))
    last_error: Exception | None = None
    for _attempt in range(3):
        port = free_port()
        try:
            server = ae.start_server(
                ("127.0.0.1", port),
                block=False,
                evt_handlers=handlers,
                ssl_context=ssl_context,
            )
        except OSError as exc:  # port taken in the meantime
            last_error = exc
            continue
        return PynetdicomSCP(port=port, aet=title, server=server, received=received)
    assert last_error is not None
    raise last_error


# --------------------------------------------------------------------------------------------
# fastpush's own CLI, as a user runs it


def run_cli(
    *args: str, timeout: float = 60.0, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m fastpush ARGS...`` (in ``cwd``) and capture its output as text."""
    return subprocess.run(
        [sys.executable, "-m", "fastpush", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
    )


class StoreSCPFactory(Protocol):
    def __call__(self, *args: str, env: dict[str, str] | None = None) -> StoreSCP: ...


class PynetdicomSCPFactory(Protocol):
    def __call__(
        self,
        *,
        statuses: Callable[[int], int] | None = None,
        require_called_aet: str | None = None,
        sop_classes: Sequence[str] | None = None,
        transfer_syntaxes: Sequence[str] = DEFAULT_SCP_TRANSFER_SYNTAXES,
        max_pdu: int = 16382,
        ssl_context: ssl.SSLContext | None = None,
        identity: IdentityCheck | None = None,
    ) -> PynetdicomSCP: ...
