//! The PyO3 module `fastpush._core`: argument conversion and GIL handling only.
//!
//! Every blocking step runs with the GIL released (`Python::detach`) and is followed by
//! `Python::check_signals`, so Ctrl-C interrupts a long send and other threads keep running.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use crate::convert::{self, Syntax};
use crate::converting::{converted_fragment, ConvertingWriter};
use crate::error::{Error, Result};
use crate::framing::{self, Fragments};
use crate::io::{BufferWriter, MessageWriter, Pacer, PduReader, Progress};
use crate::source::MappedRegion;
use crate::stream::{self, FdStream, Stream};
use crate::tls::{self, TlsSettings, TlsStream};

/// A dataset source converted from Python: a borrowed `bytes`, or a mapped file region.
enum Dataset<'py> {
    Bytes(Bound<'py, PyBytes>),
    Region(MappedRegion),
}

impl Dataset<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Dataset::Bytes(b) => b.as_bytes(),
            Dataset::Region(r) => r.as_slice(),
        }
    }

    fn is_mapped(&self) -> bool {
        matches!(self, Dataset::Region(_))
    }
}

/// Convert `bytes | (path, offset, length) | None`. The file is opened with the GIL released.
fn dataset<'py>(
    py: Python<'py>,
    obj: Option<&Bound<'py, PyAny>>,
) -> PyResult<Option<Dataset<'py>>> {
    let Some(obj) = obj else { return Ok(None) };
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Some(Dataset::Bytes(b.clone())));
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        let (path, offset, length): (PathBuf, i128, i128) = t.extract()?;
        let (Ok(offset), Ok(length)) = (u64::try_from(offset), u64::try_from(length)) else {
            return Err(Error::InvalidArgument(format!(
                "file region offset {offset} and length {length} must be non-negative"
            ))
            .into());
        };
        let region = py.detach(|| MappedRegion::open(&path, offset, length))?;
        return Ok(Some(Dataset::Region(region)));
    }
    Err(pyo3::exceptions::PyTypeError::new_err(format!(
        "dataset must be bytes, a (path, offset, length) tuple or None, not {}",
        obj.get_type().name()?
    )))
}

/// `(from_uid, to_uid)` to a conversion; equal syntaxes re-encode the dataset in its own syntax
/// (odd-length values padded: see [`convert`]).
fn conversion(convert: Option<(String, String)>) -> Result<Option<(Syntax, Syntax)>> {
    let Some((from, to)) = convert else {
        return Ok(None);
    };
    let syntax = |uid: &str| {
        Syntax::from_uid(uid).ok_or_else(|| {
            Error::Convert(format!(
                "{uid} is not an uncompressed transfer syntax the converter handles"
            ))
        })
    };
    Ok(Some((syntax(&from)?, syntax(&to)?)))
}

/// The dataset bytes a conversion needs, checked whole (GIL released) before anything is sent.
fn checked<'a>(
    py: Python<'_>,
    ds: Option<&'a [u8]>,
    (from, to): (Syntax, Syntax),
) -> Result<&'a [u8]> {
    let ds = ds.ok_or_else(|| Error::InvalidArgument("convert needs a dataset".into()))?;
    py.detach(|| convert::check(ds, from, to))?;
    Ok(ds)
}

pub(crate) fn max_pdu(value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| Error::InvalidArgument(format!("max_pdu {value} is negative")))
}

pub(crate) fn timeout_arg(value: Option<f64>) -> Result<Option<Duration>> {
    match value {
        None => Ok(None),
        Some(t) if t.is_finite() && t >= 0.0 => Ok(Some(Duration::from_secs_f64(t))),
        Some(t) => Err(Error::InvalidArgument(format!(
            "timeout must be None or a finite number of seconds >= 0, not {t}"
        ))),
    }
}

/// Run a stepped operation: each step with the GIL released, signals checked between steps.
pub(crate) fn drive(
    py: Python<'_>,
    mut step: impl FnMut() -> Result<Progress> + Send,
) -> PyResult<()> {
    loop {
        let progress = py.detach(&mut step)?;
        py.check_signals()?;
        if progress == Progress::Done {
            return Ok(());
        }
    }
}

