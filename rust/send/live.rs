//! [`LiveWriter`]: a dataset sent while it is still being received (cut-through). Its bytes are
//! mapped from the file the receive loop writes, as far as [`Live`] says they are there, and
//! written in batches of PDUs, the iovecs pointing into the mapping (one copy, as a file is
//! sent whole).
//!
//! Until the writer is told to finish, the dataset's last fragment is held back: a message
//! without its last fragment can still be given up (by aborting the association) when the
//! receiver does not keep the dataset, so the peer never stores what the sender was refused.

use std::fs::File;
use std::io::{self, IoSlice};
use std::time::{Duration, Instant};

use memmap2::{Mmap, MmapOptions};

use super::source::page_size;
use crate::error::{Error, Result};
use crate::pdu::framing::{Fragment, Part, PDU_OVERHEAD};
use crate::receive::{End, Live};
use crate::step::{
    finish, try_write, Attempt, Cursor, Pacer, Progress, Stream, BATCH_BYTES, WAIT_SLICE,
};

/// Bytes worth waiting for before a batch is framed while the dataset still arrives.
const MIN_BATCH: usize = 256 << 10;

/// One iovec of a batch: a PDU header, or a fragment's bytes at an offset of the mapping.
#[derive(Debug, Clone, Copy)]
enum Piece {
    Header(usize),
    Data { offset: usize, len: usize },
}

/// Fragments framed and not yet written: their headers, and their bytes in a mapping.
#[derive(Default)]
struct Batch {
    map: Option<Mmap>,
    headers: Vec<[u8; PDU_OVERHEAD]>,
    pieces: Vec<Piece>,
    cursor: Cursor,
}

impl Batch {
    fn bytes(&self, piece: Piece) -> &[u8] {
        match piece {
            Piece::Header(i) => &self.headers[i],
            Piece::Data { offset, len } => {
                &self.map.as_deref().unwrap_or(&[])[offset..offset + len]
            }
        }
    }

    fn pending(&self) -> bool {
        self.cursor.piece < self.pieces.len()
    }

    fn iov(&self) -> Vec<IoSlice<'_>> {
        self.cursor.iov(&self.pieces, |piece| self.bytes(piece))
    }

    fn advance(&mut self, n: usize) {
        let mut cursor = self.cursor;
        cursor.advance(n, |i| self.bytes(self.pieces[i]).len());
        self.cursor = cursor;
    }
}

/// A dataset being received: its progress, and the file it is written into from `base` on
/// (after the header in front of it).
#[derive(Clone, Copy)]
pub struct LiveFile<'a> {
    pub live: &'a Live,
    pub file: &'a File,
    pub base: u64,
}

/// Writes the dataset part of a message from a file still being received.
pub struct LiveWriter<'a> {
    source: LiveFile<'a>,
    context_id: u8,
    frag: usize,
    sent: u64,
    finish: bool,
    /// How long the receive may make no progress before the send is given up.
    stall: Option<Duration>,
    /// Bytes stored when last looked at, and since when there has been nothing new to send.
    seen: (u64, Instant),
    batch: Batch,
    framed_all: bool,
}

impl<'a> LiveWriter<'a> {
    /// Go on from dataset byte `sent` (a multiple of `frag`); with `finish`, to the end, its last
    /// fragment flagged, else up to the last fragment. A receive that stores nothing new for
    /// `stall` fails the send: a sender trickling its dataset must not hold the destination.
    pub fn new(
        source: LiveFile<'a>,
        context_id: u8,
        frag: usize,
        sent: u64,
        finish: bool,
        stall: Option<Duration>,
    ) -> Self {
        LiveWriter {
            source,
            context_id,
            frag,
            sent,
            finish,
            stall,
            seen: (0, Instant::now()),
            batch: Batch::default(),
            framed_all: false,
        }
    }

    /// Dataset bytes framed so far (all of them written once the writer is done).
    pub fn sent(&self) -> u64 {
        self.sent
    }

