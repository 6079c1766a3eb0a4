//! The upper layer's PDUs (PS3.8 section 9.3) as far as the data path needs them: the PDU
//! header, P-DATA-TF framing of a message into PDVs ([`framing`]), reading one whole PDU from a
//! stream ([`reader`]), and reassembling PDV fragments into messages ([`reassembly`]).
//! The association PDUs themselves are built and read by Python.

pub mod framing;
pub mod reader;
pub mod reassembly;

#[cfg(test)]
mod reader_props;

use crate::error::{Error, Result};

/// PDU header length: type, reserved byte, body length (u32 big endian).
pub const PDU_HEADER: usize = 6;
/// PDU type of P-DATA-TF.
pub const P_DATA_TF: u8 = 0x04;
/// PDU type of A-ABORT.
pub const A_ABORT: u8 = 0x07;

/// Message control header bits of a PDV.
pub const MCH_COMMAND: u8 = 0x01;
pub const MCH_LAST: u8 = 0x02;

fn be32(bytes: &[u8]) -> usize {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize
}

/// The body length a PDU header (its first [`PDU_HEADER`] bytes) announces, refused when over
/// `max`: every reader checks it from the header, before allocating or reading for the body.
pub fn body_length(header: &[u8], max: u64) -> Result<usize> {
    let length = be32(&header[2..PDU_HEADER]);
    if length as u64 > max {
        return Err(Error::PduTooLarge {
            pdu_type: header[0],
            length: length as u32,
            max,
        });
    }
    Ok(length)
}

/// A big-endian u32 length field (PDV item lengths).
pub(crate) fn length_field(bytes: &[u8]) -> usize {
    be32(bytes)
}
