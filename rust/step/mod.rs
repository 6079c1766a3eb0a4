//! The step machinery every blocking operation of the core runs on: a [`Stream`] that never
//! blocks, a [`Pacer`] that bounds each wait to [`WAIT_SLICE`] and the operation to its
//! timeout, and operations that are driven by calling their `step` until it reports
//! [`Progress::Done`].
//!
//! One step does a bounded amount of work (one batch written, a few reads, or one wait of at
//! most [`WAIT_SLICE`]), so a caller can run each step with the GIL released and check for
//! signals between steps (the binding does); [`run_to_end`] is the plain-Rust driver.
//! This module knows bytes and time, no PDU.

mod cursor;
mod pacer;
mod stream;
mod write;

use std::time::Duration;

use crate::error::Result;

pub use cursor::Cursor;
pub use pacer::{Pacer, PduClock};
pub use stream::{Direction, Stream, MAX_IOVECS};
pub use write::{finish, try_write, Attempt, BufferWriter, BATCH_BYTES};

/// Longest single wait before control returns to the caller (signal checks).
pub const WAIT_SLICE: Duration = Duration::from_millis(200);

/// Whether an operation finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Pending,
    Done,
}

/// Drive a stepped operation to completion, calling `between` after every step (the Python layer
/// uses its own loop to release the GIL and check signals instead).
pub fn run_to_end(
    mut step: impl FnMut() -> Result<Progress>,
    mut between: impl FnMut() -> Result<()>,
) -> Result<()> {
    while step()? == Progress::Pending {
        between()?;
    }
    Ok(())
}
