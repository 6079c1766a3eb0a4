//! [`Pacer`]: how long a stepped operation may wait for its stream, and [`PduClock`]: when the
//! PDUs of a connection arrived, for read timeouts counted by whole PDUs.

use std::time::{Duration, Instant};

use super::{Direction, Stream, WAIT_SLICE};
use crate::error::{Error, Result};

/// Bounds waiting. A wait fails with [`Error::Timeout`] once the stream made no progress for
/// `timeout` (`None`: no such bound), or, for a [`Pacer::whole`], once `timeout` has passed since
/// the operation began, progress or not; and in any case at the `deadline` when one is set.
///
/// A stall timer suits a peer we trust to be slow (a big dataset pushed over a thin link); a
/// hostile peer defeats it by sending a byte now and then, so what a server waits for from a
/// stranger is bounded by whole operations instead ([`Pacer::whole`], [`PduClock`]).
#[derive(Debug, Clone)]
pub struct Pacer {
    timeout: Option<Duration>,
    stalled_since: Option<Instant>,
    resets: bool,
    deadline: Option<Instant>,
}

impl Pacer {
    pub fn new(timeout: Option<Duration>) -> Self {
        Pacer {
            timeout,
            stalled_since: None,
            resets: true,
            deadline: None,
        }
    }

    /// The operation must end within `timeout` of now, however the stream moves meanwhile.
    pub fn whole(timeout: Option<Duration>) -> Self {
        Pacer {
            timeout,
            stalled_since: Some(Instant::now()),
            resets: false,
            deadline: None,
        }
    }

    /// Fail at `deadline` at the latest, whatever else the pacer allows.
    pub fn until(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    /// The stream moved: a stall timer starts again.
    pub fn progressed(&mut self) {
        if self.resets {
            self.stalled_since = None;
        }
    }

    /// Wait once for readiness, or fail with [`Error::Timeout`] if stalled for too long.
    pub fn wait<S: Stream + ?Sized>(&mut self, stream: &mut S, direction: Direction) -> Result<()> {
        let now = Instant::now();
        let since = *self.stalled_since.get_or_insert(now);
        let limit = self.timeout.map(|timeout| since + timeout);
        self.wait_until(stream, direction, now, limit)
    }

    /// Wait once for more of a PDU (or the next one): `timeout` counts from the first byte of
    /// the PDU under way, or between PDUs from the later of the end of the last one and the
    /// first wait of this operation; see [`PduClock`].
    pub fn wait_pdu<S: Stream + ?Sized>(&mut self, stream: &mut S, clock: &PduClock) -> Result<()> {
        let now = Instant::now();
        let since = *self.stalled_since.get_or_insert(now);
        let limit = self.timeout.map(|timeout| clock.deadline(timeout, since));
        self.wait_until(stream, Direction::Read, now, limit)
    }

    fn wait_until<S: Stream + ?Sized>(
        &mut self,
        stream: &mut S,
        direction: Direction,
        now: Instant,
        limit: Option<Instant>,
    ) -> Result<()> {
        let limit = match (limit, self.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let slice = match limit {
            None => WAIT_SLICE,
            Some(limit) if now >= limit => return Err(Error::Timeout),
            Some(limit) => (limit - now).min(WAIT_SLICE),
        };
        stream.wait(direction, slice)?;
        Ok(())
    }
}

/// When the PDUs of a connection arrive, for read timeouts that count whole PDUs rather than
/// bytes: a peer trickling a byte every few seconds cannot stretch them, so a slot it holds is
/// free again at most one timeout after its last PDU began.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PduClock {
    /// When the first byte of the PDU still incomplete came in (`None` between PDUs).
    began: Option<Instant>,
    /// When the last PDU was complete with nothing after it.
    ended: Option<Instant>,
    /// The last read that brought bytes.
    last_read: Option<Instant>,
}

impl PduClock {
    /// Bytes came in at `now`; the first of them begins a PDU if none was under way.
    pub fn read(&mut self, now: Instant) {
        self.last_read = Some(now);
        self.began.get_or_insert(now);
    }

    /// A PDU is complete. Bytes already read beyond it (`more`) begin the next one: they came
    /// with the last read, since reading stops until what is buffered is parsed.
    pub fn complete(&mut self, more: bool) {
        if more {
            self.began = self.last_read;
        } else {
            self.began = None;
            self.ended = self.last_read;
        }
    }

    /// Whether a PDU is under way.
    pub fn in_pdu(&self) -> bool {
        self.began.is_some()
    }

    /// When a wait that began at `waiting_since` fails.
    pub fn deadline(&self, timeout: Duration, waiting_since: Instant) -> Instant {
        match (self.began, self.ended) {
            (Some(began), _) => began + timeout,
            (None, Some(ended)) => ended.max(waiting_since) + timeout,
            (None, None) => waiting_since + timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdu_clock_counts_whole_pdus() {
        let t = Duration::from_secs(10);
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut clock = PduClock::default();
        // Idle from the first wait on.
        assert_eq!(clock.deadline(t, at(0)), at(10));
        // A PDU's first byte starts its clock; later bytes do not move it.
        clock.read(at(3));
        clock.read(at(8));
        clock.read(at(12));
        assert!(clock.in_pdu());
        assert_eq!(clock.deadline(t, at(0)), at(13));
        // Complete with nothing after: idle from its end (or a later wait).
        clock.complete(false);
        assert!(!clock.in_pdu());
        assert_eq!(clock.deadline(t, at(0)), at(22));
        assert_eq!(clock.deadline(t, at(30)), at(40));
        // Complete with the next PDU's bytes in the same read: it began with that read.
        clock.read(at(31));
        clock.read(at(35));
        clock.complete(true);
        assert_eq!(clock.deadline(t, at(0)), at(45));
    }
}
