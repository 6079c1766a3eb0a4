//! Streaming conversion of a dataset between the uncompressed transfer syntaxes: Implicit VR
//! Little Endian, Explicit VR Little Endian, Explicit VR Big Endian and Deflated Explicit VR
//! Little Endian. Plain Rust, no Python: the binding and the socket writer sit on top.
//!
//! The source is read in place (a mapped file region) and the output is produced in bounded
//! pieces ([`Converter::fill`]), so memory stays flat whatever the dataset's size. The walk
//! visits element headers only; values are copied (byte-swapped when the endianness changes and
//! the VR has multi-byte units) in bounded chunks.
//!
//! A value of odd length (non-conformant, but written by some applications) is padded to even
//! length with its VR's padding byte (PS3.5 6.2): odd values would make the stream, and the PDVs
//! that carry it, odd. Converting a dataset to its own syntax is how such a dataset is repaired
//! for sending: the same encoding, odd values padded (and sequences re-delimited, as below).
//!
//! Sequences and items are always written with undefined length and delimiters: changing the
//! VR encoding changes header sizes, and defined lengths would need a pre-pass over the whole
//! dataset before the first byte could go out. Undefined length is valid in every syntax
//! (PS3.5 7.5) and lets the output stream as it is produced.
//!
//! Encapsulated (compressed) pixel data is never touched: it has no place in these syntaxes,
//! and meeting it is an error, as is any malformed input — never a panic or an endless loop
//! (every step consumes input or finishes).

pub mod edit;
pub mod head;
mod input;
mod vr;
mod vr_table;
mod walker;

#[cfg(test)]
mod edit_tests;
#[cfg(test)]
mod tests;

use std::fmt;

pub use edit::{Gathered, Plan};
#[cfg(test)]
use walker::swap_units as walker_swap;
pub use walker::Converter;

/// An uncompressed transfer syntax the converter reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    ImplicitLittle,
    ExplicitLittle,
    ExplicitBig,
    DeflatedExplicitLittle,
    /// Explicit VR Little Endian with encapsulated pixel data (every compressed syntax): only
    /// re-encoded in its own syntax (to apply edits), its pixel data fragments copied.
    Encapsulated,
}

impl Syntax {
    pub fn from_uid(uid: &str) -> Option<Syntax> {
        match uid.trim_end_matches(['\0', ' ']) {
            "1.2.840.10008.1.2" => Some(Syntax::ImplicitLittle),
            "1.2.840.10008.1.2.1" => Some(Syntax::ExplicitLittle),
            "1.2.840.10008.1.2.2" => Some(Syntax::ExplicitBig),
            "1.2.840.10008.1.2.1.99" => Some(Syntax::DeflatedExplicitLittle),
            _ => None,
        }
    }

    /// How elements are encoded once any deflate layer is removed.
    fn encoding(self) -> Encoding {
        match self {
            Syntax::ImplicitLittle => Encoding::IMPLICIT_LE,
            Syntax::ExplicitLittle | Syntax::DeflatedExplicitLittle | Syntax::Encapsulated => {
                Encoding::EXPLICIT_LE
            }
            Syntax::ExplicitBig => Encoding::EXPLICIT_BE,
        }
    }
}

/// Element encoding: VRs in the header or not, byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Encoding {
    explicit: bool,
    big: bool,
}

impl Encoding {
    const IMPLICIT_LE: Encoding = Encoding {
        explicit: false,
        big: false,
    };
    const EXPLICIT_LE: Encoding = Encoding {
        explicit: true,
        big: false,
    };
    const EXPLICIT_BE: Encoding = Encoding {
        explicit: true,
        big: true,
    };

    fn u16(self, b: [u8; 2]) -> u16 {
        if self.big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    fn u32(self, b: [u8; 4]) -> u32 {
        if self.big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    fn put_u16(self, out: &mut Vec<u8>, v: u16) {
        out.extend_from_slice(&if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        });
    }

    fn put_u32(self, out: &mut Vec<u8>, v: u32) {
        out.extend_from_slice(&if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        });
    }

    fn put_tag(self, out: &mut Vec<u8>, tag: u32) {
        self.put_u16(out, (tag >> 16) as u16);
        self.put_u16(out, tag as u16);
    }
}

/// Why a dataset cannot be converted, and where (offset in the source dataset, inflated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError {
    pub offset: u64,
    pub message: String,
}

impl ConvertError {
    fn new(offset: u64, message: impl Into<String>) -> Self {
        ConvertError {
            offset,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at dataset offset {})", self.message, self.offset)
    }
}

impl std::error::Error for ConvertError {}

/// Convert a whole dataset into a new vector (tests, and `frame_message`).
pub fn convert_to_vec(data: &[u8], from: Syntax, to: Syntax) -> Result<Vec<u8>, ConvertError> {
    let mut conv = Converter::new(data, from, to);
    let mut out = Vec::new();
    while !conv.fill(&mut out, usize::MAX)? {}
    Ok(out)
}

/// Walk a whole dataset without producing output: the errors converting it to `to` with
/// [`Converter::fill`] would meet, found before the first byte is sent.
pub fn check(data: &[u8], from: Syntax, to: Syntax) -> Result<(), ConvertError> {
    let mut conv = Converter::new(data, from, to).dry();
    let mut out = Vec::new();
    while !conv.fill(&mut out, usize::MAX)? {}
    Ok(())
}

/// The top-level values `plan` needs from a dataset, read before it is edited; refuses one the
/// plan must not send (pixels that may carry burned-in text, when the plan says so).
pub fn gather(data: &[u8], from: Syntax, plan: &Plan) -> Result<Gathered, ConvertError> {
    let gathered = Converter::gather(data, from, plan.wanted())?;
    if plan.refuse_burned_in {
        if let Some(why) = gathered.burned_in() {
            return Err(ConvertError::new(0, format!("{why}: not de-identified")));
        }
    }
    Ok(gathered)
}

/// Edit (and convert) a whole dataset into a new vector (tests and tools; sending streams).
pub fn edit_to_vec(
    data: &[u8],
    from: Syntax,
    to: Syntax,
    plan: &Plan,
) -> Result<Vec<u8>, ConvertError> {
    let gathered = gather(data, from, plan)?;
    let mut conv = Converter::new(data, from, to).with_edits(plan, gathered);
    let mut out = Vec::new();
    while !conv.fill(&mut out, usize::MAX)? {}
    Ok(out)
}

/// [`check`] with edits: every error editing the dataset would meet, found before sending.
pub fn check_edits(
    data: &[u8],
    from: Syntax,
    to: Syntax,
    plan: &Plan,
    gathered: &Gathered,
) -> Result<(), ConvertError> {
    let mut conv = Converter::new(data, from, to)
        .dry()
        .with_edits(plan, gathered.clone());
    let mut out = Vec::new();
    while !conv.fill(&mut out, usize::MAX)? {}
    Ok(())
}
