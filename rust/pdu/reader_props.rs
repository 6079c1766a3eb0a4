//! Property tests (quickcheck) of [`PduReader`]: arbitrary bytes in arbitrary chunks — the
//! fuzzing of what a hostile peer can send — end in exactly the PDU the header announces, a
//! refusal before allocating, or the stream ending early.

use quickcheck::{QuickCheck, TestResult};

use super::reader::PduReader;
use crate::error::Error;
use crate::step::{run_to_end, Pacer};
use crate::testing::Replay;

fn read_one(data: Vec<u8>, chunks: Vec<u8>, max: u64) -> crate::Result<(u8, Vec<u8>)> {
    let mut stream = Replay::new(data, chunks);
    let mut reader = PduReader::new(max);
    // No timeout: the replay never stalls for long, and every path must end on its own.
    let mut pacer = Pacer::new(None);
    run_to_end(|| reader.step(&mut stream, &mut pacer), || Ok(()))?;
    Ok(reader.into_pdu())
}

/// Whatever the bytes, the reader returns exactly the PDU the header announces, or refuses an
/// oversized one before allocating, or reports the stream ending early — never anything else.
fn reader_matches_the_header(data: Vec<u8>, chunks: Vec<u8>, max: u32) -> TestResult {
    let max = u64::from(max % (1 << 20));
    match read_one(data.clone(), chunks, max) {
        Ok((pdu_type, body)) => {
            let length = u32::from_be_bytes([data[2], data[3], data[4], data[5]]) as usize;
            TestResult::from_bool(
                pdu_type == data[0]
                    && body.len() == length
                    && length as u64 <= max
                    && body[..] == data[6..6 + length],
            )
        }
        Err(Error::PduTooLarge { length, .. }) => {
            TestResult::from_bool(data.len() >= 6 && u64::from(length) > max)
        }
        Err(Error::PeerClosed { mid_pdu }) => {
            let short = data.len() < 6
                || data.len() - 6
                    < u32::from_be_bytes([data[2], data[3], data[4], data[5]]) as usize;
            // Mid-PDU exactly when some byte of the PDU arrived before the end.
            let started = !data.is_empty();
            TestResult::from_bool(short && mid_pdu == started)
        }
        Err(other) => TestResult::error(format!("unexpected error {other:?}")),
    }
}

#[test]
fn pdu_reader_on_arbitrary_bytes() {
    QuickCheck::new()
        .tests(5000)
        .quickcheck(reader_matches_the_header as fn(Vec<u8>, Vec<u8>, u32) -> TestResult);
}

/// Headers with the length field set from the generator, so long and huge lengths are common
/// (random bytes almost never make a PDU short enough to complete).
fn reader_on_plausible_pdus(
    pdu_type: u8,
    length: u32,
    body: Vec<u8>,
    chunks: Vec<u8>,
) -> TestResult {
    let length = if length % 4 == 0 {
        length
    } else {
        length % 300
    };
    let mut data = vec![pdu_type, 0];
    data.extend_from_slice(&length.to_be_bytes());
    data.extend_from_slice(&body);
    reader_matches_the_header(data, chunks, 16384)
}

#[test]
fn pdu_reader_on_plausible_pdus() {
    QuickCheck::new()
        .tests(5000)
        .quickcheck(reader_on_plausible_pdus as fn(u8, u32, Vec<u8>, Vec<u8>) -> TestResult);
}
