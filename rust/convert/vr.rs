//! Value representations: which need a 4-byte length, how wide their byte-swapped units are, and
//! the VR of a tag in a dataset that does not carry VRs (Implicit VR Little Endian).

use super::vr_table::{EXACT, NAMES, REPEATERS};

/// A VR as its two ASCII characters.
pub type Vr = [u8; 2];

pub const SQ: Vr = *b"SQ";
pub const UN: Vr = *b"UN";
pub const OB: Vr = *b"OB";
pub const OW: Vr = *b"OW";
pub const US: Vr = *b"US";
pub const SS: Vr = *b"SS";
pub const UL: Vr = *b"UL";
pub const LO: Vr = *b"LO";

/// Every VR of PS3.5 table 6.2-1; anything else in an explicit VR header is an error.
const KNOWN: [&[u8; 2]; 34] = [
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"OB",
    b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM",
    b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV",
];

pub fn is_known(vr: Vr) -> bool {
    KNOWN.iter().any(|k| **k == vr)
}

/// VRs whose explicit header has 2 reserved bytes and a 4-byte length (PS3.5 7.1.2).
pub fn has_long_length(vr: Vr) -> bool {
    matches!(
        &vr,
        b"OB"
            | b"OD"
            | b"OF"
            | b"OL"
            | b"OV"
            | b"OW"
            | b"SQ"
            | b"SV"
            | b"UC"
            | b"UN"
            | b"UR"
            | b"UT"
            | b"UV"
    )
}

/// The byte that pads an odd-length value to even length (PS3.5 6.2): a space for the text
/// VRs, a zero for UI and the binary ones (and for an unknown VR, read as UN).
pub fn padding(vr: Vr) -> u8 {
    match &vr {
        b"AE" | b"AS" | b"CS" | b"DA" | b"DS" | b"DT" | b"IS" | b"LO" | b"LT" | b"PN" | b"SH"
        | b"ST" | b"TM" | b"UC" | b"UR" | b"UT" => b' ',
        _ => 0,
    }
}

/// Size of the units whose bytes are reversed between little and big endian; 1: none (text,
/// OB, UN). AT is a pair of 16-bit numbers, so it swaps as 2.
pub fn swap_width(vr: Vr) -> usize {
    match &vr {
        b"US" | b"SS" | b"OW" | b"AT" => 2,
        b"UL" | b"SL" | b"FL" | b"OF" | b"OL" => 4,
        b"FD" | b"OD" | b"SV" | b"UV" | b"OV" => 8,
        _ => 1,
    }
}

/// The swap width of one value: its VR's, except OW Pixel Data of 32- or 64-bit pixels, which
/// swap as whole pixels (as DCMTK and pydicom read them; a 16-bit swap would exchange the
/// halves of every pixel).
pub fn value_swap_width(tag: u32, vr: Vr, ctx: &Context) -> usize {
    match (tag, vr, ctx.bits_allocated) {
        (PIXEL_DATA, OW, Some(bits @ (32 | 64))) => usize::from(bits / 8),
        _ => swap_width(vr),
    }
}

/// What the dataset told us so far that decides an ambiguous VR ("US or SS", "OB or OW").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Context {
    pub pixel_representation: Option<u16>,
    pub bits_allocated: Option<u16>,
}

pub const PIXEL_DATA: u32 = 0x7FE0_0010;
pub const BITS_ALLOCATED: u32 = 0x0028_0100;
pub const PIXEL_REPRESENTATION: u32 = 0x0028_0103;

fn dictionary(tag: u32) -> Option<&'static str> {
    if let Ok(i) = EXACT.binary_search_by_key(&tag, |&(t, _)| t) {
        return Some(NAMES[usize::from(EXACT[i].1)]);
    }
    REPEATERS
        .iter()
        .find(|&&(mask, value, _)| tag & mask == value)
        .map(|&(_, _, vr)| NAMES[usize::from(vr)])
}

/// The VR of `tag` in an implicit VR dataset, or `None` when nobody can know it (an unknown
/// private or retired-and-dropped tag): the caller encodes those as UN.
///
/// Ambiguous dictionary VRs are decided the way pydicom writes them: "US or SS" by Pixel
/// Representation (SS when 1); Pixel Data "OB or OW" by Bits Allocated (OB when 8 or fewer,
/// OW when unknown); every other "... or OW" as OW, which keeps every byte and the 16-bit swap.
pub fn implicit_vr(tag: u32, ctx: &Context) -> Option<Vr> {
    let group = tag >> 16;
    let element = tag & 0xFFFF;
    if element == 0 {
        return Some(UL); // group length
    }
    if group % 2 == 1 {
        // Private creators (gggg,0010-00FF) are LO; other private elements are unknown.
        return (0x10..=0xFF).contains(&element).then_some(LO);
    }
    let name = dictionary(tag)?;
    Some(match name {
        "US or SS" if ctx.pixel_representation == Some(1) => SS,
        "US or SS" => US,
        "OB or OW" if tag == PIXEL_DATA && ctx.bits_allocated.is_some_and(|b| b <= 8) => OB,
        "OB or OW" | "US or OW" | "US or SS or OW" => OW,
        other => {
            let b = other.as_bytes();
            [b[0], b[1]]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_lookups() {
        let ctx = Context::default();
        assert_eq!(implicit_vr(0x0010_0010, &ctx), Some(*b"PN"));
        assert_eq!(implicit_vr(0x0008_1140, &ctx), Some(SQ));
        assert_eq!(implicit_vr(0x0009_0010, &ctx), Some(LO));
        assert_eq!(implicit_vr(0x0009_1001, &ctx), None);
        assert_eq!(implicit_vr(0x0011_0000, &ctx), Some(UL));
        assert_eq!(implicit_vr(0x6002_3000, &ctx), Some(OW)); // repeating overlay group
        assert_eq!(implicit_vr(0x6002_0010, &ctx), Some(US));
        assert_eq!(implicit_vr(PIXEL_DATA, &ctx), Some(OW));
        let eight = Context {
            bits_allocated: Some(8),
            pixel_representation: Some(1),
        };
        assert_eq!(implicit_vr(PIXEL_DATA, &eight), Some(OB));
        assert_eq!(implicit_vr(0x0028_0106, &eight), Some(SS));
        assert_eq!(implicit_vr(0x0028_0106, &ctx), Some(US));
        assert_eq!(implicit_vr(0x0002_0000, &ctx), Some(UL));
    }

    #[test]
    fn vr_properties() {
        assert!(has_long_length(SQ) && has_long_length(UN) && !has_long_length(US));
        assert_eq!(swap_width(*b"FD"), 8);
        assert_eq!(swap_width(*b"AT"), 2);
        assert_eq!(swap_width(*b"LO"), 1);
        assert!(is_known(*b"UV") && !is_known(*b"XX"));
    }
}
