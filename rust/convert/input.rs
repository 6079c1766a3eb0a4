//! The source dataset as a byte stream with a position: read in place from a slice (the mapped
//! file), or inflated a window at a time for Deflated Explicit VR Little Endian.

use flate2::{Decompress, FlushDecompress, Status};

use super::ConvertError;

/// Bytes inflated per call: the window stays about this size whatever the dataset's size.
const INFLATE_STEP: usize = 64 << 10;

pub(super) enum Input<'a> {
    Slice {
        data: &'a [u8],
        pos: usize,
    },
    Inflate {
        src: &'a [u8],
        src_pos: usize,
        z: Box<Decompress>,
        buf: Vec<u8>,
        start: usize,
        consumed: u64,
        ended: bool,
    },
}

impl<'a> Input<'a> {
    pub(super) fn slice(data: &'a [u8]) -> Self {
        Input::Slice { data, pos: 0 }
    }

    /// Raw deflate (no zlib header), as PS3.5 A.5 specifies.
    pub(super) fn inflate(src: &'a [u8]) -> Self {
        Input::Inflate {
            src,
            src_pos: 0,
            z: Box::new(Decompress::new(false)),
            buf: Vec::new(),
            start: 0,
            consumed: 0,
            ended: false,
        }
    }

    /// Bytes consumed so far: the position in the (inflated) dataset.
    pub(super) fn pos(&self) -> u64 {
        match self {
            Input::Slice { pos, .. } => *pos as u64,
            Input::Inflate { consumed, .. } => *consumed,
        }
    }

    /// Bytes of the source slice read so far (compressed bytes for a deflated source).
    pub(super) fn source_consumed(&self) -> usize {
        match self {
            Input::Slice { pos, .. } => *pos,
            Input::Inflate { src_pos, .. } => *src_pos,
        }
    }

    /// Up to `n` bytes from the position, fewer only at the end of the data.
    pub(super) fn peek(&mut self, n: usize) -> Result<&[u8], ConvertError> {
        match self {
            Input::Slice { data, pos } => Ok(&data[*pos..(*pos + n).min(data.len())]),
            Input::Inflate { .. } => {
                self.fill(n)?;
                let Input::Inflate { buf, start, .. } = self else {
                    unreachable!()
                };
                let end = (*start + n).min(buf.len());
                Ok(&buf[*start..end])
            }
        }
    }

    /// Skip `n` bytes that [`Input::peek`] returned.
    pub(super) fn consume(&mut self, n: usize) {
        match self {
            Input::Slice { pos, .. } => *pos += n,
            Input::Inflate {
                start, consumed, ..
            } => {
                *start += n;
                *consumed += n as u64;
            }
        }
    }

    /// Whether every byte was consumed.
    pub(super) fn at_end(&mut self) -> Result<bool, ConvertError> {
        Ok(self.peek(1)?.is_empty())
    }

    /// Inflate until `n` bytes are buffered past `start` or the stream ended.
    fn fill(&mut self, n: usize) -> Result<(), ConvertError> {
        let Input::Inflate {
            src,
            src_pos,
            z,
            buf,
            start,
            ended,
            ..
        } = self
        else {
            return Ok(());
        };
        while buf.len() - *start < n && !*ended {
            // Drop what was consumed so the buffer never grows past one step plus a header.
            buf.drain(..*start);
            *start = 0;
            buf.reserve(INFLATE_STEP);
            let before_in = z.total_in();
            let before_out = z.total_out();
            let status = z
                .decompress_vec(&src[*src_pos..], buf, FlushDecompress::None)
                .map_err(|e| ConvertError::new(0, format!("deflated dataset is corrupt: {e}")))?;
            *src_pos += (z.total_in() - before_in) as usize;
            let progressed = z.total_out() > before_out || z.total_in() > before_in;
            match status {
                Status::StreamEnd => *ended = true,
                _ if !progressed => {
                    // No input left and no output: the stream is cut short.
                    if *src_pos >= src.len() {
                        return Err(ConvertError::new(0, "deflated dataset is truncated"));
                    }
                    return Err(ConvertError::new(0, "deflated dataset does not inflate"));
                }
                _ => {}
            }
        }
        Ok(())
    }
}
