//! Write and read loops over a non-blocking [`Stream`], as resumable state machines.
//!
//! Every operation is driven by calling `step` until it reports completion. One step does a
//! bounded amount of work — one batch of PDUs written (at most [`BATCH_BYTES`] and
//! [`MAX_IOVECS`] iovecs), or one wait of at most [`WAIT_SLICE`] — so the Python layer can run
//! each step with the GIL released and check for signals between steps.

use std::io::{self, IoSlice};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::framing::{Fragment, Fragments, Part, PDU_OVERHEAD};
use crate::source;
use crate::stream::{Direction, Stream, MAX_IOVECS};

/// Upper bound on the payload bytes of one batch (one `sendmsg` attempt).
pub const BATCH_BYTES: usize = 4 << 20;
/// Longest single wait before control returns to the caller (signal checks).
pub const WAIT_SLICE: Duration = Duration::from_millis(200);
/// Sent pages of a mapped dataset are released once this much more has been sent.
pub const RELEASE_BYTES: usize = 2 << 20;
/// PDU header length.
pub const PDU_HEADER: usize = 6;

/// Whether an operation finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Pending,
    Done,
}

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

/// How a write attempt went.
pub(crate) enum Attempt {
    Wrote(usize),
    Retry,
}

pub(crate) fn try_write<S: Stream + ?Sized>(
    stream: &mut S,
    iov: &[IoSlice<'_>],
    pacer: &mut Pacer,
) -> Result<Attempt> {
    match stream.write_vectored(iov) {
        Ok(0) => Err(Error::Io(io::ErrorKind::WriteZero.into())),
        Ok(n) => {
            pacer.progressed();
            Ok(Attempt::Wrote(n))
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Attempt::Retry),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            pacer.wait(stream, Direction::Write)?;
            Ok(Attempt::Retry)
        }
        Err(e) => Err(e.into()),
    }
}

/// One iovec of a batch.
#[derive(Debug, Clone, Copy)]
enum Piece {
    Header(usize),
    Command { offset: usize, len: usize },
    Dataset { offset: usize, len: usize },
}

/// End a write: push out what the stream still buffers (TLS records), so that "sent" means on
/// the socket before we start waiting for the peer's answer.
fn finish<S: Stream + ?Sized>(stream: &mut S, pacer: &mut Pacer) -> Result<Progress> {
    match stream.flush() {
        Ok(()) => Ok(Progress::Done),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Progress::Pending),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            pacer.wait(stream, Direction::Write)?;
            Ok(Progress::Pending)
        }
        Err(e) => Err(e.into()),
    }
}

/// Writes one DIMSE message as P-DATA-TF PDUs, payload iovecs pointing into `command` and
/// `dataset`; only one batch of 12-byte headers is held at a time.
pub struct MessageWriter<'a> {
    context_id: u8,
    command: &'a [u8],
    dataset: Option<&'a [u8]>,
    dataset_mapped: bool,
    fragments: Fragments,
    headers: Vec<[u8; PDU_OVERHEAD]>,
    pieces: Vec<Piece>,
    cursor: usize,
    cursor_offset: usize,
    dataset_sent: usize,
    released: usize,
    written: u64,
}

impl<'a> MessageWriter<'a> {
    /// `frag` comes from [`crate::framing::fragment_size`]. Set `dataset_mapped` only when the
    /// dataset lies in a read-only file mapping: its sent pages are then released as we go.
    pub fn new(
        context_id: u8,
        command: &'a [u8],
        dataset: Option<&'a [u8]>,
        dataset_mapped: bool,
        frag: usize,
    ) -> Self {
        let fragments = Fragments::new(command.len(), dataset.map(<[u8]>::len), frag);
        let per_batch = (fragments.totals().0).min(MAX_IOVECS / 2);
        MessageWriter {
            context_id,
            command,
            dataset,
            dataset_mapped,
            fragments,
            headers: Vec::with_capacity(per_batch),
            pieces: Vec::with_capacity(per_batch * 2),
            cursor: 0,
            cursor_offset: 0,
            dataset_sent: 0,
            released: 0,
            written: 0,
        }
    }

