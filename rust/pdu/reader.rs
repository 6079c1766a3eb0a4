//! Reading one whole PDU at a time, the way a requestor reads its peer's answers: the header
//! first, then exactly the body it announces (allocated once its length passed the limit, with
//! [`super::body_length`], the check the receive loop uses too), nothing read ahead, and
//! TCP_QUICKACK asked before each read, since the peer is waiting for our ACK.
//!
//! The receive loop (`receive::inbound`) reads differently on purpose: large reads ahead into a
//! buffer it keeps for the association, P-DATA-TF bodies split into PDVs in place, and read
//! timeouts counted by whole PDUs against a stranger; this reader holds no buffer between PDUs
//! and bounds stalls, as a client talking to a peer it chose wants.

use std::io;

use super::{body_length, PDU_HEADER};
use crate::error::{Error, Result};
use crate::step::{Direction, Pacer, Progress, Stream};

/// Reads one whole PDU, refusing one longer than `max_length` before allocating for it.
pub struct PduReader {
    max_length: u64,
    header: [u8; PDU_HEADER],
    header_got: usize,
    body: Vec<u8>,
    body_got: usize,
}

impl PduReader {
    pub fn new(max_length: u64) -> Self {
        PduReader {
            max_length,
            header: [0; PDU_HEADER],
            header_got: 0,
            body: Vec::new(),
            body_got: 0,
        }
    }

    /// Read what is available (or wait once); `Done` when the whole PDU is in.
    pub fn step<S: Stream + ?Sized>(
        &mut self,
        stream: &mut S,
        pacer: &mut Pacer,
    ) -> Result<Progress> {
        loop {
            let in_header = self.header_got < PDU_HEADER;
            if !in_header && self.body_got == self.body.len() {
                return Ok(Progress::Done);
            }
            stream.before_read();
            let buf = if in_header {
                &mut self.header[self.header_got..]
            } else {
                &mut self.body[self.body_got..]
            };
            let n = match stream.read(buf) {
                Ok(0) => {
                    let started = self.header_got > 0;
                    return Err(Error::PeerClosed { mid_pdu: started });
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Progress::Pending),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    pacer.wait(stream, Direction::Read)?;
                    return Ok(Progress::Pending);
                }
                Err(e) => return Err(e.into()),
            };
            pacer.progressed();
            if in_header {
                self.header_got += n;
                if self.header_got == PDU_HEADER {
                    let length = body_length(&self.header, self.max_length)?;
                    self.body = vec![0; length];
                }
            } else {
                self.body_got += n;
            }
        }
    }

    /// The PDU type and body; call after `step` returned `Done`.
    pub fn into_pdu(self) -> (u8, Vec<u8>) {
        (self.header[0], self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::FdStream;
    use crate::step::{run_to_end, BufferWriter};
    use crate::testing::{pdu, socketpair, Trickle};
    use std::io::IoSlice;
    use std::time::Duration;

    fn recv(stream: &mut dyn Stream, max: u64, timeout: Duration) -> Result<(u8, Vec<u8>)> {
        let mut r = PduReader::new(max);
        let mut pacer = Pacer::new(Some(timeout));
        run_to_end(|| r.step(stream, &mut pacer), || Ok(()))?;
        Ok(r.into_pdu())
    }

    #[test]
    fn recv_pdu_round_trip() {
        let (a, b) = socketpair();
        let mut sender = FdStream::new(a, true).unwrap();
        let mut receiver = Trickle {
            inner: FdStream::new(b, true).unwrap(),
            max: 5,
            writes: 0,
        };
        let body: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut bytes = pdu(0x02, &body);
        bytes.extend(pdu(0x06, &[0, 0, 0, 0]));
        let mut w = BufferWriter::new(&bytes);
        let mut pacer = Pacer::new(None);
        run_to_end(|| w.step(&mut sender, &mut pacer), || Ok(())).unwrap();
        let t = Duration::from_secs(5);
        assert_eq!(recv(&mut receiver, 1000, t).unwrap(), (0x02, body));
        assert_eq!(recv(&mut receiver, 1000, t).unwrap(), (0x06, vec![0; 4]));
    }

    #[test]
    fn oversized_pdu_rejected_before_allocation() {
        let (a, b) = socketpair();
        let mut sender = FdStream::new(a, true).unwrap();
        let mut receiver = FdStream::new(b, true).unwrap();
        // Announce a 4 GB PDU but send only its header: a reader that allocated first would
        // try to allocate 4 GB; one that waited for the body would time out.
        let header = [0x04, 0, 0xFF, 0xFF, 0xFF, 0xFF];
        sender.write_vectored(&[IoSlice::new(&header)]).unwrap();
        match recv(&mut receiver, 16384, Duration::from_secs(5)) {
            Err(Error::PduTooLarge {
                pdu_type: 4,
                length: u32::MAX,
                max: 16384,
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn eof_before_and_within_pdu() {
        let (a, b) = socketpair();
        drop(a);
        let mut receiver = FdStream::new(b, true).unwrap();
        assert!(matches!(
            recv(&mut receiver, 100, Duration::from_secs(5)),
            Err(Error::PeerClosed { mid_pdu: false })
        ));

        let (a, b) = socketpair();
        let mut sender = FdStream::new(a, true).unwrap();
        let mut receiver = FdStream::new(b, true).unwrap();
        let bytes = pdu(0x02, &[1, 2, 3, 4, 5]);
        sender.write_vectored(&[IoSlice::new(&bytes[..8])]).unwrap();
        drop(sender);
        assert!(matches!(
            recv(&mut receiver, 100, Duration::from_secs(5)),
            Err(Error::PeerClosed { mid_pdu: true })
        ));
    }

    #[test]
    fn read_timeout() {
        let (_a, b) = socketpair();
        let mut receiver = FdStream::new(b, true).unwrap();
        assert!(matches!(
            recv(&mut receiver, 100, Duration::from_millis(30)),
            Err(Error::Timeout)
        ));
        assert!(matches!(
            recv(&mut receiver, 100, Duration::ZERO),
            Err(Error::Timeout)
        ));
    }
}
