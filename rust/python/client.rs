//! The client side's classes: `TlsConfig` and `Transport`, a requestor's connection that writes
//! messages (converted on the way when asked) and reads whole PDUs. Argument conversion and GIL
//! handling only; see `_core.pyi` for the contract.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::args::{checked, conversion, dataset, max_pdu, timeout_arg, Dataset};
use super::connection::{open_stream, Connection};
use super::edits::{prepared, EditPlan};
use super::gil::drive;
use super::live::LiveDataset;
use crate::convert::{self, Syntax};
use crate::error::Error;
use crate::net::tls::{self, TlsSettings};
use crate::net::TlsStream;
use crate::pdu::framing;
use crate::pdu::reader::PduReader;
use crate::pdu::P_DATA_TF;
use crate::send::{ConvertingWriter, LiveFile, LiveWriter, MessageWriter, ResponseReader};
use crate::step::{BufferWriter, Pacer, Stream};

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

const NO_TIMEOUT: u64 = u64::MAX;

/// A connected TCP stream that sends and receives whole PDUs. See `_core.pyi`.
#[pyclass(frozen, module = "fastpush._core")]
pub struct Transport {
    connection: Connection<Box<dyn Stream>>,
    /// Timeout in nanoseconds; `NO_TIMEOUT` for None.
    timeout_ns: AtomicU64,
    /// `(protocol, cipher suite)` negotiated by a TLS connection.
    tls: Option<(String, String)>,
}

