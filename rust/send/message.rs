//! [`MessageWriter`]: one DIMSE message written as P-DATA-TF PDUs in steps, the payload iovecs
//! pointing into the command and the dataset (a mapped file region: zero copy), one batch of
//! PDU headers held at a time, the sent pages of a mapped dataset released as it goes.

use super::source;
use crate::error::Result;
use crate::pdu::framing::{Fragment, Fragments, Part, PDU_OVERHEAD};
use crate::step::{
    finish, try_write, Attempt, Cursor, Pacer, Progress, Stream, BATCH_BYTES, MAX_IOVECS,
};

/// Sent pages of a mapped dataset are released once this much more has been sent.
pub const RELEASE_BYTES: usize = 2 << 20;

/// One iovec of a batch.
#[derive(Debug, Clone, Copy)]
enum Piece {
    Header(usize),
    Command { offset: usize, len: usize },
    Dataset { offset: usize, len: usize },
}

/// Writes one DIMSE message as P-DATA-TF PDUs, payload iovecs pointing into `command` and
/// `dataset`; only one batch of 12-byte headers is held at a time.
pub struct MessageWriter<'a> {
    context_id: u8,
    command: &'a [u8],
    dataset: Option<&'a [u8]>,
    dataset_mapped: bool,
    fragments: Fragments,
    headers: Vec<[u8; PDU_OVERHEAD]>,
    pieces: Vec<Piece>,
    cursor: Cursor,
    dataset_sent: usize,
    released: usize,
    written: u64,
}

impl<'a> MessageWriter<'a> {
    /// `frag` comes from [`crate::pdu::framing::fragment_size`]. Set `dataset_mapped` only when the
    /// dataset lies in a read-only file mapping: its sent pages are then released as we go.
    pub fn new(
        context_id: u8,
        command: &'a [u8],
        dataset: Option<&'a [u8]>,
        dataset_mapped: bool,
        frag: usize,
    ) -> Self {
        let fragments = Fragments::new(command.len(), dataset.map(<[u8]>::len), frag);
        let per_batch = (fragments.totals().0).min(MAX_IOVECS / 2);
        MessageWriter {
            context_id,
            command,
            dataset,
            dataset_mapped,
            fragments,
            headers: Vec::with_capacity(per_batch),
            pieces: Vec::with_capacity(per_batch * 2),
            cursor: Cursor::default(),
            dataset_sent: 0,
            released: 0,
            written: 0,
        }
    }

