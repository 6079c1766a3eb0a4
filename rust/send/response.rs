//! The requestor's side of a response: the P-DATA-TF bodies that carry it, taken in until its
//! command set is complete and the dataset it may announce (none does for C-STORE or C-ECHO)
//! has gone by, unkept. One call from Python per response instead of a reassembler in Python.

use crate::error::{Error, Result};
use crate::pdu::reassembly::{Reassembler, Step};
use crate::pdu::PDU_HEADER;

/// Command Data Set Type (0000,0800) value for "no dataset" (PS3.7 E.2).
const NO_DATASET: u16 = 0x0101;
const DATA_SET_TYPE: u16 = 0x0800;

fn protocol(msg: String) -> Error {
    Error::Protocol(msg)
}

/// Whether a command set announces a dataset: its (0000,0800) is there and is not 0x0101.
/// Anything malformed reads as no dataset; decoding the command set says what is wrong.
fn announces_dataset(command: &[u8]) -> bool {
    let mut pos = 0;
    while pos + 8 <= command.len() {
        let element = u16::from_le_bytes([command[pos + 2], command[pos + 3]]);
        let length = u32::from_le_bytes([
            command[pos + 4],
            command[pos + 5],
            command[pos + 6],
            command[pos + 7],
        ]) as usize;
        if element == DATA_SET_TYPE {
            return length == 2
                && pos + 10 <= command.len()
                && u16::from_le_bytes([command[pos + 8], command[pos + 9]]) != NO_DATASET;
        }
        pos = match pos.checked_add(8 + length) {
            Some(next) => next,
            None => return false,
        };
    }
    false
}

/// One response being read: feed it each P-DATA-TF body with [`ResponseReader::take`].
pub struct ResponseReader<'a> {
    contexts: &'a [u8],
    max_bytes: u64,
    received: u64,
    reassembler: Reassembler,
    command: Option<(u8, Vec<u8>)>,
}

impl<'a> ResponseReader<'a> {
    /// A response on the presentation contexts `contexts` (the accepted ones), of at most
    /// `max_bytes` in P-DATA-TF PDUs.
    pub fn new(contexts: &'a [u8], max_bytes: u64) -> Self {
        ResponseReader {
            contexts,
            max_bytes,
            received: 0,
            // The response's bound covers its command set: one limit, one message.
            reassembler: Reassembler::new(usize::try_from(max_bytes).unwrap_or(usize::MAX)),
            command: None,
        }
    }

    /// Take in one P-DATA-TF body: the response's (context ID, command set) once it is
    /// complete. PDVs after the response's end in the same body are not read.
    pub fn take(&mut self, body: &[u8]) -> Result<Option<(u8, Vec<u8>)>> {
        self.received += (PDU_HEADER + body.len()) as u64;
        if self.received > self.max_bytes {
            return Err(protocol(format!(
                "response runs past {} bytes",
                self.max_bytes
            )));
        }
        let mut pos = 0;
        while pos < body.len() {
            if pos + 6 > body.len() {
                return Err(protocol("truncated PDV item header".to_string()));
            }
            let length =
                u32::from_be_bytes([body[pos], body[pos + 1], body[pos + 2], body[pos + 3]])
                    as usize;
            if length < 2 || pos + 4 + length > body.len() {
                return Err(protocol(format!(
                    "PDV item length {length} does not fit the P-DATA-TF"
                )));
            }
            let (context_id, mch) = (body[pos + 4], body[pos + 5]);
            if !self.contexts.contains(&context_id) {
                return Err(protocol(format!(
                    "P-DATA on presentation context {context_id}, not accepted"
                )));
            }
            let data = &body[pos + 6..pos + 4 + length];
            pos += 4 + length;
            match self.reassembler.push(context_id, mch, data, true)? {
                Step::Command => {}
                Step::CommandComplete => {
                    let command = self.reassembler.take_command();
                    if !announces_dataset(&command.1) {
                        self.reassembler.finish_command();
                        return Ok(Some(command));
                    }
                    self.reassembler.expect_dataset()?;
                    self.command = Some(command);
                }
                Step::Dataset { last: false } => {}
                Step::Dataset { last: true } => return Ok(self.command.take()),
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::{MCH_COMMAND, MCH_LAST};

    fn pdv(context_id: u8, mch: u8, data: &[u8]) -> Vec<u8> {
        let mut out = ((data.len() + 2) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&[context_id, mch]);
        out.extend_from_slice(data);
        out
    }

    fn element(element: u16, value: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0];
        out.extend_from_slice(&element.to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
        out
    }

    fn command(data_set_type: u16) -> Vec<u8> {
        [
            element(0x0100, &0x8001u16.to_le_bytes()),
            element(0x0800, &data_set_type.to_le_bytes()),
            element(0x0900, &[0, 0]),
        ]
        .concat()
    }

    const LAST_COMMAND: u8 = MCH_COMMAND | MCH_LAST;

    #[test]
    fn a_command_in_fragments_and_pdus_comes_back_whole() {
        let whole = command(NO_DATASET);
        let mut reader = ResponseReader::new(&[1, 3], 1 << 20);
        let first = pdv(3, MCH_COMMAND, &whole[..5]);
        assert_eq!(reader.take(&first).unwrap(), None);
        let rest = [
            pdv(3, MCH_COMMAND, &whole[5..9]),
            pdv(3, LAST_COMMAND, &whole[9..]),
        ]
        .concat();
        assert_eq!(reader.take(&rest).unwrap(), Some((3, whole)));
    }

    #[test]
    fn an_announced_dataset_goes_by_unkept() {
        let whole = command(0x0000);
        let mut reader = ResponseReader::new(&[1], 1 << 20);
        let body = [pdv(1, LAST_COMMAND, &whole), pdv(1, 0, b"data")].concat();
        assert_eq!(reader.take(&body).unwrap(), None);
        assert_eq!(
            reader.take(&pdv(1, MCH_LAST, b"more")).unwrap(),
            Some((1, whole))
        );
    }

    #[test]
    fn what_no_response_may_hold_is_refused() {
        let whole = command(NO_DATASET);
        let refused = |body: &[u8], contexts: &[u8], max: u64| {
            let mut reader = ResponseReader::new(contexts, max);
            match reader.take(body) {
                Err(Error::Protocol(msg)) => msg,
                other => panic!("{other:?}"),
            }
        };
        let body = pdv(5, LAST_COMMAND, &whole);
        assert!(refused(&body, &[1], 1 << 20).contains("context 5, not accepted"));
        assert!(refused(&body, &[5], 10).contains("response runs past 10 bytes"));
        assert!(refused(&body[..3], &[5], 1 << 20).contains("truncated PDV item header"));
        let mut short = body.clone();
        short[..4].copy_from_slice(&1000u32.to_be_bytes());
        assert!(refused(&short, &[5], 1 << 20).contains("does not fit"));
        assert!(
            refused(&pdv(5, MCH_LAST, b"xx"), &[5], 1 << 20).contains("command set was expected")
        );
    }

    #[test]
    fn a_malformed_data_set_type_reads_as_no_dataset() {
        assert!(!announces_dataset(&element(0x0800, &[1])));
        assert!(!announces_dataset(&[0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff]));
        assert!(announces_dataset(&command(0xFEFE)));
        assert!(!announces_dataset(&command(NO_DATASET)));
    }
}
