//! The converter against a small reference encoder: every syntax to every other, random trees,
//! and malformed input that must give errors, never panics or hangs.

use super::vr::{has_long_length, swap_width};
use super::*;

/// A tiny deterministic PRNG (xorshift64*), so the property and fuzz tests need no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Clone)]
enum Value {
    /// Little-endian value bytes.
    Bytes(Vec<u8>),
    Items(Vec<Vec<Elem>>),
}

#[derive(Debug, Clone)]
struct Elem {
    tag: u32,
    vr: [u8; 2],
    value: Value,
}

/// Tags with their dictionary VR, so Implicit VR sources resolve them to the same VR.
const TAGS: [(u32, &[u8; 2]); 14] = [
    (0x0008_0008, b"CS"),
    (0x0008_1140, b"SQ"),
    (0x0008_1150, b"UI"),
    (0x0008_9459, b"FL"),
    (0x0010_0010, b"PN"),
    (0x0018_0050, b"DS"),
    (0x0018_9219, b"SS"),
    (0x0020_9165, b"AT"),
    (0x0028_0010, b"US"),
    (0x0072_0074, b"FD"),
    (0x0072_007C, b"SL"),
    (0x0072_0082, b"SV"),
    (0x0072_0067, b"OF"),
    (0x0072_0080, b"SQ"),
];

fn random_elems(rng: &mut Rng, depth: u32) -> Vec<Elem> {
    let mut picked: Vec<usize> = (0..TAGS.len()).filter(|_| rng.below(2) == 0).collect();
    picked.sort_by_key(|&i| TAGS[i].0);
    picked
        .into_iter()
        .filter_map(|i| {
            let (tag, vr) = TAGS[i];
            let value = if vr == b"SQ" {
                if depth == 0 {
                    return None;
                }
                let n = rng.below(3);
                Value::Items((0..n).map(|_| random_elems(rng, depth - 1)).collect())
            } else {
                // Values of byte-wide VRs may have an odd length (non-conformant, and met in
                // the wild): the converter pads them.
                let width = swap_width(*vr);
                let n = rng.below(6) as usize * width.max(2)
                    + usize::from(width == 1) * rng.below(2) as usize;
                Value::Bytes((0..n).map(|_| rng.below(256) as u8).collect())
            };
            Some(Elem {
                tag,
                vr: *vr,
                value,
            })
        })
        .collect()
}

/// Encode `elems`; `defined` picks defined lengths for sequences and items.
fn encode(elems: &[Elem], enc: Encoding, defined: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for e in elems {
        let body = match &e.value {
            Value::Bytes(b) => {
                let mut v = b.clone();
                if enc.big {
                    super::walker_swap(&mut v, swap_width(e.vr));
                }
                v
            }
            Value::Items(items) => {
                let mut v = Vec::new();
                for item in items {
                    let inner = encode(item, enc, defined);
                    enc.put_tag(&mut v, 0xFFFE_E000);
                    enc.put_u32(
                        &mut v,
                        if defined {
                            inner.len() as u32
                        } else {
                            u32::MAX
                        },
                    );
                    v.extend(inner);
                    if !defined {
                        enc.put_tag(&mut v, 0xFFFE_E00D);
                        enc.put_u32(&mut v, 0);
                    }
                }
                v
            }
        };
        let is_seq = matches!(e.value, Value::Items(_));
        let length = if is_seq && !defined {
            u32::MAX
        } else {
            body.len() as u32
        };
        enc.put_tag(&mut out, e.tag);
        if !enc.explicit {
            enc.put_u32(&mut out, length);
        } else if has_long_length(e.vr) {
            out.extend_from_slice(&[e.vr[0], e.vr[1], 0, 0]);
            enc.put_u32(&mut out, length);
        } else {
            out.extend_from_slice(&e.vr);
            enc.put_u16(&mut out, length as u16);
        }
        out.extend(body);
        if is_seq && !defined {
            enc.put_tag(&mut out, 0xFFFE_E0DD);
            enc.put_u32(&mut out, 0);
        }
    }
    out
}

