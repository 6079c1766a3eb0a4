//! The crate's one error type. Plain Rust: its one conversion to a Python exception lives in
//! the binding (`python/error.rs`), its TLS wording in [`crate::net::tls`].

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::convert::ConvertError;

/// Everything that can go wrong in framing or I/O.
#[derive(Debug)]
pub enum Error {
    /// An OS error on the socket. Becomes the `OSError` subclass matching its errno.
    Io(io::Error),
    /// A dataset file that cannot be opened or mapped, or is shorter than the region to send:
    /// `fastpush.errors.SourceError` (an `OSError` with the errno, when there is one).
    File { path: PathBuf, source: io::Error },
    /// A wait for the socket exceeded the timeout: `TimeoutError`.
    Timeout,
    /// The peer closed the connection (EOF): `ConnectionResetError`.
    PeerClosed { mid_pdu: bool },
    /// The peer announced a PDU longer than allowed: `fastpush.errors.ProtocolError`.
    PduTooLarge { pdu_type: u8, length: u32, max: u64 },
    /// The peer broke the protocol (a malformed PDU or PDV, fragments out of order):
    /// `fastpush.errors.ProtocolError`.
    Protocol(String),
    /// A PDU other than P-DATA-TF where a DIMSE message was under way:
    /// `fastpush.errors.ProtocolError`.
    UnexpectedPdu { pdu_type: u8 },
    /// The peer sent an A-ABORT where a message was under way: `fastpush.errors.AssociationAborted`.
    PeerAborted { source: u8, reason: u8 },
    /// A bad argument (max_pdu, context ID, file region): `ValueError`.
    InvalidArgument(String),
    /// A dataset that cannot be converted to the accepted transfer syntax:
    /// `fastpush.errors.ConversionError`.
    Convert(String),
    /// A dataset sent verbatim that does not parse to its end (truncated, a length past the
    /// end): `fastpush.errors.ConversionError`, before any byte is sent.
    Malformed(String),
    /// A dataset the edits cannot be applied to (malformed, a value that does not fit its VR,
    /// refused for de-identification): `fastpush.errors.ConversionError`, before any byte is
    /// sent — never sent unedited.
    Edit(String),
    /// The transport was closed: `OSError(EBADF)`, like a closed Python socket.
    Closed,
    /// TLS failed (handshake, certificate, alert, configuration): `fastpush.errors.TLSError`.
    Tls(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        if err.kind() == io::ErrorKind::TimedOut {
            return Error::Timeout;
        }
        // A stream may carry one of ours through `io::Result` (the `Stream` trait's type): the
        // TLS stream does, for a rustls failure it has put in words.
        if err.get_ref().is_some_and(|e| e.is::<Error>()) {
            let inner = err.into_inner().expect("checked above");
            return *inner.downcast::<Error>().expect("checked above");
        }
        Error::Io(err)
    }
}

impl From<ConvertError> for Error {
    fn from(err: ConvertError) -> Self {
        Error::Convert(err.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "{e}"),
            Error::File { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Timeout => f.write_str("timed out"),
            Error::PeerClosed { mid_pdu: false } => f.write_str("connection closed by peer"),
            Error::PeerClosed { mid_pdu: true } => {
                f.write_str("connection closed by peer in the middle of a PDU")
            }
            Error::PduTooLarge { pdu_type, length, max } => write!(
                f,
                "peer sent a PDU of type 0x{pdu_type:02X} and length {length}, over the limit of {max}"
            ),
            Error::Protocol(msg) => f.write_str(msg),
            Error::UnexpectedPdu { pdu_type } => write!(
                f,
                "PDU of type 0x{pdu_type:02X} in the middle of a DIMSE message"
            ),
            Error::PeerAborted { source, reason } => {
                write!(f, "peer sent A-ABORT (source {source}, reason {reason})")
            }
            Error::InvalidArgument(msg) => f.write_str(msg),
            Error::Convert(msg) => write!(f, "cannot convert the dataset: {msg}"),
            Error::Malformed(msg) => write!(f, "the dataset does not parse: {msg}"),
            Error::Edit(msg) => write!(f, "cannot edit the dataset: {msg}"),
            Error::Closed => f.write_str("transport is closed"),
            Error::Tls(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for Error {}
