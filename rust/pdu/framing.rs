//! P-DATA-TF framing: one PDV per PDU, command fragments first, then dataset fragments.
//!
//! A PDU is `[0x04, 0x00, pdu_len u32 BE][pdv_len u32 BE][context id][message control header]`
//! followed by the fragment; `pdu_len = fragment + 6`, `pdv_len = fragment + 2`.

use super::{MCH_COMMAND, MCH_LAST, P_DATA_TF};
use crate::error::{Error, Result};

/// Fragment size used when the peer's Maximum Length Received is 0 (no limit).
pub const UNLIMITED_FRAGMENT: usize = 1 << 20;
/// Bytes of PDU header plus PDV header in front of every fragment.
pub const PDU_OVERHEAD: usize = 12;

/// Which part of the message a fragment comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Command,
    Dataset,
}

/// One fragment: `len` bytes at `offset` of its part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    pub part: Part,
    pub offset: usize,
    pub len: usize,
    pub last: bool,
}

impl Fragment {
    /// The message control header of this fragment's PDV.
    pub fn mch(&self) -> u8 {
        let command = if self.part == Part::Command {
            MCH_COMMAND
        } else {
            0
        };
        let last = if self.last { MCH_LAST } else { 0 };
        command | last
    }

    /// The 12 header bytes in front of this fragment.
    pub fn header(&self, context_id: u8) -> [u8; PDU_OVERHEAD] {
        // Fragment lengths are bounded by max_pdu - 6, which fits in u32.
        let pdu_len = (self.len + 6) as u32;
        let pdv_len = (self.len + 2) as u32;
        let mut h = [0u8; PDU_OVERHEAD];
        h[0] = P_DATA_TF;
        h[2..6].copy_from_slice(&pdu_len.to_be_bytes());
        h[6..10].copy_from_slice(&pdv_len.to_be_bytes());
        h[10] = context_id;
        h[11] = self.mch();
        h
    }
}

/// The largest fragment for a peer maximum PDU length (`0`: no limit): `max_pdu - 6` rounded
/// down to even.
pub fn fragment_size(max_pdu: u64) -> Result<usize> {
    if max_pdu == 0 {
        return Ok(UNLIMITED_FRAGMENT);
    }
    if max_pdu > u64::from(u32::MAX) {
        return Err(Error::InvalidArgument(format!(
            "max_pdu {max_pdu} does not fit the 32-bit PDU length field"
        )));
    }
    if max_pdu < 8 {
        return Err(Error::InvalidArgument(format!(
            "max_pdu {max_pdu} is too small to carry a fragment (minimum 8)"
        )));
    }
    let frag = (max_pdu - 6) & !1;
    usize::try_from(frag)
        .map_err(|_| Error::InvalidArgument(format!("max_pdu {max_pdu} too large")))
}

/// Check a presentation context ID (1..=255) and return it as a byte.
pub fn context_id(value: i64) -> Result<u8> {
    match u8::try_from(value) {
        Ok(id) if id >= 1 => Ok(id),
        _ => Err(Error::InvalidArgument(format!(
            "context_id {value} is not a presentation context ID (1..255)"
        ))),
    }
}

/// The fragments of one message, in wire order. Cheap to copy; `peek`/`advance` walk it.
#[derive(Debug, Clone)]
pub struct Fragments {
    frag: usize,
    command_len: usize,
    dataset_len: Option<usize>,
    part: Option<Part>,
    offset: usize,
}

impl Fragments {
    pub fn new(command_len: usize, dataset_len: Option<usize>, frag: usize) -> Self {
        assert!(frag >= 2);
        Fragments {
            frag,
            command_len,
            dataset_len,
            part: Some(Part::Command),
            offset: 0,
        }
    }

    fn part_len(&self, part: Part) -> usize {
        match part {
            Part::Command => self.command_len,
            Part::Dataset => self.dataset_len.unwrap_or(0),
        }
    }

