"""The pure-Python data path: P-DATA-TF framing and PDU I/O over a ``socket.socket``.

It owns the same job as the Rust core (``fastpush._core``) and the same interface:
:func:`frame_message` and :class:`PyTransport` (``send_pdu``, ``send_message``, ``recv_pdu``,
``close``, ``closed``, ``timeout``). It is the fallback when the extension is not built, the
reference the Rust path is tested against (both put identical bytes on the wire), and the
benchmark baseline, so it is written to be honest rather than naive: datasets are memory-mapped,
PDUs go out in batches of ``sendmsg`` calls whose buffers are memoryviews into the mapping (headers
packed into one reusable buffer), partial sends are resumed, and the pages already sent are
dropped from the process with ``MADV_DONTNEED`` so memory stays flat whatever the file size.

Waits are bounded by ``timeout`` per blocking call (``socket.settimeout``): a send or receive that
makes no progress for ``timeout`` seconds raises ``TimeoutError``.

Over TLS (an ``ssl.SSLSocket``, which has no ``sendmsg``) the same batches are coalesced into one
staging buffer and written with ``sendall``, so each TLS record is full rather than one per
12-byte PDV header; ``ssl`` errors become ``fastpush.errors.TLSError``.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import operator
import os
import socket
import struct
import sys
from collections.abc import Iterator, Sequence
from typing import Final, TypeAlias

from ..dataset import convert as rewrite
from ..errors import ConversionError, ProtocolError, SourceError
from ..wire import pdu
from ..wire.reassembly import Reassembler
from .tls import describe_ssl_error

__all__ = ["UNLIMITED_FRAGMENT", "FileRegion", "PyTransport", "fragment_size", "frame_message"]

UNLIMITED_FRAGMENT: Final = 1 << 20
"""Fragment size used when the peer's Maximum Length Received is 0 (no limit)."""

FileRegion: TypeAlias = tuple[str, int, int]
"""``(path, offset, length)``: a dataset read in place from a file."""

Dataset: TypeAlias = "bytes | FileRegion | None"
Conversion: TypeAlias = "tuple[str, str] | None"
"""``(from_syntax, to_syntax)``: send the dataset converted (see
:mod:`fastpush.dataset.convert`)."""

_P_DATA_TF: Final = 0x04
_OVERHEAD: Final = 12  # PDU header (6) + PDV header (6 = length 4, context 1, MCH 1)
_HEADER: Final = struct.Struct(">BxIIBB")
_MAX_IOVECS: Final = 1024
_BATCH_BYTES: Final = 4 << 20
_RELEASE_BYTES: Final = 2 << 20
_MAX_PDU_LIMIT: Final = 0xFFFFFFFF
_SEND_FLAGS: Final = getattr(socket, "MSG_NOSIGNAL", 0)
_QUICKACK: Final[int | None] = getattr(socket, "TCP_QUICKACK", None)
_DONTNEED: Final[int | None] = getattr(mmap, "MADV_DONTNEED", None)
_TLS_STAGING: Final = 256 << 10  # bytes coalesced per TLS sendall: 16 full records


def fragment_size(max_pdu: int) -> int:
    """The largest PDV fragment for a peer maximum PDU length (0: no limit)."""
    max_pdu = operator.index(max_pdu)
    if max_pdu == 0:
        return UNLIMITED_FRAGMENT
    if max_pdu < 0:
        raise ValueError(f"max_pdu {max_pdu} is negative")
    if max_pdu > _MAX_PDU_LIMIT:
        raise ValueError(f"max_pdu {max_pdu} does not fit the 32-bit PDU length field")
    if max_pdu < 8:
        raise ValueError(f"max_pdu {max_pdu} is too small to carry a fragment (minimum 8)")
    return (max_pdu - 6) & ~1


def _context_id(value: int) -> int:
    value = operator.index(value)
    if not 1 <= value <= 255:
        raise ValueError(f"context_id {value} is not a presentation context ID (1..255)")
    return value


def _fragments(
    command_len: int, dataset_len: int | None, frag: int
) -> Iterator[tuple[bool, int, int, int]]:
    """Yield ``(is_command, offset, length, mch)`` for every PDV of a message, in wire order."""
    parts = [(True, command_len)]
    if dataset_len is not None:
        parts.append((False, dataset_len))
    for is_command, total in parts:
        base = 0x01 if is_command else 0x00
        if total == 0:
            yield is_command, 0, 0, base | 0x02
            continue
        offset = 0
        while offset < total:
            length = min(frag, total - offset)
            last = offset + length == total
            yield is_command, offset, length, base | (0x02 if last else 0x00)
            offset += length


