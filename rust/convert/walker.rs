//! The resumable walk: one element header (or one chunk of a value) per step, an explicit stack
//! of open sequences and items instead of recursion, so output can stop at any bound and go on.

use std::ops::Range;

use flate2::{Compress, Compression, FlushCompress, Status};

use super::edit::{self, Action, Derived, Gathered, Plan, Value};
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
    /// Encapsulated pixel data: items copied as they are, up to the sequence delimiter.
    Fragments,
}

/// An open dataset (the top level or an item) or sequence, with the encodings of its content.
#[derive(Debug, Clone, Copy)]
struct Frame {
    kind: Kind,
    end: End,
    src: Encoding,
    dst: Encoding,
    ctx: Context,
    /// The content of a removed or emptied sequence: walked, never written.
    discard: bool,
}

/// The edit state of one open frame: the elements still to insert (with the index of their
/// rule), and the private creators seen so far (`group << 8 | block`, value).
#[derive(Default)]
struct Level {
    inserts: Vec<(u32, usize)>,
    next: usize,
    creators: Vec<(u32, Vec<u8>)>,
}

/// Edits applied during the walk, with the per-dataset values they need.
struct Editing<'a> {
    plan: &'a Plan,
    gathered: Gathered,
    derived: Derived,
    /// Tags of the sequences from the top level down to the current frame.
    path: Vec<u32>,
    levels: Vec<Level>,
}

