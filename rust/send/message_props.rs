//! Property tests (quickcheck) of [`MessageWriter`] over a stream that buffers like TLS does:
//! what comes out is exactly the framed message, and nothing stays buffered.

use std::io::{self, IoSlice};
use std::time::Duration;

use quickcheck::QuickCheck;

use super::message::MessageWriter;
use crate::pdu::framing::{fragment_size, frame_message};
use crate::step::{run_to_end, Direction, Pacer, Stream};

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
