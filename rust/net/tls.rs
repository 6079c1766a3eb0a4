//! DICOM TLS (PS3.15, BCP 195), client and server side: a rustls connection behind the [`Stream`]
//! trait, so the framing and write loops run unchanged and payload iovecs that point into the
//! mapped file are encrypted straight into TLS records (never copied through Python).
//!
//! What this module owns: building a `ClientConfig` (TLS 1.2 minimum, 1.3 preferred, CA file or
//! the system store, optional client certificate, optional *no verification*) and a
//! `ServerConfig` (certificate and key, optional client verification), the handshake as
//! a stepped operation, and the non-blocking record pump. It knows nothing of DICOM.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    ClientConfig, ClientConnection, Connection, DigitallySignedStruct, RootCertStore, ServerConfig,
    ServerConnection,
};

use super::stream::FdStream;
use crate::error::{Error, Result};
use crate::step::{Direction, Pacer, Progress, Stream};

/// Ciphertext rustls may hold before a write reports `WouldBlock`: 16 full records per `writev`.
/// Measured on a 1 GiB push: 1 MiB made the allocator grow and trim the heap on every batch
/// (thousands of `brk` calls, twice the system time) for no gain in throughput.
const BUFFER_LIMIT: usize = 256 << 10;

/// Where trust comes from, and whether we present a certificate.
#[derive(Debug, Default, Clone)]
pub struct TlsSettings<'a> {
    /// PEM file of CA certificates; `None`: the system store.
    pub ca_file: Option<&'a Path>,
    /// PEM certificate chain and private key of the client, for servers that require one.
    pub cert_file: Option<&'a Path>,
    pub key_file: Option<&'a Path>,
    /// Skip verifying the server's certificate and name (tests, or a lab PACS): insecure.
    pub no_verify: bool,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS error even for a missing file: a configuration problem, never worth a retry.
fn pem_error(path: &Path, what: &str, err: rustls::pki_types::pem::Error) -> Error {
    use rustls::pki_types::pem::Error as Pem;
    let detail = match err {
        // "No such file or directory", without Rust's " (os error 2)".
        Pem::Io(source) => {
            let text = source.to_string();
            text.split(" (os error ")
                .next()
                .unwrap_or_default()
                .to_string()
        }
        other => other.to_string(),
    };
    Error::Tls(format!(
        "TLS error: cannot read {what} from {}: {detail}",
        path.display()
    ))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, "certificates", e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, "certificates", e))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!(
            "TLS error: no PEM certificate in {}",
            path.display()
        )));
    }
    Ok(certs)
}

fn roots(ca_file: Option<&Path>) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in load_certs(path)? {
                store.add(cert).map_err(|e| {
                    Error::Tls(format!(
                        "TLS error: bad CA certificate in {}: {e}",
                        path.display()
                    ))
                })?;
            }
        }
        None => {
            // Unparsable entries in the system store are skipped, as OpenSSL does.
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err(Error::Tls(
                    "TLS error: no CA certificate found in the system store: give a CA file".into(),
                ));
            }
        }
    }
    Ok(store)
}

/// A client configuration: build once, share between connections (it also keeps the session
/// cache, so later associations to the same server resume instead of a full handshake).
pub fn client_config(settings: &TlsSettings<'_>) -> Result<Arc<ClientConfig>> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::Tls(format!("TLS error: {e}")))?;
    let builder = if settings.no_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    } else {
        builder.with_root_certificates(roots(settings.ca_file)?)
    };
    let config = match (settings.cert_file, settings.key_file) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let (chain, key_der) = load_identity(cert, key)?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| Error::Tls(format!("TLS error: client certificate and key: {e}")))?
        }
        _ => {
            return Err(Error::InvalidArgument(
                "a client certificate needs both a certificate file and a key file".into(),
            ))
        }
    };
    Ok(Arc::new(config))
}

fn load_identity(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = load_certs(cert)?;
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, "a private key", e))?;
    Ok((chain, key_der))
}

/// A server configuration: our certificate chain and key; with `client_ca`, clients must present
/// a certificate signed by one of those CAs.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::Tls(format!("TLS error: {e}")))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(Some(ca))?), provider)
                    .build()
                    .map_err(|e| Error::Tls(format!("TLS error: client CA: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let (chain, key) = load_identity(cert_file, key_file)?;
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| Error::Tls(format!("TLS error: server certificate and key: {e}")))?;
    Ok(Arc::new(config))
}

/// Accepts any server certificate, but still checks the handshake signatures made with it.
struct NoVerification(Arc<CryptoProvider>);

impl fmt::Debug for NoVerification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NoVerification")
    }
}

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `io::Read`/`io::Write` over the TCP stream, the shape rustls reads and writes records with.
struct Wire<'a>(&'a mut FdStream);

