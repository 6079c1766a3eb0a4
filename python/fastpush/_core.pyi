"""The Rust data path: P-DATA-TF framing and socket I/O.

It knows PDUs and PDVs, nothing of DICOM semantics. Python negotiates the association and builds
the DIMSE command bytes; this module puts them, and the dataset, on the wire.
"""

import os
from collections.abc import Callable, Sequence
from typing import Final, final

__version__: Final[str]
"""The crate version from Cargo.toml; the package's version."""
BUILD_PROFILE: Final[str]
"""``"release"`` or ``"debug"``: benchmarks refuse a debug build."""
UNLIMITED_FRAGMENT: Final[int]
"""Fragment size used when the peer's Maximum Length Received is 0 (no limit): 1 MiB, the same
as ``fastpush.transport.pure.UNLIMITED_FRAGMENT``."""

FileRegion = tuple[str, int, int]
"""``(path, offset, length)``: a dataset read in place from a file, never loaded into Python."""

Conversion = tuple[str, str]
"""``(from_syntax, to_syntax)``: two uncompressed transfer syntax UIDs (Implicit VR LE,
Explicit VR LE, Explicit VR BE, Deflated Explicit VR LE). The same syntax twice re-encodes the
dataset in its own syntax: odd-length values padded (how a non-conformant dataset is repaired
for sending), sequences re-delimited, group lengths dropped."""

def frame_message(
    context_id: int,
    command: bytes,
    dataset: bytes | FileRegion | None,
    max_pdu: int,
    convert: Conversion | None = None,
) -> bytes:
    """Return the P-DATA-TF PDUs for one DIMSE message as one bytes object.

    For tests and the in-memory framing benchmark: the bytes are exactly what
    :meth:`Transport.send_message` writes, and what
    ``fastpush.transport.pure.frame_message`` returns.

    One PDV per P-DATA-TF PDU: the command first (message control header ``0x01``, ``0x03`` on its
    last fragment), then the dataset (``0x00`` / ``0x02``). Fragments are at most ``max_pdu - 6``
    bytes rounded down to even (``UNLIMITED_FRAGMENT`` when ``max_pdu`` is 0). A ``None`` dataset
    sends no dataset PDV; an empty one sends one empty PDV marked last.

    Raises ``ValueError`` for a ``context_id`` outside 1..255, a ``max_pdu`` that is negative,
    under 8 or over 2**32 - 1, or a file region past the end of its file; ``TypeError`` for a
    dataset of another type (``bytearray`` and ``memoryview`` are refused: they are mutable and
    are read with the GIL released); ``FileNotFoundError`` / ``PermissionError`` for the file.

    With ``convert``, the dataset is framed as :func:`convert_dataset` returns it, in fragments
    capped at ``UNLIMITED_FRAGMENT``, as :meth:`Transport.send_message` sends it.
    """

def convert_dataset(dataset: bytes | FileRegion, from_syntax: str, to_syntax: str) -> bytes:
    """Convert a whole dataset between uncompressed transfer syntaxes (GIL released).

    Sequences and items come out with undefined length, group lengths are dropped, values are
    byte-swapped per VR when the byte order changes, odd-length values are padded to even length
    (a space for text VRs, a zero otherwise); Implicit VR gets VRs from the data dictionary (UN
    for unknown private tags). The same syntax twice re-encodes the dataset that way. Raises
    ``fastpush.errors.ConversionError`` for a malformed dataset, encapsulated pixel data or a
    syntax it does not handle. Sending streams
    the same bytes (``Transport.send_message(..., convert=...)``); this is for tests and tools.
    """

