//! Writing one DIMSE message whose dataset is converted while it is sent: the command as
//! [`MessageWriter`] writes it, then the converter's output framed into PDVs as it is produced.
//!
//! The converted length is not known in advance, which PDVs do not need: each batch holds the
//! fragments that are surely full, and the last fragment is known only once the converter is
//! done. Memory stays at one batch (about [`BATCH_BYTES`]) plus one converter step.

use std::io::IoSlice;

use super::message::{MessageWriter, RELEASE_BYTES};
use super::source;
use crate::convert::{Converter, Gathered, Plan, Syntax};
use crate::error::Result;
use crate::pdu::framing::{Fragment, Part, PDU_OVERHEAD, UNLIMITED_FRAGMENT};
use crate::step::{try_write, Attempt, Pacer, Progress, Stream, BATCH_BYTES, MAX_IOVECS};

/// The fragment size for converted datasets: the peer's, capped so that a batch always holds
/// at least one full fragment (a peer may announce a 4 GB maximum; we need not use it all).
pub fn converted_fragment(frag: usize) -> usize {
    frag.min(UNLIMITED_FRAGMENT)
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
    /// Converted bytes not yet sent; the current batch covers `buf[..batch_len]`.
    buf: Vec<u8>,
    headers: Vec<[u8; PDU_OVERHEAD]>,
    frags: Vec<(usize, usize)>,
    batch_len: usize,
    batch_total: usize,
    sent: usize,
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
        let converter = Converter::new(dataset, from, to);
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
            headers: Vec::new(),
            frags: Vec::new(),
            batch_len: 0,
            batch_total: 0,
            sent: 0,
            last_queued: false,
            written: 0,
        }
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    fn plan_batch(&mut self) -> Result<()> {
        while !self.converted_all && self.buf.len() <= BATCH_BYTES {
            self.converted_all = self.converter.fill(&mut self.buf, BATCH_BYTES + 1)?;
        }
        // Pages of the mapped file already converted would otherwise stay resident until
        // unmapped: a 1 GB file would cost 1 GB of RSS.
        let consumed = self.converter.source_consumed();
        if self.mapped && (consumed - self.released >= RELEASE_BYTES || self.converted_all) {
            // SAFETY: `mapped` promises a read-only file mapping.
            unsafe { source::release_pages(self.dataset, self.released, consumed) };
            self.released = consumed;
        }
        let mut offset = 0;
        self.headers.clear();
        self.frags.clear();
        while self.frags.len() < MAX_IOVECS / 2 {
            let rest = self.buf.len() - offset;
            // A fragment is surely not the last while more bytes follow it.
            let len = if rest > self.frag {
                self.frag
            } else if self.converted_all {
                rest
            } else {
                break;
            };
            let last = len == rest;
            let fragment = Fragment {
                part: Part::Dataset,
                offset,
                len,
                last,
            };
            self.headers.push(fragment.header(self.context_id));
            self.frags.push((offset, len));
            offset += len;
            if last {
                self.last_queued = true;
                break;
            }
        }
        self.batch_len = offset;
        self.batch_total = offset + self.frags.len() * PDU_OVERHEAD;
        self.sent = 0;
        Ok(())
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
        if self.frags.is_empty() {
            if self.last_queued {
                return Ok(Progress::Done);
            }
            self.plan_batch()?;
        }
        loop {
            let attempt = {
                let mut iov = Vec::with_capacity(self.frags.len() * 2);
                let mut skip = self.sent;
                for (header, &(offset, len)) in self.headers.iter().zip(&self.frags) {
                    for piece in [&header[..], &self.buf[offset..offset + len]] {
                        if skip >= piece.len() {
                            skip -= piece.len();
                        } else {
                            iov.push(IoSlice::new(&piece[skip..]));
                            skip = 0;
                        }
                    }
                }
                try_write(stream, &iov, pacer)?
            };
            match attempt {
                Attempt::Wrote(n) => {
                    self.sent += n;
                    self.written += n as u64;
                    if self.sent == self.batch_total {
                        self.buf.drain(..self.batch_len);
                        self.frags.clear();
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
    use crate::convert::convert_to_vec;
    use crate::net::FdStream;
    use crate::pdu::framing::{fragment_size, frame_message};
    use crate::step::run_to_end;
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::time::Duration;

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
            let mut fds = [0; 2];
            let r =
                unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) };
            assert_eq!(r, 0);
            let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            let reader = std::thread::spawn(move || {
                use std::io::Read;
                let mut out = Vec::new();
                std::fs::File::from(b).read_to_end(&mut out).unwrap();
                out
            });
            let frag = fragment_size(max_pdu).unwrap();
            let mut stream = FdStream::new(a, true).unwrap();
            let mut w = ConvertingWriter::new(3, b"command!", (&ds, false), (from, to), frag, None);
            let mut pacer = Pacer::new(Some(Duration::from_secs(20)));
            run_to_end(|| w.step(&mut stream, &mut pacer), || Ok(())).unwrap();
            let written = w.written();
            drop(stream);
            let got = reader.join().unwrap();
            let expected = frame_message(3, b"command!", Some(&converted), max_pdu).unwrap();
            assert_eq!(written as usize, expected.len());
            assert!(got == expected, "max_pdu {max_pdu}: framing differs");
        }
    }
}
