//! Edits through the walker: every edit kind, value length changes, nested sequences of
//! undefined length, group lengths, in every syntax the converter reads.

use super::edit::{map_uid, Action, Rule, Scope, Selector, Value};
use super::*;

/// Explicit VR LE element bytes (the head walk's tests too).
pub(super) fn el(tag: u32, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Encoding::EXPLICIT_LE.put_tag(&mut out, tag);
    out.extend_from_slice(vr);
    if vr::has_long_length(*vr) {
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    } else {
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    }
    out.extend_from_slice(value);
    out
}

/// An undefined-length sequence of undefined-length items.
fn seq(tag: u32, items: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    Encoding::EXPLICIT_LE.put_tag(&mut out, tag);
    out.extend_from_slice(b"SQ\0\0\xff\xff\xff\xff");
    for item in items {
        out.extend_from_slice(b"\xfe\xff\x00\xe0\xff\xff\xff\xff");
        out.extend_from_slice(item);
        out.extend_from_slice(b"\xfe\xff\x0d\xe0\0\0\0\0");
    }
    out.extend_from_slice(b"\xfe\xff\xdd\xe0\0\0\0\0");
    out
}

fn rule(tag: u32, scope: Scope, action: Action) -> Rule {
    Rule {
        selector: Selector::Tag(tag),
        scope,
        action,
    }
}

fn set(text: &str) -> Action {
    Action::Set {
        value: Value::Text(text.into()),
        vr: None,
        insert: true,
    }
}

fn source() -> Vec<u8> {
    [
        el(0x0008_0000, b"UL", &[0, 0, 0, 0]),
        el(0x0008_0018, b"UI", b"1.2.3.4\0"),
        el(0x0008_0080, b"LO", b"OLD"),
        seq(
            0x0008_1140,
            &[[
                el(0x0008_1150, b"UI", b"1.2.840.10008.5.1.4.1.1.2\0"),
                el(0x0008_1155, b"UI", b"1.2.3.4\0"),
            ]
            .concat()],
        ),
        el(0x0010_0010, b"PN", b"DOE^JOHN"),
        el(0x0010_0020, b"LO", b"ID1 "),
        seq(0x0010_1002, &[el(0x0010_0020, b"LO", b"OTHER ")]),
        el(0x0020_000D, b"UI", b"1.2.3\0"),
        el(0x7FE0_0010, b"OW", &[1, 2, 3, 4]),
    ]
    .concat()
}

fn plan() -> Plan {
    let mut plan = Plan::new(vec![
        rule(0x0008_0080, Scope::Top, set("SITE A")),
        rule(0x0008_1030, Scope::Top, set("ADDED")),
        rule(0x0010_0010, Scope::Top, Action::Prefix("X^".into())),
        rule(0x0010_1002, Scope::Top, Action::Remove),
        rule(
            0x0010_4000,
            Scope::Top,
            Action::Set {
                value: Value::Copy(0x0010_0020),
                vr: None,
                insert: true,
            },
        ),
        rule(0x0008_1155, Scope::Path(vec![0x0008_1140]), Action::Keep),
    ]);
    plan.map_uids = true;
    plan.key = b"key".to_vec();
    plan
}

fn expected() -> Vec<u8> {
    let sop = map_uid(b"key", "1.2.3.4") + "\0";
    let study = map_uid(b"key", "1.2.3");
    let study = if study.len() % 2 == 1 {
        study + "\0"
    } else {
        study
    };
    [
        el(0x0008_0018, b"UI", sop.as_bytes()),
        el(0x0008_0080, b"LO", b"SITE A"),
        el(0x0008_1030, b"LO", b"ADDED "),
        seq(
            0x0008_1140,
            &[[
                el(0x0008_1150, b"UI", b"1.2.840.10008.5.1.4.1.1.2\0"),
                el(0x0008_1155, b"UI", b"1.2.3.4\0"),
            ]
            .concat()],
        ),
        el(0x0010_0010, b"PN", b"X^DOE^JOHN"),
        el(0x0010_0020, b"LO", b"ID1 "),
        el(0x0010_4000, b"LT", b"ID1 "),
        el(0x0020_000D, b"UI", study.as_bytes()),
        el(0x7FE0_0010, b"OW", &[1, 2, 3, 4]),
    ]
    .concat()
}

/// Every syntax the editor reads, to every syntax it writes.
fn syntax_pairs() -> impl Iterator<Item = (Syntax, Syntax)> {
    let from = [
        Syntax::ExplicitLittle,
        Syntax::ImplicitLittle,
        Syntax::ExplicitBig,
        Syntax::DeflatedExplicitLittle,
    ];
    let to = [
        Syntax::ExplicitLittle,
        Syntax::ImplicitLittle,
        Syntax::ExplicitBig,
    ];
    from.into_iter()
        .flat_map(move |f| to.into_iter().map(move |t| (f, t)))
}

#[test]
fn every_edit_kind_in_every_syntax() {
    let ds = source();
    let plan = plan();
    let want = expected();
    for (from, to) in syntax_pairs() {
        let input = convert_to_vec(&ds, Syntax::ExplicitLittle, from).unwrap();
        let edited = edit_to_vec(&input, from, to, &plan).unwrap();
        check(&edited, to, to).unwrap();
        let back = convert_to_vec(&edited, to, Syntax::ExplicitLittle).unwrap();
        assert!(
            back == want,
            "{from:?} -> {to:?}\n{:?}\n{:?}",
            String::from_utf8_lossy(&back),
            String::from_utf8_lossy(&want)
        );
    }
}

