//! The top-level UIDs at the start of a dataset already in memory (the head the receive loop
//! keeps): the fast path of `fastpush.dataset.header.read_top_uids`, for the router's identity
//! check and study name on every file received.
//!
//! Only the plain case is answered: element headers in a row up to the first tag past the last
//! one wanted, every length defined, each UID short and ASCII. Anything else — a sequence of
//! undefined length, data that ends inside an element, tags out of order when `strict`, a value
//! that is not a UID — is `None`: the Python walker reads it and says why it cannot, so both
//! give the same answers and only one says what is wrong.

use super::vr::has_long_length;

/// Python's limit: a UID is at most 64 characters, anything much longer is not one.
const MAX_UID: usize = 256;
/// Python's bound on element headers walked.
const MAX_STEPS: usize = 1 << 16;
const UNDEFINED: u32 = 0xFFFF_FFFF;

fn u16_at(data: &[u8], pos: usize, little: bool) -> u16 {
    let b = [data[pos], data[pos + 1]];
    if little {
        u16::from_le_bytes(b)
    } else {
        u16::from_be_bytes(b)
    }
}

fn u32_at(data: &[u8], pos: usize, little: bool) -> u32 {
    let b = [data[pos], data[pos + 1], data[pos + 2], data[pos + 3]];
    if little {
        u32::from_le_bytes(b)
    } else {
        u32::from_be_bytes(b)
    }
}

/// The values of the top-level elements `wanted` found walking from `pos` (in the order met,
/// stripped of NUL and space padding), or `None` when the plain walk cannot tell.
pub fn top_uids(
    data: &[u8],
    mut pos: usize,
    wanted: &[u32],
    implicit: bool,
    little: bool,
    strict: bool,
) -> Option<Vec<(u32, String)>> {
    let stop = *wanted.iter().max()?;
    let mut last: Option<u32> = None;
    let mut found = Vec::new();
    for _ in 0..MAX_STEPS {
        if pos == data.len() {
            return Some(found);
        }
        if pos.checked_add(8)? > data.len() {
            return None;
        }
        let tag =
            u32::from(u16_at(data, pos, little)) << 16 | u32::from(u16_at(data, pos + 2, little));
        if tag > stop {
            return Some(found);
        }
        if strict && last.is_some_and(|l| tag <= l) {
            return None;
        }
        last = Some(tag);
        let length = if implicit {
            let length = u32_at(data, pos + 4, little);
            pos += 8;
            length
        } else if has_long_length([data[pos + 4], data[pos + 5]]) {
            if pos + 12 > data.len() {
                return None;
            }
            let length = u32_at(data, pos + 8, little);
            pos += 12;
            length
        } else {
            let length = u32::from(u16_at(data, pos + 6, little));
            pos += 8;
            length
        };
        if length == UNDEFINED {
            return None;
        }
        let length = length as usize;
        if wanted.contains(&tag) {
            if length > MAX_UID {
                return None;
            }
            let value = data.get(pos..pos + length)?;
            if !value.is_ascii() {
                return None;
            }
            let text = std::str::from_utf8(value).ok()?;
            found.push((tag, text.trim_matches(['\0', ' ']).to_owned()));
        }
        pos = pos.checked_add(length)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::edit_tests::el as explicit;
    use super::*;

    const CLASS: u32 = 0x0008_0016;
    const INSTANCE: u32 = 0x0008_0018;
    const STUDY: u32 = 0x0020_000D;

    fn implicit_be(tag: u32, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((tag >> 16) as u16).to_be_bytes());
        out.extend_from_slice(&(tag as u16).to_be_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
        out
    }

    fn dataset() -> Vec<u8> {
        [
            explicit(0x0008_0005, b"CS", b"ISO_IR 100"),
            explicit(CLASS, b"UI", b"1.2.840.10008.5.1.4.1.1.2\0"),
            explicit(INSTANCE, b"UI", b"1.2.3.4 "),
            explicit(0x0010_0010, b"PN", b"Doe^J"),
            explicit(0x0018_0015, b"OB", b"\x01\x02"),
            explicit(STUDY, b"UI", b"1.2.9"),
            explicit(0x0020_000E, b"UI", b"1.2.10"),
        ]
        .concat()
    }

    #[test]
    fn finds_the_uids_wanted_and_stops_past_the_last() {
        let data = dataset();
        let found = top_uids(&data, 0, &[CLASS, INSTANCE, STUDY], false, true, true).unwrap();
        assert_eq!(
            found,
            vec![
                (CLASS, "1.2.840.10008.5.1.4.1.1.2".to_owned()),
                (INSTANCE, "1.2.3.4".to_owned()),
                (STUDY, "1.2.9".to_owned()),
            ]
        );
        let found = top_uids(&data, 0, &[INSTANCE], false, true, true).unwrap();
        assert_eq!(found, vec![(INSTANCE, "1.2.3.4".to_owned())]);
    }

    #[test]
    fn the_end_of_the_data_between_elements_ends_the_walk() {
        let data = explicit(CLASS, b"UI", b"1.2");
        let found = top_uids(&data, 0, &[CLASS, STUDY], false, true, true).unwrap();
        assert_eq!(found, vec![(CLASS, "1.2".to_owned())]);
        assert_eq!(top_uids(&[], 0, &[CLASS], false, true, true), Some(vec![]));
    }

    #[test]
    fn implicit_big_endian_headers_are_read_in_their_order() {
        let data = [implicit_be(CLASS, b"1.2"), implicit_be(INSTANCE, b"1.3")].concat();
        let found = top_uids(&data, 0, &[CLASS, INSTANCE], true, false, true).unwrap();
        assert_eq!(
            found,
            vec![(CLASS, "1.2".to_owned()), (INSTANCE, "1.3".to_owned())]
        );
    }

    #[test]
    fn what_the_plain_walk_cannot_tell_is_left_to_python() {
        let data = dataset();
        let wanted = [CLASS, INSTANCE, STUDY];
        // Cut inside an element header, inside a value.
        assert_eq!(
            top_uids(&data[..data.len() - 10], 0, &wanted, false, true, true),
            None
        );
        assert_eq!(top_uids(&data[..40], 0, &wanted, false, true, true), None);
        // A sequence of undefined length.
        let mut seq = explicit(0x0008_1140, b"SQ", b"");
        seq[8..12].copy_from_slice(&UNDEFINED.to_le_bytes());
        let data = [explicit(CLASS, b"UI", b"1.2"), seq].concat();
        assert_eq!(top_uids(&data, 0, &[CLASS, STUDY], false, true, true), None);
        // Out of order (strict only), a UID that is not ASCII, one too long to be a UID.
        let data = [
            explicit(INSTANCE, b"UI", b"1.3"),
            explicit(CLASS, b"UI", b"1.2"),
        ]
        .concat();
        assert_eq!(top_uids(&data, 0, &wanted, false, true, true), None);
        assert!(top_uids(&data, 0, &wanted, false, true, false).is_some());
        let data = explicit(CLASS, b"UI", b"1.\xe9");
        assert_eq!(top_uids(&data, 0, &wanted, false, true, true), None);
        let data = explicit(CLASS, b"UT", &[b'1'; 300]);
        assert_eq!(top_uids(&data, 0, &wanted, false, true, true), None);
        assert_eq!(top_uids(&data, 0, &[], false, true, true), None);
    }
}