def rename_new(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Rename ``source`` to ``target`` unless ``target`` exists (``FileExistsError``; the file
    system's ``renameat2`` with ``RENAME_NOREPLACE``, else a link and an unlink)."""

def top_uids(
    data: bytes, pos: int, wanted: list[int], implicit: bool, little: bool, strict: bool
) -> list[tuple[int, str]] | None:
    """The top-level elements ``wanted`` (tags) walking element headers from ``pos``, as (tag,
    value stripped of NUL and space) in the order met, stopping past the largest; None when the
    plain walk cannot tell (a sequence of undefined length, data ending inside an element, tags
    out of order with ``strict``, a value over 256 bytes or not ASCII): the Python walker
    (``fastpush.dataset.header``) then reads it and says why."""

@final
class EditPlan:
    """A compiled edit list, applied by :meth:`Transport.send_message` (``edits=``) while the
    dataset streams out: element headers rewritten, pixel data copied. Built by
    ``fastpush.dataset.edits.EditPlan.compiled`` from rules ``(selector, scope, action, value,
    vr)``: ``selector`` an int tag, ``("masked", mask, value)`` or ``("private", group, creator,
    element_byte)``; ``scope`` ``None`` (any depth), ``[]`` (top level) or a list of sequence
    tags; ``action`` one of ``keep remove empty dummy set replace copy prefix map_uid
    shift_date pseudonym set_items``. ``key`` keys the UID maps (``2.25.`` + HMAC-SHA256),
    pseudonyms and date offsets; ``private="remove"`` removes private elements no rule keeps;
    ``map_uids`` maps every other UID; ``refuse_burned_in`` refuses images that may carry
    burned-in text. ``ValueError`` for a malformed rule."""

    def __new__(
        cls,
        rules: list[tuple[object, list[int] | None, str, object, str | None]],
        *,
        key: bytes | None = None,
        private: str | None = None,
        map_uids: bool = False,
        refuse_burned_in: bool = False,
    ) -> EditPlan: ...
    def instance_uid(self, uid: str) -> str:
        """The SOP Instance UID a dataset with ``uid`` carries once edited."""
    def map_uid(self, uid: str) -> str:
        """``uid`` mapped with the key."""
    def pseudonym(self, patient_id: str) -> str:
        """The pseudonym of ``patient_id`` under the key."""
    def edit_dataset(self, dataset: bytes | FileRegion, from_syntax: str, to_syntax: str) -> bytes:
        """Edit (and convert) a whole dataset (GIL released): ``ConversionError`` saying why it
        cannot. A compressed syntax can only be edited into itself (pixel fragments copied)."""
    def write_edited(
        self,
        dataset: bytes | FileRegion,
        from_syntax: str,
        to_syntax: str,
        path: str | os.PathLike[str],
        prefix: bytes | None = None,
    ) -> int:
        """Write ``prefix`` (the file meta), then the dataset edited (and converted), to a new file
        at ``path`` (GIL released); values the edits leave alone (the pixel data) are copied file
        to file by the kernel. Returns the bytes written. ``ConversionError`` saying why a dataset
        cannot be edited, ``SourceError`` for the output file; either way no file is left."""

@final
class TlsConfig:
    """A TLS client configuration (rustls): TLS 1.3 preferred, TLS 1.2 minimum.

    The server's certificate is verified against the PEM CA certificates in ``ca_file``, or the
    system store when it is ``None``, and against the name the transport connects to.
    ``cert_file`` and ``key_file`` (PEM, both or neither) are the client certificate chain and its
    key. ``no_verify`` accepts any server certificate and name (handshake signatures are still
    checked): insecure, for tests and labs only. Built once, shared by every transport made with
    it (and their TLS session cache). Files are read here: ``fastpush.errors.TLSError`` for a
    missing or unreadable file, one without usable PEM content, or a key that does not match the
    certificate (a configuration problem: never retried).
    """

    def __new__(
        cls,
        *,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        no_verify: bool = False,
    ) -> TlsConfig: ...

@final
class Transport:
    """A connected TCP stream that sends and receives whole PDUs.

    It takes ownership of the file descriptor (pass ``socket.detach()``) and closes it on
    :meth:`close` or when collected. ``TCP_NODELAY`` is set when ``nodelay`` is true;
    ``TCP_QUICKACK`` is set before every receive (Linux), so responses are not held back by a
    delayed ACK. Every blocking wait is bounded by ``timeout`` seconds (``None``: no limit) and
    done with the GIL released, in short steps that check for signals. The timeout bounds each
    stall, as a socket timeout does: a call fails once the socket made no progress for
    ``timeout`` seconds, so a multi-gigabyte send is not cut short by a small timeout.

    Safe to share between threads: operations on one transport are serialized (a second thread
    waits, GIL released, for the first to finish), and :meth:`close` from another thread wakes a
    blocked operation, which then fails with an ``OSError``.

    Errors: ``TimeoutError`` when a wait exceeds ``timeout``; ``ConnectionResetError`` when the peer
    closed or reset the connection; other ``OSError`` as the OS reports them;
    ``fastpush.errors.ProtocolError`` for a PDU over ``max_length``; ``FileNotFoundError`` /
    ``PermissionError`` / ``ValueError`` for a bad dataset source.

    With ``tls``, the stream is TLS to ``server_name`` (a host name or an IP address, which the
    server's certificate must match): the handshake runs in the constructor, bounded by
    ``timeout``, and fails with ``fastpush.errors.TLSError`` saying why (untrusted, expired or
    wrong-host certificate; the server refused us). Datasets are encrypted straight from the
    file mapping, never copied through Python; later TLS alerts also raise ``TLSError``.
    """

    timeout: float | None

    def __new__(
        cls,
        fd: int,
        timeout: float | None = None,
        nodelay: bool = True,
        *,
        tls: TlsConfig | None = None,
        server_name: str | None = None,
    ) -> Transport: ...
    @property
    def tls(self) -> tuple[str, str] | None:
        """``(protocol, cipher suite)`` of a TLS stream, e.g. ``("TLSv1.3",
        "TLS13_AES_256_GCM_SHA384")``; ``None`` for plain TCP."""
    def send_pdu(self, data: bytes) -> None:
        """Write one already-encoded PDU (A-ASSOCIATE-RQ, A-RELEASE-RQ, A-ABORT...)."""
    def send_message(
        self,
        context_id: int,
        command: bytes,
        dataset: bytes | FileRegion | None,
        max_pdu: int,
        convert: Conversion | None = None,
        verify: str | None = None,
        edits: EditPlan | None = None,
    ) -> int:
        """Frame and write one DIMSE message: the command PDV(s), then the dataset PDV(s).

        With ``edits`` (which needs ``convert``; the same syntax twice when no conversion is
        wanted, a compressed syntax only into itself), the plan is applied while the dataset is
        converted, after a whole dry run: a dataset the plan cannot edit raises
        ``ConversionError`` before any byte is sent.

        Without ``convert``, ``verify`` (an uncompressed syntax's UID) walks the dataset's
        element headers in that syntax first: one that does not parse to its end raises
        ``ConversionError`` ("the dataset does not parse: ...") before anything is sent.

        ``max_pdu`` is the peer's Maximum Length Received (0: no limit). Returns the number of
        bytes written to the socket. Writes go out in ``sendmsg`` batches of many PDUs whose
        payload buffers point into ``command``, ``dataset`` or the file mapping (no copies); pages
        of a mapped file are released as soon as they are sent, so memory stays flat whatever
        the file size. A failure part-way leaves the association unusable: abort it.

        ``convert=(from_syntax, to_syntax)`` sends the dataset converted while it is sent
        (bounded memory, output framed as produced; the same syntax twice: re-encoded with its
        odd-length values padded); the whole dataset is checked first, for that target, so
        ``ConversionError`` comes before any byte is written.
        """
    def recv_pdu(self, max_length: int) -> tuple[int, bytes]:
        """Read one whole PDU; return its type and its body (without the 6-byte header).

        A PDU whose length field exceeds ``max_length`` raises ``ProtocolError`` before anything
        is allocated for it. End of stream raises ``ConnectionResetError``.
        """
    def recv_command(
        self, max_length: int, contexts: Sequence[int], max_bytes: int
    ) -> tuple[int, int, bytes]:
        """Read P-DATA-TF PDUs (each at most ``max_length``) until a response's command set is
        complete, its dataset (if it announces one) read and dropped: ``(0x04, context_id,
        command set)``. A PDU of another type ends it as ``(pdu_type, 0, body)``. PDVs must be
        on ``contexts`` and well formed, and the PDUs at most ``max_bytes`` together, else
        ``ProtocolError``. One call, the GIL released while it waits."""
    def send_live(
        self,
        context_id: int,
        command: bytes | None,
        dataset: LiveDataset,
        max_pdu: int,
        sent: int = 0,
        finish: bool = False,
        stall: float | None = None,
    ) -> int:
        """Frame and write a C-STORE whose dataset is still being received (cut-through).

        The command set first when ``command`` is given, then the dataset from byte ``sent``
        (a multiple of the fragment size) as it arrives, read from its file; returns the
        dataset bytes sent. Without ``finish`` it returns once the dataset is whole, its last
        fragment (1 byte to one fragment) held back: the message can still be given up by
        aborting the association. With ``finish`` it sends the rest, the last fragment flagged.
        A receive that was cut, that stored nothing new for ``stall`` seconds while there was
        nothing to send, or a dataset of odd length, raises ``ConnectionAbortedError``
        (the message is half sent: abort the association). Waiting for the receive has no
        timeout of its own (the receive has); ``close`` from another thread ends it.
        """
    def close(self) -> None:
        """Close the socket. Idempotent. Later calls raise ``OSError`` (``EBADF``)."""
    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""

@final
class LiveDataset:
    """A dataset being received into a file (``ServerTransport.receive_dataset(live=...)``),
    its file open for reading: ``Transport.send_live`` forwards it while it arrives."""

    @property
    def stored(self) -> int:
        """Dataset bytes in the file so far."""
    @property
    def whole(self) -> bool | None:
        """None while it arrives; True once whole, False if cut (it never will be)."""

DatasetReceipt = tuple[int, bytes | None, bytes, OSError | None]
"""``(size, data, head, error)`` of a received dataset: its length in bytes; the bytes for a
memory target; its first ``head`` bytes; why a file target could not keep it (its file is gone)."""

@final
class ServerTlsConfig:
    """A TLS server configuration (rustls): TLS 1.3 preferred, 1.2 minimum.

    ``cert_file`` and ``key_file`` (PEM) are our certificate chain and its key; with ``ca_file``,
    every client must present a certificate signed by one of those CAs (PEM). Files are read
    here: ``fastpush.errors.TLSError`` for a missing or unusable file or a key that does not
    match the certificate. Shared by every connection accepted with it.
    """

    def __new__(
        cls, cert_file: str, key_file: str, *, ca_file: str | None = None
    ) -> ServerTlsConfig: ...

@final
class ServerTransport:
    """One accepted connection of a storage SCP: its receive loop, GIL released.

    With ``tls``, the TLS handshake (server side) runs in the constructor, as a whole within
    ``timeout``, and fails with ``fastpush.errors.TLSError``.

    Takes ownership of the file descriptor (pass ``socket.detach()``) and sets ``TCP_NODELAY``.
    ``timeout`` (``None``: no limit) counts whole PDUs, not bytes, so a peer trickling a byte
    now and then cannot stretch it: a PDU must be in whole within ``timeout`` of its first
    byte, and the next one must begin within ``timeout`` of the end of the last one (or of the
    call, whichever is later); each write must end within ``timeout`` of its start. Waits run
    in short steps that check for signals. Until the association is up, reads go through a
    64 KiB buffer (grown to the length the A-ASSOCIATE-RQ declares); from the first
    :meth:`next_message` on, one 4 MiB buffer: PDUs are split into PDV fragments in place and
    reassembled into messages (the command set in memory, at most 64 KiB; the dataset streamed
    to its target straight from the buffer).

    Errors: ``ProtocolError`` for a PDU over the limit (refused from its header, before anything
    is allocated or read for it), a malformed PDU or PDV, fragments out of order, or a PDU other
    than P-DATA-TF in the middle of a message; ``AssociationAborted`` for an A-ABORT in the
    middle of a message; ``TimeoutError``; ``ConnectionResetError`` when the peer closed.
    After any of them the association is over. For a ``ProtocolError`` or ``TimeoutError`` the
    transport has already sent an A-ABORT with the reason that fits (PS3.8 table 9-26: 1
    unrecognized PDU, 2 unexpected PDU, 6 invalid parameter value, 0 for a timeout), except
    when ARTIM expired (the connection is just closed, PS3.8 AA-2); a further A-ABORT passed to
    :meth:`send_pdu` is then dropped, and any other write fails with ``OSError``.

    Safe to share between threads, like :class:`Transport`: operations are serialized (a second
    thread waits, GIL released, for the first to finish); :meth:`close` may be called from any
    thread and wakes a blocked call, which then fails with ``OSError``.
    """

    def __new__(
        cls, fd: int, timeout: float | None = None, *, tls: ServerTlsConfig | None = None
    ) -> ServerTransport: ...
    @property
    def tls(self) -> tuple[str, str] | None:
        """``(protocol, cipher suite)`` of a TLS connection; ``None`` for plain TCP."""
    def start_artim(self, seconds: float | None) -> None:
        """Start the ARTIM timer (PS3.8 9.1.5): the next :meth:`recv_pdu` fails with
        ``TimeoutError`` unless its PDU is in whole within ``seconds`` of now (0 or less: already
        expired), however the bytes trickle in. ``None``: no such timer."""
    def recv_pdu(self, max_length: int) -> tuple[int, bytes]:
        """Read one whole PDU other than P-DATA-TF of at most ``max_length`` bytes (the
        A-ASSOCIATE-RQ): ``(type, body)``."""
    def send_pdu(self, data: bytes) -> None:
        """Write one already-encoded PDU (A-ASSOCIATE-AC/RJ, A-RELEASE-RP, A-ABORT)."""
    def send_message(self, context_id: int, command: bytes, max_pdu: int) -> int:
        """Write a message without dataset (a response) in PDUs of at most ``max_pdu`` (the
        peer's Maximum Length Received; 0: no limit); returns the bytes written."""
    def next_message(self, max_pdu: int) -> tuple[int, int, bytes]:
        """Wait for the next command set: ``(0x04, context_id, command_bytes)``; or for another
        PDU between messages: ``(pdu_type, 0, body)`` (A-RELEASE-RQ, A-ABORT...). ``max_pdu`` is
        our Maximum Length Received (0: no limit). When the command announced a dataset, call
        :meth:`receive_dataset` before this again."""
    def receive_dataset(
        self,
        max_pdu: int,
        path: str | None = None,
        header: bytes | None = None,
        *,
        memory: bool = False,
        fsync: bool = False,
        head: int = 0,
        reuse: bool = False,
        live: tuple[int, Callable[[LiveDataset, bytes], object]] | None = None,
    ) -> DatasetReceipt:
        """Receive the dataset the last command set announced.

        With ``path``: a new file there (``O_EXCL``; an existing file is never written into;
        with ``reuse``, the file the caller put at ``path`` is overwritten and cut to length),
        ``header`` first, then the dataset bytes as received, in large vectored writes;
        ``fsync`` syncs it before returning. A file that cannot be created or written (full
        disk, unwritable folder) is removed, the rest of the dataset is read and dropped, and the
        error is returned: the association goes on. On an exception the file is removed too.
        With ``memory``: the bytes are returned. Otherwise they are dropped (counted).

        With ``live=(threshold, callback)`` and ``path``: once ``threshold`` dataset bytes are in
        the file, ``callback(LiveDataset, head)`` is called with the dataset's first ``head``
        bytes (in this thread, between reads; what it
        raises is reported as unraisable), and the dataset's progress is told to it until the
        receive ends: whole (the last byte written, before the ``fsync``) or cut.
        """
    def close(self) -> None:
        """Close the connection. Idempotent; callable from any thread."""
    @property
    def closed(self) -> bool: ...
