//! Property tests (quickcheck) of the I/O loops against in-memory streams: the PDU reader is fed
//! arbitrary bytes in arbitrary chunks — the fuzzing of what a hostile peer can send — and the
//! message writer is run over a stream that buffers like TLS does.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::time::Duration;

use quickcheck::{QuickCheck, TestResult};

use crate::error::Error;
use crate::framing::{fragment_size, frame_message};
use crate::io::{run_to_end, MessageWriter, Pacer, PduReader};
use crate::stream::{Direction, Stream};

/// Replays `data` in reads of the scripted sizes (0 in the script: `WouldBlock` once), then EOF.
pub(crate) struct Replay {
    data: Vec<u8>,
    pos: usize,
    chunks: VecDeque<usize>,
}

impl Replay {
    pub(crate) fn new(data: Vec<u8>, chunks: Vec<u8>) -> Self {
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

fn read_one(data: Vec<u8>, chunks: Vec<u8>, max: u64) -> crate::Result<(u8, Vec<u8>)> {
    let mut stream = Replay::new(data, chunks);
    let mut reader = PduReader::new(max);
    // No timeout: the replay never stalls for long, and every path must end on its own.
    let mut pacer = Pacer::new(None);
    run_to_end(|| reader.step(&mut stream, &mut pacer), || Ok(()))?;
    Ok(reader.into_pdu())
}

/// Whatever the bytes, the reader returns exactly the PDU the header announces, or refuses an
/// oversized one before allocating, or reports the stream ending early — never anything else.
fn reader_matches_the_header(data: Vec<u8>, chunks: Vec<u8>, max: u32) -> TestResult {
    let max = u64::from(max % (1 << 20));
    match read_one(data.clone(), chunks, max) {
        Ok((pdu_type, body)) => {
            let length = u32::from_be_bytes([data[2], data[3], data[4], data[5]]) as usize;
            TestResult::from_bool(
                pdu_type == data[0]
                    && body.len() == length
                    && length as u64 <= max
                    && body[..] == data[6..6 + length],
            )
        }
        Err(Error::PduTooLarge { length, .. }) => {
            TestResult::from_bool(data.len() >= 6 && u64::from(length) > max)
        }
        Err(Error::PeerClosed { mid_pdu }) => {
            let short = data.len() < 6
                || data.len() - 6
                    < u32::from_be_bytes([data[2], data[3], data[4], data[5]]) as usize;
            // Mid-PDU exactly when some byte of the PDU arrived before the end.
            let started = !data.is_empty();
            TestResult::from_bool(short && mid_pdu == started)
        }
        Err(other) => TestResult::error(format!("unexpected error {other:?}")),
    }
}

#[test]
fn pdu_reader_on_arbitrary_bytes() {
    QuickCheck::new()
        .tests(5000)
        .quickcheck(reader_matches_the_header as fn(Vec<u8>, Vec<u8>, u32) -> TestResult);
}

/// Headers with the length field set from the generator, so long and huge lengths are common
/// (random bytes almost never make a PDU short enough to complete).
fn reader_on_plausible_pdus(
    pdu_type: u8,
    length: u32,
    body: Vec<u8>,
    chunks: Vec<u8>,
) -> TestResult {
    let length = if length % 4 == 0 {
        length
    } else {
        length % 300
    };
    let mut data = vec![pdu_type, 0];
    data.extend_from_slice(&length.to_be_bytes());
    data.extend_from_slice(&body);
    reader_matches_the_header(data, chunks, 16384)
}

#[test]
fn pdu_reader_on_plausible_pdus() {
    QuickCheck::new()
        .tests(5000)
        .quickcheck(reader_on_plausible_pdus as fn(u8, u32, Vec<u8>, Vec<u8>) -> TestResult);
}

/// Takes every write into a buffer of its own, as a TLS record layer does, and moves it to
/// `out` only on `flush`, which succeeds only every other call.
#[derive(Default)]
struct Buffering {
    pending: Vec<u8>,
    out: Vec<u8>,
    flushes: usize,
    limit: usize,
}

impl Stream for Buffering {
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut taken = 0;
        for b in bufs {
            let room = self.limit.saturating_sub(self.pending.len());
            let take = b.len().min(room);
            self.pending.extend_from_slice(&b[..take]);
            taken += take;
        }
        if taken == 0 {
            // Full: like TLS, drain on the way (a real stream would write records out here).
            self.out.append(&mut self.pending);
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }
    fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn wait(&mut self, _d: Direction, _limit: Duration) -> io::Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.flushes += 1;
        if self.flushes % 2 == 1 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.out.append(&mut self.pending);
        Ok(())
    }
}

fn writer_flushes_a_buffering_stream(cmd: Vec<u8>, ds: Vec<u8>, max_pdu: u16, limit: u16) -> bool {
    let max_pdu = 8 + u64::from(max_pdu);
    let mut stream = Buffering {
        limit: 1 + usize::from(limit),
        ..Buffering::default()
    };
    let frag = fragment_size(max_pdu).unwrap();
    let mut writer = MessageWriter::new(3, &cmd, Some(&ds), false, frag);
    let mut pacer = Pacer::new(None);
    run_to_end(|| writer.step(&mut stream, &mut pacer), || Ok(())).unwrap();
    stream.pending.is_empty() && stream.out == frame_message(3, &cmd, Some(&ds), max_pdu).unwrap()
}

#[test]
fn message_writer_flushes_buffering_streams() {
    QuickCheck::new()
        .tests(500)
        .quickcheck(writer_flushes_a_buffering_stream as fn(Vec<u8>, Vec<u8>, u16, u16) -> bool);
}