/// Take over a connected socket's `fd` (from `socket.detach()`), wrapped by `secure` in TLS when
/// given, the handshake's waits bounded by `pacer`. Returns the stream and, for TLS, the negotiated
/// `(protocol, cipher suite)`.
#[allow(clippy::type_complexity)]
pub(crate) fn open_stream(
    py: Python<'_>,
    fd: i32,
    mut pacer: Pacer,
    nodelay: bool,
    secure: Option<impl FnOnce(FdStream) -> Result<TlsStream> + Send>,
) -> PyResult<(Box<dyn Stream>, Option<(String, String)>)> {
    use std::os::fd::{FromRawFd, OwnedFd};
    if fd < 0 {
        return Err(Error::InvalidArgument(format!("invalid file descriptor {fd}")).into());
    }
    // SAFETY: the caller hands over ownership (`socket.detach()`); we close it exactly once.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let plain = FdStream::new(owned, nodelay).map_err(Error::from)?;
    let Some(secure) = secure else {
        return Ok((Box::new(plain), None));
    };
    let mut stream = secure(plain)?;
    drive(py, || stream.handshake_step(&mut pacer))?;
    let negotiated = (
        stream.protocol().unwrap_or_default(),
        stream.cipher().unwrap_or_default(),
    );
    Ok((Box::new(stream), Some(negotiated)))
}

/// A TLS client configuration, built once and shared by every connection made with it (which
/// also lets later connections resume the TLS session). See `_core.pyi`.
#[pyclass(frozen, module = "fastpush._core")]
pub struct TlsConfig {
    config: Arc<rustls::ClientConfig>,
    no_verify: bool,
}

#[pymethods]
impl TlsConfig {
    #[new]
    #[pyo3(signature = (*, ca_file=None, cert_file=None, key_file=None, no_verify=false))]
    fn new(
        py: Python<'_>,
        ca_file: Option<PathBuf>,
        cert_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
        no_verify: bool,
    ) -> PyResult<Self> {
        let settings = TlsSettings {
            ca_file: ca_file.as_deref(),
            cert_file: cert_file.as_deref(),
            key_file: key_file.as_deref(),
            no_verify,
        };
        // Reading the system store touches many files: not with the GIL held.
        let config = py.detach(|| tls::client_config(&settings))?;
        Ok(TlsConfig { config, no_verify })
    }

    fn __repr__(&self) -> String {
        format!(
            "<fastpush._core.TlsConfig{}>",
            if self.no_verify { " no_verify" } else { "" }
        )
    }
}

enum Slot {
    Idle(Box<dyn Stream>),
    Busy { close_requested: bool },
    Closed,
}

const NO_TIMEOUT: u64 = u64::MAX;

/// A connected TCP stream that sends and receives whole PDUs. See `_core.pyi`.
#[pyclass(frozen, module = "fastpush._core")]
pub struct Transport {
    slot: Mutex<Slot>,
    returned: Condvar,
    /// The fd number while open, so `close` from another thread can shut down a busy socket.
    fd: AtomicI32,
    /// Timeout in nanoseconds; `NO_TIMEOUT` for None.
    timeout_ns: AtomicU64,
    /// `(protocol, cipher suite)` negotiated by a TLS connection.
    tls: Option<(String, String)>,
}

/// Exclusive use of the stream for one operation; puts it back when dropped.
struct Checkout<'t> {
    transport: &'t Transport,
    stream: Option<Box<dyn Stream>>,
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        let mut slot = self.transport.lock();
        if matches!(
            *slot,
            Slot::Busy {
                close_requested: true
            }
        ) {
            *slot = Slot::Closed;
            drop(slot);
            drop(stream); // closes the fd
        } else {
            *slot = Slot::Idle(stream);
        }
        self.transport.returned.notify_one();
    }
}

impl Transport {
    /// The slot lock is only ever held for a few instructions, never across I/O, so taking it
    /// with the GIL held cannot deadlock; waiting for a busy stream happens with the GIL released.
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn checkout(&self, py: Python<'_>) -> Result<Checkout<'_>> {
        let stream = py.detach(|| {
            let mut slot = self.lock();
            loop {
                match std::mem::replace(
                    &mut *slot,
                    Slot::Busy {
                        close_requested: false,
                    },
                ) {
                    Slot::Idle(stream) => return Ok(stream),
                    Slot::Closed => {
                        *slot = Slot::Closed;
                        return Err(Error::Closed);
                    }
                    busy @ Slot::Busy { .. } => {
                        *slot = busy;
                        slot = self.returned.wait(slot).unwrap_or_else(|e| e.into_inner());
                    }
                }
            }
        })?;
        Ok(Checkout {
            transport: self,
            stream: Some(stream),
        })
    }

    fn pacer(&self) -> Pacer {
        let ns = self.timeout_ns.load(Ordering::Relaxed);
        Pacer::new((ns != NO_TIMEOUT).then(|| Duration::from_nanos(ns)))
    }
}

#[pymethods]
impl Transport {
    #[new]
    #[pyo3(signature = (fd, timeout=None, nodelay=true, *, tls=None, server_name=None))]
    fn new(
        py: Python<'_>,
        fd: i32,
        timeout: Option<f64>,
        nodelay: bool,
        tls: Option<&TlsConfig>,
        server_name: Option<&str>,
    ) -> PyResult<Self> {
        let timeout = timeout_arg(timeout)?;
        let secure = match tls {
            None => None,
            Some(config) => {
                let name = server_name.ok_or_else(|| {
                    Error::InvalidArgument("a TLS transport needs a server_name".into())
                })?;
                Some(move |plain| TlsStream::new(plain, config.config.clone(), name))
            }
        };
        let (stream, negotiated) = open_stream(py, fd, Pacer::new(timeout), nodelay, secure)?;
        Ok(Transport {
            slot: Mutex::new(Slot::Idle(stream)),
            returned: Condvar::new(),
            fd: AtomicI32::new(fd),
            timeout_ns: AtomicU64::new(timeout.map_or(NO_TIMEOUT, |d| {
                d.as_nanos().min(u128::from(NO_TIMEOUT - 1)) as u64
            })),
            tls: negotiated,
        })
    }

