//! The receive loop of an association: each message reassembled from the PDVs the
//! [`Inbound`] parser finds in its read buffer — its command set handed back to the caller, its
//! dataset streamed into a [`DatasetSink`] (a file, memory, nowhere) straight from the read
//! buffer.
//!
//! Every operation is a `step` doing a bounded amount of work (a few reads, or one wait of at
//! most [`crate::step::WAIT_SLICE`]) so the Python layer can release the GIL for each step and
//! check signals between them. What the messages mean (which commands have a dataset, what to
//! answer) is the caller's business.

use std::ops::Range;

use super::inbound::{Inbound, Unit, Wire};
use super::sink::DatasetSink;
use crate::error::{Error, Result};
use crate::pdu::reassembly::{Reassembler, Step};
use crate::pdu::{A_ABORT, PDU_HEADER};
use crate::step::{Pacer, Progress, Stream};

/// Bytes read from the socket at most per `read` once an association is up: one large buffer,
/// whatever the PDU size.
pub const READ_BUFFER: usize = 4 << 20;
/// Largest PDU other than P-DATA-TF taken once the association is up (A-RELEASE-RQ and
/// A-ABORT carry 4 bytes).
pub const MAX_CONTROL_PDU: u64 = 64 << 10;
/// Largest PDU [`Receiver::recv_pdu`] may be asked for: it must fit the read buffer.
pub const MAX_WHOLE_PDU: u64 = (READ_BUFFER - PDU_HEADER) as u64;
/// Dataset bytes taken per step before control goes back to the caller.
const STEP_BYTES: u64 = 32 << 20;

/// What the peer sent next, between messages.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A complete command set; the caller says next whether a dataset follows.
    Command { context_id: u8, command: Vec<u8> },
    /// A whole PDU other than P-DATA-TF (A-RELEASE-RQ, A-ABORT, or one that has no place here).
    Pdu { pdu_type: u8, body: Vec<u8> },
}

/// A PDU other than P-DATA-TF where a message was under way.
fn mid_message(pdu_type: u8, body: &[u8]) -> Error {
    if pdu_type == A_ABORT && body.len() >= 4 {
        return Error::PeerAborted {
            source: body[2],
            reason: body[3],
        };
    }
    Error::UnexpectedPdu { pdu_type }
}

/// The receiving half of one association.
#[derive(Default)]
pub struct Receiver {
    inbound: Inbound,
    reassembler: Reassembler,
    pieces: Vec<Range<usize>>,
    dataset_bytes: u64,
}

impl Receiver {
    /// One step of reading a whole PDU of at most `max_length` bytes (the A-ASSOCIATE-RQ):
    /// `Some` once it is in.
    pub fn recv_pdu_step<S: Stream + ?Sized>(
        &mut self,
        stream: &mut S,
        pacer: &mut Pacer,
        max_length: u64,
    ) -> Result<Option<(u8, Vec<u8>)>> {
        let max_length = max_length.min(MAX_WHOLE_PDU);
        loop {
            if self.inbound.wire == Wire::Pdu {
                if let Some(Unit::Pdu { pdu_type, body }) = self.inbound.next_unit(0, max_length)? {
                    return Ok(Some((pdu_type, body)));
                }
                // A P-DATA-TF is refused by the limit of 0 above.
            }
            if self.inbound.fill(stream, pacer)? == Progress::Pending {
                return Ok(None);
            }
        }
    }

    /// One step of waiting for the next command set (or another PDU): `Some` when it came.
    /// Ends the previous message if it was a command without a dataset.
    pub fn next_step<S: Stream + ?Sized>(
        &mut self,
        stream: &mut S,
        pacer: &mut Pacer,
        max_pdata: u64,
    ) -> Result<Option<Next>> {
        self.reassembler.finish_command();
        self.inbound.grow(READ_BUFFER);
        loop {
            while let Some(unit) = self.inbound.next_unit(max_pdata, MAX_CONTROL_PDU)? {
                match unit {
                    Unit::Pdu { pdu_type, body } => {
                        if self.reassembler.in_message() {
                            return Err(mid_message(pdu_type, &body));
                        }
                        return Ok(Some(Next::Pdu { pdu_type, body }));
                    }
                    Unit::Fragment {
                        context_id,
                        mch,
                        range,
                        end_of_pdv,
                    } => {
                        let data = &self.inbound.bytes()[range];
                        if self.reassembler.push(context_id, mch, data, end_of_pdv)?
                            == Step::CommandComplete
                        {
                            let (context_id, command) = self.reassembler.take_command();
                            return Ok(Some(Next::Command {
                                context_id,
                                command,
                            }));
                        }
                    }
                }
            }
            if self.inbound.fill(stream, pacer)? == Progress::Pending {
                return Ok(None);
            }
        }
    }