/// `elems` as the converter writes them: odd-length values padded to even length.
fn padded(elems: &[Elem]) -> Vec<Elem> {
    elems
        .iter()
        .map(|e| Elem {
            value: match &e.value {
                Value::Bytes(b) if b.len() % 2 == 1 => {
                    let mut v = b.clone();
                    v.push(super::vr::padding(e.vr));
                    Value::Bytes(v)
                }
                Value::Bytes(b) => Value::Bytes(b.clone()),
                Value::Items(items) => Value::Items(items.iter().map(|i| padded(i)).collect()),
            },
            ..*e
        })
        .collect()
}

const PLAIN: [Syntax; 3] = [
    Syntax::ImplicitLittle,
    Syntax::ExplicitLittle,
    Syntax::ExplicitBig,
];

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut z = flate2::Compress::new(flate2::Compression::new(6), false);
    z.compress_vec(data, &mut out, flate2::FlushCompress::None)
        .unwrap();
    loop {
        out.reserve(4096);
        if z.compress_vec(&[], &mut out, flate2::FlushCompress::Finish)
            .unwrap()
            == flate2::Status::StreamEnd
        {
            return out;
        }
    }
}

fn inflate(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut z = flate2::Decompress::new(false);
    loop {
        out.reserve(1 << 16);
        let before = z.total_out();
        let s = z
            .decompress_vec(
                &data[z.total_in() as usize..],
                &mut out,
                flate2::FlushDecompress::None,
            )
            .unwrap();
        if s == flate2::Status::StreamEnd || z.total_out() == before {
            return out;
        }
    }
}

#[test]
fn every_syntax_to_every_other() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..300 {
        let elems = random_elems(&mut rng, 3);
        let even = padded(&elems);
        for from in PLAIN {
            for defined in [true, false] {
                let src = encode(&elems, from.encoding(), defined);
                // Every pair, the same syntax too (a re-encoding: padded, undefined lengths).
                for to in PLAIN {
                    let got = convert_to_vec(&src, from, to).unwrap();
                    assert_eq!(
                        got,
                        encode(&even, to.encoding(), false),
                        "{from:?} -> {to:?}"
                    );
                    assert_eq!(check(&src, from, to), Ok(()));
                }
                // Deflated in and out: the same as Explicit VR LE, through deflate.
                let deflated = convert_to_vec(&src, from, Syntax::DeflatedExplicitLittle).unwrap();
                assert_eq!(
                    inflate(&deflated),
                    encode(&even, Encoding::EXPLICIT_LE, false)
                );
                let back = convert_to_vec(&deflated, Syntax::DeflatedExplicitLittle, from);
                assert_eq!(back.unwrap(), encode(&even, from.encoding(), false));
            }
        }
    }
}

#[test]
fn bounded_fill_gives_the_same_bytes() {
    let big = Elem {
        tag: 0x7FE0_0010,
        vr: *b"OW",
        value: Value::Bytes((0..5_000_000u32).map(|i| (i * 7) as u8).collect()),
    };
    let src = encode(std::slice::from_ref(&big), Encoding::IMPLICIT_LE, true);
    let mut conv = Converter::new(&src, Syntax::ImplicitLittle, Syntax::ExplicitBig);
    let mut out = Vec::new();
    let mut steps = 0;
    loop {
        let before = out.len();
        let done = conv.fill(&mut out, before + 1000).unwrap();
        assert!(out.len() - before <= CHUNK_BOUND);
        steps += 1;
        if done {
            break;
        }
    }
    assert!(steps > 4);
    assert_eq!(out, encode(&[big], Encoding::EXPLICIT_BE, false));
}

const CHUNK_BOUND: usize = (1 << 20) + 64;

