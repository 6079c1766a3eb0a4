//! Tag edits applied while a dataset streams through the converter: what to do with each
//! element ([`Plan`], compiled by Python from an edit list or a de-identification profile), and
//! the values it writes — encoded for the element's VR, UIDs and pseudonyms derived with a key
//! (HMAC-SHA256), dates shifted by a per-patient offset.
//!
//! The walker asks [`Plan::action`] once per element header; only elements with an action have
//! their value read, everything else (the pixel data above all) is copied as before.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::vr::{self, Vr};

pub const PATIENT_ID: u32 = 0x0010_0020;
pub const SPECIFIC_CHARACTER_SET: u32 = 0x0008_0005;
pub const MODALITY: u32 = 0x0008_0060;
pub const SOP_CLASS_UID: u32 = 0x0008_0016;
pub const SOP_INSTANCE_UID: u32 = 0x0008_0018;
pub const BURNED_IN_ANNOTATION: u32 = 0x0028_0301;

/// A value an edit writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(String),
    /// The value of another top-level element of the same dataset.
    Copy(u32),
    /// The keyed pseudonym of the dataset's Patient ID.
    Pseudonym,
    /// A sequence of items, each a list of `(tag, VR, text)` elements.
    Items(Vec<Vec<(u32, Vr, String)>>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Copied as it is (an explicit keep beats later, broader rules).
    Keep,
    Remove,
    /// A zero-length value; an empty sequence.
    Empty,
    /// A dummy value that fits the VR; a sequence is kept (its items are edited).
    Dummy,
    /// Replace the value; with `insert`, add the element where it is missing (a top-level or a
    /// path rule only). `vr` is needed to insert an element the dictionary does not know.
    Set {
        value: Value,
        vr: Option<Vr>,
        insert: bool,
    },
    Prefix(String),
    /// Every UID of the value mapped with the key (the standard's own UIDs kept).
    MapUid,
    /// DA and DT values moved by the per-patient day offset; other VRs emptied.
    ShiftDate,
}

/// Where a rule applies: the top-level dataset, the items of one sequence path (tags of the
/// sequences from the top), or any dataset at any depth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Top,
    Path(Vec<u32>),
    Anywhere,
}

impl Scope {
    fn matches(&self, path: &[u32]) -> bool {
        match self {
            Scope::Top => path.is_empty(),
            Scope::Path(p) => p == path,
            Scope::Anywhere => true,
        }
    }
}

/// What selects an element: an exact tag, a masked tag (repeating groups), or a private
/// element by its creator's name and its element byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Tag(u32),
    Masked {
        mask: u32,
        value: u32,
    },
    Private {
        group: u16,
        creator: String,
        element: u8,
    },
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub selector: Selector,
    pub scope: Scope,
    pub action: Action,
}

/// A compiled edit list. Rules are tried in order: exact tags first, then private elements by
/// creator, then `private` for the rest of the private elements, then masked tags, then
/// `map_uids` for every other UI element.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    exact: Vec<(u32, Rule)>,
    named_private: Vec<Rule>,
    masked: Vec<Rule>,
    pub private: Option<Action>,
    pub map_uids: bool,
    pub key: Vec<u8>,
    /// Refuse a dataset whose pixels may carry burned-in identities (PS3.15 E.1.1).
    pub refuse_burned_in: bool,
}

impl Plan {
    pub fn new(rules: Vec<Rule>) -> Plan {
        let mut plan = Plan::default();
        for rule in rules {
            match rule.selector {
                Selector::Tag(tag) => plan.exact.push((tag, rule)),
                Selector::Private { .. } => plan.named_private.push(rule),
                Selector::Masked { .. } => plan.masked.push(rule),
            }
        }
        // Stable: among rules for one tag, the first given wins.
        plan.exact.sort_by_key(|(tag, _)| *tag);
        plan
    }