    /// `(protocol, cipher suite)` of a TLS connection, e.g. `("TLSv1.3", "TLS13_AES_256_GCM_SHA384")`;
    /// `None` for plain TCP.
    #[getter]
    fn tls(&self) -> Option<(String, String)> {
        self.tls.clone()
    }

    #[getter]
    fn get_timeout(&self) -> Option<f64> {
        let ns = self.timeout_ns.load(Ordering::Relaxed);
        (ns != NO_TIMEOUT).then(|| Duration::from_nanos(ns).as_secs_f64())
    }

    #[setter]
    fn set_timeout(&self, value: Option<f64>) -> PyResult<()> {
        let ns = timeout_arg(value)?.map_or(NO_TIMEOUT, |d| {
            d.as_nanos().min(u128::from(NO_TIMEOUT - 1)) as u64
        });
        self.timeout_ns.store(ns, Ordering::Relaxed);
        Ok(())
    }

    #[getter]
    fn closed(&self) -> bool {
        matches!(
            *self.lock(),
            Slot::Closed
                | Slot::Busy {
                    close_requested: true
                }
        )
    }

    /// Write one already-encoded PDU.
    fn send_pdu(&self, py: Python<'_>, data: &Bound<'_, PyBytes>) -> PyResult<()> {
        let data = data.as_bytes();
        let mut out = self.checkout(py)?;
        let stream = out.stream.as_deref_mut().expect("checked out");
        let mut pacer = self.pacer();
        let mut writer = BufferWriter::new(data);
        drive(py, || writer.step(stream, &mut pacer))
    }

    /// Frame and write one DIMSE message, its dataset converted when `convert` is given (the
    /// same syntax twice: re-encoded, odd values padded), or else, with `verify`, walked whole
    /// in that syntax first (a truncated dataset fails before anything is sent); returns the
    /// bytes written.
    #[pyo3(signature = (context_id, command, dataset, max_pdu, convert=None, verify=None))]
    #[allow(clippy::too_many_arguments)]
    fn send_message(
        &self,
        py: Python<'_>,
        context_id: i64,
        command: &Bound<'_, PyBytes>,
        dataset: Option<&Bound<'_, PyAny>>,
        max_pdu: i64,
        convert: Option<(String, String)>,
        verify: Option<String>,
    ) -> PyResult<u64> {
        let context_id = framing::context_id(context_id)?;
        let frag = framing::fragment_size(self::max_pdu(max_pdu)?)?;
        let conversion = conversion(convert)?;
        let source = self::dataset(py, dataset)?;
        let command = command.as_bytes();
        let ds = source.as_ref().map(Dataset::as_slice);
        let mapped = source.as_ref().is_some_and(Dataset::is_mapped);
        if let Some((from, to)) = conversion {
            let ds = checked(py, ds, (from, to))?;
            let mut out = self.checkout(py)?;
            let stream = out.stream.as_deref_mut().expect("checked out");
            let mut pacer = self.pacer();
            let mut writer =
                ConvertingWriter::new(context_id, command, (ds, mapped), (from, to), frag);
            drive(py, || writer.step(stream, &mut pacer))?;
            return Ok(writer.written());
        }
        if let (Some(ds), Some(syntax)) = (ds, verify.as_deref().and_then(Syntax::from_uid)) {
            py.detach(|| convert::check(ds, syntax, syntax))
                .map_err(|e| Error::Malformed(e.to_string()))?;
        }
        let mut out = self.checkout(py)?;
        let stream = out.stream.as_deref_mut().expect("checked out");
        let mut pacer = self.pacer();
        let mut writer = MessageWriter::new(context_id, command, ds, mapped, frag);
        drive(py, || writer.step(stream, &mut pacer))?;
        Ok(writer.written())
    }

