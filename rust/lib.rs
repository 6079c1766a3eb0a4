//! fastpush's data path: P-DATA-TF framing and socket I/O.
//!
//! The modules below are plain Rust, tested with `cargo test`; [`python`] is the thin PyO3
//! module `fastpush._core` over them (the default `python` feature).

pub mod convert;
pub mod converting;
pub mod error;
pub mod framing;
pub mod io;
pub mod reassembly;
pub mod receive;
pub mod sink;
pub mod source;
pub mod stream;
pub mod tls;

#[cfg(feature = "python")]
mod python;
#[cfg(feature = "python")]
mod server;

#[cfg(test)]
mod props;
#[cfg(test)]
mod receive_props;

pub use error::{Error, Result};
pub use framing::UNLIMITED_FRAGMENT;

/// The crate version, which is the package's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `"release"` or `"debug"`.
pub const BUILD_PROFILE: &str = if cfg!(debug_assertions) {
    "debug"
} else {
    "release"
};
