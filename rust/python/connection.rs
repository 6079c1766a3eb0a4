//! What both transports share: taking over a connected socket from Python (with its TLS
//! handshake), and [`Connection`], which hands the connection to one operation at a time.
//!
//! An operation that finds the connection busy waits for it with the GIL released, in slices
//! of [`WAIT_SLICE`] with signal checks between them (never blocking on a Rust lock while
//! holding the interpreter); `close` from another thread wakes a busy operation by shutting the
//! socket down, and the socket is closed when that operation hands the connection back.

use std::ops::{Deref, DerefMut};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::{Condvar, Mutex, MutexGuard};

use pyo3::prelude::*;

use super::gil::drive;
use crate::error::{Error, Result};
use crate::net::{self, FdStream, TlsStream};
use crate::step::{Pacer, Stream, WAIT_SLICE};

/// Take over a connected socket's `fd` (from `socket.detach()`), wrapped by `secure` in TLS when
/// given, the handshake's waits bounded by `pacer`. Returns the stream and, for TLS, the negotiated
/// `(protocol, cipher suite)`.
#[allow(clippy::type_complexity)]
pub(crate) fn open_stream(
    py: Python<'_>,
    fd: i32,
    mut pacer: Pacer,
    nodelay: bool,
    secure: Option<impl FnOnce(FdStream) -> Result<TlsStream> + Send>,
) -> PyResult<(Box<dyn Stream>, Option<(String, String)>)> {
    if fd < 0 {
        return Err(Error::InvalidArgument(format!("invalid file descriptor {fd}")).into());
    }
    // SAFETY: the caller hands over ownership (`socket.detach()`); we close it exactly once.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let plain = FdStream::new(owned, nodelay).map_err(Error::from)?;
    let Some(secure) = secure else {
        return Ok((Box::new(plain), None));
    };
    let mut stream = secure(plain)?;
    drive(py, || stream.handshake_step(&mut pacer))?;
    let negotiated = (
        stream.protocol().unwrap_or_default(),
        stream.cipher().unwrap_or_default(),
    );
    Ok((Box::new(stream), Some(negotiated)))
}

enum Slot<T> {
    Idle(T),
    Busy { close_requested: bool },
    Closed,
}

/// A connection (`T` holds its stream) used by one operation at a time.
pub(crate) struct Connection<T> {
    slot: Mutex<Slot<T>>,
    returned: Condvar,
    /// The socket's descriptor, shut down by `close` while an operation holds the connection
    /// (never after: then the connection is closed, and the number may be the OS's again).
    fd: RawFd,
}

/// Exclusive use of the connection for one operation; puts it back (or closes it, when `close`
/// was called meanwhile) when dropped.
pub(crate) struct Checkout<'c, T> {
    connection: &'c Connection<T>,
    value: Option<T>,
}

impl<T> Deref for Checkout<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value.as_ref().expect("checked out")
    }
}

impl<T> DerefMut for Checkout<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value.as_mut().expect("checked out")
    }
}

impl<T> Drop for Checkout<'_, T> {
    fn drop(&mut self) {
        let Some(value) = self.value.take() else {
            return;
        };
        let mut slot = self.connection.lock();
        if matches!(
            *slot,
            Slot::Busy {
                close_requested: true
            }
        ) {
            *slot = Slot::Closed;
            drop(slot);
            drop(value); // closes the socket
        } else {
            *slot = Slot::Idle(value);
        }
        self.connection.returned.notify_all();
    }
}

impl<T> Connection<T> {
    /// The lock is only ever held for a few instructions, never across I/O or a wait, so taking
    /// it with the GIL held cannot deadlock.
    fn lock(&self) -> MutexGuard<'_, Slot<T>> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: Send> Connection<T> {
    pub(crate) fn new(value: T, fd: RawFd) -> Self {
        Connection {
            slot: Mutex::new(Slot::Idle(value)),
            returned: Condvar::new(),
            fd,
        }
    }

    /// Take the connection from the slot if it is there: `None` while it is busy.
    fn take(slot: &mut Slot<T>) -> Option<Result<T>> {
        match std::mem::replace(
            slot,
            Slot::Busy {
                close_requested: false,
            },
        ) {
            Slot::Idle(value) => Some(Ok(value)),
            Slot::Closed => {
                *slot = Slot::Closed;
                Some(Err(Error::Closed))
            }
            busy @ Slot::Busy { .. } => {
                *slot = busy;
                None
            }
        }
    }

    /// The connection for one operation; when another thread has it, wait until it is handed
    /// back (GIL released, signals checked every [`WAIT_SLICE`]). Fails once closed.
    pub(crate) fn checkout(&self, py: Python<'_>) -> PyResult<Checkout<'_, T>> {
        let mut taken = Self::take(&mut self.lock());
        while taken.is_none() {
            taken = py.detach(|| {
                let mut slot = self.lock();
                if let Some(taken) = Self::take(&mut slot) {
                    return Some(taken);
                }
                let (mut slot, _) = self
                    .returned
                    .wait_timeout(slot, WAIT_SLICE)
                    .unwrap_or_else(|e| e.into_inner());
                Self::take(&mut slot)
            });
            if taken.is_none() {
                py.check_signals()?;
            }
        }
        let value = taken.expect("taken")?;
        Ok(Checkout {
            connection: self,
            value: Some(value),
        })
    }

    /// Close the connection. Idempotent; an operation running in another thread is woken (the
    /// socket is shut down) and fails, and the socket is closed when it hands the connection back.
    pub(crate) fn close(&self) {
        let mut slot = self.lock();
        match &mut *slot {
            Slot::Idle(_) => {
                let old = std::mem::replace(&mut *slot, Slot::Closed);
                drop(slot);
                drop(old);
            }
            Slot::Busy { close_requested } => {
                if !*close_requested {
                    *close_requested = true;
                    net::shutdown(self.fd);
                }
            }
            Slot::Closed => {}
        }
    }

    /// Whether `close` was called.
    pub(crate) fn closed(&self) -> bool {
        matches!(
            *self.lock(),
            Slot::Closed
                | Slot::Busy {
                    close_requested: true
                }
        )
    }

    /// The socket's descriptor number (meaningful while not closed).
    pub(crate) fn fd(&self) -> RawFd {
        self.fd
    }
}
