//! The resumable walk: one element header (or one chunk of a value) per step, an explicit stack
//! of open sequences and items instead of recursion, so output can stop at any bound and go on.

use flate2::{Compress, Compression, FlushCompress, Status};

use super::input::Input;
use super::vr::{self, Context, Vr};
use super::{ConvertError, Encoding, Syntax};

/// Value bytes copied per step: bounds how far one step can overshoot the caller's limit.
const CHUNK: usize = 1 << 20;
/// Deflate input is handed to zlib in pieces of about this size.
const DEFLATE_STAGE: usize = 256 << 10;
/// zlib's default level, as the Python path uses it: same library, same bytes.
pub const DEFLATE_LEVEL: u32 = 6;

/// Deepest nesting of sequences and items accepted: real datasets stay far below, and a crafted
/// one must not grow the stack without bound.
const MAX_DEPTH: usize = 256;

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: u32 = 0xFFFE_E000;
const ITEM_END: u32 = 0xFFFE_E00D;
const SEQUENCE_END: u32 = 0xFFFE_E0DD;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The top-level dataset: ends with the input.
    Input,
    /// Defined length: ends at this source offset.
    At(u64),
    /// Undefined length: ends with a delimiter.
    Delimited,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dataset,
    Sequence,
}

/// An open dataset (the top level or an item) or sequence, with the encodings of its content.
#[derive(Debug, Clone, Copy)]
struct Frame {
    kind: Kind,
    end: End,
    src: Encoding,
    dst: Encoding,
    ctx: Context,
}

/// A value being copied: its tag, bytes left, the width of the units to byte-swap (1: none),
/// and the byte that pads it to even length once copied, if its length is odd.
#[derive(Debug, Clone, Copy)]
struct Copying {
    tag: u32,
    remaining: u64,
    swap: usize,
    pad: Option<u8>,
}

/// A parsed element header.
struct Header {
    tag: u32,
    vr: Option<Vr>,
    length: u32,
    size: usize,
}

/// Converts one dataset from one uncompressed syntax to another, a bounded piece at a time.
pub struct Converter<'a> {
    input: Input<'a>,
    stack: Vec<Frame>,
    copying: Option<Copying>,
    deflate: Option<Box<Compress>>,
    stage: Vec<u8>,
    dry: bool,
    done: bool,
}

impl<'a> Converter<'a> {
    /// `data` is the whole source dataset (everything after the file meta).
    pub fn new(data: &'a [u8], from: Syntax, to: Syntax) -> Self {
        let input = if from == Syntax::DeflatedExplicitLittle {
            Input::inflate(data)
        } else {
            Input::slice(data)
        };
        let deflate = (to == Syntax::DeflatedExplicitLittle)
            .then(|| Box::new(Compress::new(Compression::new(DEFLATE_LEVEL), false)));
        Converter {
            input,
            stack: vec![Frame {
                kind: Kind::Dataset,
                end: End::Input,
                src: from.encoding(),
                dst: to.encoding(),
                ctx: Context::default(),
            }],
            copying: None,
            deflate,
            stage: Vec::new(),
            dry: false,
            done: false,
        }
    }

    /// Bytes of the source slice read so far: what a mapped source may release.
    pub fn source_consumed(&self) -> usize {
        self.input.source_consumed()
    }

    /// Walk without output (value bytes are still read, so truncation is found).
    pub(super) fn dry(mut self) -> Self {
        self.dry = true;
        self.deflate = None;
        self
    }