class _Source:
    """A dataset as a memoryview: a ``bytes`` object, or a file region mapped read-only.

    Use as a context manager; the mapping is closed on exit.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.map: mmap.mmap | None = None
        self.map_start = 0  # offset of the dataset inside the mapping
        self.view: memoryview | None = None
        if dataset is None:
            return
        if isinstance(dataset, bytes):
            self.view = memoryview(dataset)
            return
        if not isinstance(dataset, tuple):
            raise TypeError(
                "dataset must be bytes, a (path, offset, length) tuple or None, "
                f"not {type(dataset).__name__}"
            )
        path, offset, length = dataset
        path = os.fspath(path)
        offset, length = operator.index(offset), operator.index(length)
        if offset < 0 or length < 0:
            raise ValueError(
                f"file region offset {offset} and length {length} must be non-negative"
            )
        try:
            self._map(path, offset, length)
        except OSError as exc:
            # The source's failure, not the connection's: raised before any byte is sent.
            if exc.errno is None:
                raise SourceError(f"{path}: {exc.strerror}") from exc
            raise SourceError(exc.errno, exc.strerror, path) from exc
        if self.map is None:
            self.view = memoryview(b"")
            return
        if hasattr(mmap, "MADV_SEQUENTIAL"):
            self.map.madvise(mmap.MADV_SEQUENTIAL)
        self.view = memoryview(self.map)[self.map_start : self.map_start + length]

    def _map(self, path: str, offset: int, length: int) -> None:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if offset + length > size:
                raise OSError(
                    None,
                    f"region offset {offset} + length {length} is past the end ({size} bytes)",
                )
            if length == 0:
                return
            aligned = offset - offset % mmap.ALLOCATIONGRANULARITY
            self.map_start = offset - aligned
            self.map = mmap.mmap(
                f.fileno(), self.map_start + length, access=mmap.ACCESS_READ, offset=aligned
            )

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.view is not None:
            self.view.release()
        if self.map is not None:
            # A view may still be alive, held by the traceback of the error that ends the send
            # (a converter's input): the mapping then closes when that is collected.
            with contextlib.suppress(BufferError):
                self.map.close()

    def release(self, start: int, end: int) -> None:
        """Drop the mapped pages holding dataset bytes ``[start, end)`` (already sent)."""
        if self.map is None or _DONTNEED is None:
            return
        page = mmap.PAGESIZE
        lo = (self.map_start + start) // page * page
        hi = (self.map_start + end) // page * page
        if hi > lo:
            self.map.madvise(_DONTNEED, lo, hi - lo)


def _verify(data: memoryview, syntax: str) -> None:
    failed = ""
    try:
        rewrite.check(data, syntax, syntax)
    except ConversionError as exc:
        # Raised outside: its traceback would hold views into the mapping, which must close.
        failed = str(exc)
    if failed:
        raise ConversionError(f"the dataset does not parse: {failed}")


def _conversion(convert: Conversion) -> tuple[str, str] | None:
    """The checked ``convert`` argument (the same syntax twice: re-encoded, odd values padded)."""
    if convert is None:
        return None
    for uid in convert:
        if uid not in rewrite.CONVERTIBLE:
            raise ConversionError(
                f"{uid} is not an uncompressed transfer syntax the converter handles"
            )
    return convert


def converted_fragment(frag: int) -> int:
    """The fragment size for converted datasets (the Rust ``converted_fragment``): capped, so a
    peer announcing a 4 GB maximum does not make us buffer 4 GB."""
    return min(frag, UNLIMITED_FRAGMENT)


def frame_message(
    context_id: int, command: bytes, dataset: Dataset, max_pdu: int, convert: Conversion = None
) -> bytes:
    """Return the P-DATA-TF PDUs for one DIMSE message, exactly as
    :meth:`PyTransport.send_message` writes them."""
    context_id = _context_id(context_id)
    frag = fragment_size(max_pdu)
    if not isinstance(command, bytes):
        raise TypeError(f"command must be bytes, not {type(command).__name__}")
    conversion = _conversion(convert)
    with _Source(dataset) as source:
        ds = source.view
        if conversion is not None:
            if ds is None:
                raise ValueError("convert needs a dataset")
            ds = memoryview(rewrite.convert_bytes(ds, *conversion))
            frag = converted_fragment(frag)
        cmd = memoryview(command)
        pieces: list[bytes | memoryview] = []
        for is_command, offset, length, mch in _fragments(
            len(cmd), None if ds is None else len(ds), frag
        ):
            pieces.append(_HEADER.pack(_P_DATA_TF, length + 6, length + 2, context_id, mch))
            src = cmd if is_command else ds
            assert src is not None
            pieces.append(src[offset : offset + length])
        out = b"".join(pieces)
        pieces.clear()  # drop the views before the mapping closes
        return out


def _converted_pdvs(
    source: _Source, conversion: tuple[str, str], frag: int
) -> Iterator[tuple[bytes | memoryview, bool]]:
    """Yield ``(fragment, last)`` of a dataset converted as it goes: a fragment is surely not
    the last while more bytes follow it, so one fragment is held back until the end. Pages of
    the mapping already converted are released as it goes (as the Rust writer does)."""
    assert source.view is not None
    conv = rewrite.Converter(source.view, *conversion)
    pending = bytearray()
    released = 0
    done = False
    while not done:
        done = conv.fill(pending, _BATCH_BYTES + 1)
        consumed = conv.source_consumed
        if consumed - released >= _RELEASE_BYTES or done:
            source.release(released, consumed)
            released = consumed
        cut = 0
        while len(pending) - cut > frag:
            yield bytes(pending[cut : cut + frag]), False
            cut += frag
        del pending[:cut]
    yield bytes(pending), True


class _NoTLS(OSError):
    """Stands in for ``ssl.SSLError`` on a plain socket, where nothing raises it."""


class PyTransport:
    """A connected socket that sends and receives whole PDUs (see ``fastpush._core.Transport``).

    It takes ownership of ``sock`` and closes it on :meth:`close`. ``TCP_NODELAY`` is set when
    ``nodelay`` is true; ``TCP_QUICKACK`` before every receive (Linux). Use from one thread at a
    time.
    """

    def __init__(
        self, sock: socket.socket, timeout: float | None = None, nodelay: bool = True
    ) -> None:
        self._sock = sock
        self._tcp = sock.family in (socket.AF_INET, socket.AF_INET6)
        self._timeout: float | None = None
        self.timeout = timeout
        if self._tcp:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if nodelay else 0)
        self._headers = bytearray(_OVERHEAD * (_MAX_IOVECS // 2))
        # ssl is loaded only by a TLS connection; a plain socket never raises its errors.
        ssl = sys.modules.get("ssl")
        is_tls = ssl is not None and isinstance(sock, ssl.SSLSocket)
        self._tls_error: type[OSError] = ssl.SSLError if ssl is not None and is_tls else _NoTLS
        self._staging = bytearray(_TLS_STAGING) if is_tls else None
        self._closed = False

    @property
    def timeout(self) -> float | None:
        """Seconds a send or receive may wait without progress; ``None``: no limit."""
        return self._timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        if value is not None:
            value = float(value)
            if not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"timeout must be None or a finite number of seconds >= 0, not {value}"
                )
        self._timeout = value
        self._sock.settimeout(value)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def tls(self) -> tuple[str, str] | None:
        """``(protocol, cipher suite)`` of a TLS connection; ``None`` for plain TCP."""
        sock = self._sock
        if self._staging is None:
            return None
        assert hasattr(sock, "cipher") and hasattr(sock, "version")
        cipher = sock.cipher()
        return sock.version() or "", cipher[0] if cipher else ""

    def close(self) -> None:
        """Close the socket. Idempotent."""
        if not self._closed:
            self._closed = True
            # shutdown() first: it wakes a send or receive blocked in another thread.
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"fd={self._sock.fileno()}"
        return f"<fastpush.transport.pure.PyTransport {state}>"

    def _check_open(self) -> None:
        if self._closed:
            raise OSError(9, "transport is closed")  # EBADF, as the Rust transport

    # -- sending ---------------------------------------------------------------------------

    def _send_all(self, bufs: list[memoryview]) -> None:
        """Send every buffer, resuming after partial sends; ``sendmsg`` takes many at once."""
        if self._staging is not None:
            self._send_tls(bufs)
            return
        sock = self._sock
        start = 0
        while start < len(bufs):
            try:
                sent = sock.sendmsg(bufs[start : start + _MAX_IOVECS], (), _SEND_FLAGS)
            except BlockingIOError:  # timeout 0 makes the socket non-blocking
                raise TimeoutError("timed out") from None
            # No local may hold a view into the mapping: a traceback would keep it alive and
            # the mapping could not be closed.
            while sent:
                size = len(bufs[start])
                if sent >= size:
                    sent -= size
                    start += 1
                else:
                    bufs[start] = bufs[start][sent:]
                    sent = 0
            while start < len(bufs) and not len(bufs[start]):
                start += 1

    def _send_tls(self, bufs: list[memoryview]) -> None:
        """Send buffers over TLS: small ones coalesced into the staging buffer, large ones as
        they are (``SSLSocket`` has no ``sendmsg``; one ``sendall`` per header would make one
        tiny TLS record per PDU)."""
        staging = self._staging
        assert staging is not None
        sock = self._sock
        filled = 0
        try:
            with memoryview(staging) as stage:
                # Indexes, not a loop variable: see _send_all on views and tracebacks.
                for index in range(len(bufs)):
                    size = len(bufs[index])
                    if filled and filled + size > len(stage):
                        sock.sendall(stage[:filled])
                        filled = 0
                    if size >= len(stage):
                        sock.sendall(bufs[index])
                    else:
                        stage[filled : filled + size] = bufs[index]
                        filled += size
                if filled:
                    sock.sendall(stage[:filled])
        except self._tls_error as exc:
            raise describe_ssl_error(exc) from exc
        except BlockingIOError:  # timeout 0 makes the socket non-blocking
            raise TimeoutError("timed out") from None

    def send_pdu(self, data: bytes) -> None:
        """Write one already-encoded PDU (A-ASSOCIATE-RQ, A-RELEASE-RQ, A-ABORT...)."""
        self._check_open()
        self._send_all([memoryview(data)])

    def send_message(
        self,
        context_id: int,
        command: bytes,
        dataset: Dataset,
        max_pdu: int,
        convert: Conversion = None,
        verify: str | None = None,
    ) -> int:
        """Frame and write one DIMSE message: the command PDV(s), then the dataset PDV(s).

        ``max_pdu`` is the peer's Maximum Length Received (0: no limit). With ``convert``, the
        dataset is checked whole (``ConversionError`` before anything is sent), then converted
        while it is sent; without, ``verify`` (a syntax) has it checked in that syntax before it
        is sent verbatim. Returns the number of bytes written.
        """
        context_id = _context_id(context_id)
        frag = fragment_size(max_pdu)
        if not isinstance(command, bytes):
            raise TypeError(f"command must be bytes, not {type(command).__name__}")
        conversion = _conversion(convert)
        self._check_open()
        if conversion is not None:
            return self._send_converted(context_id, command, dataset, frag, conversion)
        headers = self._headers
        header_view = memoryview(headers)
        cmd = memoryview(command)
        written = 0
        with _Source(dataset) as source:
            ds = source.view
            if ds is not None and verify in rewrite.CONVERTIBLE:
                _verify(ds, verify)
            batch: list[memoryview] = []
            batch_bytes = 0
            released = 0
            sent_ds = 0
            try:
                for is_command, offset, length, mch in _fragments(
                    len(cmd), None if ds is None else len(ds), frag
                ):
                    if batch and (
                        len(batch) + 2 > _MAX_IOVECS or batch_bytes + length > _BATCH_BYTES
                    ):
                        self._send_all(batch)
                        written += batch_bytes
                        batch.clear()
                        batch_bytes = 0
                        if sent_ds - released >= _RELEASE_BYTES:
                            source.release(released, sent_ds)
                            released = sent_ds
                    slot = _OVERHEAD * (len(batch) // 2)
                    _HEADER.pack_into(
                        headers, slot, _P_DATA_TF, length + 6, length + 2, context_id, mch
                    )
                    batch.append(header_view[slot : slot + _OVERHEAD])
                    src = cmd if is_command else ds
                    assert src is not None
                    # An empty PDV still takes a slot, so header slots stay at len(batch) // 2.
                    batch.append(src[offset : offset + length])
                    batch_bytes += _OVERHEAD + length
                    if not is_command:
                        sent_ds = offset + length
                if batch:
                    self._send_all(batch)
                    written += batch_bytes
            finally:
                batch.clear()  # drop views into the mapping before it closes
                header_view.release()
        return written

    def _send_converted(
        self,
        context_id: int,
        command: bytes,
        dataset: Dataset,
        frag: int,
        conversion: tuple[str, str],
    ) -> int:
        with _Source(dataset) as source:
            view = source.view
            if view is None:
                raise ValueError("convert needs a dataset")
            rewrite.check(view, *conversion)
            written = self.send_message(context_id, command, None, frag + 6)
            batch: list[bytes | memoryview] = []
            batch_bytes = 0
            for payload, last in _converted_pdvs(source, conversion, converted_fragment(frag)):
                n = len(payload)
                mch = 0x02 if last else 0x00
                batch.append(_HEADER.pack(_P_DATA_TF, n + 6, n + 2, context_id, mch))
                batch.append(payload)
                batch_bytes += _OVERHEAD + n
                if last or len(batch) + 2 > _MAX_IOVECS or batch_bytes >= _BATCH_BYTES:
                    self._send_all([memoryview(b) for b in batch])
                    written += batch_bytes
                    batch.clear()
                    batch_bytes = 0
            return written

    # -- receiving -------------------------------------------------------------------------

    def _recv(self, n: int, buf: memoryview | None) -> bytes | int:
        if self._tcp and _QUICKACK is not None:
            self._sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        try:
            if buf is None:
                return self._sock.recv(n)
            return self._sock.recv_into(buf, n)
        except BlockingIOError:  # timeout 0 makes the socket non-blocking
            raise TimeoutError("timed out") from None
        except self._tls_error as exc:
            raise describe_ssl_error(exc) from exc

    def _recv_exact(self, n: int, mid_pdu: bool) -> bytes:
        """Read exactly ``n`` bytes; EOF raises ``ConnectionResetError``."""
        if n == 0:
            return b""
        first = self._recv(n, None)
        assert isinstance(first, bytes)
        if len(first) == n:
            return first
        if not first:
            raise _closed_by_peer(mid_pdu)
        buf = bytearray(n)
        buf[: len(first)] = first
        got = len(first)
        view = memoryview(buf)
        try:
            while got < n:
                k = self._recv(n - got, view[got:])
                assert isinstance(k, int)
                if not k:
                    raise _closed_by_peer(True)
                got += k
        finally:
            view.release()
        return bytes(buf)

    def recv_pdu(self, max_length: int) -> tuple[int, bytes]:
        """Read one whole PDU; return its type and its body (without the 6-byte header).

        A PDU whose length field exceeds ``max_length`` raises ``ProtocolError`` before anything
        is allocated for it.
        """
        max_length = operator.index(max_length)
        if max_length < 0:
            raise ValueError(f"max_length {max_length} is negative")
        self._check_open()
        header = self._recv_exact(6, mid_pdu=False)
        pdu_type = header[0]
        length = int.from_bytes(header[2:6], "big")
        if length > max_length:
            raise ProtocolError(
                f"peer sent a PDU of type 0x{pdu_type:02X} and length {length}, "
                f"over the limit of {max_length}"
            )
        return pdu_type, self._recv_exact(length, mid_pdu=True)

    def recv_command(
        self, max_length: int, contexts: Sequence[int], max_bytes: int
    ) -> tuple[int, int, bytes]:
        """Read P-DATA-TF PDUs until a response's command set is complete (its dataset, if
        any, read and dropped): ``(0x04, context_id, command)``; a PDU of another type ends it
        as ``(pdu_type, 0, body)``. More than ``max_bytes`` of PDUs is a ``ProtocolError``."""
        messages = Reassembler(contexts)
        received = 0
        while True:
            pdu_type, body = self.recv_pdu(max_length)
            if pdu_type != pdu.P_DATA_TF:
                return pdu_type, 0, body
            received += 6 + len(body)
            if received > max_bytes:
                raise ProtocolError(f"response runs past {max_bytes} bytes")
            for message in messages.feed(body):
                return pdu.P_DATA_TF, message.context_id, message.command_set


def _closed_by_peer(mid_pdu: bool) -> ConnectionResetError:
    if mid_pdu:
        return ConnectionResetError("connection closed by peer in the middle of a PDU")
    return ConnectionResetError("connection closed by peer")
