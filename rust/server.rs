//! The PyO3 class `fastpush._core.ServerTransport`: one accepted connection of a storage SCP,
//! whose receive loop ([`crate::receive`]) runs with the GIL released. Argument conversion and
//! locking only; see `_core.pyi` for the contract.

use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pyo3::exceptions::PyBaseException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::error::{Error, Result};
use crate::framing;
use crate::io::{BufferWriter, MessageWriter, Pacer, Progress};
use crate::python::{drive, max_pdu, open_stream, timeout_arg};
use crate::receive::{Next, Receiver};
use crate::sink::Target;
use crate::stream::{self, Stream};
use crate::tls::{self, TlsStream};

/// A TLS server configuration (rustls), built once and shared by every connection; see
/// `_core.pyi`.
#[pyclass(frozen, module = "fastpush._core")]
pub struct ServerTlsConfig {
    config: Arc<rustls::ServerConfig>,
    verifies_clients: bool,
}

#[pymethods]
impl ServerTlsConfig {
    #[new]
    #[pyo3(signature = (cert_file, key_file, *, ca_file=None))]
    fn new(
        py: Python<'_>,
        cert_file: PathBuf,
        key_file: PathBuf,
        ca_file: Option<PathBuf>,
    ) -> PyResult<Self> {
        let config = py.detach(|| tls::server_config(&cert_file, &key_file, ca_file.as_deref()))?;
        Ok(ServerTlsConfig {
            config,
            verifies_clients: ca_file.is_some(),
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "<fastpush._core.ServerTlsConfig{}>",
            if self.verifies_clients {
                " verifying clients"
            } else {
                ""
            }
        )
    }
}

struct Conn {
    stream: Box<dyn Stream>,
    receiver: Receiver,
}

struct State {
    /// `None` while an operation has it, or once closed.
    conn: Option<Conn>,
    /// The socket while it is open (-1 after), so `close` can wake a busy operation without
    /// ever shutting down a descriptor number the OS has handed out again.
    fd: RawFd,
    closed: bool,
}

/// An accepted connection; see `_core.pyi`.
#[pyclass(frozen, module = "fastpush._core")]
pub struct ServerTransport {
    state: Mutex<State>,
    timeout: Option<Duration>,
    /// `(protocol, cipher suite)` of a TLS connection.
    tls: Option<(String, String)>,
}

/// Exclusive use of the connection for one operation; puts it back (or closes it) when dropped.
struct Checkout<'t> {
    owner: &'t ServerTransport,
    conn: Option<Conn>,
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        let mut state = self.owner.lock();
        if state.closed {
            state.fd = -1;
            drop(state);
            drop(conn);
        } else {
            state.conn = Some(conn);
        }
    }
}

impl ServerTransport {
    /// Held for a few instructions only, never across I/O: safe to take with the GIL held.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn checkout(&self) -> Result<Checkout<'_>> {
        let mut state = self.lock();
        match state.conn.take() {
            Some(conn) => Ok(Checkout {
                owner: self,
                conn: Some(conn),
            }),
            None if state.closed => Err(Error::Closed),
            None => Err(Error::InvalidArgument(
                "the connection is in use by another thread".into(),
            )),
        }
    }

    fn pacer(&self) -> Pacer {
        Pacer::new(self.timeout)
    }
}

/// Our maximum PDU length as a limit (`0`: none).
fn limit(max_pdu_value: i64) -> Result<u64> {
    Ok(match max_pdu(max_pdu_value)? {
        0 => u64::from(u32::MAX),
        n => n,
    })
}

/// Run a stepped operation that yields a value when done.
fn drive_to<T: Send>(
    py: Python<'_>,
    mut step: impl FnMut() -> Result<Option<T>> + Send,
) -> PyResult<T> {
    let mut out = None;
    drive(py, || {
        out = step()?;
        Ok(if out.is_some() {
            Progress::Done
        } else {
            Progress::Pending
        })
    })?;
    Ok(out.expect("done"))
}

/// `(size, data, head, error)` of a received dataset.
type Receipt<'py> = (
    u64,
    Option<Bound<'py, PyBytes>>,
    Bound<'py, PyBytes>,
    Option<Py<PyBaseException>>,
);

#[pymethods]
impl ServerTransport {
    #[new]
    #[pyo3(signature = (fd, timeout=None, *, tls=None))]
    fn new(
        py: Python<'_>,
        fd: i32,
        timeout: Option<f64>,
        tls: Option<&ServerTlsConfig>,
    ) -> PyResult<Self> {
        let timeout = timeout_arg(timeout)?;
        let secure = tls.map(|config| move |plain| TlsStream::server(plain, config.config.clone()));
        let (stream, negotiated) = open_stream(py, fd, timeout, true, secure)?;
        Ok(ServerTransport {
            tls: negotiated,
            state: Mutex::new(State {
                conn: Some(Conn {
                    stream,
                    receiver: Receiver::default(),
                }),
                fd,
                closed: false,
            }),
            timeout,
        })
    }