    pub fn step<S: Stream + ?Sized>(
        &mut self,
        stream: &mut S,
        pacer: &mut Pacer,
    ) -> Result<Progress> {
        loop {
            if self.batch.pending() {
                match try_write(stream, &self.batch.iov(), pacer)? {
                    Attempt::Wrote(n) => self.batch.advance(n),
                    Attempt::Retry => return Ok(Progress::Pending),
                }
                continue;
            }
            if self.framed_all {
                self.batch.map = None;
                return finish(stream, pacer);
            }
            let frag = self.frag as u64;
            let batch = (MIN_BATCH as u64).max(frag);
            let most = (BATCH_BYTES as u64 / frag).max(1) * frag;
            let (stored, end) = self.source.live.wait(self.sent + batch + 1, WAIT_SLICE);
            if stored > self.seen.0 {
                self.seen = (stored, Instant::now());
            } else if end.is_none() && self.stall.is_some_and(|s| self.seen.1.elapsed() > s) {
                return Err(cut("the dataset being received stalled"));
            }
            let (bytes, last) = match end {
                Some(End::Cut) => return Err(cut("the dataset being received was cut")),
                Some(End::Whole) if stored % 2 == 1 => {
                    return Err(cut(
                        "the dataset has an odd length: not sent while received",
                    ))
                }
                Some(End::Whole) => {
                    let left = stored - self.sent;
                    // Without finish, the last fragment (1 byte to a whole one) stays back.
                    let upto = if self.finish {
                        left
                    } else {
                        left.saturating_sub(1) / frag * frag
                    };
                    self.framed_all = upto <= most;
                    (upto.min(most), self.finish && self.framed_all)
                }
                None => {
                    // Whole fragments, at least a byte kept back for the last one.
                    let ready = stored.saturating_sub(self.sent + 1) / frag * frag;
                    if ready == 0 {
                        return Ok(Progress::Pending);
                    }
                    (ready.min(most), false)
                }
            };
            if bytes > 0 || last {
                self.frame(bytes as usize, last)?;
                // A stall is time with nothing to send, not time spent sending.
                self.seen.1 = Instant::now();
            }
        }
    }

    /// Frame the next `bytes` of the dataset as one batch of PDUs over a mapping of them.
    fn frame(&mut self, bytes: usize, last: bool) -> Result<()> {
        let start = self.source.base + self.sent;
        let skip = (start % page_size() as u64) as usize;
        let batch = &mut self.batch;
        batch.map = None;
        if bytes > 0 {
            // SAFETY: read-only, and only bytes the receive loop has written are read; the
            // same contract as a file sent whole (`source::MappedRegion`).
            let map = unsafe {
                MmapOptions::new()
                    .offset(start - skip as u64)
                    .len(skip + bytes)
                    .map(self.source.file)
            }
            .map_err(Error::Io)?;
            batch.map = Some(map);
        }
        batch.headers.clear();
        batch.pieces.clear();
        batch.cursor = Cursor::default();
        let count = bytes.div_ceil(self.frag).max(1);
        let (mut offset, mut left) = (skip, bytes);
        for n in 0..count {
            let len = left.min(self.frag);
            let fragment = Fragment {
                part: Part::Dataset,
                offset: 0,
                len,
                last: last && n + 1 == count,
            };
            batch.headers.push(fragment.header(self.context_id));
            batch.pieces.push(Piece::Header(batch.headers.len() - 1));
            if len > 0 {
                batch.pieces.push(Piece::Data { offset, len });
            }
            offset += len;
            left -= len;
        }
        self.sent += bytes as u64;
        Ok(())
    }
}