    /// Read one whole PDU: `(type, body)`.
    fn recv_pdu<'py>(
        &self,
        py: Python<'py>,
        max_length: i64,
    ) -> PyResult<(u8, Bound<'py, PyBytes>)> {
        let max_length = u64::try_from(max_length)
            .map_err(|_| Error::InvalidArgument(format!("max_length {max_length} is negative")))?;
        let mut out = self.checkout(py)?;
        let stream = out.stream.as_deref_mut().expect("checked out");
        let mut pacer = self.pacer();
        let mut reader = PduReader::new(max_length);
        drive(py, || reader.step(stream, &mut pacer))?;
        drop(out);
        let (pdu_type, body) = reader.into_pdu();
        Ok((pdu_type, PyBytes::new(py, &body)))
    }

    /// Close the socket. Idempotent; a send or receive running in another thread is woken and
    /// fails, and the socket is closed when it returns.
    fn close(&self) {
        let mut slot = self.lock();
        match &mut *slot {
            Slot::Idle(_) => {
                let old = std::mem::replace(&mut *slot, Slot::Closed);
                drop(slot);
                drop(old);
            }
            Slot::Busy { close_requested } => {
                if !*close_requested {
                    *close_requested = true;
                    stream::shutdown(self.fd.load(Ordering::Relaxed));
                }
            }
            Slot::Closed => {}
        }
    }

    fn __repr__(&self) -> String {
        let state = if self.closed() {
            "closed".to_string()
        } else {
            format!("fd={}", self.fd.load(Ordering::Relaxed))
        };
        let state = match &self.tls {
            Some((protocol, _)) => format!("{state} {protocol}"),
            None => state,
        };
        format!("<fastpush._core.Transport {state}>")
    }
}

/// Frame one DIMSE message into P-DATA-TF PDUs, exactly as `Transport.send_message` writes them.
#[pyfunction]
#[pyo3(name = "frame_message", signature = (context_id, command, dataset, max_pdu, convert=None))]
fn frame_message_py<'py>(
    py: Python<'py>,
    context_id: i64,
    command: &Bound<'py, PyBytes>,
    dataset: Option<&Bound<'py, PyAny>>,
    max_pdu: i64,
    convert: Option<(String, String)>,
) -> PyResult<Bound<'py, PyBytes>> {
    let context_id = framing::context_id(context_id)?;
    let mut frag = framing::fragment_size(self::max_pdu(max_pdu)?)?;
    let conversion = conversion(convert)?;
    let source = self::dataset(py, dataset)?;
    let command = command.as_bytes();
    let mut ds = source.as_ref().map(Dataset::as_slice);
    let converted;
    if let Some((from, to)) = conversion {
        let whole = checked(py, ds, (from, to))?;
        converted = py
            .detach(|| convert::convert_to_vec(whole, from, to))
            .map_err(Error::from)?;
        ds = Some(&converted);
        frag = converted_fragment(frag);
    }
    let (_, total) = Fragments::new(command.len(), ds.map(<[u8]>::len), frag).totals();
    PyBytes::new_with(py, total, |out| {
        framing::frame_into(out, context_id, command, ds, frag);
        Ok(())
    })
}

/// Convert a whole dataset between uncompressed transfer syntaxes (tests and tools; sending
/// streams instead).
#[pyfunction]
#[pyo3(name = "convert_dataset")]
fn convert_dataset_py<'py>(
    py: Python<'py>,
    dataset: &Bound<'py, PyAny>,
    from_syntax: String,
    to_syntax: String,
) -> PyResult<Bound<'py, PyBytes>> {
    let source = self::dataset(py, Some(dataset))?.expect("a dataset was given");
    let data = source.as_slice();
    let (from, to) = conversion(Some((from_syntax, to_syntax)))?.expect("a conversion was given");
    let out = py
        .detach(|| convert::convert_to_vec(data, from, to))
        .map_err(Error::from)?;
    Ok(PyBytes::new(py, &out))
}

#[pymodule(gil_used = false)]
pub mod _core {
    use pyo3::prelude::*;

    #[pymodule_export]
    use super::convert_dataset_py;
    #[pymodule_export]
    use super::frame_message_py;
    #[pymodule_export]
    use super::TlsConfig;
    #[pymodule_export]
    use super::Transport;
    #[pymodule_export]
    use crate::server::ServerTlsConfig;
    #[pymodule_export]
    use crate::server::ServerTransport;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", crate::VERSION)?;
        m.add("BUILD_PROFILE", crate::BUILD_PROFILE)?;
        m.add("UNLIMITED_FRAGMENT", crate::UNLIMITED_FRAGMENT)?;
        Ok(())
    }
}
