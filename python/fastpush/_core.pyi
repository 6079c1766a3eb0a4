"""The Rust data path: P-DATA-TF framing and socket I/O.

It knows PDUs and PDVs, nothing of DICOM semantics. Python negotiates the association and builds
the DIMSE command bytes; this module puts them, and the dataset, on the wire.
"""

from typing import Final

__version__: Final[str]
"""The crate version from Cargo.toml; the package's version."""
BUILD_PROFILE: Final[str]
"""``"release"`` or ``"debug"``: benchmarks refuse a debug build."""
UNLIMITED_FRAGMENT: Final[int]
"""Fragment size used when the peer's Maximum Length Received is 0 (no limit)."""

FileRegion = tuple[str, int, int]
"""``(path, offset, length)``: a dataset read in place from a file, never loaded into Python."""

def frame_message(
    context_id: int, command: bytes, dataset: bytes | FileRegion | None, max_pdu: int
) -> bytes:
    """Return the P-DATA-TF PDUs for one DIMSE message as one bytes object.

    For tests and the in-memory framing benchmark: the bytes are exactly what
    :meth:`Transport.send_message` writes.
    """

class Transport:
    """A connected TCP stream that sends and receives whole PDUs.

    It takes ownership of the file descriptor (pass ``socket.detach()``) and closes it on
    :meth:`close` or when collected. ``TCP_NODELAY`` is set when ``nodelay`` is true;
    ``TCP_QUICKACK`` is set before every receive (Linux), so responses are not held back by a
    delayed ACK. Every blocking wait is bounded by ``timeout`` seconds (``None``: no limit) and
    done with the GIL released, in short steps that check for signals.

    Errors: ``TimeoutError`` when a wait exceeds ``timeout``; ``ConnectionResetError`` when the peer
    closed or reset the connection; other ``OSError`` as the OS reports them;
    ``fastpush.errors.ProtocolError`` for a PDU over ``max_length``; ``FileNotFoundError`` /
    ``PermissionError`` / ``ValueError`` for a bad dataset source.
    """

    timeout: float | None

    def __init__(self, fd: int, timeout: float | None = None, nodelay: bool = True) -> None: ...
    def send_pdu(self, data: bytes) -> None:
        """Write one already-encoded PDU (A-ASSOCIATE-RQ, A-RELEASE-RQ, A-ABORT...)."""
    def send_message(
        self, context_id: int, command: bytes, dataset: bytes | FileRegion | None, max_pdu: int
    ) -> int:
        """Frame and write one DIMSE message: the command PDV(s), then the dataset PDV(s).

        ``max_pdu`` is the peer's Maximum Length Received (0: no limit). Returns the number of
        bytes written to the socket.
        """
    def recv_pdu(self, max_length: int) -> tuple[int, bytes]:
        """Read one whole PDU; return its type and its body (without the 6-byte header).

        A PDU whose length field exceeds ``max_length`` raises ``ProtocolError`` before anything
        is allocated for it.
        """
    def close(self) -> None:
        """Close the socket. Idempotent."""
    @property
    def closed(self) -> bool: ...