#[test]
fn passed_values_spliced_give_the_edited_bytes() {
    // source() ends with 4 bytes of pixel data (16 bytes in all): replaced by 300 kB.
    let mut ds = source();
    ds.truncate(ds.len() - 16);
    let pixels: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    ds.extend_from_slice(&el(0x7FE0_0010, b"OW", &pixels));
    // An element after the pixel data; the plan inserts one before it and one at the end.
    ds.extend_from_slice(&el(0xFFFA_FFFA, b"SQ", &[]));
    let insert = |tag, vr: &[u8; 2], text: &str| Rule {
        selector: Selector::Tag(tag),
        scope: Scope::Top,
        action: Action::Set {
            value: Value::Text(text.into()),
            vr: Some(*vr),
            insert: true,
        },
    };
    let mut plan = Plan::new(vec![
        rule(0x0008_0080, Scope::Top, set("SITE A")),
        rule(0x0010_0010, Scope::Top, Action::Prefix("X^".into())),
        insert(0x7FE1_0010, b"LO", "FASTPUSH"),
        insert(0xFFFC_FFFC, b"OB", ""),
    ]);
    plan.map_uids = true;
    plan.key = b"key".to_vec();
    for (from, to) in syntax_pairs() {
        let input = convert_to_vec(&ds, Syntax::ExplicitLittle, from).unwrap();
        let want = edit_to_vec(&input, from, to, &plan).unwrap();
        let gathered = gather(&input, from, &plan).unwrap();
        let conv = Converter::new(&input, from, to)
            .passing(1024)
            .with_edits(&plan, gathered);
        let got = super::tests::spliced(conv, &input, 1024);
        assert!(got == want, "{from:?} -> {to:?}");
    }
}

#[test]
fn empty_and_dummy_keep_the_dataset_valid() {
    let ds = source();
    let plan = Plan::new(vec![
        rule(0x0008_1140, Scope::Anywhere, Action::Empty),
        rule(0x0010_0010, Scope::Anywhere, Action::Dummy),
        rule(0x0010_0020, Scope::Anywhere, Action::Empty),
        rule(0x7FE0_0010, Scope::Anywhere, Action::Keep),
    ]);
    let out = edit_to_vec(&ds, Syntax::ExplicitLittle, Syntax::ExplicitLittle, &plan).unwrap();
    let want = [
        el(0x0008_0018, b"UI", b"1.2.3.4\0"),
        el(0x0008_0080, b"LO", b"OLD "),
        seq(0x0008_1140, &[]),
        el(0x0010_0010, b"PN", b"ANONYMIZED"),
        el(0x0010_0020, b"LO", b""),
        seq(0x0010_1002, &[el(0x0010_0020, b"LO", b"")]),
        el(0x0020_000D, b"UI", b"1.2.3\0"),
        el(0x7FE0_0010, b"OW", &[1, 2, 3, 4]),
    ]
    .concat();
    assert!(out == want);
}

#[test]
fn values_that_do_not_fit_fail_before_output() {
    let ds = source();
    for action in [set("x".repeat(65).as_str()), set("bad\u{1}")] {
        let plan = Plan::new(vec![rule(0x0008_0080, Scope::Top, action)]);
        let err = edit_to_vec(&ds, Syntax::ExplicitLittle, Syntax::ExplicitLittle, &plan);
        assert!(err.unwrap_err().message.contains("(0008,0080)"));
    }
    let plan = Plan::new(vec![rule(0x7FE0_0010, Scope::Top, set("1"))]);
    assert!(edit_to_vec(&ds, Syntax::ExplicitLittle, Syntax::ExplicitLittle, &plan).is_err());
    let mut plan = Plan::new(vec![]);
    plan.refuse_burned_in = true;
    let us = [el(0x0008_0060, b"CS", b"US"), source()].concat();
    let err = edit_to_vec(&us, Syntax::ExplicitLittle, Syntax::ExplicitLittle, &plan).unwrap_err();
    assert!(err.message.contains("burned-in"), "{err}");
    let body = source();
    let (head, pixels) = body.split_at(body.len() - 16);
    let no = [
        el(0x0008_0060, b"CS", b"US"),
        head.to_vec(),
        el(0x0028_0301, b"CS", b"NO"),
        pixels.to_vec(),
    ]
    .concat();
    assert!(edit_to_vec(&no, Syntax::ExplicitLittle, Syntax::ExplicitLittle, &plan).is_ok());
}

#[test]
fn encapsulated_pixel_data_is_copied() {
    let mut ds = el(0x0010_0010, b"PN", b"DOE^JOHN");
    ds.extend_from_slice(b"\xe0\x7f\x10\x00OB\0\0\xff\xff\xff\xff");
    ds.extend_from_slice(b"\xfe\xff\x00\xe0\0\0\0\0");
    ds.extend_from_slice(b"\xfe\xff\x00\xe0\x04\0\0\0JPEG");
    ds.extend_from_slice(b"\xfe\xff\xdd\xe0\0\0\0\0");
    let plan = Plan::new(vec![rule(0x0010_0010, Scope::Top, set("ANON"))]);
    let out = edit_to_vec(&ds, Syntax::Encapsulated, Syntax::Encapsulated, &plan).unwrap();
    assert_eq!(&out[..12], &el(0x0010_0010, b"PN", b"ANON")[..]);
    assert_eq!(&out[12..], &ds[16..]);
}
