//! The concrete streams the step machinery drives: plain TCP over a socket ([`stream`]) and
//! DICOM TLS over one ([`tls`]: configurations, handshake, record pump, and the words a TLS
//! failure is reported in). They know nothing of DICOM.

pub mod stream;
pub mod tls;

pub use stream::{shutdown, FdStream};
pub use tls::TlsStream;