    /// Bytes written to the stream so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn fill_batch(&mut self) -> bool {
        self.headers.clear();
        self.pieces.clear();
        self.cursor = Cursor::default();
        let mut bytes = 0usize;
        while let Some(f) = self.fragments.peek() {
            let full = self.pieces.len() + 2 > MAX_IOVECS || bytes + f.len > BATCH_BYTES;
            if !self.pieces.is_empty() && full {
                break;
            }
            self.push_fragment(f);
            bytes += f.len + PDU_OVERHEAD;
            self.fragments.advance();
        }
        !self.pieces.is_empty()
    }

    fn push_fragment(&mut self, f: Fragment) {
        self.headers.push(f.header(self.context_id));
        self.pieces.push(Piece::Header(self.headers.len() - 1));
        if f.len > 0 {
            self.pieces.push(match f.part {
                Part::Command => Piece::Command {
                    offset: f.offset,
                    len: f.len,
                },
                Part::Dataset => Piece::Dataset {
                    offset: f.offset,
                    len: f.len,
                },
            });
        }
    }

    fn piece_bytes(&self, piece: Piece) -> &[u8] {
        match piece {
            Piece::Header(i) => &self.headers[i],
            Piece::Command { offset, len } => &self.command[offset..offset + len],
            Piece::Dataset { offset, len } => &self.dataset.unwrap_or(&[])[offset..offset + len],
        }
    }

    /// Move the cursor over `n` written bytes.
    fn advance(&mut self, n: usize) {
        self.written += n as u64;
        let mut cursor = self.cursor;
        cursor.advance(n, |i| self.piece_bytes(self.pieces[i]).len());
        self.cursor = cursor;
        // The dataset sent so far ends in the piece the cursor is in, or in the last it passed.
        let upto = self.pieces.len().min(cursor.piece + 1);
        let sent =
            self.pieces[..upto]
                .iter()
                .enumerate()
                .rev()
                .find_map(|(i, piece)| match *piece {
                    Piece::Dataset { offset, len } => Some(if i == cursor.piece {
                        offset + cursor.offset
                    } else {
                        offset + len
                    }),
                    _ => None,
                });
        if let Some(sent) = sent {
            self.dataset_sent = sent;
        }
    }

    fn release_sent(&mut self, finished: bool) {
        let Some(dataset) = self.dataset else { return };
        if !self.dataset_mapped {
            return;
        }
        if self.dataset_sent - self.released >= RELEASE_BYTES
            || (finished && self.dataset_sent > self.released)
        {
            // SAFETY: dataset_mapped promises a read-only file mapping.
            unsafe { source::release_pages(dataset, self.released, self.dataset_sent) };
            self.released = self.dataset_sent;
        }
    }

    /// Write the current batch (building the next one first if needed) as far as the stream
    /// takes it, or wait once for it to drain.
    pub fn step<S: Stream + ?Sized>(
        &mut self,
        stream: &mut S,
        pacer: &mut Pacer,
    ) -> Result<Progress> {
        if self.cursor.piece == self.pieces.len() && !self.fill_batch() {
            self.release_sent(true);
            return finish(stream, pacer);
        }
        loop {
            let attempt = {
                let iov = self
                    .cursor
                    .iov(&self.pieces, |piece| self.piece_bytes(piece));
                try_write(stream, &iov, pacer)?
            };
            match attempt {
                Attempt::Wrote(n) => {
                    self.advance(n);
                    self.release_sent(false);
                    if self.cursor.piece == self.pieces.len() {
                        return Ok(Progress::Pending);
                    }
                }
                Attempt::Retry => return Ok(Progress::Pending),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::net::FdStream;
    use crate::pdu::framing::{fragment_size, frame_message};
    use crate::step::run_to_end;
    use crate::testing::{socketpair, Trickle};
    use std::io;
    use std::os::fd::OwnedFd;
    use std::time::Duration;

    fn small_sndbuf(fd: &OwnedFd) {
        use std::os::fd::AsRawFd;
        let v: libc::c_int = 4096;
        let ret = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(ret, 0);
    }

    fn read_all(fd: OwnedFd) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            use std::io::Read;
            let mut f = std::fs::File::from(fd);
            let mut out = Vec::new();
            // Read in small chunks so the writer sees many partial writes.
            let mut buf = [0u8; 3001];
            loop {
                let n = f.read(&mut buf).unwrap();
                if n == 0 {
                    return out;
                }
                out.extend_from_slice(&buf[..n]);
            }
        })
    }

    fn send(stream: &mut dyn Stream, cmd: &[u8], ds: Option<&[u8]>, max_pdu: u64) -> u64 {
        let mut w = MessageWriter::new(9, cmd, ds, false, fragment_size(max_pdu).unwrap());
        let mut pacer = Pacer::new(Some(Duration::from_secs(10)));
        run_to_end(|| w.step(stream, &mut pacer), || Ok(())).unwrap();
        w.written()
    }

    #[test]
    fn socketpair_round_trip_with_partial_writes() {
        let cmd: Vec<u8> = (0..301u32).map(|i| i as u8).collect();
        let ds: Vec<u8> = (0..3_000_001u32).map(|i| (i % 251) as u8).collect();
        for max_pdu in [0u64, 4096, 16385] {
            let (a, b) = socketpair();
            small_sndbuf(&a);
            let reader = read_all(b);
            let mut stream = FdStream::new(a, true).unwrap();
            let written = send(&mut stream, &cmd, Some(&ds), max_pdu);
            drop(stream);
            let got = reader.join().unwrap();
            let expected = frame_message(9, &cmd, Some(&ds), max_pdu).unwrap();
            assert_eq!(written as usize, expected.len());
            assert!(got == expected, "max_pdu {max_pdu}: bytes differ");
        }
    }

    #[test]
    fn trickled_writes_advance_across_iovecs() {
        let cmd = vec![1u8; 50];
        let ds: Vec<u8> = (0..20_001u32).map(|i| (i % 13) as u8).collect();
        let (a, b) = socketpair();
        let reader = read_all(b);
        let mut stream = Trickle {
            inner: FdStream::new(a, true).unwrap(),
            max: 7,
            writes: 0,
        };
        send(&mut stream, &cmd, Some(&ds), 100);
        assert!(stream.writes > 20_000 / 7);
        drop(stream);
        assert_eq!(
            reader.join().unwrap(),
            frame_message(9, &cmd, Some(&ds), 100).unwrap()
        );
    }

    #[test]
    fn write_timeout_and_broken_pipe() {
        let (a, b) = socketpair();
        small_sndbuf(&a);
        let mut sender = FdStream::new(a, true).unwrap();
        let ds = vec![0u8; 4 << 20];
        let mut w = MessageWriter::new(1, b"cmd!", Some(&ds), false, fragment_size(0).unwrap());
        let mut pacer = Pacer::new(Some(Duration::from_millis(30)));
        let r = run_to_end(|| w.step(&mut sender, &mut pacer), || Ok(()));
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
        drop(b);
        let mut w = MessageWriter::new(1, b"cmd!", Some(&ds), false, fragment_size(0).unwrap());
        match run_to_end(|| w.step(&mut sender, &mut pacer), || Ok(())) {
            Err(Error::Io(e)) => assert!(matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            )),
            other => panic!("{other:?}"),
        }
    }
}