    /// Append output to `out` until it holds at least `limit` bytes (one step may go up to about
    /// 1 MiB past) or the dataset is done; returns whether it is done.
    pub fn fill(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<bool, ConvertError> {
        while !self.done && out.len() < limit {
            if self.deflate.is_none() {
                self.done = self.step(out)?;
                continue;
            }
            let mut stage = std::mem::take(&mut self.stage);
            let finished = self.step(&mut stage);
            self.stage = stage;
            self.done = finished?;
            if self.done || self.stage.len() >= DEFLATE_STAGE {
                self.compress(out)?;
            }
        }
        Ok(self.done)
    }

    fn compress(&mut self, out: &mut Vec<u8>) -> Result<(), ConvertError> {
        let z = self.deflate.as_mut().expect("deflating");
        let flush = if self.done {
            FlushCompress::Finish
        } else {
            FlushCompress::None
        };
        let mut taken = 0;
        loop {
            out.reserve((self.stage.len() - taken) / 2 + 4096);
            let before = z.total_in();
            let status = z
                .compress_vec(&self.stage[taken..], out, flush)
                .map_err(|e| ConvertError::new(0, format!("deflate failed: {e}")))?;
            taken += (z.total_in() - before) as usize;
            let finished = match flush {
                FlushCompress::Finish => status == Status::StreamEnd,
                _ => taken == self.stage.len(),
            };
            if finished {
                break;
            }
        }
        // PS3.5 A.5: an odd-length deflated stream gets one trailing zero byte, so that the
        // value, and the PDV fragments that carry it, stay even.
        if self.done && z.total_out() % 2 == 1 {
            out.push(0);
        }
        self.stage.clear();
        Ok(())
    }

    fn err(&self, message: impl Into<String>) -> ConvertError {
        ConvertError::new(self.input.pos(), message)
    }

    fn top(&self) -> Frame {
        *self
            .stack
            .last()
            .expect("the top-level dataset is never popped")
    }

    /// Exactly `n` bytes at the position, or a truncation error.
    fn need(&mut self, n: usize) -> Result<&[u8], ConvertError> {
        let pos = self.input.pos();
        let got = self.input.peek(n)?;
        if got.len() < n {
            return Err(ConvertError::new(pos, "dataset is truncated"));
        }
        Ok(got)
    }

    /// One step; returns whether the whole dataset is done.
    fn step(&mut self, out: &mut Vec<u8>) -> Result<bool, ConvertError> {
        if self.copying.is_some() {
            self.copy_value(out)?;
            return Ok(false);
        }
        let frame = self.top();
        let pos = self.input.pos();
        match frame.end {
            End::At(end) if pos == end => {
                self.close(out);
                return Ok(false);
            }
            End::At(end) if pos > end => {
                return Err(self.err(format!("element runs past the end of its parent at {end}")))
            }
            End::Input if self.input.at_end()? => return Ok(true),
            _ => {}
        }
        match frame.kind {
            Kind::Sequence => self.sequence_step(frame, out)?,
            Kind::Dataset => self.dataset_step(frame, out)?,
        }
        Ok(false)
    }

    /// Pop the top frame and write its delimiter.
    fn close(&mut self, out: &mut Vec<u8>) {
        let frame = self.stack.pop().expect("closing an open frame");
        let tag = match frame.kind {
            Kind::Sequence => SEQUENCE_END,
            Kind::Dataset => ITEM_END,
        };
        if !self.dry {
            frame.dst.put_tag(out, tag);
            frame.dst.put_u32(out, 0);
        }
    }

    fn tag_and_length(&mut self, enc: Encoding) -> Result<(u32, u32), ConvertError> {
        let b = self.need(8)?;
        let group = enc.u16([b[0], b[1]]);
        let element = enc.u16([b[2], b[3]]);
        let length = enc.u32([b[4], b[5], b[6], b[7]]);
        Ok(((u32::from(group) << 16) | u32::from(element), length))
    }

    fn push(&mut self, frame: Frame) -> Result<(), ConvertError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.err(format!("sequences nested deeper than {MAX_DEPTH} levels")));
        }
        self.stack.push(frame);
        Ok(())
    }

    fn end_of(&self, parent: Frame, start: u64, length: u32) -> Result<End, ConvertError> {
        if length == UNDEFINED {
            return Ok(End::Delimited);
        }
        let end = start + u64::from(length);
        match parent.end {
            End::At(limit) if end > limit => Err(self.err(format!(
                "length {length} runs past the end of the enclosing item or sequence"
            ))),
            _ => Ok(End::At(end)),
        }
    }

    fn sequence_step(&mut self, frame: Frame, out: &mut Vec<u8>) -> Result<(), ConvertError> {
        let (tag, length) = self.tag_and_length(frame.src)?;
        match tag {
            SEQUENCE_END if frame.end == End::Delimited => {
                self.input.consume(8);
                self.close(out);
            }
            ITEM => {
                let end = self.end_of(frame, self.input.pos() + 8, length)?;
                self.input.consume(8);
                if !self.dry {
                    frame.dst.put_tag(out, ITEM);
                    frame.dst.put_u32(out, UNDEFINED);
                }
                self.push(Frame {
                    kind: Kind::Dataset,
                    end,
                    ..frame
                })?;
            }
            _ => {
                return Err(self.err(format!(
                    "expected an item in a sequence, found ({:04X},{:04X})",
                    tag >> 16,
                    tag & 0xFFFF
                )))
            }
        }
        Ok(())
    }

    fn header(&mut self, frame: Frame) -> Result<Header, ConvertError> {
        let src = frame.src;
        if !src.explicit {
            let (tag, length) = self.tag_and_length(src)?;
            let vr = vr::implicit_vr(tag, &frame.ctx);
            return Ok(Header {
                tag,
                vr,
                length,
                size: 8,
            });
        }
        let b = self.need(8)?;
        let tag = (u32::from(src.u16([b[0], b[1]])) << 16) | u32::from(src.u16([b[2], b[3]]));
        let vr: Vr = [b[4], b[5]];
        if tag >> 16 == 0xFFFE {
            // Item tags carry no VR in any syntax.
            let length = src.u32([b[4], b[5], b[6], b[7]]);
            return Ok(Header {
                tag,
                vr: None,
                length,
                size: 8,
            });
        }
        let short = src.u16([b[6], b[7]]);
        if !vr::is_known(vr) {
            return Err(self.err(format!(
                "unknown VR {:?} in ({:04X},{:04X})",
                String::from_utf8_lossy(&vr),
                tag >> 16,
                tag & 0xFFFF
            )));
        }
        if !vr::has_long_length(vr) {
            return Ok(Header {
                tag,
                vr: Some(vr),
                length: u32::from(short),
                size: 8,
            });
        }
        let b = self.need(12)?;
        let length = src.u32([b[8], b[9], b[10], b[11]]);
        Ok(Header {
            tag,
            vr: Some(vr),
            length,
            size: 12,
        })
    }

    fn dataset_step(&mut self, frame: Frame, out: &mut Vec<u8>) -> Result<(), ConvertError> {
        let h = self.header(frame)?;
        if h.tag == ITEM_END {
            if frame.end != End::Delimited || h.length != 0 {
                return Err(self.err("item delimiter where none belongs"));
            }
            self.input.consume(8);
            self.close(out);
            return Ok(());
        }
        if h.tag >> 16 == 0xFFFE {
            return Err(self.err(format!(
                "item tag (FFFE,{:04X}) inside a dataset",
                h.tag & 0xFFFF
            )));
        }
        let start = self.input.pos() + h.size as u64;
        let end = self.end_of(frame, start, h.length)?;
        // A sequence: SQ; an undefined-length UN (its content is Implicit VR LE, PS3.5 6.2.2);
        // an implicit element of unknown VR with undefined length (only a sequence can be).
        let sequence = match (h.vr, h.length) {
            (Some(vr::SQ), _) => Some((vr::SQ, frame.src, frame.dst)),
            (Some(vr::UN) | None, UNDEFINED) => {
                Some((vr::UN, Encoding::IMPLICIT_LE, Encoding::IMPLICIT_LE))
            }
            _ => None,
        };
        if let Some((vr_out, src, dst)) = sequence {
            self.input.consume(h.size);
            self.put_header(out, frame.dst, h.tag, vr_out, UNDEFINED);
            return self.push(Frame {
                kind: Kind::Sequence,
                end,
                src,
                dst,
                ctx: frame.ctx,
            });
        }
        if h.length == UNDEFINED {
            return Err(self.err(if h.tag == vr::PIXEL_DATA {
                "encapsulated (compressed) pixel data: converting it needs decoding".to_string()
            } else {
                format!(
                    "undefined length on ({:04X},{:04X}), which is not a sequence",
                    h.tag >> 16,
                    h.tag & 0xFFFF
                )
            }));
        }
        let vr = h.vr.unwrap_or(vr::UN);
        // DICOM values have even lengths (PS3.5 7.1.1); an odd one, written by a non-conformant
        // application, goes out padded, or the stream (and each PDV) would be odd. `h.length`
        // is not UNDEFINED here, so one more byte does not overflow.
        let pad = (h.length % 2 == 1).then(|| vr::padding(vr));
        let length = h.length + u32::from(pad.is_some());
        // A value too long for a 2-byte length field can only be written as UN (PS3.5 6.2.2).
        let vr_out = if frame.dst.explicit && !vr::has_long_length(vr) && length > 0xFFFF {
            vr::UN
        } else {
            vr
        };
        let swap = if frame.src.big != frame.dst.big && vr_out != vr::UN {
            vr::value_swap_width(h.tag, vr, &frame.ctx)
        } else {
            1
        };
        if h.length as usize % swap != 0 {
            return Err(self.err(format!(
                "({:04X},{:04X}) {} value of {} bytes is not a whole number of {swap}-byte units",
                h.tag >> 16,
                h.tag & 0xFFFF,
                String::from_utf8_lossy(&vr),
                h.length
            )));
        }
        if h.length == 2 && matches!(h.tag, vr::BITS_ALLOCATED | vr::PIXEL_REPRESENTATION) {
            let b = self.need(h.size + 2)?;
            let value = frame.src.u16([b[h.size], b[h.size + 1]]);
            let ctx = &mut self.stack.last_mut().expect("open dataset").ctx;
            if h.tag == vr::BITS_ALLOCATED {
                ctx.bits_allocated = Some(value);
            } else {
                ctx.pixel_representation = Some(value);
            }
        }
        self.input.consume(h.size);
        // Group lengths would be wrong once header sizes change; they are retired anyway, and
        // dropping them keeps the output streamable.
        let dropped = h.tag & 0xFFFF == 0;
        if !dropped {
            self.put_header(out, frame.dst, h.tag, vr_out, length);
        }
        self.copying = Some(Copying {
            tag: h.tag,
            remaining: u64::from(h.length),
            swap,
            pad,
        });
        if dropped {
            let keep = std::mem::replace(&mut self.dry, true);
            let r = self.copy_value(out);
            self.dry = keep;
            r?;
        }
        Ok(())
    }

    fn put_header(&self, out: &mut Vec<u8>, dst: Encoding, tag: u32, vr: Vr, length: u32) {
        if self.dry {
            return;
        }
        dst.put_tag(out, tag);
        if !dst.explicit {
            dst.put_u32(out, length);
        } else if vr::has_long_length(vr) {
            out.extend_from_slice(&[vr[0], vr[1], 0, 0]);
            dst.put_u32(out, length);
        } else {
            out.extend_from_slice(&vr);
            // Callers switch to UN before a length could exceed 16 bits.
            dst.put_u16(out, length as u16);
        }
    }

    fn copy_value(&mut self, out: &mut Vec<u8>) -> Result<(), ConvertError> {
        let Some(mut c) = self.copying else {
            return Ok(());
        };
        let dry = self.dry;
        loop {
            let n = (c.remaining.min(CHUNK as u64)) as usize;
            let pos = self.input.pos();
            let got = self.input.peek(n)?;
            if got.len() < n {
                return Err(ConvertError::new(
                    pos,
                    format!(
                        "dataset is truncated in the value of ({:04X},{:04X})",
                        c.tag >> 16,
                        c.tag & 0xFFFF
                    ),
                ));
            }
            if !dry {
                let start = out.len();
                out.extend_from_slice(got);
                swap_units(&mut out[start..], c.swap);
            }
            self.input.consume(n);
            c.remaining -= n as u64;
            // A dry walk skips whole values at once; a real one yields after each chunk.
            if c.remaining == 0 || !dry {
                break;
            }
        }
        if c.remaining > 0 {
            self.copying = Some(c);
            return Ok(());
        }
        self.copying = None;
        if let (Some(byte), false) = (c.pad, dry) {
            out.push(byte);
        }
        Ok(())
    }
}

/// Reverse the bytes of every `width`-byte unit (`data.len()` is a multiple of `width`).
pub(super) fn swap_units(data: &mut [u8], width: usize) {
    match width {
        2 => data.chunks_exact_mut(2).for_each(|c| c.swap(0, 1)),
        4 => data.chunks_exact_mut(4).for_each(|c| {
            let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]).swap_bytes();
            c.copy_from_slice(&v.to_ne_bytes());
        }),
        8 => data.chunks_exact_mut(8).for_each(<[u8]>::reverse),
        _ => {}
    }
}