    /// The tags whose top-level values the plan needs before the walk (copy sources, the
    /// Patient ID behind pseudonyms and date shifts, the burned-in check).
    pub fn wanted(&self) -> Vec<u32> {
        let mut tags = vec![PATIENT_ID, SPECIFIC_CHARACTER_SET];
        if self.refuse_burned_in {
            tags.extend([MODALITY, SOP_CLASS_UID, BURNED_IN_ANNOTATION]);
        }
        for (_, rule) in &self.exact {
            if let Action::Set {
                value: Value::Copy(from),
                ..
            } = rule.action
            {
                tags.push(from);
            }
        }
        tags.sort_unstable();
        tags.dedup();
        tags
    }

    /// The action for an element, or `None` to copy it as it is. `creator` names the private
    /// block of a private data element.
    pub fn action(
        &self,
        tag: u32,
        vr: Option<Vr>,
        path: &[u32],
        creator: Option<&[u8]>,
    ) -> Option<&Action> {
        let first = self.exact.partition_point(|(t, _)| *t < tag);
        if let Some((_, rule)) = self.exact[first..]
            .iter()
            .take_while(|(t, _)| *t == tag)
            .find(|(_, r)| r.scope.matches(path))
        {
            return Some(&rule.action);
        }
        if (tag >> 16) % 2 == 1 {
            let element = tag & 0xFFFF;
            if element >= 0x1000 {
                let found = self.named_private.iter().find(|r| {
                    let Selector::Private {
                        group,
                        creator: name,
                        element: byte,
                    } = &r.selector
                    else {
                        return false;
                    };
                    u32::from(*group) == tag >> 16
                        && u32::from(*byte) == element & 0xFF
                        && creator.is_some_and(|c| trim(c) == name.as_bytes())
                        && r.scope.matches(path)
                });
                if let Some(rule) = found {
                    return Some(&rule.action);
                }
            }
            // A creator that a kept element names stays, or the kept element would be orphaned.
            if (0x10..=0xFF).contains(&element) && self.keeps_creator(tag >> 16, creator) {
                return None;
            }
            if let Some(action) = &self.private {
                return Some(action);
            }
        }
        if let Some(rule) = self.masked.iter().find(|r| match r.selector {
            Selector::Masked { mask, value } => tag & mask == value && r.scope.matches(path),
            _ => false,
        }) {
            return Some(&rule.action);
        }
        (self.map_uids && vr == Some(*b"UI")).then_some(&Action::MapUid)
    }

    fn keeps_creator(&self, group: u32, value: Option<&[u8]>) -> bool {
        let Some(value) = value else { return false };
        self.named_private.iter().any(|r| {
            matches!(&r.selector, Selector::Private { group: g, creator, .. }
                if u32::from(*g) == group && trim(value) == creator.as_bytes())
        })
    }

    /// The inserting rules whose scope is exactly `path`, by tag.
    pub fn inserts(&self, path: &[u32]) -> Vec<(u32, usize)> {
        self.exact
            .iter()
            .enumerate()
            .filter(|(_, (_, r))| {
                matches!(r.action, Action::Set { insert: true, .. })
                    && !matches!(r.scope, Scope::Anywhere)
                    && r.scope.matches(path)
            })
            .map(|(i, (tag, _))| (*tag, i))
            .collect()
    }

    pub fn rule_at(&self, index: usize) -> &Rule {
        &self.exact[index].1
    }

    /// The SOP Instance UID a dataset carries once edited: what the C-STORE request and the
    /// file meta must name.
    pub fn instance_uid(&self, uid: &str) -> String {
        match self.action(SOP_INSTANCE_UID, Some(*b"UI"), &[], None) {
            Some(Action::MapUid) => map_uid(&self.key, uid),
            Some(Action::Set {
                value: Value::Text(text),
                ..
            }) => text.clone(),
            _ => uid.to_string(),
        }
    }
}

/// Per-dataset values the edits need, read from the top level before the walk.
#[derive(Debug, Clone, Default)]
pub struct Gathered {
    pub values: Vec<(u32, Vr, Vec<u8>)>,
}

impl Gathered {
    pub fn get(&self, tag: u32) -> Option<(Vr, &[u8])> {
        self.values
            .iter()
            .find(|(t, _, _)| *t == tag)
            .map(|(_, vr, v)| (*vr, v.as_slice()))
    }