    /// Bytes written to the stream so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn fill_batch(&mut self) -> bool {
        self.headers.clear();
        self.pieces.clear();
        self.cursor = 0;
        self.cursor_offset = 0;
        let mut bytes = 0usize;
        while let Some(f) = self.fragments.peek() {
            let full = self.pieces.len() + 2 > MAX_IOVECS || bytes + f.len > BATCH_BYTES;
            if !self.pieces.is_empty() && full {
                break;
            }
            self.push_fragment(f);
            bytes += f.len + PDU_OVERHEAD;
            self.fragments.advance();
        }
        !self.pieces.is_empty()
    }

    fn push_fragment(&mut self, f: Fragment) {
        self.headers.push(f.header(self.context_id));
        self.pieces.push(Piece::Header(self.headers.len() - 1));
        if f.len > 0 {
            self.pieces.push(match f.part {
                Part::Command => Piece::Command {
                    offset: f.offset,
                    len: f.len,
                },
                Part::Dataset => Piece::Dataset {
                    offset: f.offset,
                    len: f.len,
                },
            });
        }
    }

    fn piece_bytes(&self, piece: Piece) -> &[u8] {
        match piece {
            Piece::Header(i) => &self.headers[i],
            Piece::Command { offset, len } => &self.command[offset..offset + len],
            Piece::Dataset { offset, len } => &self.dataset.unwrap_or(&[])[offset..offset + len],
        }
    }

    /// Move the cursor over `n` written bytes, across as many iovecs as they cover.
    fn advance(&mut self, mut n: usize) {
        self.written += n as u64;
        while n > 0 {
            let piece = self.pieces[self.cursor];
            let left = self.piece_bytes(piece).len() - self.cursor_offset;
            let take = left.min(n);
            n -= take;
            self.cursor_offset += take;
            if let Piece::Dataset { offset, .. } = piece {
                self.dataset_sent = offset + self.cursor_offset;
            }
            if self.cursor_offset == self.piece_bytes(piece).len() {
                self.cursor += 1;
                self.cursor_offset = 0;
            }
        }
    }

    fn release_sent(&mut self, finished: bool) {
        let Some(dataset) = self.dataset else { return };
        if !self.dataset_mapped {
            return;
        }
        if self.dataset_sent - self.released >= RELEASE_BYTES
            || (finished && self.dataset_sent > self.released)
        {
            // SAFETY: dataset_mapped promises a read-only file mapping.
            unsafe { source::release_pages(dataset, self.released, self.dataset_sent) };
            self.released = self.dataset_sent;
        }
    }

    /// Write the current batch (building the next one first if needed) as far as the stream
    /// takes it, or wait once for it to drain.
    pub fn step<S: Stream + ?Sized>(
        &mut self,
        stream: &mut S,
        pacer: &mut Pacer,
    ) -> Result<Progress> {
        if self.cursor == self.pieces.len() && !self.fill_batch() {
            self.release_sent(true);
            return finish(stream, pacer);
        }
        loop {
            let attempt = {
                let mut iov = Vec::with_capacity(self.pieces.len() - self.cursor);
                for (i, piece) in self.pieces[self.cursor..].iter().enumerate() {
                    let bytes = self.piece_bytes(*piece);
                    iov.push(IoSlice::new(if i == 0 {
                        &bytes[self.cursor_offset..]
                    } else {
                        bytes
                    }));
                }
                try_write(stream, &iov, pacer)?
            };
            match attempt {
                Attempt::Wrote(n) => {
                    self.advance(n);
                    self.release_sent(false);
                    if self.cursor == self.pieces.len() {
                        return Ok(Progress::Pending);
                    }
                }
                Attempt::Retry => return Ok(Progress::Pending),
            }
        }
    }
}