    /// The command just returned announced a dataset: receive it into `sink` by steps.
    pub fn start_dataset(&mut self) -> Result<()> {
        self.inbound.grow(READ_BUFFER);
        self.dataset_bytes = 0;
        self.reassembler.expect_dataset()
    }

    /// One step of receiving the dataset: `Done` when its last fragment went into `sink`.
    /// Failures of the sink do not stop the receiving (the sink records them); failures of
    /// the association do.
    pub fn dataset_step<S: Stream + ?Sized>(
        &mut self,
        stream: &mut S,
        pacer: &mut Pacer,
        max_pdata: u64,
        sink: &mut DatasetSink,
    ) -> Result<Progress> {
        let start = self.dataset_bytes;
        loop {
            self.pieces.clear();
            let mut last = false;
            while !last {
                let Some(unit) = self.inbound.next_unit(max_pdata, MAX_CONTROL_PDU)? else {
                    break;
                };
                match unit {
                    Unit::Pdu { pdu_type, body } => return Err(mid_message(pdu_type, &body)),
                    Unit::Fragment {
                        context_id,
                        mch,
                        range,
                        end_of_pdv,
                    } => {
                        let data = &self.inbound.bytes()[range.clone()];
                        if let Step::Dataset { last: end } =
                            self.reassembler.push(context_id, mch, data, end_of_pdv)?
                        {
                            self.dataset_bytes += range.len() as u64;
                            self.pieces.push(range);
                            last = end;
                        }
                    }
                }
            }
            sink.write(self.inbound.bytes(), &self.pieces);
            if last {
                return Ok(Progress::Done);
            }
            if self.dataset_bytes - start >= STEP_BYTES
                || self.inbound.fill(stream, pacer)? == Progress::Pending
            {
                return Ok(Progress::Pending);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::FdStream;
    use crate::pdu::framing::frame_message;
    use crate::step::run_to_end;
    use crate::testing::{pdu, socketpair};
    use std::io::{IoSlice, Write};
    use std::time::Duration;

    /// Feed `bytes` to a receiver in a writer thread, in chunks of `chunk` bytes.
    fn feeder(bytes: Vec<u8>, chunk: usize) -> (FdStream, std::thread::JoinHandle<()>) {
        let (a, b) = socketpair();
        let writer = std::thread::spawn(move || {
            let mut f = std::fs::File::from(a);
            for part in bytes.chunks(chunk.max(1)) {
                if f.write_all(part).is_err() {
                    return;
                }
            }
        });
        (FdStream::new(b, true).unwrap(), writer)
    }

    fn pacer() -> Pacer {
        Pacer::new(Some(Duration::from_secs(5)))
    }

    fn next(r: &mut Receiver, s: &mut FdStream, max: u64) -> Result<Next> {
        let mut p = pacer();
        loop {
            if let Some(n) = r.next_step(s, &mut p, max)? {
                return Ok(n);
            }
        }
    }

    fn dataset(r: &mut Receiver, s: &mut FdStream, max: u64, sink: &mut DatasetSink) -> Result<()> {
        r.start_dataset()?;
        let mut p = pacer();
        run_to_end(|| r.dataset_step(s, &mut p, max, sink), || Ok(()))
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 253) as u8).collect()
    }

    #[test]
    fn messages_round_trip_whatever_the_chunking() {
        let ds = pattern(300_001);
        for (max_pdu, chunk) in [(16384u64, 7usize), (4096, 4096), (0, 1 << 20), (100, 1)] {
            let mut wire = frame_message(1, b"command-one", Some(&ds), max_pdu).unwrap();
            wire.extend(frame_message(3, b"echo", None, max_pdu).unwrap());
            wire.extend(pdu(0x05, &[0; 4]));
            let (mut s, writer) = feeder(wire, chunk);
            let mut r = Receiver::default();
            let limit = if max_pdu == 0 { 1 << 21 } else { max_pdu };
            assert_eq!(
                next(&mut r, &mut s, limit).unwrap(),
                Next::Command {
                    context_id: 1,
                    command: b"command-one".to_vec()
                }
            );
            let mut sink = DatasetSink::memory(16);
            dataset(&mut r, &mut s, limit, &mut sink).unwrap();
            let done = sink.finish();
            assert_eq!(done.size, ds.len() as u64);
            assert_eq!(done.head, ds[..16].to_vec());
            assert!(done.data.unwrap() == ds);
            assert_eq!(
                next(&mut r, &mut s, limit).unwrap(),
                Next::Command {
                    context_id: 3,
                    command: b"echo".to_vec()
                }
            );
            assert_eq!(
                next(&mut r, &mut s, limit).unwrap(),
                Next::Pdu {
                    pdu_type: 0x05,
                    body: vec![0; 4]
                }
            );
            writer.join().unwrap();
        }
    }

    #[test]
    fn oversized_pdu_refused_from_its_header() {
        let (a, b) = socketpair();
        let mut s = FdStream::new(b, true).unwrap();
        let mut w = FdStream::new(a, true).unwrap();
        w.write_vectored(&[IoSlice::new(&[0x04, 0, 0xFF, 0xFF, 0xFF, 0xF0])])
            .unwrap();
        let mut r = Receiver::default();
        match next(&mut r, &mut s, 16384) {
            Err(Error::PduTooLarge {
                pdu_type: 4,
                max: 16384,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        // A control PDU is bounded too.
        let mut r = Receiver::default();
        let (mut s, _w) = feeder(vec![0x07, 0, 0, 1, 0, 1], 6);
        assert!(matches!(
            next(&mut r, &mut s, 16384),
            Err(Error::PduTooLarge { pdu_type: 7, .. })
        ));
    }

    #[test]
    fn malformed_pdvs() {
        let bad = [
            // A PDV item longer than its PDU.
            pdu(0x04, &[0, 0, 0, 9, 1, 3, 0, 0]),
            // A PDV item of length 1 (no room for its header bytes).
            pdu(0x04, &[0, 0, 0, 1, 1]),
            // A P-DATA-TF without PDV.
            pdu(0x04, &[]),
            // A body too short for a PDV item header.
            pdu(0x04, &[0, 0, 0]),
            // Dataset before any command.
            pdu(0x04, &[0, 0, 0, 4, 1, 2, 0, 0]),
        ];
        for wire in bad {
            let (mut s, _w) = feeder(wire.clone(), 3);
            let mut r = Receiver::default();
            match next(&mut r, &mut s, 16384) {
                Err(Error::Protocol(_)) => {}
                other => panic!("{wire:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn abort_release_and_eof_in_the_middle_of_a_dataset() {
        let ds = pattern(10_000);
        let full = frame_message(1, b"cmd", Some(&ds), 4096).unwrap();
        for (tail, expect) in [
            (pdu(0x07, &[0, 0, 2, 1]), "abort"),
            (pdu(0x05, &[0; 4]), "protocol"),
            (Vec::new(), "closed"),
        ] {
            let mut wire = full.clone();
            // Cut after the command and one dataset PDU, so the tail parses as a PDU.
            let boundary = (12 + 3) + (12 + 4090);
            wire.truncate(boundary);
            wire.extend(tail);
            let (mut s, w) = feeder(wire, 1000);
            let mut r = Receiver::default();
            next(&mut r, &mut s, 4096).unwrap();
            let mut sink = DatasetSink::memory(0);
            let err = dataset(&mut r, &mut s, 4096, &mut sink).unwrap_err();
            w.join().unwrap();
            match (expect, err) {
                (
                    "abort",
                    Error::PeerAborted {
                        source: 2,
                        reason: 1,
                    },
                ) => {}
                ("protocol", Error::UnexpectedPdu { pdu_type: 5 }) => {}
                ("closed", Error::PeerClosed { .. }) => {}
                (e, other) => panic!("{e}: {other:?}"),
            }
        }
    }

    #[test]
    fn stalled_sender_times_out() {
        let ds = pattern(10_000);
        let full = frame_message(1, b"cmd", Some(&ds), 4096).unwrap();
        let (a, b) = socketpair();
        let mut w = FdStream::new(a, true).unwrap();
        w.write_vectored(&[IoSlice::new(&full[..6000])]).unwrap();
        let mut s = FdStream::new(b, true).unwrap();
        let mut r = Receiver::default();
        next(&mut r, &mut s, 4096).unwrap();
        r.start_dataset().unwrap();
        let mut p = Pacer::new(Some(Duration::from_millis(50)));
        let mut sink = DatasetSink::memory(0);
        let result = run_to_end(
            || r.dataset_step(&mut s, &mut p, 4096, &mut sink),
            || Ok(()),
        );
        assert!(matches!(result, Err(Error::Timeout)), "{result:?}");
    }

    #[test]
    fn trickling_sender_times_out_one_pdu_timeout_after_its_pdu_began() {
        let (a, b) = socketpair();
        let writer = std::thread::spawn(move || {
            let mut f = std::fs::File::from(a);
            // A P-DATA-TF of 100 bytes, one command PDV, its payload a byte every 20 ms: a
            // stall timer of 150 ms would never fire.
            let _ = f.write_all(&[0x04, 0, 0, 0, 0, 100, 0, 0, 0, 96, 1, 1]);
            for _ in 0..100 {
                if f.write_all(&[0]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let mut s = FdStream::new(b, true).unwrap();
        let mut r = Receiver::default();
        let mut p = Pacer::new(Some(Duration::from_millis(150)));
        let started = std::time::Instant::now();
        let result = loop {
            match r.next_step(&mut s, &mut p, 16384) {
                Ok(None) => continue,
                other => break other,
            }
        };
        assert!(matches!(result, Err(Error::Timeout)), "{result:?}");
        assert!(started.elapsed() < Duration::from_millis(600));
        drop(s);
        writer.join().unwrap();
    }

    #[test]
    fn small_buffer_until_the_association_is_up() {
        let body = pattern(200_000);
        let mut wire = pdu(0x01, &body);
        wire.extend(frame_message(1, b"echo", None, 16384).unwrap());
        let (mut s, _w) = feeder(wire, 4096);
        let mut r = Receiver::default();
        assert_eq!(r.inbound.capacity(), crate::receive::inbound::FIRST_BUFFER);
        let mut p = pacer();
        let got = loop {
            if let Some(got) = r.recv_pdu_step(&mut s, &mut p, 1 << 20).unwrap() {
                break got;
            }
        };
        assert_eq!(got, (0x01, body));
        // Grown by doubling to the request's declared length, no further.
        assert_eq!(r.inbound.capacity(), PDU_HEADER + 200_000);
        assert_eq!(
            next(&mut r, &mut s, 16384).unwrap(),
            Next::Command {
                context_id: 1,
                command: b"echo".to_vec()
            }
        );
        assert_eq!(r.inbound.capacity(), READ_BUFFER);
    }

    #[test]
    fn whole_pdu_for_the_association_request() {
        let body = pattern(70_000);
        let (mut s, _w) = feeder(pdu(0x01, &body), 999);
        let mut r = Receiver::default();
        let mut p = pacer();
        let got = loop {
            if let Some(got) = r.recv_pdu_step(&mut s, &mut p, 1 << 20).unwrap() {
                break got;
            }
        };
        assert_eq!(got, (0x01, body));
        let (mut s, _w) = feeder(pdu(0x01, &[0; 100]), 999);
        let mut r = Receiver::default();
        let refused = loop {
            match r.recv_pdu_step(&mut s, &mut p, 99) {
                Ok(None) => continue,
                other => break other,
            }
        };
        assert!(
            matches!(refused, Err(Error::PduTooLarge { .. })),
            "{refused:?}"
        );
    }
}