fn cut(why: &str) -> Error {
    Error::Io(io::Error::new(io::ErrorKind::ConnectionAborted, why))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::MCH_LAST;
    use crate::step::run_to_end;
    use std::io::Write;
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::thread;

    /// A stream that takes everything written into a buffer, noting the largest write.
    #[derive(Default)]
    struct Sink(Vec<u8>, usize);

    impl Stream for Sink {
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let before = self.0.len();
            for buf in bufs {
                self.0.extend_from_slice(buf);
            }
            self.1 = self.1.max(self.0.len() - before);
            Ok(self.0.len() - before)
        }
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Ok(0)
        }
        fn wait(&mut self, _: crate::step::Direction, _: std::time::Duration) -> io::Result<()> {
            Ok(())
        }
    }

    /// `(mch, data)` of each PDU in `wire`.
    fn pdvs(wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < wire.len() {
            let len = u32::from_be_bytes(wire[at + 2..at + 6].try_into().unwrap()) as usize;
            out.push((wire[at + 11], wire[at + 12..at + 6 + len].to_vec()));
            at += 6 + len;
        }
        out
    }

    fn temp_file(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("fastpush-live-{}-{name}", std::process::id()))
    }

    /// A file named `name` holding `bytes` (a 4-byte header, then the dataset), open, and a
    /// receive of it that has stored `stored` dataset bytes and ended as `end` says.
    fn arrived(name: &str, bytes: &[u8], stored: u64, end: Option<End>) -> (PathBuf, File, Live) {
        let path = temp_file(name);
        std::fs::write(&path, bytes).unwrap();
        let live = Live::default();
        live.advance(stored);
        if let Some(end) = end {
            live.end(end);
        }
        (path.clone(), File::open(&path).unwrap(), live)
    }

    fn send(
        live: &Live,
        file: &File,
        frag: usize,
        sent: u64,
        finish: bool,
        wire: &mut Sink,
    ) -> Result<u64> {
        send_stalling(live, file, frag, (sent, finish), None, wire)
    }

    fn send_stalling(
        live: &Live,
        file: &File,
        frag: usize,
        (sent, finish): (u64, bool),
        stall: Option<Duration>,
        wire: &mut Sink,
    ) -> Result<u64> {
        let mut pacer = Pacer::new(None);
        let source = LiveFile {
            live,
            file,
            base: 4,
        };
        let mut writer = LiveWriter::new(source, 7, frag, sent, finish, stall);
        run_to_end(|| writer.step(wire, &mut pacer), || Ok(()))?;
        Ok(writer.sent())
    }

    #[test]
    fn sends_as_it_arrives_and_holds_the_last_fragment_back() {
        let path = temp_file("arrives");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut out = File::create(&path).unwrap();
        out.write_all(b"HEAD").unwrap();
        let live = Arc::new(Live::default());
        let writer = {
            let live = live.clone();
            let path = path.clone();
            thread::spawn(move || {
                let file = File::open(&path).unwrap();
                let mut wire = Sink::default();
                let sent = send(&live, &file, 1000, 0, false, &mut wire).unwrap();
                (sent, wire)
            })
        };
        for chunk in data.chunks(7_000) {
            out.write_all(chunk).unwrap();
            live.advance((out.metadata().unwrap().len()) - 4);
        }
        live.end(End::Whole);
        let (sent, mut wire) = writer.join().unwrap();
        // Up to the last fragment: 299 of 300.
        assert_eq!(sent, 299_000);
        let file = File::open(&path).unwrap();
        assert_eq!(
            send(&live, &file, 1000, sent, true, &mut wire).unwrap(),
            300_000
        );
        let pdvs = pdvs(&wire.0);
        assert_eq!(pdvs.len(), 300);
        assert!(pdvs.iter().all(|(_, d)| d.len() == 1000));
        assert!(pdvs[..299].iter().all(|(mch, _)| *mch == 0));
        assert_eq!(pdvs[299].0, MCH_LAST);
        let sent: Vec<u8> = pdvs.into_iter().flat_map(|(_, d)| d).collect();
        assert_eq!(sent, data);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_large_remainder_goes_in_bounded_batches() {
        let data: Vec<u8> = (0..(3 * BATCH_BYTES as u32 + 5000))
            .map(|i| (i % 253) as u8)
            .collect();
        let bytes = [&b"HEAD"[..], &data].concat();
        let (path, file, live) = arrived("remainder", &bytes, data.len() as u64, Some(End::Whole));
        let mut wire = Sink::default();
        let sent = send(&live, &file, 16_000, 0, false, &mut wire).unwrap();
        assert_eq!(sent, data.len() as u64 / 16_000 * 16_000);
        // One write takes at most a batch (whole, the 512 fragments its iovecs could carry
        // would be 8 MB).
        assert!(wire.1 <= BATCH_BYTES + BATCH_BYTES / 100, "{}", wire.1);
        let sent = send(&live, &file, 16_000, sent, true, &mut wire).unwrap();
        assert_eq!(sent, data.len() as u64);
        let pdvs = pdvs(&wire.0);
        assert_eq!(pdvs.iter().filter(|(mch, _)| *mch == MCH_LAST).count(), 1);
        assert_eq!(pdvs.last().unwrap().0, MCH_LAST);
        let got: Vec<u8> = pdvs.into_iter().flat_map(|(_, d)| d).collect();
        assert_eq!(got, data);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_receive_that_stalls_fails_the_send() {
        let (path, file, live) = arrived("stall", &[0u8; 2_004], 2_000, None);
        let stall = Some(Duration::ZERO);
        let err =
            send_stalling(&live, &file, 1000, (0, false), stall, &mut Sink::default()).unwrap_err();
        assert!(err.to_string().contains("stalled"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_cut_receive_or_an_odd_length_fails_the_send() {
        let (path, file, live) = arrived("cut", &[0u8; 5_005], 5_000, Some(End::Cut));
        let mut wire = Sink::default();
        let err = send(&live, &file, 1000, 0, false, &mut wire).unwrap_err();
        assert!(err.to_string().contains("cut"), "{err}");
        let live = Live::default();
        live.advance(5_001);
        live.end(End::Whole);
        let err = send(&live, &file, 1000, 0, false, &mut wire).unwrap_err();
        assert!(err.to_string().contains("odd length"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_dataset_of_one_fragment_goes_whole_at_the_finish() {
        let (path, file, live) = arrived("small", b"HEAD0123456789", 10, Some(End::Whole));
        let mut wire = Sink::default();
        assert_eq!(send(&live, &file, 1000, 0, false, &mut wire).unwrap(), 0);
        assert!(wire.0.is_empty());
        assert_eq!(send(&live, &file, 1000, 0, true, &mut wire).unwrap(), 10);
        assert_eq!(pdvs(&wire.0), vec![(MCH_LAST, b"0123456789".to_vec())]);
        std::fs::remove_file(&path).unwrap();
    }
}
