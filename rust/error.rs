//! The crate's one error type, and (with the `python` feature) its one conversion to a Python
//! exception.

use std::fmt;
use std::io;
use std::path::PathBuf;

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
    /// The transport was closed: `OSError(EBADF)`, like a closed Python socket.
    Closed,
    /// TLS failed (handshake, certificate, alert, configuration): `fastpush.errors.TLSError`.
    Tls(String),
    /// A Python exception raised while we held the GIL (a signal handler's `KeyboardInterrupt`).
    #[cfg(feature = "python")]
    Python(pyo3::PyErr),
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        if err.kind() == io::ErrorKind::TimedOut {
            return Error::Timeout;
        }
        // The TLS stream carries rustls errors through `io::Result` (the `Stream` trait's type).
        if let Some(tls) = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
        {
            return Error::Tls(describe_tls(tls));
        }
        Error::Io(err)
    }
}

/// A TLS failure in words a PACS administrator can act on, with rustls's own text after it.
pub fn describe_tls(err: &rustls::Error) -> String {
    use rustls::{AlertDescription as Alert, CertificateError as Cert};
    let hint = match err {
        rustls::Error::InvalidCertificate(cert) => match cert {
            Cert::UnknownIssuer => "the server's certificate is not signed by a trusted CA",
            Cert::Expired | Cert::ExpiredContext { .. } => "the server's certificate has expired",
            Cert::NotValidYet | Cert::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet"
            }
            Cert::NotValidForName | Cert::NotValidForNameContext { .. } => {
                "the server's certificate does not match the host name"
            }
            _ => "the server's certificate was refused",
        },
        rustls::Error::AlertReceived(
            Alert::CertificateRequired
            | Alert::HandshakeFailure
            | Alert::BadCertificate
            | Alert::UnknownCA
            | Alert::CertificateUnknown
            | Alert::AccessDenied,
        ) => {
            "the server refused the TLS connection (does it require a client certificate we \
             did not send, or not trust the one we did?)"
        }
        rustls::Error::AlertReceived(_) => "the server ended the TLS connection",
        _ => "",
    };
    if hint.is_empty() {
        format!("TLS error: {err}")
    } else {
        format!("TLS error: {hint} ({err})")
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
            Error::Closed => f.write_str("transport is closed"),
            Error::Tls(msg) => f.write_str(msg),
            #[cfg(feature = "python")]
            Error::Python(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

/// The OS message without Rust's " (os error N)" suffix, as Python prints it.
#[cfg(feature = "python")]
fn strerror(err: &io::Error) -> String {
    let text = err.to_string();
    match text.rfind(" (os error ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

#[cfg(feature = "python")]
mod py {
    use super::{strerror, Error};
    use pyo3::exceptions::{PyConnectionResetError, PyOSError, PyTimeoutError, PyValueError};
    use pyo3::PyErr;

    pyo3::import_exception!(fastpush.errors, ProtocolError);
    pyo3::import_exception!(fastpush.errors, ConversionError);
    pyo3::import_exception!(fastpush.errors, TLSError);
    pyo3::import_exception!(fastpush.errors, SourceError);
    pyo3::import_exception!(fastpush.errors, AssociationAborted);

    impl From<Error> for PyErr {
        fn from(err: Error) -> PyErr {
            // `OSError(errno, strerror[, filename])` returns the errno's subclass
            // (ConnectionResetError, BrokenPipeError, FileNotFoundError, ...), as the socket
            // module's own errors do.
            match err {
                Error::Io(e) => match e.raw_os_error() {
                    Some(code) => PyOSError::new_err((code, strerror(&e))),
                    None => PyErr::from(e),
                },
                Error::File { path, source } => {
                    let path = path.to_string_lossy().into_owned();
                    match source.raw_os_error() {
                        Some(code) => SourceError::new_err((code, strerror(&source), path)),
                        None => SourceError::new_err(format!("{path}: {source}")),
                    }
                }
                Error::Timeout => PyTimeoutError::new_err("timed out"),
                e @ Error::PeerClosed { .. } => PyConnectionResetError::new_err(e.to_string()),
                e @ (Error::PduTooLarge { .. }
                | Error::Protocol(_)
                | Error::UnexpectedPdu { .. }) => ProtocolError::new_err(e.to_string()),
                e @ Error::PeerAborted { source, reason } => {
                    AssociationAborted::new_err((source, reason, e.to_string()))
                }
                Error::InvalidArgument(msg) => PyValueError::new_err(msg),
                e @ (Error::Convert(_) | Error::Malformed(_)) => {
                    ConversionError::new_err(e.to_string())
                }
                e @ Error::Closed => PyOSError::new_err((libc::EBADF, e.to_string())),
                Error::Tls(msg) => TLSError::new_err(msg),
                Error::Python(e) => e,
            }
        }
    }
}
