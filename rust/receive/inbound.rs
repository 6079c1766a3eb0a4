//! The receiver's read buffer and the PDU/PDV parser over it: bytes read in large chunks (ahead
//! of the PDU under way), P-DATA-TF bodies split into PDV fragments in place — ranges of the
//! buffer, never copied — and whole PDUs of other types handed out. The buffer starts small
//! and grows with what the peer actually sent; a [`PduClock`] records when PDUs came in.

use std::io;
use std::ops::Range;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::pdu::{body_length, length_field, PDU_HEADER, P_DATA_TF};
use crate::step::{Pacer, PduClock, Progress, Stream};

/// The buffer of a connection not yet an association: a stranger holding a connection open
/// costs this much, not [`super::receiver::READ_BUFFER`] (hundreds of idle connections would take
/// gigabytes). Grown to the A-ASSOCIATE-RQ's declared length when it is longer.
pub const FIRST_BUFFER: usize = 64 << 10;
/// PDV item header length: item length (u32 big endian), context ID, message control header.
const PDV_ITEM_HEADER: usize = 6;

/// Where the parser is in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wire {
    /// Next: a PDU header.
    Pdu,
    /// Inside a P-DATA-TF body with `left` bytes to go; next: a PDV item header.
    Pdv { left: usize },
    /// Inside a PDV: `left` payload bytes to go, then `after` bytes of the PDU body.
    Payload {
        left: usize,
        after: usize,
        context_id: u8,
        mch: u8,
    },
}

/// What the buffered bytes hold next.
#[derive(Debug, PartialEq, Eq)]
pub enum Unit {
    /// A piece of a PDV's payload, at `range` of [`Inbound::bytes`].
    Fragment {
        context_id: u8,
        mch: u8,
        range: Range<usize>,
        end_of_pdv: bool,
    },
    /// A whole PDU other than P-DATA-TF.
    Pdu { pdu_type: u8, body: Vec<u8> },
}

/// The read buffer and the PDU/PDV parser over it.
pub struct Inbound {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    pub(super) wire: Wire,
    clock: PduClock,
}

impl Default for Inbound {
    fn default() -> Self {
        Self::with_capacity(FIRST_BUFFER)
    }
}

impl Inbound {
    pub fn with_capacity(capacity: usize) -> Self {
        Inbound {
            buf: vec![0; capacity],
            start: 0,
            end: 0,
            wire: Wire::Pdu,
            clock: PduClock::default(),
        }
    }

    /// Let the buffer hold at least `capacity` bytes (what is buffered stays).
    pub fn grow(&mut self, capacity: usize) {
        if self.buf.len() < capacity {
            self.buf.resize(capacity, 0);
        }
    }

    /// The buffer's size.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// When the PDUs came in.
    pub fn clock(&self) -> &PduClock {
        &self.clock
    }

    /// A PDU other than P-DATA-TF whose header is buffered needs this much buffer, header
    /// included; its length was checked by `next_unit` before it asked for more.
    fn whole_pdu_needs(&self) -> usize {
        if self.wire != Wire::Pdu || self.end - self.start < PDU_HEADER {
            return 0;
        }
        let at = self.start;
        if self.buf[at] == P_DATA_TF {
            return 0;
        }
        PDU_HEADER + length_field(&self.buf[at + 2..at + 6])
    }

    /// The buffer that [`Unit::Fragment`] ranges point into (valid until the next `fill`).
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Whether the stream is between PDUs with nothing buffered.
    pub fn at_boundary(&self) -> bool {
        self.wire == Wire::Pdu && self.start == self.end
    }