/// The output of `conv` with every value it passes ([`Converter::passing`]) taken from `src`,
/// as a writer does; checks each passed range is what a copy would have written (a whole value
/// of at least `min` bytes, `src` unchanged).
pub(super) fn spliced(mut conv: Converter<'_>, src: &[u8], min: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let limit = out.len() + 1000;
        let done = conv.fill(&mut out, limit).unwrap();
        if let Some(range) = conv.take_passed() {
            assert!(range.len() >= min && range.end <= src.len());
            out.extend_from_slice(&src[range]);
        }
        if done {
            return out;
        }
    }
}

#[test]
fn passed_values_spliced_give_the_same_bytes() {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for _ in 0..100 {
        let elems = random_elems(&mut rng, 3);
        for from in PLAIN {
            for defined in [true, false] {
                let src = encode(&elems, from.encoding(), defined);
                for to in [PLAIN.as_slice(), &[Syntax::DeflatedExplicitLittle]].concat() {
                    let want = convert_to_vec(&src, from, to).unwrap();
                    for min in [1, 4, 1000] {
                        let conv = Converter::new(&src, from, to).passing(min);
                        assert_eq!(spliced(conv, &src, min), want, "{from:?} -> {to:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn implicit_vr_choices() {
    // Unknown private element: UN; a long value under a short VR: UN; group length: dropped;
    // Pixel Data by Bits Allocated; an undefined-length unknown element: UN holding Implicit LE.
    let e = Encoding::IMPLICIT_LE;
    let mut src = Vec::new();
    for (tag, value) in [
        (0x0008_0000u32, vec![4u8, 0, 0, 0]),
        (0x0009_1001, vec![1, 2]),
        (0x0010_0010, vec![b'A'; 70_000]),
        (0x0028_0100, vec![8, 0]),
        (0x7FE0_0010, vec![1, 2, 3, 4]),
    ] {
        e.put_tag(&mut src, tag);
        e.put_u32(&mut src, value.len() as u32);
        src.extend(value);
    }
    let got = convert_to_vec(&src, Syntax::ImplicitLittle, Syntax::ExplicitLittle).unwrap();
    let mut want = Vec::new();
    for (tag, vr, value) in [
        (0x0009_1001u32, b"UN", vec![1u8, 2]),
        (0x0010_0010, b"UN", vec![b'A'; 70_000]),
        (0x0028_0100, b"US", vec![8, 0]),
        (0x7FE0_0010, b"OB", vec![1, 2, 3, 4]),
    ] {
        let x = Encoding::EXPLICIT_LE;
        x.put_tag(&mut want, tag);
        want.extend_from_slice(vr);
        if has_long_length(*vr) {
            x.put_u16(&mut want, 0);
            x.put_u32(&mut want, value.len() as u32);
        } else {
            x.put_u16(&mut want, value.len() as u16);
        }
        want.extend(value);
    }
    assert_eq!(got, want);
}

#[test]
fn encapsulated_pixel_data_is_refused() {
    let x = Encoding::EXPLICIT_LE;
    let mut src = Vec::new();
    x.put_tag(&mut src, 0x7FE0_0010);
    src.extend_from_slice(b"OB\0\0");
    x.put_u32(&mut src, u32::MAX);
    let err = convert_to_vec(&src, Syntax::ExplicitLittle, Syntax::ImplicitLittle).unwrap_err();
    assert!(err.message.contains("encapsulated"), "{err}");
    assert!(check(&src, Syntax::ExplicitLittle, Syntax::ImplicitLittle).is_err());
}

/// Run the converter in small bounded pieces; it must end (done or error) within a step budget.
fn terminates(data: &[u8], from: Syntax, to: Syntax) {
    let mut conv = Converter::new(data, from, to);
    let mut out = Vec::new();
    for _ in 0..(data.len() * 4 + 100) {
        out.clear();
        match conv.fill(&mut out, 64) {
            Ok(true) | Err(_) => return,
            Ok(false) => {}
        }
    }
    panic!("no end after {} steps on {data:?}", data.len() * 4 + 100);
}

#[test]
fn fuzz_malformed_input() {
    let mut rng = Rng(42);
    let all = [
        Syntax::ImplicitLittle,
        Syntax::ExplicitLittle,
        Syntax::ExplicitBig,
        Syntax::DeflatedExplicitLittle,
    ];
    for round in 0..3000 {
        let elems = random_elems(&mut rng, 3);
        let from = PLAIN[round % 3];
        let mut data = encode(&elems, from.encoding(), rng.below(2) == 0);
        if round % 7 == 0 {
            data = deflate(&data);
        }
        // Flip, truncate, or splice random bytes: every mutation of a valid dataset.
        for _ in 0..=rng.below(4) {
            if data.is_empty() {
                break;
            }
            let at = rng.below(data.len() as u64) as usize;
            match rng.below(4) {
                0 => data[at] ^= 1 << rng.below(8),
                1 => data.truncate(at),
                2 => data[at] = 0xFF,
                _ => data.splice(at..at, [0xFE, 0xFF, 0x00, 0xE0]).for_each(drop),
            }
        }
        let from = if round % 7 == 0 {
            Syntax::DeflatedExplicitLittle
        } else {
            from
        };
        for to in all {
            terminates(&data, from, to);
            // The check before sending fails exactly when the conversion would, part-way.
            assert_eq!(
                check(&data, from, to).is_ok(),
                convert_to_vec(&data, from, to).is_ok(),
                "{from:?} -> {to:?}: {data:?}"
            );
        }
        // Pure noise in every syntax.
        let noise: Vec<u8> = (0..rng.below(64)).map(|_| rng.below(256) as u8).collect();
        for from in all {
            terminates(&noise, from, Syntax::ExplicitLittle);
        }
    }
}

#[test]
fn syntax_uids() {
    assert_eq!(
        Syntax::from_uid("1.2.840.10008.1.2\0"),
        Some(Syntax::ImplicitLittle)
    );
    assert_eq!(
        Syntax::from_uid("1.2.840.10008.1.2.1.99"),
        Some(Syntax::DeflatedExplicitLittle)
    );
    assert_eq!(Syntax::from_uid("1.2.840.10008.1.2.4.50"), None);
}

#[test]
fn a_truncated_value_is_named() {
    let x = Encoding::IMPLICIT_LE;
    let mut src = Vec::new();
    x.put_tag(&mut src, 0x300A_012C);
    x.put_u32(&mut src, 50);
    src.extend_from_slice(b"235.711172833292\\244.135");
    for to in [Syntax::ImplicitLittle, Syntax::ExplicitBig] {
        let err = convert_to_vec(&src, Syntax::ImplicitLittle, to).unwrap_err();
        assert_eq!(
            err.message,
            "dataset is truncated in the value of (300A,012C)"
        );
        assert_eq!(err.offset, 8);
        assert_eq!(check(&src, Syntax::ImplicitLittle, to), Err(err));
    }
}

#[test]
fn odd_values_are_padded_by_vr() {
    let x = Encoding::EXPLICIT_LE;
    let mut src = Vec::new();
    for (tag, vr, value) in [
        (0x0008_0018u32, b"UI", &b"1.2.3"[..]),
        (0x0010_0010, b"PN", b"DOE"),
        (0x0009_0010, b"UN", b"abc"),
    ] {
        x.put_tag(&mut src, tag);
        src.extend_from_slice(vr);
        if has_long_length(*vr) {
            src.extend_from_slice(&[0, 0]);
            x.put_u32(&mut src, value.len() as u32);
        } else {
            x.put_u16(&mut src, value.len() as u16);
        }
        src.extend_from_slice(value);
    }
    let got = convert_to_vec(&src, Syntax::ExplicitLittle, Syntax::ExplicitLittle).unwrap();
    let mut want = Vec::new();
    want.extend_from_slice(b"\x08\x00\x18\x00UI\x06\x001.2.3\0");
    want.extend_from_slice(b"\x10\x00\x10\x00PN\x04\x00DOE ");
    want.extend_from_slice(b"\x09\x00\x10\x00UN\0\0\x04\x00\x00\x00abc\0");
    assert_eq!(got, want);
}
