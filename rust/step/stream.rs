//! The byte stream the step machinery drives: non-blocking vectored writes, reads, and a bounded
//! wait for readiness. The concrete streams (plain TCP, TLS) live in [`crate::net`].

use std::io::{self, IoSlice};
use std::time::Duration;

/// Which readiness a blocked operation waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Read,
    Write,
}

/// A non-blocking byte stream. Methods return `ErrorKind::WouldBlock` when they would block;
/// the caller then calls [`Stream::wait`].
pub trait Stream: Send {
    /// Write from several buffers at once; returns how many bytes were taken.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// Read into `buf`; `Ok(0)` is end of stream.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Wait at most `limit` for the stream to be ready in `direction` (spurious wake-ups allowed).
    fn wait(&mut self, direction: Direction, limit: Duration) -> io::Result<()>;
    /// Called before each read: a hint that a response is expected (TCP_QUICKACK).
    fn before_read(&mut self) {}
    /// Push out bytes a write accepted but the stream still buffers (TLS records);
    /// `ErrorKind::WouldBlock` while some remain. Plain sockets buffer nothing of their own.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Most iovecs one `sendmsg` takes (Linux and macOS `IOV_MAX`).
pub const MAX_IOVECS: usize = 1024;
