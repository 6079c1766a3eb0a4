//! fastpush's data path: P-DATA-TF framing, socket and TLS I/O, the receive loop, and transfer
//! syntax conversion on the fly.
//!
//! The core is plain Rust in folders by role, each using only those above it in this list:
//!
//! - [`convert`]: the streaming transfer syntax converter (no I/O);
//! - [`error`]: the one error enum;
//! - [`step`]: the step machinery — the non-blocking [`step::Stream`], the [`step::Pacer`] that
//!   bounds waits, stepped writes, [`step::run_to_end`];
//! - [`pdu`]: the PDU header, P-DATA-TF framing, the one-PDU reader, PDV reassembly;
//! - [`net`]: TCP and TLS streams;
//! - [`send`]: the sender's message writers and mapped sources;
//! - [`receive`]: the receive loop, its parser, dataset sinks, A-ABORT (independent of `send`).
//!
//! `python` (the default `python` feature) is the only module that knows PyO3: the module
//! `fastpush._core`, its two transports, the GIL helpers and the `PyErr` mapping.

pub mod convert;
pub mod error;
pub mod net;
pub mod pdu;
pub mod receive;
pub mod send;
pub mod step;

#[cfg(feature = "python")]
mod python;

#[cfg(test)]
mod testing;

pub use error::{Error, Result};
pub use pdu::framing::UNLIMITED_FRAGMENT;

/// The crate version, which is the package's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `"release"` or `"debug"`.
pub const BUILD_PROFILE: &str = if cfg!(debug_assertions) {
    "debug"
} else {
    "release"
};
