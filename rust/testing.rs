//! Helpers for the unit tests: socket pairs, PDUs built by hand, and in-memory streams that
//! read and write in the sizes a test scripts.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use crate::step::{Direction, Stream};

pub fn socketpair() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    let ret = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) };
    assert_eq!(ret, 0);
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

pub fn pdu(pdu_type: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![pdu_type, 0];
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// Counts writes and limits each to a few bytes, to exercise partial-write bookkeeping.
pub struct Trickle<S> {
    pub inner: S,
    pub max: usize,
    pub writes: usize,
}

impl<S: Stream> Stream for Trickle<S> {
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.writes += 1;
        let mut budget = self.max;
        let mut cut = Vec::new();
        for b in bufs {
            if budget == 0 {
                break;
            }
            let take = b.len().min(budget);
            cut.push(IoSlice::new(&b[..take]));
            budget -= take;
        }
        self.inner.write_vectored(&cut)
    }
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let max = buf.len().min(self.max);
        self.inner.read(&mut buf[..max])
    }
    fn wait(&mut self, d: Direction, limit: Duration) -> io::Result<()> {
        self.inner.wait(d, limit)
    }
}

/// Replays `data` in reads of the scripted sizes (0 in the script: `WouldBlock` once), then EOF.
pub struct Replay {
    data: Vec<u8>,
    pos: usize,
    chunks: VecDeque<usize>,
}

impl Replay {
    pub fn new(data: Vec<u8>, chunks: Vec<u8>) -> Self {
        Replay {
            data,
            pos: 0,
            chunks: chunks.into_iter().map(usize::from).collect(),
        }
    }
}

impl Stream for Replay {
    fn write_vectored(&mut self, _bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let chunk = self.chunks.pop_front().unwrap_or(usize::MAX);
        if chunk == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = chunk.min(buf.len()).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
    fn wait(&mut self, _d: Direction, _limit: Duration) -> io::Result<()> {
        Ok(())
    }
}
