//! The server side's classes: `ServerTlsConfig` and `ServerTransport`, one accepted connection
//! of a storage SCP whose receive loop ([`crate::receive`]) runs with the GIL released.
//! Argument conversion, the association's timers (ARTIM) and locking only; see `_core.pyi` for
//! the contract.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pyo3::exceptions::PyBaseException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::args::{limit, max_pdu, timeout_arg};
use super::connection::{open_stream, Connection};
use super::gil::{drive, drive_over, drive_to};
use super::live::LiveDataset;
use crate::error::{Error, Result};
use crate::net::tls;
use crate::net::TlsStream;
use crate::pdu::{framing, A_ABORT, P_DATA_TF};
use crate::receive::{abort_for, DatasetSink, End, Live, Next, Receiver};
use crate::send::MessageWriter;
use crate::step::{BufferWriter, Pacer, Stream};

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

/// An accepted connection; see `_core.pyi`.
#[pyclass(frozen, module = "fastpush._core")]
pub struct ServerTransport {
    connection: Connection<Conn>,
    /// ARTIM (PS3.8 9.1.5): when the A-ASSOCIATE-RQ must be in whole, if it is not yet.
    artim: Mutex<Option<Instant>>,
    /// The association ended on our side: an A-ABORT went out (or, for an expired ARTIM, the
    /// standard wants none); the caller's own A-ABORT would be a second one.
    ended: AtomicBool,
    timeout: Option<Duration>,
    /// `(protocol, cipher suite)` of a TLS connection.
    tls: Option<(String, String)>,
}

impl ServerTransport {
    /// Waits for the peer: counted by whole PDUs ([`Pacer::wait_pdu`]), so trickling does not
    /// stretch them.
    fn read_pacer(&self) -> Pacer {
        Pacer::new(self.timeout)
    }

    /// Our writes end within one timeout, however slowly the peer reads.
    fn write_pacer(&self) -> Pacer {
        Pacer::whole(self.timeout)
    }

    /// Mark the association ended on our side when `aborted`.
    fn ended(&self, aborted: bool) {
        if aborted {
            self.ended.store(true, Ordering::Relaxed);
        }
    }

    /// Refuse to write into an association we ended: an A-ABORT is dropped quietly (one went
    /// out already), anything else fails.
    fn check_open(&self, data: Option<&[u8]>) -> Result<bool> {
        if !self.ended.load(Ordering::Relaxed) {
            return Ok(true);
        }
        match data {
            Some([A_ABORT, ..]) => Ok(false),
            _ => Err(Error::Closed),
        }
    }
}

/// Tells a dataset's progress to a `LiveDataset` made once it passed `threshold` bytes; dropped
/// before the dataset was whole, it tells the cut.
struct Watch<'py> {
    threshold: u64,
    callback: Bound<'py, PyAny>,
    path: PathBuf,
    base: u64,
    shared: Option<Arc<Live>>,
}

impl<'py> Watch<'py> {
    /// Where `sink` stands after a read: its bytes in the file (none: it could not be
    /// written), and its head for the callback.
    fn saw(&mut self, py: Python<'py>, sink: &DatasetSink) {
        let Some(stored) = sink.stored() else {
            self.cut();
            return;
        };
        if let Some(live) = &self.shared {
            live.advance(stored);
            return;
        }
        if stored < self.threshold {
            return;
        }
        let live = Arc::new(Live::default());
        live.advance(stored);
        // Nobody is told of a dataset whose file cannot be opened: it is forwarded once whole.
        let Ok(dataset) = LiveDataset::open(self.path.clone(), self.base, live.clone()) else {
            self.threshold = u64::MAX;
            return;
        };
        self.shared = Some(live);
        if let Err(err) = self
            .callback
            .call1((dataset, PyBytes::new(py, sink.head())))
        {
            err.write_unraisable(py, Some(&self.callback));
        }
    }

    fn cut(&mut self) {
        self.threshold = u64::MAX;
        if let Some(live) = self.shared.take() {
            live.end(End::Cut);
        }
    }