    /// The next unit in the buffered bytes, or `None` when more must be read. P-DATA-TF PDUs
    /// longer than `max_pdata` and others longer than `max_other` are refused from their header,
    /// before anything is allocated or read for them.
    pub fn next_unit(&mut self, max_pdata: u64, max_other: u64) -> Result<Option<Unit>> {
        loop {
            let avail = self.end - self.start;
            let at = self.start;
            match self.wire {
                Wire::Pdu => {
                    if avail < PDU_HEADER {
                        return Ok(None);
                    }
                    let pdu_type = self.buf[at];
                    let max = if pdu_type == P_DATA_TF {
                        max_pdata
                    } else {
                        max_other
                    };
                    let length = body_length(&self.buf[at..at + PDU_HEADER], max)?;
                    if pdu_type == P_DATA_TF {
                        if length == 0 {
                            return Err(Error::Protocol("P-DATA-TF without a PDV".into()));
                        }
                        self.start += PDU_HEADER;
                        self.wire = Wire::Pdv { left: length };
                        continue;
                    }
                    if avail < PDU_HEADER + length {
                        return Ok(None);
                    }
                    let body = self.buf[at + PDU_HEADER..at + PDU_HEADER + length].to_vec();
                    self.start += PDU_HEADER + length;
                    self.clock.complete(self.start < self.end);
                    return Ok(Some(Unit::Pdu { pdu_type, body }));
                }
                Wire::Pdv { left } => {
                    if left < PDV_ITEM_HEADER {
                        return Err(Error::Protocol(
                            "P-DATA-TF ends inside a PDV item header".into(),
                        ));
                    }
                    if avail < PDV_ITEM_HEADER {
                        return Ok(None);
                    }
                    let length = length_field(&self.buf[at..at + 4]);
                    if length < 2 || length > left - 4 {
                        return Err(Error::Protocol(format!(
                            "PDV item length {length} does not fit the {left} bytes left of its \
                             P-DATA-TF"
                        )));
                    }
                    self.wire = Wire::Payload {
                        left: length - 2,
                        after: left - 4 - length,
                        context_id: self.buf[at + 4],
                        mch: self.buf[at + 5],
                    };
                    self.start += PDV_ITEM_HEADER;
                }
                Wire::Payload {
                    left,
                    after,
                    context_id,
                    mch,
                } => {
                    if left > 0 && avail == 0 {
                        return Ok(None);
                    }
                    let take = left.min(avail);
                    let left = left - take;
                    self.start += take;
                    self.wire = if left > 0 {
                        Wire::Payload {
                            left,
                            after,
                            context_id,
                            mch,
                        }
                    } else if after > 0 {
                        Wire::Pdv { left: after }
                    } else {
                        self.clock.complete(self.start < self.end);
                        Wire::Pdu
                    };
                    return Ok(Some(Unit::Fragment {
                        context_id,
                        mch,
                        range: at..at + take,
                        end_of_pdv: left == 0,
                    }));
                }
            }
        }
    }

    /// Read what the stream has (or wait once, within the bounds of `pacer` counted by whole
    /// PDUs, see [`Pacer::wait_pdu`]): `Done` when bytes came in. Ranges handed out
    /// before are invalid afterwards: unconsumed bytes move to the front of the buffer.
    pub fn fill<S: Stream + ?Sized>(
        &mut self,
        stream: &mut S,
        pacer: &mut Pacer,
    ) -> Result<Progress> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        // A whole PDU (the A-ASSOCIATE-RQ) that does not fit: double the buffer up to its
        // declared length, so a stranger's memory grows with the bytes it sent, not the length
        // it claims.
        if self.end == self.buf.len() {
            let needs = self.whole_pdu_needs().min(2 * self.buf.len());
            self.grow(needs);
        }
        // No TCP_QUICKACK here (unlike the send side waiting for a response): an ACK forced
        // after every read costs both sides a packet and changes nothing for a sender that is
        // not waiting on us.
        match stream.read(&mut self.buf[self.end..]) {
            Ok(0) => Err(Error::PeerClosed {
                mid_pdu: !self.at_boundary(),
            }),
            Ok(n) => {
                self.end += n;
                self.clock.read(Instant::now());
                Ok(Progress::Done)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Progress::Pending),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                pacer.wait_pdu(stream, &self.clock)?;
                Ok(Progress::Pending)
            }
            Err(e) => Err(e.into()),
        }
    }
}
