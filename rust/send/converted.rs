//! Writing one DIMSE message whose dataset is converted (or edited) while it is sent: the command
//! as [`MessageWriter`] writes it, then the converter's output framed into PDVs as it is produced.
//! The values the converter passes unchanged ([`PASS_MIN`] bytes or more: the pixel data) are
//! not copied: their iovecs point into the source, as the unconverted writer's do, so an edited
//! dataset costs a copy of its header only.
//!
//! The converted length is not known in advance, which PDVs do not need: each batch holds the
//! fragments that are surely full, and the last fragment is known only once the converter is
//! done. Memory stays at one batch (about [`BATCH_BYTES`]) plus one converter step.

use std::collections::VecDeque;
use std::ops::Range;

use super::message::{MessageWriter, RELEASE_BYTES};
use super::source;
use crate::convert::{Converter, Gathered, Plan, Syntax};
use crate::error::Result;
use crate::pdu::framing::{Fragment, Part, PDU_OVERHEAD, UNLIMITED_FRAGMENT};
use crate::step::{try_write, Attempt, Cursor, Pacer, Progress, Stream, BATCH_BYTES, MAX_IOVECS};

/// Values at least this long that the converter would copy unchanged (the pixel data above all)
/// are written from the source itself, as the unconverted path writes a whole dataset: one
/// more iovec costs less than copying them through the buffer.
pub const PASS_MIN: usize = 16 << 10;

/// The fragment size for converted datasets: the peer's, capped so that a batch always holds
/// at least one full fragment (a peer may announce a 4 GB maximum; we need not use it all).
pub fn converted_fragment(frag: usize) -> usize {
    frag.min(UNLIMITED_FRAGMENT)
}

/// A run of the output not yet framed: the next bytes of the buffer, or a range of the source.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Run {
    Buf(usize),
    Source(Range<usize>),
}

impl Run {
    fn len(&self) -> usize {
        match self {
            Run::Buf(len) => *len,
            Run::Source(range) => range.len(),
        }
    }
}

/// One iovec of a batch.
#[derive(Debug, Clone, Copy)]
enum Piece {
    Header(usize),
    Buf { offset: usize, len: usize },
    Source { offset: usize, len: usize },
}

pub struct ConvertingWriter<'a> {
    command: MessageWriter<'a>,
    command_done: bool,
    context_id: u8,
    frag: usize,
    converter: Converter<'a>,
    converted_all: bool,
    dataset: &'a [u8],
    /// Whether `dataset` lies in a read-only file mapping, whose read pages are released.
    mapped: bool,
    released: usize,
    /// Converted bytes not yet sent; the current batch covers `buf[..buf_framed]`.
    buf: Vec<u8>,
    buf_framed: usize,
    /// The output after the current batch, in order, and its length.
    runs: VecDeque<Run>,
    queued: usize,
    headers: Vec<[u8; PDU_OVERHEAD]>,
    pieces: Vec<Piece>,
    cursor: Cursor,
    last_queued: bool,
    written: u64,
}

