//! The one conversion of the crate's [`Error`] to a Python exception: OS errors become the
//! `OSError` subclass of their errno, protocol errors the exception classes of `fastpush.errors`.

use std::io;

use pyo3::exceptions::{PyConnectionResetError, PyOSError, PyTimeoutError, PyValueError};
use pyo3::PyErr;

use crate::error::Error;

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
            e @ (Error::PduTooLarge { .. } | Error::Protocol(_) | Error::UnexpectedPdu { .. }) => {
                ProtocolError::new_err(e.to_string())
            }
            e @ Error::PeerAborted { source, reason } => {
                AssociationAborted::new_err((source, reason, e.to_string()))
            }
            Error::InvalidArgument(msg) => PyValueError::new_err(msg),
            e @ (Error::Convert(_) | Error::Malformed(_) | Error::Edit(_)) => {
                ConversionError::new_err(e.to_string())
            }
            e @ Error::Closed => PyOSError::new_err((libc::EBADF, e.to_string())),
            Error::Tls(msg) => TLSError::new_err(msg),
        }
    }
}

/// The OS message without Rust's " (os error N)" suffix, as Python prints it.
/// `OSError(errno, strerror, path)`: the errno's subclass, naming the file (the spool's own
/// file operations, which are no source's).
pub(super) fn os_error(err: io::Error, path: &std::path::Path) -> PyErr {
    match err.raw_os_error() {
        Some(code) => {
            PyOSError::new_err((code, strerror(&err), path.to_string_lossy().into_owned()))
        }
        None => PyErr::from(err),
    }
}

fn strerror(err: &io::Error) -> String {
    let text = err.to_string();
    match text.rfind(" (os error ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}
