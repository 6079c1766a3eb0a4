//! Plain TCP as a [`Stream`]: [`FdStream`] over a connected socket's file descriptor
//! (non-blocking, `sendmsg` with many iovecs, `poll` for readiness, TCP_QUICKACK before reads).
//! [`super::tls::TlsStream`] wraps one in TLS.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::step::{Direction, Stream, MAX_IOVECS};

#[cfg(any(target_os = "linux", target_os = "android"))]
const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const SEND_FLAGS: libc::c_int = 0;

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` outlives the call and its size is passed.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

fn is_inet(fd: RawFd) -> io::Result<bool> {
    // SAFETY: zeroed storage of the right size for getsockname.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    cvt(unsafe {
        libc::getsockname(
            fd,
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    })?;
    let family = libc::c_int::from(addr.ss_family);
    Ok(family == libc::AF_INET || family == libc::AF_INET6)
}

/// A socket file descriptor, owned: closed when dropped.
#[derive(Debug)]
pub struct FdStream {
    fd: OwnedFd,
    tcp: bool,
}

impl FdStream {
    /// Take a connected socket: make it non-blocking, and set `TCP_NODELAY` when asked (TCP
    /// options are skipped on non-IP sockets such as a Unix socketpair).
    pub fn new(fd: OwnedFd, nodelay: bool) -> io::Result<Self> {
        let raw = fd.as_raw_fd();
        // SAFETY: fcntl on a valid fd.
        let flags = cvt(unsafe { libc::fcntl(raw, libc::F_GETFL) })?;
        if flags & libc::O_NONBLOCK == 0 {
            cvt(unsafe { libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
        }
        let tcp = is_inet(raw)?;
        if tcp {
            setsockopt_int(
                raw,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                libc::c_int::from(nodelay),
            )?;
        }
        #[cfg(any(target_os = "macos", target_os = "ios"))]
        setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_NOSIGPIPE, 1)?;
        Ok(FdStream { fd, tcp })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Stream for FdStream {
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let count = bufs.len().min(MAX_IOVECS);
        // SAFETY: IoSlice is ABI-compatible with iovec on Unix; the buffers outlive the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = count as _;
        let n = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &msg, SEND_FLAGS) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: writing at most buf.len() bytes into buf.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn wait(&mut self, direction: Direction, limit: Duration) -> io::Result<()> {
        let events = match direction {
            Direction::Read => libc::POLLIN,
            Direction::Write => libc::POLLOUT,
        };
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events,
            revents: 0,
        };
        // Round up so a sub-millisecond remainder does not spin.
        let ms = limit.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd.
        let ret = unsafe { libc::poll(&mut pfd, 1, ms) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
        // Ready, timed out, or POLLERR/POLLHUP: the next read or write tells which.
        Ok(())
    }

    fn before_read(&mut self) {
        #[cfg(target_os = "linux")]
        if self.tcp {
            // Best effort: Linux clears it again after sending an ACK.
            let _ = setsockopt_int(
                self.fd.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                1,
            );
        }
    }
}

/// Shut the socket down in both directions (wakes a thread blocked on it).
pub fn shutdown(fd: RawFd) {
    // SAFETY: shutdown on an fd we still own; errors (already shut down) are irrelevant.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::step::Pacer;
    use crate::testing::socketpair;
    use std::time::Instant;

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
}