    fn text(&self, tag: u32) -> &[u8] {
        self.get(tag).map_or(&[][..], |(_, v)| trim(v))
    }

    pub fn utf8(&self) -> bool {
        self.text(SPECIFIC_CHARACTER_SET)
            .split(|&b| b == b'\\')
            .any(|term| trim(term) == b"ISO_IR 192")
    }

    /// Why the pixels may hold burned-in identity: Burned In Annotation YES, or absent for a
    /// modality that burns in.
    pub fn burned_in(&self) -> Option<String> {
        match self.text(BURNED_IN_ANNOTATION) {
            b"NO" => None,
            b"YES" => Some("Burned In Annotation is YES".into()),
            _ => {
                let modality = self.text(MODALITY);
                let secondary = self
                    .text(SOP_CLASS_UID)
                    .starts_with(b"1.2.840.10008.5.1.4.1.1.7");
                (matches!(modality, b"US" | b"SC" | b"XA" | b"ES") || secondary).then(|| {
                    format!(
                        "no Burned In Annotation on a {} image, which may carry burned-in text",
                        if secondary {
                            "secondary capture".to_string()
                        } else {
                            String::from_utf8_lossy(modality).into_owned()
                        }
                    )
                })
            }
        }
    }
}

/// Per-dataset derived values: the pseudonym and the day offset of its patient.
#[derive(Debug, Clone)]
pub struct Derived {
    pub pseudonym: String,
    pub day_offset: i64,
    pub utf8: bool,
}

impl Derived {
    pub fn new(plan: &Plan, gathered: &Gathered) -> Derived {
        let id = gathered.text(PATIENT_ID);
        Derived {
            pseudonym: pseudonym(&plan.key, id),
            day_offset: day_offset(&plan.key, id),
            utf8: gathered.utf8(),
        }
    }
}

