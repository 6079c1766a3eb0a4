//! Ending an association from the receiving side when its receive loop fails: which A-ABORT
//! (PS3.8 table 9-26) a failure calls for, and sending it without letting a peer that does not
//! read hold the connection.

use std::time::Duration;

use crate::error::Error;
use crate::pdu::A_ABORT;
use crate::step::{run_to_end, BufferWriter, Pacer, Stream};

/// A-ABORT source: the service provider.
const PROVIDER: u8 = 2;
// A-ABORT reasons, the source being the service provider.
const REASON_NOT_SPECIFIED: u8 = 0;
const UNRECOGNIZED_PDU: u8 = 1;
const UNEXPECTED_PDU: u8 = 2;
const INVALID_PARAMETER_VALUE: u8 = 6;
/// How long an A-ABORT may take to go out: a peer that does not read must not hold the
/// connection (10 bytes fit any socket buffer not already full).
const ABORT_WAIT: Duration = Duration::from_secs(1);

/// The A-ABORT reason for a failure of the receive loop, or `None` when none is to be sent
/// (the peer is gone or aborted itself, or the failure is ours).
pub fn abort_reason(err: &Error) -> Option<u8> {
    match err {
        Error::Timeout => Some(REASON_NOT_SPECIFIED),
        Error::UnexpectedPdu { .. } => Some(UNEXPECTED_PDU),
        Error::PduTooLarge { pdu_type, .. } if !(1..=7).contains(pdu_type) => {
            Some(UNRECOGNIZED_PDU)
        }
        Error::PduTooLarge { .. } | Error::Protocol(_) => Some(INVALID_PARAMETER_VALUE),
        _ => None,
    }
}

/// Send the A-ABORT `err` calls for (best effort: the error stands either way); true when the
/// association is over on our side.
pub fn abort_for(stream: &mut dyn Stream, err: &Error) -> bool {
    let Some(reason) = abort_reason(err) else {
        return false;
    };
    let pdu = [A_ABORT, 0, 0, 0, 0, 4, 0, 0, PROVIDER, reason];
    let mut pacer = Pacer::whole(Some(ABORT_WAIT));
    let mut writer = BufferWriter::new(&pdu);
    let _ = run_to_end(|| writer.step(stream, &mut pacer), || Ok(()));
    true
}
