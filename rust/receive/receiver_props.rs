//! Property tests (quickcheck) of the receive loop: framed messages come back whole whatever the
//! PDU size and read chunking, and arbitrary bytes — what a hostile sender can send — end in a
//! message, a PDU or an error, never a panic or a loop.

use quickcheck::{QuickCheck, TestResult};

use super::receiver::{Next, Receiver};
use super::sink::DatasetSink;
use crate::error::Error;
use crate::pdu::framing::frame_message;
use crate::step::{Pacer, Progress};
use crate::testing::Replay;

/// A message as received: context, command set, dataset (if one was taken).
type Message = (u8, Vec<u8>, Option<Vec<u8>>);

/// Everything the receiver makes of `data`: each message's command and dataset, then how it
/// ended. `datasets` says, per command, whether to take a dataset after it.
fn receive_all(
    data: Vec<u8>,
    chunks: Vec<u8>,
    max_pdata: u64,
    datasets: &[bool],
) -> (Vec<Message>, Error) {
    let mut stream = Replay::new(data, chunks);
    let mut receiver = Receiver::default();
    let mut pacer = Pacer::new(None);
    let mut messages = Vec::new();
    loop {
        let next = loop {
            match receiver.next_step(&mut stream, &mut pacer, max_pdata) {
                Ok(Some(next)) => break next,
                Ok(None) => {}
                Err(e) => return (messages, e),
            }
        };
        let Next::Command {
            context_id,
            command,
        } = next
        else {
            return (messages, Error::Protocol("a PDU between messages".into()));
        };
        if !datasets.get(messages.len()).copied().unwrap_or(true) {
            messages.push((context_id, command, None));
            continue;
        }
        if let Err(e) = receiver.start_dataset() {
            return (messages, e);
        }
        let mut sink = DatasetSink::memory(0);
        loop {
            match receiver.dataset_step(&mut stream, &mut pacer, max_pdata, &mut sink) {
                Ok(Progress::Done) => break,
                Ok(Progress::Pending) => {}
                Err(e) => return (messages, e),
            }
        }
        messages.push((context_id, command, sink.finish().data));
    }
}

fn messages_round_trip(
    messages: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    max_pdu: u16,
    chunks: Vec<u8>,
) -> TestResult {
    let max_pdu = 8 + u64::from(max_pdu);
    let mut wire = Vec::new();
    for (i, (command, dataset)) in messages.iter().enumerate() {
        let context = 1 + (i % 127) as u8 * 2;
        wire.extend(frame_message(context, command, dataset.as_deref(), max_pdu).unwrap());
    }
    let datasets: Vec<bool> = messages.iter().map(|(_, d)| d.is_some()).collect();
    let (got, end) = receive_all(wire, chunks, max_pdu, &datasets);
    let expected: Vec<_> = messages
        .into_iter()
        .enumerate()
        .map(|(i, (c, d))| (1 + (i % 127) as u8 * 2, c, d))
        .collect();
    TestResult::from_bool(got == expected && matches!(end, Error::PeerClosed { mid_pdu: false }))
}

#[test]
fn framed_messages_come_back_whole() {
    QuickCheck::new().tests(500).quickcheck(
        messages_round_trip as fn(Vec<(Vec<u8>, Option<Vec<u8>>)>, u16, Vec<u8>) -> TestResult,
    );
}

/// Arbitrary bytes after an optional well-formed message: the receiver stops with an error
/// (or a PDU it hands back), and one it names: never a panic, never an endless loop.
fn arbitrary_bytes_end_cleanly(prefix: bool, data: Vec<u8>, chunks: Vec<u8>, max: u16) -> bool {
    let max = 8 + u64::from(max);
    let mut wire = if prefix {
        frame_message(1, b"cmd", Some(b"data"), max).unwrap()
    } else {
        Vec::new()
    };
    wire.extend(data);
    let (_, end) = receive_all(wire, chunks, max, &[]);
    matches!(
        end,
        Error::PeerClosed { .. }
            | Error::PduTooLarge { .. }
            | Error::Protocol(_)
            | Error::UnexpectedPdu { .. }
            | Error::PeerAborted { .. }
    )
}

#[test]
fn arbitrary_bytes_end_in_a_named_error() {
    QuickCheck::new()
        .tests(5000)
        .quickcheck(arbitrary_bytes_end_cleanly as fn(bool, Vec<u8>, Vec<u8>, u16) -> bool);
}

/// Plausible P-DATA-TF headers around random PDV items: lengths that fit, overrun or undershoot.
fn plausible_pdata(items: Vec<(u16, u8, u8, Vec<u8>)>, chunks: Vec<u8>) -> bool {
    let mut body = Vec::new();
    for (length, context, mch, payload) in items {
        body.extend_from_slice(&u32::from(length % 64).to_be_bytes());
        body.push(context);
        body.push(mch % 4);
        body.extend(payload.into_iter().take(62));
    }
    let mut wire = vec![0x04, 0];
    wire.extend_from_slice(&(body.len() as u32).to_be_bytes());
    wire.extend(body);
    arbitrary_bytes_end_cleanly(false, wire, chunks, u16::MAX)
}

#[test]
fn plausible_pdata_ends_in_a_named_error() {
    QuickCheck::new()
        .tests(5000)
        .quickcheck(plausible_pdata as fn(Vec<(u16, u8, u8, Vec<u8>)>, Vec<u8>) -> bool);
}