impl Transport {
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
            connection: Connection::new(stream, fd),
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
        self.connection.closed()
    }

    /// Write one already-encoded PDU.
    fn send_pdu(&self, py: Python<'_>, data: &Bound<'_, PyBytes>) -> PyResult<()> {
        let data = data.as_bytes();
        let mut out = self.connection.checkout(py)?;
        let stream = out.as_mut();
        let mut pacer = self.pacer();
        let mut writer = BufferWriter::new(data);
        drive(py, || writer.step(stream, &mut pacer))
    }

    /// Frame and write one DIMSE message, its dataset converted when `convert` is given (the
    /// same syntax twice: re-encoded, odd values padded), or else, with `verify`, walked whole
    /// in that syntax first (a truncated dataset fails before anything is sent); returns the
    /// bytes written. With `edits` (which needs `convert`), the plan is applied on the way,
    /// checked whole first: a dataset it cannot edit fails before any byte is sent.
    #[pyo3(signature = (context_id, command, dataset, max_pdu, convert=None, verify=None, edits=None))]
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
        edits: Option<&EditPlan>,
    ) -> PyResult<u64> {
        let context_id = framing::context_id(context_id)?;
        let frag = framing::fragment_size(self::max_pdu(max_pdu)?)?;
        let conversion = conversion(convert)?;
        let source = self::dataset(py, dataset)?;
        let command = command.as_bytes();
        let ds = source.as_ref().map(Dataset::as_slice);
        let mapped = source.as_ref().is_some_and(Dataset::is_mapped);
        if edits.is_some() && conversion.is_none() {
            return Err(Error::InvalidArgument("edits need convert".into()).into());
        }
        if let Some((from, to)) = conversion {
            let ds = checked(py, ds, (from, to))?;
            let edited = match edits {
                Some(e) => Some((&*e.plan, prepared(py, &e.plan, ds, (from, to))?)),
                None => None,
            };
            let mut out = self.connection.checkout(py)?;
            let stream = out.as_mut();
            let mut pacer = self.pacer();
            let mut writer =
                ConvertingWriter::new(context_id, command, (ds, mapped), (from, to), frag, edited);
            drive(py, || writer.step(stream, &mut pacer))?;
            return Ok(writer.written());
        }
        if let (Some(ds), Some(syntax)) = (ds, verify.as_deref().and_then(Syntax::from_uid)) {
            py.detach(|| convert::check(ds, syntax, syntax))
                .map_err(|e| Error::Malformed(e.to_string()))?;
        }
        let mut out = self.connection.checkout(py)?;
        let stream = out.as_mut();
        let mut pacer = self.pacer();
        let mut writer = MessageWriter::new(context_id, command, ds, mapped, frag);
        drive(py, || writer.step(stream, &mut pacer))?;
        Ok(writer.written())
    }

    /// Frame and write a C-STORE whose dataset is still being received (cut-through): the
    /// command set when `command` is given, then the dataset from byte `sent` as it arrives, up
    /// to its last fragment, or with `finish` to its end; returns the dataset bytes sent. See
    /// `_core.pyi`.
    #[pyo3(signature = (context_id, command, dataset, max_pdu, sent=0, finish=false, stall=None))]
    #[allow(clippy::too_many_arguments)]
    fn send_live(
        &self,
        py: Python<'_>,
        context_id: i64,
        command: Option<&Bound<'_, PyBytes>>,
        dataset: &LiveDataset,
        max_pdu: i64,
        sent: u64,
        finish: bool,
        stall: Option<f64>,
    ) -> PyResult<u64> {
        let context_id = framing::context_id(context_id)?;
        let stall = timeout_arg(stall)?;
        let frag = framing::fragment_size(self::max_pdu(max_pdu)?)?;
        if sent % frag as u64 != 0 {
            return Err(Error::InvalidArgument(format!(
                "sent {sent} is not a multiple of the fragment size {frag}"
            ))
            .into());
        }
        let mut out = self.connection.checkout(py)?;
        let stream = out.as_mut();
        let mut pacer = self.pacer();
        if let Some(command) = command {
            let mut writer = MessageWriter::new(context_id, command.as_bytes(), None, false, frag);
            drive(py, || writer.step(stream, &mut pacer))?;
        }
        let source = LiveFile {
            live: &dataset.live,
            file: &dataset.file,
            base: dataset.base,
        };
        let mut writer = LiveWriter::new(source, context_id, frag, sent, finish, stall);
        // A wait for the receive is not the peer's: the connection may be closed meanwhile.
        let closed = || self.connection.closed();
        drive(py, || {
            if closed() {
                return Err(Error::Closed);
            }
            writer.step(stream, &mut pacer)
        })?;
        Ok(writer.sent())
    }

    /// Read one whole PDU: `(type, body)`.
    fn recv_pdu<'py>(
        &self,
        py: Python<'py>,
        max_length: i64,
    ) -> PyResult<(u8, Bound<'py, PyBytes>)> {
        let max_length = u64::try_from(max_length)
            .map_err(|_| Error::InvalidArgument(format!("max_length {max_length} is negative")))?;
        let mut out = self.connection.checkout(py)?;
        let stream = out.as_mut();
        let mut pacer = self.pacer();
        let mut reader = PduReader::new(max_length);
        drive(py, || reader.step(stream, &mut pacer))?;
        drop(out);
        let (pdu_type, body) = reader.into_pdu();
        Ok((pdu_type, PyBytes::new(py, &body)))
    }

    /// Read P-DATA-TF PDUs until a response's command set is complete (its dataset, if any,
    /// read and dropped): `(0x04, context_id, command)`; a PDU of another type ends it as
    /// `(pdu_type, 0, body)`. See `_core.pyi`.
    fn recv_command<'py>(
        &self,
        py: Python<'py>,
        max_length: i64,
        contexts: Vec<u8>,
        max_bytes: i64,
    ) -> PyResult<(u8, u8, Bound<'py, PyBytes>)> {
        let max_length = u64::try_from(max_length)
            .map_err(|_| Error::InvalidArgument(format!("max_length {max_length} is negative")))?;
        let max_bytes = u64::try_from(max_bytes)
            .map_err(|_| Error::InvalidArgument(format!("max_bytes {max_bytes} is negative")))?;
        let mut out = self.connection.checkout(py)?;
        let stream = out.as_mut();
        let mut pacer = self.pacer();
        let mut response = ResponseReader::new(&contexts, max_bytes);
        loop {
            let mut reader = PduReader::new(max_length);
            drive(py, || reader.step(stream, &mut pacer))?;
            let (pdu_type, body) = reader.into_pdu();
            if pdu_type != P_DATA_TF {
                return Ok((pdu_type, 0, PyBytes::new(py, &body)));
            }
            if let Some((context_id, command)) = response.take(&body)? {
                return Ok((P_DATA_TF, context_id, PyBytes::new(py, &command)));
            }
        }
    }

    /// Close the socket. Idempotent; a send or receive running in another thread is woken and
    /// fails, and the socket is closed when it returns.
    fn close(&self) {
        self.connection.close();
    }

    fn __repr__(&self) -> String {
        let state = if self.closed() {
            "closed".to_string()
        } else {
            format!("fd={}", self.connection.fd())
        };
        let state = match &self.tls {
            Some((protocol, _)) => format!("{state} {protocol}"),
            None => state,
        };
        format!("<fastpush._core.Transport {state}>")
    }
}