    /// The next fragment, without consuming it.
    pub fn peek(&self) -> Option<Fragment> {
        let part = self.part?;
        let total = self.part_len(part);
        let len = self.frag.min(total - self.offset);
        Some(Fragment {
            part,
            offset: self.offset,
            len,
            last: self.offset + len == total,
        })
    }

    /// Consume the fragment `peek` returned.
    pub fn advance(&mut self) {
        let Some(f) = self.peek() else { return };
        if f.last {
            self.offset = 0;
            self.part = match f.part {
                Part::Command if self.dataset_len.is_some() => Some(Part::Dataset),
                _ => None,
            };
        } else {
            self.offset += f.len;
        }
    }

    /// Number of PDUs and total bytes on the wire for the whole message.
    pub fn totals(&self) -> (usize, usize) {
        let count = |n: usize| if n == 0 { 1 } else { n.div_ceil(self.frag) };
        let mut pdus = count(self.command_len);
        let mut bytes = self.command_len;
        if let Some(n) = self.dataset_len {
            pdus += count(n);
            bytes += n;
        }
        (pdus, bytes + pdus * PDU_OVERHEAD)
    }
}

impl Iterator for Fragments {
    type Item = Fragment;
    fn next(&mut self) -> Option<Fragment> {
        let f = self.peek()?;
        self.advance();
        Some(f)
    }
}

/// Frame one message into `out`, which must be exactly [`Fragments::totals`]`.1` bytes long.
pub fn frame_into(
    out: &mut [u8],
    context_id: u8,
    command: &[u8],
    dataset: Option<&[u8]>,
    frag: usize,
) -> usize {
    let mut pos = 0;
    for f in Fragments::new(command.len(), dataset.map(<[u8]>::len), frag) {
        out[pos..pos + PDU_OVERHEAD].copy_from_slice(&f.header(context_id));
        pos += PDU_OVERHEAD;
        let src = match f.part {
            Part::Command => command,
            Part::Dataset => dataset.unwrap_or(&[]),
        };
        out[pos..pos + f.len].copy_from_slice(&src[f.offset..f.offset + f.len]);
        pos += f.len;
    }
    pos
}