    fn whole(&self, whole: bool) {
        if let Some(live) = &self.shared {
            live.end(if whole { End::Whole } else { End::Cut });
        }
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        self.cut();
    }
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
        // The handshake is bounded as a whole: a stranger trickling its ClientHello must not
        // hold a thread and a descriptor for longer.
        let (stream, negotiated) = open_stream(py, fd, Pacer::whole(timeout), true, secure)?;
        Ok(ServerTransport {
            tls: negotiated,
            connection: Connection::new(
                Conn {
                    stream,
                    receiver: Receiver::default(),
                },
                fd,
            ),
            artim: Mutex::new(None),
            ended: AtomicBool::new(false),
            timeout,
        })
    }

    /// Start the ARTIM timer: the next `recv_pdu` must have its PDU whole within `seconds`
    /// (counted from now; 0 or less: already expired; `None`: no such timer).
    #[pyo3(signature = (seconds))]
    fn start_artim(&self, seconds: Option<f64>) -> PyResult<()> {
        let deadline = match seconds {
            None => None,
            Some(s) if s.is_nan() => {
                return Err(Error::InvalidArgument("ARTIM of NaN seconds".into()).into())
            }
            Some(s) => Some(
                Instant::now()
                    + Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX / 4),
            ),
        };
        *self.artim.lock().unwrap_or_else(|e| e.into_inner()) = deadline;
        Ok(())
    }

    /// Read one whole PDU of at most `max_length` bytes: `(type, body)`.
    fn recv_pdu<'py>(
        &self,
        py: Python<'py>,
        max_length: i64,
    ) -> PyResult<(u8, Bound<'py, PyBytes>)> {
        let max_length = max_pdu(max_length)?;
        let mut out = self.connection.checkout(py)?;
        let conn = &mut *out;
        let artim = self.artim.lock().unwrap_or_else(|e| e.into_inner()).take();
        let mut pacer = self.read_pacer().until(artim);
        let mut aborted = false;
        let Conn { stream, receiver } = conn;
        let got = drive_to(py, || {
            receiver
                .recv_pdu_step(stream.as_mut(), &mut pacer, max_length)
                .map_err(|e| {
                    aborted = if artim.is_some_and(|t| Instant::now() >= t) {
                        // An expired ARTIM closes the connection without an A-ABORT (PS3.8
                        // AA-2): the peer may never have spoken DICOM.
                        true
                    } else {
                        abort_for(stream.as_mut(), &e)
                    };
                    e
                })
        });
        self.ended(aborted);
        let (pdu_type, body) = got?;
        Ok((pdu_type, PyBytes::new(py, &body)))
    }

    /// Write one already-encoded PDU.
    fn send_pdu(&self, py: Python<'_>, data: &Bound<'_, PyBytes>) -> PyResult<()> {
        let data = data.as_bytes();
        if !self.check_open(Some(data))? {
            return Ok(());
        }
        let mut out = self.connection.checkout(py)?;
        let conn = &mut *out;
        let mut pacer = self.write_pacer();
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
        self.check_open(None)?;
        let mut out = self.connection.checkout(py)?;
        let conn = &mut *out;
        let mut pacer = self.write_pacer();
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
        let mut out = self.connection.checkout(py)?;
        let conn = &mut *out;
        let mut pacer = self.read_pacer();
        let mut aborted = false;
        let Conn { stream, receiver } = conn;
        let next = drive_to(py, || {
            receiver
                .next_step(stream.as_mut(), &mut pacer, max_pdata)
                .map_err(|e| {
                    aborted = abort_for(stream.as_mut(), &e);
                    e
                })
        });
        self.ended(aborted);
        let next = next?;
        Ok(match next {
            Next::Command {
                context_id,
                command,
            } => (P_DATA_TF, context_id, PyBytes::new(py, &command)),
            Next::Pdu { pdu_type, body } => (pdu_type, 0, PyBytes::new(py, &body)),
        })
    }

    /// Receive the dataset the last command announced: into a new file at `path` (after
    /// `header`), into memory (`memory`), or nowhere. With `live=(threshold, callback)` and a
    /// file, `callback(LiveDataset, head)` is called once `threshold` dataset bytes are in it.
    #[pyo3(signature = (max_pdu, path=None, header=None, *, memory=false, fsync=false, head=0, reuse=false, live=None))]
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
        reuse: bool,
        live: Option<(u64, Bound<'py, PyAny>)>,
    ) -> PyResult<Receipt<'py>> {
        let max_pdata = limit(max_pdu)?;
        let header = header.map_or(&[][..], |h| h.as_bytes());
        let mut out = self.connection.checkout(py)?;
        let conn = &mut *out;
        conn.receiver.start_dataset()?;
        let mut watch = match (&path, live) {
            (Some(path), Some((threshold, callback))) => Some(Watch {
                threshold,
                callback,
                path: path.clone(),
                base: header.len() as u64,
                shared: None,
            }),
            _ => None,
        };
        let mut sink = match (path, memory) {
            (Some(_), true) => {
                return Err(
                    Error::InvalidArgument("path and memory exclude each other".into()).into(),
                )
            }
            (Some(path), false) => {
                py.detach(|| DatasetSink::file(path, header, fsync, reuse, head))
            }
            (None, true) => DatasetSink::memory(head),
            (None, false) => DatasetSink::discard(head),
        };
        let mut pacer = self.read_pacer();
        let mut aborted = false;
        let Conn { stream, receiver } = conn;
        let received = drive_over(
            py,
            &mut sink,
            |sink| {
                receiver
                    .dataset_step(stream.as_mut(), &mut pacer, max_pdata, sink)
                    .map_err(|e| {
                        aborted = abort_for(stream.as_mut(), &e);
                        e
                    })
            },
            |py, sink| {
                if let Some(watch) = watch.as_mut() {
                    watch.saw(py, sink);
                }
            },
        );
        self.ended(aborted);
        if let (Some(watch), Ok(())) = (&watch, &received) {
            watch.whole(sink.stored().is_some());
        }
        drop(watch); // a receive that failed: cut
        received?;
        let done = py.detach(|| sink.finish());
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
        self.connection.close();
    }

    /// `(protocol, cipher suite)` of a TLS connection; `None` for plain TCP.
    #[getter]
    fn tls(&self) -> Option<(String, String)> {
        self.tls.clone()
    }

    #[getter]
    fn closed(&self) -> bool {
        self.connection.closed()
    }

    fn __repr__(&self) -> String {
        if self.connection.closed() {
            "<fastpush._core.ServerTransport closed>".to_string()
        } else {
            format!(
                "<fastpush._core.ServerTransport fd={}>",
                self.connection.fd()
            )
        }
    }
}
