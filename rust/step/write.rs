//! Writing in steps: one attempt at a vectored write (or one bounded wait when the stream is
//! full), the final flush of what a stream still buffers, and [`BufferWriter`] for one buffer
//! already encoded (a PDU built by the caller).

use std::io::{self, IoSlice};

use super::{Direction, Pacer, Progress, Stream};
use crate::error::{Error, Result};

/// Upper bound on the payload bytes of one batch (one `sendmsg` attempt).
pub const BATCH_BYTES: usize = 4 << 20;

/// How a write attempt went.
pub enum Attempt {
    Wrote(usize),
    Retry,
}

/// Write `iov` once, or wait once (within `pacer`) when the stream is full.
pub fn try_write<S: Stream + ?Sized>(
    stream: &mut S,
    iov: &[IoSlice<'_>],
    pacer: &mut Pacer,
) -> Result<Attempt> {
    match stream.write_vectored(iov) {
        Ok(0) => Err(Error::Io(io::ErrorKind::WriteZero.into())),
        Ok(n) => {
            pacer.progressed();
            Ok(Attempt::Wrote(n))
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Attempt::Retry),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            pacer.wait(stream, Direction::Write)?;
            Ok(Attempt::Retry)
        }
        Err(e) => Err(e.into()),
    }
}

/// End a write: push out what the stream still buffers (TLS records), so that "sent" means on
/// the socket before we start waiting for the peer's answer.
pub fn finish<S: Stream + ?Sized>(stream: &mut S, pacer: &mut Pacer) -> Result<Progress> {
    match stream.flush() {
        Ok(()) => Ok(Progress::Done),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Progress::Pending),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            pacer.wait(stream, Direction::Write)?;
            Ok(Progress::Pending)
        }
        Err(e) => Err(e.into()),
    }
}

/// Writes one buffer (an already-encoded PDU), in writes of at most [`BATCH_BYTES`].
pub struct BufferWriter<'a> {
    data: &'a [u8],
    offset: usize,
}

impl<'a> BufferWriter<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        BufferWriter { data, offset: 0 }
    }

    pub fn step<S: Stream + ?Sized>(
        &mut self,
        stream: &mut S,
        pacer: &mut Pacer,
    ) -> Result<Progress> {
        while self.offset < self.data.len() {
            let chunk = &self.data[self.offset..];
            let chunk = &chunk[..chunk.len().min(BATCH_BYTES)];
            match try_write(stream, &[IoSlice::new(chunk)], pacer)? {
                Attempt::Wrote(n) => self.offset += n,
                Attempt::Retry => return Ok(Progress::Pending),
            }
        }
        finish(stream, pacer)
    }
}