fn hmac(key: &[u8], label: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(label);
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// `2.25.<decimal>` of a UUID (RFC 9562 version 8) made of the first 128 bits of
/// HMAC-SHA256(key, uid): the same UID maps to the same UID for one key.
pub fn map_uid(key: &[u8], uid: &str) -> String {
    let digest = hmac(key, b"", uid.as_bytes());
    let mut bytes: [u8; 16] = digest[..16].try_into().expect("16 bytes");
    bytes[6] = (bytes[6] & 0x0F) | 0x80;
    bytes[8] = (bytes[8] & 0x3F) | 0x80;
    format!("2.25.{}", u128::from_be_bytes(bytes))
}

/// 16 upper-case hex digits of HMAC-SHA256(key, "patient" + Patient ID).
pub fn pseudonym(key: &[u8], patient_id: &[u8]) -> String {
    hmac(key, b"patient\0", patient_id)[..8]
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// Days every date of one patient moves back: 1 to 3650, from the key and the Patient ID.
pub fn day_offset(key: &[u8], patient_id: &[u8]) -> i64 {
    let d = hmac(key, b"dates\0", patient_id);
    let n = u64::from_be_bytes(d[..8].try_into().expect("8 bytes"));
    -((n % 3650) as i64 + 1)
}

/// A value without its padding (trailing spaces and NULs) and leading spaces.
pub fn trim(v: &[u8]) -> &[u8] {
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != 0)
        .map_or(0, |i| i + 1);
    let start = v[..end].iter().position(|&b| b != b' ').unwrap_or(end);
    &v[start..end]
}

/// Longest value of each text VR (PS3.5 table 6.2-1), per value of a multi-valued element.
fn max_length(vr: Vr) -> Option<usize> {
    Some(match &vr {
        b"AE" | b"CS" | b"SH" | b"DS" => 16,
        b"AS" => 4,
        b"DA" => 8,
        b"DT" => 26,
        b"IS" => 12,
        b"LO" | b"UI" | b"PN" => 64,
        b"LT" => 10240,
        b"ST" => 1024,
        b"TM" => 14,
        _ => return None,
    })
}

pub fn is_text(vr: Vr) -> bool {
    matches!(
        &vr,
        b"AE"
            | b"AS"
            | b"CS"
            | b"DA"
            | b"DS"
            | b"DT"
            | b"IS"
            | b"LO"
            | b"LT"
            | b"PN"
            | b"SH"
            | b"ST"
            | b"TM"
            | b"UC"
            | b"UI"
            | b"UR"
            | b"UT"
    )
}

/// Text VRs that hold one value (a backslash is an ordinary character).
fn single_valued(vr: Vr) -> bool {
    matches!(&vr, b"LT" | b"ST" | b"UT" | b"UR")
}

/// Encode `text` as a value of `vr` for the output byte order; an error says why it does not
/// fit (too long, wrong characters, a VR that takes no text).
pub fn encode(vr: Vr, text: &str, big: bool, utf8: bool) -> Result<Vec<u8>, String> {
    let name = String::from_utf8_lossy(&vr).into_owned();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    if is_text(vr) {
        if !text.is_ascii() && !utf8 {
            return Err(format!(
                "{text:?} is not ASCII and the dataset's Specific Character Set is not ISO_IR 192"
            ));
        }
        let values: Vec<&str> = if single_valued(vr) {
            vec![text]
        } else {
            text.split('\\').collect()
        };
        for value in &values {
            check_text(vr, value)
                .map_err(|why| format!("{value:?} is not a valid {name}: {why}"))?;
        }
        let mut out = text.as_bytes().to_vec();
        if out.len() % 2 == 1 {
            out.push(vr::padding(vr));
        }
        return Ok(out);
    }
    let mut out = Vec::new();
    for value in text.split('\\') {
        let value = value.trim();
        let bad = || format!("{value:?} is not a valid {name} value");
        macro_rules! put {
            ($t:ty) => {{
                let n: $t = value.parse().map_err(|_| bad())?;
                out.extend_from_slice(&if big {
                    n.to_be_bytes()
                } else {
                    n.to_le_bytes()
                });
            }};
        }
        match &vr {
            b"US" => put!(u16),
            b"SS" => put!(i16),
            b"UL" => put!(u32),
            b"SL" => put!(i32),
            b"UV" => put!(u64),
            b"SV" => put!(i64),
            b"FL" => put!(f32),
            b"FD" => put!(f64),
            b"AT" => {
                let tag = parse_tag(value).ok_or_else(bad)?;
                for half in [(tag >> 16) as u16, tag as u16] {
                    out.extend_from_slice(&if big {
                        half.to_be_bytes()
                    } else {
                        half.to_le_bytes()
                    });
                }
            }
            _ => return Err(format!("a {name} element cannot be set from text")),
        }
    }
    Ok(out)
}

/// `(gggg,eeee)` or `ggggeeee`.
pub fn parse_tag(text: &str) -> Option<u32> {
    let hex: String = text
        .chars()
        .filter(|c| !matches!(c, '(' | ')' | ',' | ' '))
        .collect();
    (hex.len() == 8)
        .then(|| u32::from_str_radix(&hex, 16).ok())
        .flatten()
}

fn check_text(vr: Vr, value: &str) -> Result<(), String> {
    if let Some(max) = max_length(vr) {
        if value.len() > max {
            return Err(format!("longer than {max} characters"));
        }
    }
    let all = |ok: fn(char) -> bool| value.chars().all(ok);
    let fits = match &vr {
        b"UI" => all(|c| c.is_ascii_digit() || c == '.'),
        b"CS" => all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == ' ' || c == '_'),
        b"DA" => value.len() == 8 && all(|c| c.is_ascii_digit()),
        b"TM" => all(|c| c.is_ascii_digit() || c == '.'),
        b"DT" => all(|c| c.is_ascii_digit() || matches!(c, '.' | '+' | '-')),
        b"IS" => value.trim().parse::<i64>().is_ok(),
        b"DS" => value.trim().parse::<f64>().is_ok(),
        b"AS" => {
            value.len() == 4
                && value[..3].chars().all(|c| c.is_ascii_digit())
                && matches!(&value[3..], "D" | "W" | "M" | "Y")
        }
        _ => !value
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\r' | '\n' | '\t' | '\x0c' | '\x1b')),
    };
    if fits {
        Ok(())
    } else {
        Err("characters the VR does not allow".into())
    }
}

