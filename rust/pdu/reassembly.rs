//! PDV reassembly: the PDV fragments of P-DATA-TF PDUs turned back into DIMSE messages.
//!
//! A message is its command set (collected here, bounded) and, when the command says so, a
//! dataset (handed on fragment by fragment: the caller streams it wherever it goes). The rules
//! checked are the ones PS3.8 annex E sets for one message: every fragment on one presentation
//! context, the command before the dataset, nothing after a fragment marked last. Whether a
//! dataset follows is for the caller to decide from the command set: this module knows no DIMSE.
//! Plain Rust with no I/O, so both directions (a response read by the SCU, a request by the
//! SCP) can use it.

use super::{MCH_COMMAND, MCH_LAST};
use crate::error::{Error, Result};

/// Largest command set accepted: real ones are a few hundred bytes.
pub const MAX_COMMAND: usize = 64 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Collecting command fragments (or idle between messages when nothing is collected).
    Command,
    /// The command set is complete; the caller has not said yet whether a dataset follows.
    Decided,
    /// Passing dataset fragments on.
    Dataset,
}

/// What one fragment did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Part of a command set, taken in.
    Command,
    /// The command set is now complete: [`Reassembler::take_command`].
    CommandComplete,
    /// The fragment is dataset bytes; `last` when it ends the dataset (and the message).
    Dataset { last: bool },
}

/// The state of the message being received on one association.
#[derive(Debug)]
pub struct Reassembler {
    phase: Phase,
    context_id: Option<u8>,
    command: Vec<u8>,
    max_command: usize,
}

impl Default for Reassembler {
    fn default() -> Self {
        Self::new(MAX_COMMAND)
    }
}

fn protocol(msg: String) -> Error {
    Error::Protocol(msg)
}

impl Reassembler {
    pub fn new(max_command: usize) -> Self {
        Reassembler {
            phase: Phase::Command,
            context_id: None,
            command: Vec::new(),
            max_command,
        }
    }

    /// Whether a message is under way (a fragment of it arrived, its end did not).
    pub fn in_message(&self) -> bool {
        self.phase != Phase::Command || self.context_id.is_some()
    }

    /// The presentation context of the message under way.
    pub fn context_id(&self) -> Option<u8> {
        self.context_id
    }

    /// Take in `data`, a piece of a PDV on `context_id` with message control header `mch`;
    /// `end_of_pdv` when it is the PDV's last piece (a PDV may arrive in several pieces, and
    /// its last-fragment bit only applies at its end).
    pub fn push(&mut self, context_id: u8, mch: u8, data: &[u8], end_of_pdv: bool) -> Result<Step> {
        if mch & !(MCH_COMMAND | MCH_LAST) != 0 {
            return Err(protocol(format!(
                "PDV message control header 0x{mch:02X} has reserved bits set"
            )));
        }
        match self.context_id {
            Some(current) if current != context_id => {
                return Err(protocol(format!(
                    "PDV on presentation context {context_id} in the middle of a message on \
                     context {current}"
                )))
            }
            _ => self.context_id = Some(context_id),
        }
        let is_command = mch & MCH_COMMAND != 0;
        let last = end_of_pdv && mch & MCH_LAST != 0;
        match self.phase {
            Phase::Command if is_command => {
                if self.command.len() + data.len() > self.max_command {
                    return Err(protocol(format!(
                        "command set longer than {} bytes",
                        self.max_command
                    )));
                }
                self.command.extend_from_slice(data);
                if last {
                    self.phase = Phase::Decided;
                    return Ok(Step::CommandComplete);
                }
                Ok(Step::Command)
            }
            Phase::Command => Err(protocol(
                "dataset PDV where a command set was expected".to_string(),
            )),
            Phase::Decided => Err(protocol(
                "PDV after a complete command set that announced no dataset".to_string(),
            )),
            Phase::Dataset if is_command => Err(protocol(
                "command PDV in the middle of a dataset".to_string(),
            )),
            Phase::Dataset => {
                if last {
                    self.reset();
                }
                Ok(Step::Dataset { last })
            }
        }
    }