/// Frame one message into a new vector.
pub fn frame_message(
    context_id: u8,
    command: &[u8],
    dataset: Option<&[u8]>,
    max_pdu: u64,
) -> Result<Vec<u8>> {
    let frag = fragment_size(max_pdu)?;
    let (_, total) = Fragments::new(command.len(), dataset.map(<[u8]>::len), frag).totals();
    let mut out = vec![0u8; total];
    let written = frame_into(&mut out, context_id, command, dataset, frag);
    debug_assert_eq!(written, total);
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Decode framed bytes back into (context, mch, payload) triples, checking the lengths.
    pub(crate) fn decode(mut bytes: &[u8]) -> Vec<(u8, u8, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            assert_eq!(bytes[0], P_DATA_TF);
            assert_eq!(bytes[1], 0);
            let pdu_len = u32::from_be_bytes(bytes[2..6].try_into().unwrap()) as usize;
            let pdv_len = u32::from_be_bytes(bytes[6..10].try_into().unwrap()) as usize;
            assert_eq!(pdu_len, pdv_len + 4);
            let payload = bytes[12..6 + pdu_len].to_vec();
            out.push((bytes[10], bytes[11], payload));
            bytes = &bytes[6 + pdu_len..];
        }
        out
    }

    fn reassemble(pdus: &[(u8, u8, Vec<u8>)]) -> (Vec<u8>, Option<Vec<u8>>) {
        let mut cmd = Vec::new();
        let mut ds: Option<Vec<u8>> = None;
        for (_, mch, p) in pdus {
            if mch & MCH_COMMAND != 0 {
                assert!(ds.is_none(), "command after dataset");
                cmd.extend_from_slice(p);
            } else {
                ds.get_or_insert_with(Vec::new).extend_from_slice(p);
            }
        }
        (cmd, ds)
    }

    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn fragment_sizes() {
        assert_eq!(fragment_size(0).unwrap(), UNLIMITED_FRAGMENT);
        assert_eq!(fragment_size(4096).unwrap(), 4090);
        assert_eq!(fragment_size(4097).unwrap(), 4090);
        assert_eq!(fragment_size(16384).unwrap(), 16378);
        assert_eq!(fragment_size(8).unwrap(), 2);
        assert_eq!(fragment_size(9).unwrap(), 2);
        assert!(matches!(fragment_size(7), Err(Error::InvalidArgument(_))));
        assert!(matches!(fragment_size(1), Err(Error::InvalidArgument(_))));
        assert!(fragment_size(u64::from(u32::MAX) + 1).is_err());
    }

    #[test]
    fn none_dataset_has_no_dataset_pdvs() {
        let cmd = pattern(100, 1);
        let bytes = frame_message(3, &cmd, None, 0).unwrap();
        let pdus = decode(&bytes);
        assert_eq!(pdus, vec![(3, 0x03, cmd)]);
    }

    #[test]
    fn empty_dataset_is_one_empty_last_pdv() {
        let cmd = pattern(10, 1);
        let bytes = frame_message(1, &cmd, Some(&[]), 4096).unwrap();
        let pdus = decode(&bytes);
        assert_eq!(pdus, vec![(1, 0x03, cmd), (1, 0x02, vec![])]);
        assert_eq!(bytes.len(), 12 + 10 + 12);
    }

    #[test]
    fn exact_multiple_of_fragment() {
        let frag = fragment_size(4096).unwrap();
        let cmd = pattern(frag, 2);
        let ds = pattern(frag * 3, 3);
        let pdus = decode(&frame_message(5, &cmd, Some(&ds), 4096).unwrap());
        let mchs: Vec<u8> = pdus.iter().map(|p| p.1).collect();
        assert_eq!(mchs, vec![0x03, 0x00, 0x00, 0x02]);
        assert!(pdus.iter().all(|p| p.2.len() == frag && p.0 == 5));
        assert_eq!(reassemble(&pdus), (cmd, Some(ds)));
    }

    #[test]
    fn odd_lengths_and_odd_max_pdu() {
        for max_pdu in [8u64, 9, 4095, 4096, 4097, 16385, 0] {
            let frag = fragment_size(max_pdu).unwrap();
            assert_eq!(frag % 2, 0);
            for (c, d) in [(1usize, 1usize), (7, 4091), (4091, 8191), (3, 0), (0, 5)] {
                let cmd = pattern(c, 7);
                let ds = pattern(d, 9);
                let bytes = frame_message(7, &cmd, Some(&ds), max_pdu).unwrap();
                let pdus = decode(&bytes);
                let frags = Fragments::new(c, Some(d), frag);
                assert_eq!(frags.totals(), (pdus.len(), bytes.len()));
                for (i, p) in pdus.iter().enumerate() {
                    assert!(max_pdu == 0 || p.2.len() + 6 <= max_pdu as usize);
                    let is_last_of_part = i + 1 == pdus.len() || (p.1 & 1 != pdus[i + 1].1 & 1);
                    assert_eq!(p.1 & MCH_LAST != 0, is_last_of_part);
                    if !is_last_of_part {
                        assert_eq!(p.2.len(), frag);
                    }
                }
                assert_eq!(reassemble(&pdus), (cmd, Some(ds)));
            }
        }
    }

    #[test]
    fn unlimited_uses_one_mib_fragments() {
        let ds = pattern(UNLIMITED_FRAGMENT * 2 + 10, 1);
        let pdus = decode(&frame_message(1, &[0u8; 4], Some(&ds), 0).unwrap());
        let lens: Vec<usize> = pdus.iter().map(|p| p.2.len()).collect();
        assert_eq!(lens, vec![4, UNLIMITED_FRAGMENT, UNLIMITED_FRAGMENT, 10]);
    }

    #[test]
    fn context_ids() {
        assert_eq!(context_id(1).unwrap(), 1);
        assert_eq!(context_id(255).unwrap(), 255);
        assert!(context_id(0).is_err());
        assert!(context_id(256).is_err());
        assert!(context_id(-1).is_err());
    }
}