impl<'a> ConvertingWriter<'a> {
    /// Check the whole dataset first ([`crate::convert::check`]) so that a bad one fails before a byte
    /// is written and the association survives; the caller does that with the GIL released.
    /// Set `mapped` only when `dataset` lies in a read-only file mapping. With `edits`, the
    /// plan is applied on the way (checked first with [`crate::convert::check_edits`]).
    pub fn new(
        context_id: u8,
        command: &'a [u8],
        (dataset, mapped): (&'a [u8], bool),
        (from, to): (Syntax, Syntax),
        frag: usize,
        edits: Option<(&'a Plan, Gathered)>,
    ) -> Self {
        let converter = Converter::new(dataset, from, to).passing(PASS_MIN);
        let converter = match edits {
            Some((plan, gathered)) => converter.with_edits(plan, gathered),
            None => converter,
        };
        ConvertingWriter {
            command: MessageWriter::new(context_id, command, None, false, frag),
            command_done: false,
            context_id,
            frag: converted_fragment(frag),
            converter,
            converted_all: false,
            dataset,
            mapped,
            released: 0,
            buf: Vec::new(),
            buf_framed: 0,
            runs: VecDeque::new(),
            queued: 0,
            headers: Vec::new(),
            pieces: Vec::new(),
            cursor: Cursor::default(),
            last_queued: false,
            written: 0,
        }
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    fn queue(&mut self, run: Run) {
        let len = run.len();
        if len == 0 {
            return;
        }
        self.queued += len;
        match (self.runs.back_mut(), run) {
            (Some(Run::Buf(last)), Run::Buf(more)) => *last += more,
            (_, run) => self.runs.push_back(run),
        }
    }

    /// Pages of the mapped file already converted, or sent from the mapping, would otherwise
    /// stay resident until unmapped: a 1 GB file would cost 1 GB of RSS. Called between
    /// batches, when every framed piece is written.
    fn release(&mut self) {
        if !self.mapped {
            return;
        }
        let pending = self.runs.iter().find_map(|run| match run {
            Run::Source(range) => Some(range.start),
            Run::Buf(_) => None,
        });
        let done = self
            .converter
            .source_consumed()
            .min(pending.unwrap_or(usize::MAX));
        let finished = self.last_queued && done > self.released;
        if done >= self.released + RELEASE_BYTES || finished {
            // SAFETY: `mapped` promises a read-only file mapping.
            unsafe { source::release_pages(self.dataset, self.released, done) };
            self.released = done;
        }
    }

    fn plan_batch(&mut self) -> Result<()> {
        self.buf.drain(..self.buf_framed);
        self.buf_framed = 0;
        while !self.converted_all && self.queued <= BATCH_BYTES {
            let before = self.buf.len();
            let limit = before + BATCH_BYTES + 1 - self.queued;
            self.converted_all = self.converter.fill(&mut self.buf, limit)?;
            self.queue(Run::Buf(self.buf.len() - before));
            if let Some(range) = self.converter.take_passed() {
                self.queue(Run::Source(range));
            }
        }
        self.headers.clear();
        self.pieces.clear();
        self.cursor = Cursor::default();
        let mut offset = 0;
        let mut bytes = 0;
        while self.pieces.len() + 2 <= MAX_IOVECS && bytes < BATCH_BYTES {
            // A fragment is surely not the last while more bytes follow it.
            let len = if self.queued > self.frag {
                self.frag
            } else if self.converted_all {
                self.queued
            } else {
                break;
            };
            let last = len == self.queued;
            let fragment = Fragment {
                part: Part::Dataset,
                offset,
                len,
                last,
            };
            self.headers.push(fragment.header(self.context_id));
            self.pieces.push(Piece::Header(self.headers.len() - 1));
            self.frame(len);
            offset += len;
            bytes += len + PDU_OVERHEAD;
            if last {
                self.last_queued = true;
                break;
            }
        }
        Ok(())
    }

    /// Take the next `len` bytes of the queued runs into the batch.
    fn frame(&mut self, mut len: usize) {
        self.queued -= len;
        while len > 0 {
            let run = self.runs.front_mut().expect("queued bytes are in runs");
            let take = run.len().min(len);
            self.pieces.push(match run {
                Run::Buf(left) => {
                    *left -= take;
                    self.buf_framed += take;
                    Piece::Buf {
                        offset: self.buf_framed - take,
                        len: take,
                    }
                }
                Run::Source(range) => {
                    range.start += take;
                    Piece::Source {
                        offset: range.start - take,
                        len: take,
                    }
                }
            });
            if run.len() == 0 {
                self.runs.pop_front();
            }
            len -= take;
        }
    }

    fn piece_bytes(&self, piece: Piece) -> &[u8] {
        match piece {
            Piece::Header(i) => &self.headers[i],
            Piece::Buf { offset, len } => &self.buf[offset..offset + len],
            Piece::Source { offset, len } => &self.dataset[offset..offset + len],
        }
    }

    /// Move the cursor over `n` written bytes.
    fn advance(&mut self, n: usize) {
        self.written += n as u64;
        let mut cursor = self.cursor;
        cursor.advance(n, |i| self.piece_bytes(self.pieces[i]).len());
        self.cursor = cursor;
    }

    /// Write the command, then batches of converted PDUs, as far as the stream takes them.
    pub fn step<S: Stream + ?Sized>(
        &mut self,
        stream: &mut S,
        pacer: &mut Pacer,
    ) -> Result<Progress> {
        if !self.command_done {
            if self.command.step(stream, pacer)? == Progress::Pending {
                return Ok(Progress::Pending);
            }
            self.command_done = true;
            self.written += self.command.written();
        }
        if self.cursor.piece == self.pieces.len() {
            self.release();
            if self.last_queued {
                return Ok(Progress::Done);
            }
            self.plan_batch()?;
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
    use crate::convert::edit::{Action, Rule, Scope, Selector, Value};
    use crate::convert::{convert_to_vec, edit_to_vec, gather};
    use crate::net::FdStream;
    use crate::pdu::framing::{fragment_size, frame_message};
    use crate::send::MappedRegion;
    use crate::step::run_to_end;
    use crate::testing::socketpair;
    use std::time::Duration;

    /// What a [`ConvertingWriter`] puts on a socket, and the bytes it says it wrote.
    fn sent(
        ds: (&[u8], bool),
        syntaxes: (Syntax, Syntax),
        max_pdu: u64,
        edits: Option<&Plan>,
    ) -> (u64, Vec<u8>) {
        let (a, b) = socketpair();
        let reader = std::thread::spawn(move || {
            use std::io::Read;
            let mut out = Vec::new();
            std::fs::File::from(b).read_to_end(&mut out).unwrap();
            out
        });
        let frag = fragment_size(max_pdu).unwrap();
        let mut stream = FdStream::new(a, true).unwrap();
        let edits = edits.map(|plan| (plan, gather(ds.0, syntaxes.0, plan).unwrap()));
        let mut w = ConvertingWriter::new(3, b"command!", ds, syntaxes, frag, edits);
        let mut pacer = Pacer::new(Some(Duration::from_secs(20)));
        run_to_end(|| w.step(&mut stream, &mut pacer), || Ok(())).unwrap();
        drop(stream);
        (w.written(), reader.join().unwrap())
    }

    #[test]
    fn converted_message_frames_like_the_converted_bytes() {
        // Implicit VR LE: a name, then 9 MB of 16-bit pixels, sent as Explicit VR BE.
        let mut ds = Vec::new();
        ds.extend_from_slice(&[0x10, 0, 0x10, 0, 4, 0, 0, 0]);
        ds.extend_from_slice(b"DOE^");
        ds.extend_from_slice(&[0xE0, 0x7F, 0x10, 0]);
        let pixels: Vec<u8> = (0..9_000_000u32).map(|i| (i % 253) as u8).collect();
        ds.extend_from_slice(&(pixels.len() as u32).to_le_bytes());
        ds.extend_from_slice(&pixels);
        let (from, to) = (Syntax::ImplicitLittle, Syntax::ExplicitBig);
        let converted = convert_to_vec(&ds, from, to).unwrap();
        for max_pdu in [0u64, 16384, 8] {
            let (written, got) = sent((&ds, false), (from, to), max_pdu, None);
            let expected = frame_message(3, b"command!", Some(&converted), max_pdu).unwrap();
            assert_eq!(written as usize, expected.len());
            assert!(got == expected, "max_pdu {max_pdu}: framing differs");
        }
    }

    /// Explicit VR LE: two header elements, `pixels` bytes of pixel data, one element after.
    fn dataset(pixels: usize) -> Vec<u8> {
        let mut ds = Vec::new();
        ds.extend_from_slice(b"\x08\0\x80\0LO\x04\0OLD ");
        ds.extend_from_slice(b"\x10\0\x10\0PN\x08\0DOE^JOHN");
        ds.extend_from_slice(b"\xe0\x7f\x10\0OW\0\0");
        ds.extend_from_slice(&(pixels as u32).to_le_bytes());
        ds.extend((0..pixels).map(|i| (i % 251) as u8));
        ds.extend_from_slice(b"\xfc\xff\xfc\xffOB\0\0\x02\0\0\0\0\0");
        ds
    }

    #[test]
    fn edited_message_sends_unchanged_values_from_the_source_as_the_converter_writes_them() {
        let plan = Plan::new(vec![Rule {
            selector: Selector::Tag(0x0008_0080),
            scope: Scope::Top,
            action: Action::Set {
                value: Value::Text("A LONGER NAME".into()),
                vr: None,
                insert: true,
            },
        }]);
        let path = std::env::temp_dir().join(format!("fastpush-{}-edited", std::process::id()));
        let syntaxes = (Syntax::ExplicitLittle, Syntax::ExplicitLittle);
        // Smaller than the batch, and spread over three batches (released as they go).
        for pixels in [300_000, 9_000_000] {
            let ds = dataset(pixels);
            std::fs::write(&path, &ds).unwrap();
            let region = MappedRegion::open(&path, 0, ds.len() as u64).unwrap();
            let edited = edit_to_vec(&ds, syntaxes.0, syntaxes.1, &plan).unwrap();
            assert_eq!(edited.len(), ds.len() + 10);
            for (max_pdu, mapped) in [(0u64, true), (16384, false), (100_000, true), (8, true)] {
                let source = if mapped { region.as_slice() } else { &ds };
                let (written, got) = sent((source, mapped), syntaxes, max_pdu, Some(&plan));
                let expected = frame_message(3, b"command!", Some(&edited), max_pdu).unwrap();
                assert_eq!(written as usize, expected.len());
                assert!(
                    got == expected,
                    "{pixels} bytes, max_pdu {max_pdu}: differs"
                );
            }
        }
        std::fs::remove_file(&path).unwrap();
    }
}