    /// The complete command set (after [`Step::CommandComplete`]) and its context.
    pub fn take_command(&mut self) -> (u8, Vec<u8>) {
        let command = std::mem::take(&mut self.command);
        (self.context_id.unwrap_or(0), command)
    }

    /// The command announced a dataset: the next fragments are its bytes.
    pub fn expect_dataset(&mut self) -> Result<()> {
        if self.phase != Phase::Decided {
            return Err(Error::InvalidArgument(
                "no complete command set is waiting for its dataset".to_string(),
            ));
        }
        self.phase = Phase::Dataset;
        Ok(())
    }

    /// The command announced no dataset: the message is complete. A no-op between messages.
    pub fn finish_command(&mut self) {
        if self.phase == Phase::Decided {
            self.reset();
        }
    }

    fn reset(&mut self) {
        self.phase = Phase::Command;
        self.context_id = None;
        self.command.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CMD: u8 = MCH_COMMAND;
    const CMD_LAST: u8 = MCH_COMMAND | MCH_LAST;
    const DATA: u8 = 0;
    const DATA_LAST: u8 = MCH_LAST;

    #[test]
    fn command_then_dataset_in_pieces() {
        let mut r = Reassembler::default();
        assert!(!r.in_message());
        assert_eq!(r.push(3, CMD, b"ab", true).unwrap(), Step::Command);
        // The last bit of a PDV only counts at the PDV's end.
        assert_eq!(r.push(3, CMD_LAST, b"cd", false).unwrap(), Step::Command);
        assert_eq!(
            r.push(3, CMD_LAST, b"ef", true).unwrap(),
            Step::CommandComplete
        );
        assert_eq!(r.take_command(), (3, b"abcdef".to_vec()));
        r.expect_dataset().unwrap();
        assert_eq!(
            r.push(3, DATA_LAST, b"12", false).unwrap(),
            Step::Dataset { last: false }
        );
        assert_eq!(
            r.push(3, DATA, b"34", true).unwrap(),
            Step::Dataset { last: false }
        );
        assert!(r.in_message());
        assert_eq!(
            r.push(3, DATA_LAST, b"", true).unwrap(),
            Step::Dataset { last: true }
        );
        assert!(!r.in_message());
        // The next message may use another context.
        assert_eq!(
            r.push(5, CMD_LAST, b"x", true).unwrap(),
            Step::CommandComplete
        );
        assert_eq!(r.take_command(), (5, b"x".to_vec()));
        r.finish_command();
        assert!(!r.in_message());
    }

    #[test]
    fn protocol_violations() {
        let mut r = Reassembler::default();
        assert!(matches!(
            r.push(1, DATA, b"", true),
            Err(Error::Protocol(_))
        ));

        let mut r = Reassembler::default();
        r.push(1, CMD, b"a", true).unwrap();
        assert!(matches!(
            r.push(2, CMD_LAST, b"b", true),
            Err(Error::Protocol(_))
        ));

        let mut r = Reassembler::default();
        r.push(1, CMD_LAST, b"a", true).unwrap();
        assert!(matches!(
            r.push(1, DATA, b"", true),
            Err(Error::Protocol(_))
        ));
        r.expect_dataset().unwrap();
        assert!(matches!(r.push(1, CMD, b"", true), Err(Error::Protocol(_))));

        let mut r = Reassembler::default();
        assert!(matches!(
            r.push(1, 0x04, b"", true),
            Err(Error::Protocol(_))
        ));
        assert!(matches!(r.expect_dataset(), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn command_size_is_bounded() {
        let mut r = Reassembler::new(10);
        r.push(1, CMD, &[0; 6], true).unwrap();
        assert!(matches!(
            r.push(1, CMD, &[0; 6], true),
            Err(Error::Protocol(_))
        ));
    }
}