/// The D action's value for a VR: a dummy that fits it (binary values keep their length, as
/// zeros); `None` for a sequence, which is kept and edited item by item.
pub fn dummy(vr: Vr, length: usize) -> Option<Vec<u8>> {
    let text: &[u8] = match &vr {
        b"SQ" => return None,
        b"AE" | b"CS" | b"LO" | b"LT" | b"PN" | b"SH" | b"ST" | b"UC" | b"UT" => b"ANONYMIZED",
        b"AS" => b"000Y",
        b"DA" => b"19000101",
        b"DT" => b"19000101000000",
        b"TM" => b"000000",
        b"DS" | b"IS" => b"0 ",
        b"UR" => b"http://anonymized.invalid ",
        b"UI" => b"2.25.0",
        _ => return Some(vec![0; length]),
    };
    Some(text.to_vec())
}

/// Each UID of a UI value mapped; the standard's own (transfer syntaxes, SOP classes, coding
/// schemes: the `1.2.840.10008.` root) kept, or references to them would break.
pub fn map_uids(key: &[u8], value: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(trim(value)).into_owned();
    if text.is_empty() {
        return Vec::new();
    }
    let mapped: Vec<String> = text
        .split('\\')
        .map(|uid| {
            let uid = uid.trim_matches(['\0', ' ']);
            if uid.starts_with("1.2.840.10008.") || uid.is_empty() {
                uid.to_string()
            } else {
                map_uid(key, uid)
            }
        })
        .collect();
    let mut out = mapped.join("\\").into_bytes();
    if out.len() % 2 == 1 {
        out.push(0);
    }
    out
}

/// DA and DT values (each of a multi-value, both ends of a range) moved by `days`; a value
/// that is not a date is an error rather than a date left as it was.
pub fn shift_dates(vr: Vr, value: &[u8], days: i64) -> Result<Vec<u8>, String> {
    let text = String::from_utf8_lossy(trim(value)).into_owned();
    let mut parts = Vec::new();
    for value in text.split('\\') {
        let ends: Result<Vec<String>, String> = value
            .split('-')
            .enumerate()
            .map(|(i, end)| {
                // A DT's "-ZZXX" offset follows a date; only the first part of it is a date.
                if end.is_empty()
                    || (vr == *b"DT" && i > 0 && end.len() == 4 && !value.contains("--"))
                {
                    Ok(end.to_string())
                } else {
                    shift_one(end, days)
                }
            })
            .collect();
        parts.push(ends?.join("-"));
    }
    let mut out = parts.join("\\").into_bytes();
    if out.len() % 2 == 1 {
        out.push(b' ');
    }
    Ok(out)
}