/// Writes one buffer (an already-encoded PDU).
pub struct BufferWriter<'a> {
    data: &'a [u8],
    offset: usize,
}

impl<'a> BufferWriter<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        BufferWriter { data, offset: 0 }
    }

    pub fn step<S: Stream + ?Sized>(
        &mut self,
        stream: &mut S,
        pacer: &mut Pacer,
    ) -> Result<Progress> {
        while self.offset < self.data.len() {
            let chunk = &self.data[self.offset..];
            let chunk = &chunk[..chunk.len().min(BATCH_BYTES)];
            match try_write(stream, &[IoSlice::new(chunk)], pacer)? {
                Attempt::Wrote(n) => self.offset += n,
                Attempt::Retry => return Ok(Progress::Pending),
            }
        }
        finish(stream, pacer)
    }
}

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

    fn body_len(&self) -> usize {
        u32::from_be_bytes([
            self.header[2],
            self.header[3],
            self.header[4],
            self.header[5],
        ]) as usize
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
                    let length = self.body_len();
                    if length as u64 > self.max_length {
                        return Err(Error::PduTooLarge {
                            pdu_type: self.header[0],
                            length: length as u32,
                            max: self.max_length,
                        });
                    }
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

/// Drive a stepped operation to completion, calling `between` after every step (the Python layer
/// uses its own loop to release the GIL and check signals instead).
pub fn run_to_end(
    mut step: impl FnMut() -> Result<Progress>,
    mut between: impl FnMut() -> Result<()>,
) -> Result<()> {
    while step()? == Progress::Pending {
        between()?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::framing::{fragment_size, frame_message};
    use crate::stream::FdStream;
    use std::os::fd::{FromRawFd, OwnedFd};

    pub(crate) fn socketpair() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        let ret =
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) };
        assert_eq!(ret, 0);
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    fn small_sndbuf(fd: &OwnedFd) {
        use std::os::fd::AsRawFd;
        let v: libc::c_int = 4096;
        let ret = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(ret, 0);
    }

    fn read_all(fd: OwnedFd) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            use std::io::Read;
            let mut f = std::fs::File::from(fd);
            let mut out = Vec::new();
            // Read in small chunks so the writer sees many partial writes.
            let mut buf = [0u8; 3001];
            loop {
                let n = f.read(&mut buf).unwrap();
                if n == 0 {
                    return out;
                }
                out.extend_from_slice(&buf[..n]);
            }
        })
    }

    /// Counts writes and limits each to a few bytes, to exercise partial-write bookkeeping.
    struct Trickle<S> {
        inner: S,
        max: usize,
        writes: usize,
    }

    impl<S: Stream> Stream for Trickle<S> {
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.writes += 1;
            let mut budget = self.max;
            let mut cut = Vec::new();
            for b in bufs {
                if budget == 0 {
                    break;
                }
                let take = b.len().min(budget);
                cut.push(IoSlice::new(&b[..take]));
                budget -= take;
            }
            self.inner.write_vectored(&cut)
        }
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let max = buf.len().min(self.max);
            self.inner.read(&mut buf[..max])
        }
        fn wait(&mut self, d: Direction, limit: Duration) -> io::Result<()> {
            self.inner.wait(d, limit)
        }
    }

    fn send(stream: &mut dyn Stream, cmd: &[u8], ds: Option<&[u8]>, max_pdu: u64) -> u64 {
        let mut w = MessageWriter::new(9, cmd, ds, false, fragment_size(max_pdu).unwrap());
        let mut pacer = Pacer::new(Some(Duration::from_secs(10)));
        run_to_end(|| w.step(stream, &mut pacer), || Ok(())).unwrap();
        w.written()
    }

    #[test]
    fn socketpair_round_trip_with_partial_writes() {
        let cmd: Vec<u8> = (0..301u32).map(|i| i as u8).collect();
        let ds: Vec<u8> = (0..3_000_001u32).map(|i| (i % 251) as u8).collect();
        for max_pdu in [0u64, 4096, 16385] {
            let (a, b) = socketpair();
            small_sndbuf(&a);
            let reader = read_all(b);
            let mut stream = FdStream::new(a, true).unwrap();
            let written = send(&mut stream, &cmd, Some(&ds), max_pdu);
            drop(stream);
            let got = reader.join().unwrap();
            let expected = frame_message(9, &cmd, Some(&ds), max_pdu).unwrap();
            assert_eq!(written as usize, expected.len());
            assert!(got == expected, "max_pdu {max_pdu}: bytes differ");
        }
    }

    #[test]
    fn trickled_writes_advance_across_iovecs() {
        let cmd = vec![1u8; 50];
        let ds: Vec<u8> = (0..20_001u32).map(|i| (i % 13) as u8).collect();
        let (a, b) = socketpair();
        let reader = read_all(b);
        let mut stream = Trickle {
            inner: FdStream::new(a, true).unwrap(),
            max: 7,
            writes: 0,
        };
        send(&mut stream, &cmd, Some(&ds), 100);
        assert!(stream.writes > 20_000 / 7);
        drop(stream);
        assert_eq!(
            reader.join().unwrap(),
            frame_message(9, &cmd, Some(&ds), 100).unwrap()
        );
    }

    pub(crate) fn pdu(pdu_type: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![pdu_type, 0];
        v.extend_from_slice(&(body.len() as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

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

    /// Sends a byte now and then, like a peer holding a slot.
    fn dribbler(fd: OwnedFd, every: Duration, bytes: usize) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::File::from(fd);
            for _ in 0..bytes {
                if f.write_all(&[0]).is_err() {
                    return;
                }
                std::thread::sleep(every);
            }
        })
    }

    #[test]
    fn trickled_bytes_do_not_stretch_a_whole_pacer() {
        let (a, b) = socketpair();
        let mut receiver = FdStream::new(b, true).unwrap();
        let feeder = dribbler(a, Duration::from_millis(20), 50);
        let started = Instant::now();
        let mut pacer = Pacer::whole(Some(Duration::from_millis(200)));
        let mut buf = [0u8; 1];
        let result = loop {
            match receiver.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(_) => pacer.progressed(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = pacer.wait(&mut receiver, Direction::Read) {
                        break Err(e);
                    }
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert!(matches!(result, Err(Error::Timeout)), "{result:?}");
        let took = started.elapsed();
        assert!(took < Duration::from_millis(600), "{took:?}");
        drop(receiver);
        feeder.join().unwrap();
    }

    #[test]
    fn deadline_bounds_a_stall_pacer() {
        let (_a, b) = socketpair();
        let mut receiver = FdStream::new(b, true).unwrap();
        let started = Instant::now();
        let mut pacer = Pacer::new(Some(Duration::from_secs(60)))
            .until(Some(started + Duration::from_millis(50)));
        let result = loop {
            if let Err(e) = pacer.wait(&mut receiver, Direction::Read) {
                break e;
            }
        };
        assert!(matches!(result, Error::Timeout));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn write_timeout_and_broken_pipe() {
        let (a, b) = socketpair();
        small_sndbuf(&a);
        let mut sender = FdStream::new(a, true).unwrap();
        let ds = vec![0u8; 4 << 20];
        let mut w = MessageWriter::new(1, b"cmd!", Some(&ds), false, fragment_size(0).unwrap());
        let mut pacer = Pacer::new(Some(Duration::from_millis(30)));
        let r = run_to_end(|| w.step(&mut sender, &mut pacer), || Ok(()));
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
        drop(b);
        let mut w = MessageWriter::new(1, b"cmd!", Some(&ds), false, fragment_size(0).unwrap());
        match run_to_end(|| w.step(&mut sender, &mut pacer), || Ok(())) {
            Err(Error::Io(e)) => assert!(matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            )),
            other => panic!("{other:?}"),
        }
    }
}