impl Read for Wire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Wire<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_vectored(&[IoSlice::new(buf)])
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A TLS failure in words a PACS administrator can act on, with rustls's own text after it.
pub fn describe(err: &rustls::Error) -> String {
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

/// A rustls failure on the way through the [`Stream`] trait's `io::Result`: it carries our
/// [`Error::Tls`], in words, which the conversion back to [`Error`] takes out again.
fn tls_io_error(err: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, Error::Tls(describe(&err)))
}

/// A TLS connection (client or server side) over a non-blocking TCP stream.
pub struct TlsStream {
    tcp: FdStream,
    conn: Connection,
}

impl TlsStream {
    /// Start a connection to `server_name` (a DNS name or an IP address, checked against the
    /// certificate). Drive [`TlsStream::handshake_step`] to completion before use.
    pub fn new(tcp: FdStream, config: Arc<ClientConfig>, server_name: &str) -> Result<Self> {
        let name = ServerName::try_from(server_name.to_owned()).map_err(|_| {
            Error::InvalidArgument(format!("{server_name:?} is not a valid TLS server name"))
        })?;
        let conn = ClientConnection::new(config, name)
            .map_err(|e| Error::Tls(format!("TLS error: {e}")))?;
        Ok(Self::over(tcp, conn.into()))
    }

    /// The server side of a connection a client opened; drive the handshake the same way.
    pub fn server(tcp: FdStream, config: Arc<ServerConfig>) -> Result<Self> {
        let conn =
            ServerConnection::new(config).map_err(|e| Error::Tls(format!("TLS error: {e}")))?;
        Ok(Self::over(tcp, conn.into()))
    }

    fn over(tcp: FdStream, mut conn: Connection) -> Self {
        conn.set_buffer_limit(Some(BUFFER_LIMIT));
        TlsStream { tcp, conn }
    }

    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.tcp.raw_fd()
    }

    /// The negotiated protocol, e.g. `"TLSv1.3"`, once the handshake is done.
    pub fn protocol(&self) -> Option<String> {
        self.conn.protocol_version().map(|v| match v {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
            other => format!("{other:?}"),
        })
    }

    /// The negotiated cipher suite, e.g. `"TLS13_AES_256_GCM_SHA384"`.
    pub fn cipher(&self) -> Option<String> {
        self.conn
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str().map(str::to_string))
    }

    /// Write pending records; `Ok(true)` once nothing is left, `Ok(false)` on `WouldBlock`.
    fn push_records(&mut self) -> io::Result<bool> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut Wire(&mut self.tcp)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Read records from the socket and process them; `Ok(0)` at end of stream.
    fn pull_records(&mut self) -> io::Result<usize> {
        let n = self.conn.read_tls(&mut Wire(&mut self.tcp))?;
        if let Err(err) = self.conn.process_new_packets() {
            // Tell the peer why (the alert rustls queued), best effort, then report.
            let _ = self.push_records();
            return Err(tls_io_error(err));
        }
        Ok(n)
    }

    /// One step of the handshake: write what is pending, or read what the server sent, or wait.
    pub fn handshake_step(&mut self, pacer: &mut Pacer) -> Result<Progress> {
        if !self.push_records()? {
            pacer.wait(self, Direction::Write)?;
            return Ok(Progress::Pending);
        }
        if !self.conn.is_handshaking() {
            return Ok(Progress::Done);
        }
        match self.pull_records() {
            Ok(0) => Err(Error::PeerClosed { mid_pdu: false }),
            Ok(_) => {
                pacer.progressed();
                Ok(Progress::Pending)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                pacer.wait(self, Direction::Read)?;
                Ok(Progress::Pending)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Progress::Pending),
            Err(e) => Err(e.into()),
        }
    }
}

impl Stream for TlsStream {
    /// Encrypts as much of `bufs` as the record buffer takes, straight from the slices, and
    /// writes the records that fit in the socket. Taken bytes count as written: [`Stream::flush`]
    /// pushes out the rest.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.push_records()?;
        let taken = self.conn.writer().write_vectored(bufs)?;
        if taken == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.push_records()?;
        Ok(taken)
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                // Closed without close_notify: for us, a peer that closed the connection.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // Answers the server may need (key updates, alerts) go out before we block on it.
            self.push_records()?;
            if self.pull_records()? == 0 {
                // End of stream: the reader reports it (UnexpectedEof or a clean close).
                continue;
            }
        }
    }

    fn wait(&mut self, direction: Direction, limit: std::time::Duration) -> io::Result<()> {
        // Pending records come first: the peer may be waiting for them before it answers.
        let direction = if self.conn.wants_write() {
            Direction::Write
        } else {
            direction
        };
        self.tcp.wait(direction, limit)
    }

    fn before_read(&mut self) {
        self.tcp.before_read();
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.push_records()? {
            Ok(())
        } else {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }
}

impl Drop for TlsStream {
    fn drop(&mut self) {
        // A polite close_notify, best effort: the socket is non-blocking and closes right after.
        self.conn.send_close_notify();
        let _ = self.push_records();
    }
}