fn shift_one(value: &str, days: i64) -> Result<String, String> {
    let bad = || format!("{value:?} is not a date");
    if value.len() < 8 || !value.as_bytes()[..8].iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let (y, m, d) = (
        value[..4].parse::<i64>().map_err(|_| bad())?,
        value[4..6].parse::<i64>().map_err(|_| bad())?,
        value[6..8].parse::<i64>().map_err(|_| bad())?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let (y, m, d) = civil(days_from_civil(y, m, d) + days);
    Ok(format!("{y:04}{m:02}{d:02}{}", &value[8..]))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_maps_are_keyed_and_deterministic() {
        let a = map_uid(b"key", "1.2.3.4");
        assert_eq!(a, map_uid(b"key", "1.2.3.4"));
        assert_ne!(a, map_uid(b"other", "1.2.3.4"));
        assert_ne!(a, map_uid(b"key", "1.2.3.5"));
        assert!(a.starts_with("2.25.") && a.len() <= 64, "{a}");
        assert!(a[5..].bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(
            map_uids(b"k", b"1.2.840.10008.1.2\\1.2.3\0"),
            format!("1.2.840.10008.1.2\\{}", map_uid(b"k", "1.2.3"))
                .into_bytes()
                .into_iter()
                .chain(std::iter::repeat(0).take((18 + map_uid(b"k", "1.2.3").len()) % 2))
                .collect::<Vec<u8>>()
        );
        assert_eq!(pseudonym(b"k", b"ID1"), pseudonym(b"k", b"ID1"));
        assert_eq!(pseudonym(b"k", b"ID1").len(), 16);
        assert!((-3650..=-1).contains(&day_offset(b"k", b"ID1")));
    }

    #[test]
    fn values_fit_their_vr_or_fail() {
        assert_eq!(encode(*b"LO", "SITE A", false, false).unwrap(), b"SITE A");
        assert_eq!(encode(*b"LO", "ABC", false, false).unwrap(), b"ABC ");
        assert_eq!(encode(*b"UI", "1.2.3", false, false).unwrap(), b"1.2.3\0");
        assert_eq!(encode(*b"US", "1\\2", true, false).unwrap(), [0, 1, 0, 2]);
        assert_eq!(
            encode(*b"AT", "(0010,0020)", false, false).unwrap(),
            [0x10, 0, 0x20, 0]
        );
        assert_eq!(
            encode(*b"FD", "1.5", false, false).unwrap(),
            1.5f64.to_le_bytes()
        );
        assert!(encode(*b"US", "x", false, false).is_err());
        assert!(encode(*b"SH", "seventeen chars!!", false, false).is_err());
        assert!(encode(*b"DA", "2024-01-01", false, false).is_err());
        assert!(encode(*b"CS", "lower", false, false).is_err());
        assert!(encode(*b"OB", "1", false, false).is_err());
        assert!(encode(*b"LO", "Zoë", false, false).is_err());
        assert_eq!(
            encode(*b"LO", "Zoë", false, true).unwrap(),
            "Zoë".as_bytes()
        );
        assert_eq!(encode(*b"OB", "", false, false).unwrap(), b"");
    }

    #[test]
    fn dates_shift_across_months_years_and_ranges() {
        assert_eq!(shift_dates(*b"DA", b"20240301", -1).unwrap(), b"20240229");
        assert_eq!(shift_dates(*b"DA", b"20000101", -1).unwrap(), b"19991231");
        assert_eq!(
            shift_dates(*b"DA", b"20240110-20240120", -10).unwrap(),
            b"20231231-20240110 "
        );
        assert_eq!(
            shift_dates(*b"DT", b"20240101120000.5-0500", -1).unwrap(),
            b"20231231120000.5-0500 "
        );
        assert!(shift_dates(*b"DA", b"hello", -1).is_err());
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil(days_from_civil(1600, 2, 29)), (1600, 2, 29));
    }

    #[test]
    fn rules_pick_exact_then_private_then_masked_then_uids() {
        let rule = |selector, action| Rule {
            selector,
            scope: Scope::Anywhere,
            action,
        };
        let mut plan = Plan::new(vec![
            rule(Selector::Tag(0x0010_0010), Action::Empty),
            rule(
                Selector::Private {
                    group: 0x0009,
                    creator: "KEEP ME".into(),
                    element: 0x01,
                },
                Action::Keep,
            ),
            rule(
                Selector::Masked {
                    mask: 0xFF00_FFFF,
                    value: 0x6000_3000,
                },
                Action::Remove,
            ),
        ]);
        plan.private = Some(Action::Remove);
        plan.map_uids = true;
        assert_eq!(
            plan.action(0x0010_0010, None, &[], None),
            Some(&Action::Empty)
        );
        assert_eq!(
            plan.action(0x0009_1001, None, &[], Some(b"KEEP ME ")),
            Some(&Action::Keep)
        );
        assert_eq!(
            plan.action(0x0009_1002, None, &[], Some(b"KEEP ME")),
            Some(&Action::Remove)
        );
        assert_eq!(plan.action(0x0009_0010, None, &[], Some(b"KEEP ME")), None);
        assert_eq!(
            plan.action(0x0009_0011, None, &[], Some(b"OTHER")),
            Some(&Action::Remove)
        );
        assert_eq!(
            plan.action(0x6002_3000, None, &[], None),
            Some(&Action::Remove)
        );
        assert_eq!(
            plan.action(0x0020_000D, Some(*b"UI"), &[], None),
            Some(&Action::MapUid)
        );
        assert_eq!(plan.action(0x0020_0010, Some(*b"SH"), &[], None), None);
    }
}