    /// Read one whole PDU of at most `max_length` bytes: `(type, body)`.
    fn recv_pdu<'py>(
        &self,
        py: Python<'py>,
        max_length: i64,
    ) -> PyResult<(u8, Bound<'py, PyBytes>)> {
        let max_length = max_pdu(max_length)?;
        let mut out = self.checkout()?;
        let conn = out.conn.as_mut().expect("checked out");
        let mut pacer = self.pacer();
        let (pdu_type, body) = drive_to(py, || {
            conn.receiver
                .recv_pdu_step(conn.stream.as_mut(), &mut pacer, max_length)
        })?;
        Ok((pdu_type, PyBytes::new(py, &body)))
    }

    /// Write one already-encoded PDU.
    fn send_pdu(&self, py: Python<'_>, data: &Bound<'_, PyBytes>) -> PyResult<()> {
        let data = data.as_bytes();
        let mut out = self.checkout()?;
        let conn = out.conn.as_mut().expect("checked out");
        let mut pacer = self.pacer();
        let mut writer = BufferWriter::new(data);
        drive(py, || writer.step(conn.stream.as_mut(), &mut pacer))
    }

    /// Frame and write a message without dataset (a response) in PDUs of at most `max_pdu`.
    fn send_message(
        &self,
        py: Python<'_>,
        context_id: i64,
        command: &Bound<'_, PyBytes>,
        max_pdu: i64,
    ) -> PyResult<u64> {
        let context_id = framing::context_id(context_id)?;
        let frag = framing::fragment_size(self::max_pdu(max_pdu)?)?;
        let command = command.as_bytes();
        let mut out = self.checkout()?;
        let conn = out.conn.as_mut().expect("checked out");
        let mut pacer = self.pacer();
        let mut writer = MessageWriter::new(context_id, command, None, false, frag);
        drive(py, || writer.step(conn.stream.as_mut(), &mut pacer))?;
        Ok(writer.written())
    }

    /// Wait for the next command set or another PDU: `(0x04, context_id, command)` or
    /// `(pdu_type, 0, body)`.
    fn next_message<'py>(
        &self,
        py: Python<'py>,
        max_pdu: i64,
    ) -> PyResult<(u8, u8, Bound<'py, PyBytes>)> {
        let max_pdata = limit(max_pdu)?;
        let mut out = self.checkout()?;
        let conn = out.conn.as_mut().expect("checked out");
        let mut pacer = self.pacer();
        let next = drive_to(py, || {
            conn.receiver
                .next_step(conn.stream.as_mut(), &mut pacer, max_pdata)
        })?;
        Ok(match next {
            Next::Command {
                context_id,
                command,
            } => (framing::P_DATA_TF, context_id, PyBytes::new(py, &command)),
            Next::Pdu { pdu_type, body } => (pdu_type, 0, PyBytes::new(py, &body)),
        })
    }

    /// Receive the dataset the last command announced: into a new file at `path` (after
    /// `header`), into memory (`memory`), or nowhere.
    #[pyo3(signature = (max_pdu, path=None, header=None, *, memory=false, fsync=false, head=0))]
    #[allow(clippy::too_many_arguments)]
    fn receive_dataset<'py>(
        &self,
        py: Python<'py>,
        max_pdu: i64,
        path: Option<PathBuf>,
        header: Option<&Bound<'py, PyBytes>>,
        memory: bool,
        fsync: bool,
        head: usize,
    ) -> PyResult<Receipt<'py>> {
        let max_pdata = limit(max_pdu)?;
        let header = header.map_or(&[][..], |h| h.as_bytes());
        let mut out = self.checkout()?;
        let conn = out.conn.as_mut().expect("checked out");
        conn.receiver.start_dataset()?;
        let mut target = match (path, memory) {
            (Some(_), true) => {
                return Err(
                    Error::InvalidArgument("path and memory exclude each other".into()).into(),
                )
            }
            (Some(path), false) => py.detach(|| Target::file(path, header, fsync, head)),
            (None, true) => Target::memory(head),
            (None, false) => Target::discard(head),
        };
        let mut pacer = self.pacer();
        drive(py, || {
            conn.receiver
                .dataset_step(conn.stream.as_mut(), &mut pacer, max_pdata, &mut target)
        })?;
        let done = py.detach(|| target.finish());
        let error = done.error.map(|source| {
            PyErr::from(Error::File {
                path: PathBuf::new(),
                source,
            })
            .into_value(py)
        });
        Ok((
            done.size,
            done.data.map(|d| PyBytes::new(py, &d)),
            PyBytes::new(py, &done.head),
            error,
        ))
    }

    /// Close the connection. Idempotent; an operation running in another thread is woken and
    /// fails, and the socket is closed when it returns.
    fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        if let Some(conn) = state.conn.take() {
            state.fd = -1;
            drop(state);
            drop(conn);
        } else if state.fd >= 0 {
            stream::shutdown(state.fd);
        }
    }

    /// `(protocol, cipher suite)` of a TLS connection; `None` for plain TCP.
    #[getter]
    fn tls(&self) -> Option<(String, String)> {
        self.tls.clone()
    }

    #[getter]
    fn closed(&self) -> bool {
        self.lock().closed
    }

    fn __repr__(&self) -> String {
        let state = self.lock();
        if state.closed {
            "<fastpush._core.ServerTransport closed>".to_string()
        } else {
            format!("<fastpush._core.ServerTransport fd={}>", state.fd)
        }
    }
}