/// Top-level values read by a gathering walk, which stops past the last tag it wants.
struct Gathering {
    wanted: Vec<u32>,
    found: Gathered,
    finished: bool,
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
#[derive(Clone, Copy)]
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
    /// Whether the caller asked for a dry walk (`dry` is also set inside discarded content).
    base_dry: bool,
    done: bool,
    editing: Option<Editing<'a>>,
    gathering: Option<Gathering>,
    /// Encapsulated pixel data is copied as it is (a compressed dataset edited in its syntax).
    encapsulated: bool,
    /// Values of at least this many bytes that go out unchanged are left to the caller as
    /// source ranges ([`Converter::passing`]).
    pass_min: Option<usize>,
    passed: Option<Range<usize>>,
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
                discard: false,
            }],
            copying: None,
            deflate,
            stage: Vec::new(),
            dry: false,
            base_dry: false,
            done: false,
            editing: None,
            gathering: None,
            encapsulated: from == Syntax::Encapsulated && to == Syntax::Encapsulated,
            pass_min: None,
            passed: None,
        }
    }

    /// Leave every value of at least `min` bytes that would be copied unchanged (no byte swap,
    /// no padding) to the caller: [`Converter::fill`] stops before it, and
    /// [`Converter::take_passed`] names its range of the source, which the caller writes itself
    /// (from the file mapping, without copying it through the output). Only a source read in
    /// place and an output that is not deflated have such values.
    pub fn passing(mut self, min: usize) -> Self {
        if self.deflate.is_none() && matches!(self.input, Input::Slice { .. }) {
            self.pass_min = Some(min.max(1));
        }
        self
    }

    /// The source range the output continues with, before what the next [`Converter::fill`]
    /// produces; at most one at a time.
    pub fn take_passed(&mut self) -> Option<Range<usize>> {
        self.passed.take()
    }

    /// Apply `plan` while converting; `gathered` holds the top-level values it needs
    /// ([`Converter::gather`]).
    pub fn with_edits(mut self, plan: &'a Plan, gathered: Gathered) -> Self {
        let derived = Derived::new(plan, &gathered);
        self.editing = Some(Editing {
            plan,
            gathered,
            derived,
            path: Vec::new(),
            levels: vec![Level {
                inserts: plan.inserts(&[]),
                ..Level::default()
            }],
        });
        self
    }

    /// Read the top-level values of `wanted` (sorted tags) in a dry walk.
    pub fn gather(
        data: &'a [u8],
        from: Syntax,
        wanted: Vec<u32>,
    ) -> Result<Gathered, ConvertError> {
        let mut conv = Converter::new(data, from, from).dry();
        conv.gathering = Some(Gathering {
            wanted,
            found: Gathered::default(),
            finished: false,
        });
        let mut out = Vec::new();
        while !conv.fill(&mut out, usize::MAX)? {}
        Ok(conv.gathering.take().expect("gathering").found)
    }

    /// Bytes of the source slice read so far: what a mapped source may release.
    pub fn source_consumed(&self) -> usize {
        self.input.source_consumed()
    }

    /// Walk without output (value bytes are still read, so truncation is found).
    pub(super) fn dry(mut self) -> Self {
        self.dry = true;
        self.base_dry = true;
        self.deflate = None;
        self
    }

    /// Append output to `out` until it holds at least `limit` bytes (one step may go up to about
    /// 1 MiB past) or the dataset is done; returns whether it is done.
    pub fn fill(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<bool, ConvertError> {
        while !self.done && out.len() < limit && self.passed.is_none() {
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
        if self.gathering.as_ref().is_some_and(|g| g.finished) {
            return Ok(true);
        }
        let frame = self.top();
        let pos = self.input.pos();
        match frame.end {
            End::At(end) if pos == end => {
                self.close(out)?;
                return Ok(false);
            }
            End::At(end) if pos > end => {
                return Err(self.err(format!("element runs past the end of its parent at {end}")))
            }
            End::Input if self.input.at_end()? => {
                self.insert_before(out, None)?;
                return Ok(true);
            }
            _ => {}
        }
        match frame.kind {
            Kind::Sequence => self.sequence_step(frame, out)?,
            Kind::Dataset => self.dataset_step(frame, out)?,
            Kind::Fragments => self.fragment_step(frame, out)?,
        }
        Ok(false)
    }

    /// Pop the top frame and write its delimiter (after the elements still to insert).
    fn close(&mut self, out: &mut Vec<u8>) -> Result<(), ConvertError> {
        if self.top().kind == Kind::Dataset {
            self.insert_before(out, None)?;
        }
        let frame = self.stack.pop().expect("closing an open frame");
        if let Some(editing) = &mut self.editing {
            editing.levels.pop();
            if frame.kind == Kind::Sequence {
                editing.path.pop();
            }
        }
        let tag = match frame.kind {
            Kind::Sequence | Kind::Fragments => SEQUENCE_END,
            Kind::Dataset => ITEM_END,
        };
        if !self.dry {
            frame.dst.put_tag(out, tag);
            frame.dst.put_u32(out, 0);
        }
        self.dry = self.base_dry || self.top().discard;
        Ok(())
    }

    fn tag_and_length(&mut self, enc: Encoding) -> Result<(u32, u32), ConvertError> {
        let b = self.need(8)?;
        let group = enc.u16([b[0], b[1]]);
        let element = enc.u16([b[2], b[3]]);
        let length = enc.u32([b[4], b[5], b[6], b[7]]);
        Ok(((u32::from(group) << 16) | u32::from(element), length))
    }

    /// Open a frame; `tag` names a sequence for the edit rules' paths.
    fn push(&mut self, frame: Frame, tag: u32) -> Result<(), ConvertError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.err(format!("sequences nested deeper than {MAX_DEPTH} levels")));
        }
        if let Some(editing) = &mut self.editing {
            if frame.kind == Kind::Sequence {
                editing.path.push(tag);
            }
            let inserts = if frame.kind == Kind::Dataset && !frame.discard {
                editing.plan.inserts(&editing.path)
            } else {
                Vec::new()
            };
            editing.levels.push(Level {
                inserts,
                ..Level::default()
            });
        }
        self.stack.push(frame);
        self.dry = self.base_dry || frame.discard;
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
                self.close(out)?;
            }
            ITEM => {
                let end = self.end_of(frame, self.input.pos() + 8, length)?;
                self.input.consume(8);
                if !self.dry {
                    frame.dst.put_tag(out, ITEM);
                    frame.dst.put_u32(out, UNDEFINED);
                }
                self.push(
                    Frame {
                        kind: Kind::Dataset,
                        end,
                        ..frame
                    },
                    ITEM,
                )?;
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
            self.close(out)?;
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
        if self.gather_element(&h, sequence.is_some())? {
            return Ok(());
        }
        if self.editing.is_some() && !frame.discard {
            self.insert_before(out, Some(h.tag))?;
            if self.edit_element(frame, &h, end, sequence.map(|s| s.0), out)? {
                return Ok(());
            }
        }
        if let Some((vr_out, src, dst)) = sequence {
            self.input.consume(h.size);
            self.put_header(out, frame.dst, h.tag, vr_out, UNDEFINED);
            return self.push(
                Frame {
                    kind: Kind::Sequence,
                    end,
                    src,
                    dst,
                    ctx: frame.ctx,
                    discard: frame.discard,
                },
                h.tag,
            );
        }
        if h.length == UNDEFINED && h.tag == vr::PIXEL_DATA && self.encapsulated {
            self.input.consume(h.size);
            self.put_header(out, frame.dst, h.tag, vr::OB, UNDEFINED);
            return self.push(
                Frame {
                    kind: Kind::Fragments,
                    end,
                    ..frame
                },
                h.tag,
            );
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

    /// Copy one fragment item of encapsulated pixel data, or close at the delimiter.
    fn fragment_step(&mut self, frame: Frame, out: &mut Vec<u8>) -> Result<(), ConvertError> {
        let (tag, length) = self.tag_and_length(frame.src)?;
        match tag {
            SEQUENCE_END => {
                self.input.consume(8);
                self.close(out)
            }
            ITEM if length != UNDEFINED => {
                if let End::At(limit) = frame.end {
                    if self.input.pos() + 8 + u64::from(length) > limit {
                        return Err(self.err("pixel data fragment runs past its element"));
                    }
                }
                self.input.consume(8);
                if !self.dry {
                    frame.dst.put_tag(out, ITEM);
                    frame.dst.put_u32(out, length);
                }
                self.copying = Some(Copying {
                    tag: vr::PIXEL_DATA,
                    remaining: u64::from(length),
                    swap: 1,
                    pad: None,
                });
                Ok(())
            }
            _ => Err(self.err(format!(
                "expected a pixel data fragment, found ({:04X},{:04X})",
                tag >> 16,
                tag & 0xFFFF
            ))),
        }
    }

    /// In a gathering walk, keep the value of a wanted top-level element; true once the walk
    /// can stop (past the last wanted tag).
    fn gather_element(&mut self, h: &Header, sequence: bool) -> Result<bool, ConvertError> {
        let top = self.stack.len() == 1;
        let Some(g) = self.gathering.as_mut().filter(|_| top) else {
            return Ok(false);
        };
        if g.wanted.last().map_or(true, |&last| h.tag > last) {
            g.finished = true;
            return Ok(true);
        }
        if sequence || h.length > 1 << 16 || g.wanted.binary_search(&h.tag).is_err() {
            return Ok(false);
        }
        let vr = h.vr.unwrap_or(vr::UN);
        let size = h.size;
        let value = self.need(size + h.length as usize)?[size..].to_vec();
        let g = self.gathering.as_mut().expect("gathering");
        g.found.values.push((h.tag, vr, value));
        Ok(false)
    }

    /// Write the elements to insert in the current dataset whose tags come before `tag` (all
    /// of them when `None`: the dataset ends); one with `tag` itself exists, and is edited.
    fn insert_before(&mut self, out: &mut Vec<u8>, tag: Option<u32>) -> Result<(), ConvertError> {
        let frame = self.top();
        loop {
            let Some(editing) = &mut self.editing else {
                return Ok(());
            };
            let level = editing.levels.last_mut().expect("a level per frame");
            let Some(&(next, index)) = level.inserts.get(level.next) else {
                return Ok(());
            };
            if tag.is_some_and(|t| next > t) {
                return Ok(());
            }
            level.next += 1;
            if Some(next) == tag {
                continue;
            }
            let rule_vr = match &editing.plan.rule_at(index).action {
                Action::Set { vr, .. } => *vr,
                _ => None,
            };
            let Some(vr) = rule_vr.or_else(|| vr::implicit_vr(next, &frame.ctx)) else {
                return Err(self.err(format!(
                    "cannot add ({:04X},{:04X}): its VR is unknown (give one)",
                    next >> 16,
                    next & 0xFFFF
                )));
            };
            if let Action::Set {
                value: Value::Items(items),
                ..
            } = &editing.plan.rule_at(index).action
            {
                self.put_items(out, frame.dst, next, items)?;
                continue;
            }
            let Some(value) = self.set_value(index, next, vr, frame)? else {
                continue;
            };
            self.put_value(out, frame.dst, next, vr, &value)?;
        }
    }

    /// The value a Set rule writes into `tag` of VR `vr`; `None` when it copies from an
    /// element the dataset lacks.
    fn set_value(
        &self,
        index: usize,
        tag: u32,
        vr: Vr,
        frame: Frame,
    ) -> Result<Option<Vec<u8>>, ConvertError> {
        let editing = self.editing.as_ref().expect("editing");
        let Action::Set { value, .. } = &editing.plan.rule_at(index).action else {
            unreachable!("inserting rules set values")
        };
        self.value_of(value, tag, vr, frame)
    }

    fn value_of(
        &self,
        value: &Value,
        tag: u32,
        vr: Vr,
        frame: Frame,
    ) -> Result<Option<Vec<u8>>, ConvertError> {
        let editing = self.editing.as_ref().expect("editing");
        let text = match value {
            Value::Text(text) => text.clone(),
            Value::Pseudonym => editing.derived.pseudonym.clone(),
            Value::Items(_) => unreachable!("sequences are written by put_items"),
            Value::Copy(from) => {
                let Some((from_vr, raw)) = editing.gathered.get(*from) else {
                    return Ok(None);
                };
                if edit::is_text(from_vr) {
                    String::from_utf8_lossy(edit::trim(raw)).into_owned()
                } else if from_vr == vr {
                    let mut raw = raw.to_vec();
                    if self.stack[0].src.big != frame.dst.big {
                        swap_units(&mut raw, vr::swap_width(vr));
                    }
                    return Ok(Some(raw));
                } else {
                    return Err(self.tag_err(tag, "cannot copy a binary value into another VR"));
                }
            }
        };
        edit::encode(vr, &text, frame.dst.big, editing.derived.utf8)
            .map(Some)
            .map_err(|why| self.tag_err(tag, &why))
    }

    /// A whole sequence of new items (of new elements), in the output encoding.
    fn put_items(
        &self,
        out: &mut Vec<u8>,
        dst: Encoding,
        tag: u32,
        items: &[Vec<(u32, Vr, String)>],
    ) -> Result<(), ConvertError> {
        let utf8 = self.editing.as_ref().is_some_and(|e| e.derived.utf8);
        self.put_header(out, dst, tag, vr::SQ, UNDEFINED);
        for item in items {
            if !self.dry {
                dst.put_tag(out, ITEM);
                dst.put_u32(out, UNDEFINED);
            }
            for (t, vr, text) in item {
                let value =
                    edit::encode(*vr, text, dst.big, utf8).map_err(|why| self.tag_err(*t, &why))?;
                self.put_value(out, dst, *t, *vr, &value)?;
            }
            if !self.dry {
                dst.put_tag(out, ITEM_END);
                dst.put_u32(out, 0);
            }
        }
        if !self.dry {
            dst.put_tag(out, SEQUENCE_END);
            dst.put_u32(out, 0);
        }
        Ok(())
    }

    fn tag_err(&self, tag: u32, why: &str) -> ConvertError {
        self.err(format!(
            "cannot edit ({:04X},{:04X}): {why}",
            tag >> 16,
            tag & 0xFFFF
        ))
    }

    /// A whole element with a new value, in the output encoding.
    fn put_value(
        &self,
        out: &mut Vec<u8>,
        dst: Encoding,
        tag: u32,
        vr: Vr,
        value: &[u8],
    ) -> Result<(), ConvertError> {
        let too_long = u32::try_from(value.len()).is_err()
            || (dst.explicit && !vr::has_long_length(vr) && value.len() > 0xFFFF);
        if too_long {
            return Err(self.tag_err(tag, "the new value is too long for its VR"));
        }
        if vr == vr::SQ {
            // An emptied sequence: no items.
            self.put_header(out, dst, tag, vr, UNDEFINED);
            if !self.dry {
                dst.put_tag(out, SEQUENCE_END);
                dst.put_u32(out, 0);
            }
            return Ok(());
        }
        self.put_header(out, dst, tag, vr, value.len() as u32);
        if !self.dry {
            out.extend_from_slice(value);
        }
        Ok(())
    }

    /// Apply the edit rule for one element, if any; true when the element was handled (written
    /// edited, or skipped), false when it is copied as usual.
    fn edit_element(
        &mut self,
        frame: Frame,
        h: &Header,
        end: End,
        sequence: Option<Vr>,
        out: &mut Vec<u8>,
    ) -> Result<bool, ConvertError> {
        let (group, element) = (h.tag >> 16, h.tag & 0xFFFF);
        let private = group % 2 == 1;
        let mut own = None;
        if private && (0x10..=0xFF).contains(&element) && sequence.is_none() && h.length <= 64 {
            let value = self.need(h.size + h.length as usize)?[h.size..].to_vec();
            let editing = self.editing.as_mut().expect("editing");
            let level = editing.levels.last_mut().expect("a level per frame");
            level.creators.push(((group << 8) | element, value.clone()));
            own = Some(value);
        }
        // An explicit UN on a standard tag (written by some converters) is edited as what the
        // dictionary says it is, and written so.
        let h = &Header {
            vr: match h.vr {
                Some(vr::UN) if !private && h.length != UNDEFINED => {
                    vr::implicit_vr(h.tag, &frame.ctx)
                        .filter(|v| *v != vr::SQ)
                        .or(h.vr)
                }
                other => other,
            },
            ..*h
        };
        let editing = self.editing.as_ref().expect("editing");
        let creator = if private && element >= 0x1000 {
            let block = (group << 8) | (element >> 8);
            let level = editing.levels.last().expect("a level per frame");
            level
                .creators
                .iter()
                .find(|(k, _)| *k == block)
                .map(|(_, v)| v.as_slice())
        } else {
            own.as_deref()
        };
        let plan = editing.plan;
        let Some(action) = plan.action(h.tag, h.vr, &editing.path, creator).cloned() else {
            return Ok(false);
        };
        let (day_offset, utf8) = (editing.derived.day_offset, editing.derived.utf8);
        let vr = sequence.or(h.vr).unwrap_or(vr::UN);
        let skip_whole = |this: &mut Self, write_empty: bool, out: &mut Vec<u8>| {
            this.input.consume(h.size);
            if write_empty {
                this.put_value(out, frame.dst, h.tag, vr, &[])?;
            }
            if let Some(seq_vr) = sequence {
                let (src, dst) = if seq_vr == vr::SQ {
                    (frame.src, frame.dst)
                } else {
                    (Encoding::IMPLICIT_LE, Encoding::IMPLICIT_LE)
                };
                return this.push(
                    Frame {
                        kind: Kind::Sequence,
                        end,
                        src,
                        dst,
                        ctx: frame.ctx,
                        discard: true,
                    },
                    h.tag,
                );
            }
            if h.length == UNDEFINED {
                return Err(this.tag_err(
                    h.tag,
                    "undefined length on an element that is not a sequence",
                ));
            }
            let keep = std::mem::replace(&mut this.dry, true);
            this.copying = Some(Copying {
                tag: h.tag,
                remaining: u64::from(h.length),
                swap: 1,
                pad: None,
            });
            let r = this.copy_value(out);
            this.dry = keep;
            r
        };
        let new = match &action {
            Action::Keep => return Ok(false),
            Action::Remove => {
                skip_whole(self, false, out)?;
                return Ok(true);
            }
            Action::Empty => {
                skip_whole(self, true, out)?;
                return Ok(true);
            }
            Action::Set {
                value: Value::Text(t),
                ..
            } if t.is_empty() => {
                skip_whole(self, true, out)?;
                return Ok(true);
            }
            Action::Set {
                value: Value::Items(items),
                ..
            } => {
                self.put_items(out, frame.dst, h.tag, items)?;
                skip_whole(self, false, out)?;
                return Ok(true);
            }
            _ if sequence.is_some() => {
                if matches!(action, Action::Dummy | Action::MapUid | Action::ShiftDate) {
                    return Ok(false);
                }
                return Err(self.tag_err(h.tag, "a sequence takes no value"));
            }
            _ if h.length == UNDEFINED => {
                return Err(self.tag_err(
                    h.tag,
                    "undefined length on an element that is not a sequence",
                ));
            }
            Action::Dummy if vr == *b"UI" => {
                let old = self.old_value(h)?;
                edit::map_uids(&plan.key, &old)
            }
            Action::Dummy => {
                let mut v = edit::dummy(vr, h.length as usize).expect("not a sequence");
                if v.len() % 2 == 1 {
                    v.push(vr::padding(vr));
                }
                v
            }
            Action::Set { value, .. } => {
                if h.vr.is_none() {
                    return Err(self.tag_err(h.tag, "its VR is unknown"));
                }
                match self.value_of(value, h.tag, vr, frame)? {
                    Some(v) => v,
                    None => return Ok(false),
                }
            }
            Action::Prefix(prefix) => {
                if !edit::is_text(vr) || vr == *b"UI" {
                    return Err(self.tag_err(h.tag, "only text values take a prefix"));
                }
                let old = self.old_value(h)?;
                let text = format!("{prefix}{}", String::from_utf8_lossy(edit::trim(&old)));
                edit::encode(vr, &text, frame.dst.big, utf8)
                    .map_err(|why| self.tag_err(h.tag, &why))?
            }
            Action::MapUid => {
                if vr != *b"UI" {
                    return Ok(false);
                }
                let old = self.old_value(h)?;
                edit::map_uids(&plan.key, &old)
            }
            Action::ShiftDate => {
                if vr != *b"DA" && vr != *b"DT" {
                    return Ok(false);
                }
                let old = self.old_value(h)?;
                edit::shift_dates(vr, &old, day_offset).map_err(|why| self.tag_err(h.tag, &why))?
            }
        };
        self.input.consume(h.size + h.length as usize);
        self.put_value(out, frame.dst, h.tag, vr, &new)?;
        Ok(true)
    }

    /// The value of the element whose header is `h`, which the caller consumes afterwards.
    fn old_value(&mut self, h: &Header) -> Result<Vec<u8>, ConvertError> {
        if h.length > 1 << 20 {
            return Err(self.tag_err(h.tag, "value too long to edit"));
        }
        Ok(self.need(h.size + h.length as usize)?[h.size..].to_vec())
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

    /// The source range of a value the caller may write itself ([`Converter::passing`]); a
    /// truncated one is copied the usual way, which reports it.
    fn pass_range(&mut self, c: &Copying) -> Option<Range<usize>> {
        let min = self.pass_min?;
        if self.dry || c.swap != 1 || c.pad.is_some() || c.remaining < min as u64 {
            return None;
        }
        let len = usize::try_from(c.remaining).ok()?;
        let start = self.input.pos() as usize;
        (self.input.peek(len).ok()?.len() == len).then(|| start..start + len)
    }

    fn copy_value(&mut self, out: &mut Vec<u8>) -> Result<(), ConvertError> {
        let Some(mut c) = self.copying else {
            return Ok(());
        };
        let dry = self.dry;
        if let Some(range) = self.pass_range(&c) {
            self.input.consume(range.len());
            self.copying = None;
            self.passed = Some(range);
            return Ok(());
        }
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
