//! A dataset that is still being received, as another thread sees it: how many of its bytes
//! are in its file so far, and how the receive ended. The receive loop tells; a sender that
//! forwards the dataset while it arrives (cut-through) waits on it.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How the receive of a dataset ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Every byte is in the file.
    Whole,
    /// It will never be whole: the association failed, the file could not be written.
    Cut,
}

#[derive(Debug, Default)]
struct State {
    stored: u64,
    end: Option<End>,
}

/// Progress of one dataset's receive, shared between the receiving and a sending thread.
#[derive(Debug, Default)]
pub struct Live {
    state: Mutex<State>,
    changed: Condvar,
}

impl Live {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `stored` dataset bytes are in the file now.
    pub fn advance(&self, stored: u64) {
        let mut state = self.lock();
        if state.end.is_none() && stored > state.stored {
            state.stored = stored;
            self.changed.notify_all();
        }
    }

    /// The receive ended; a first end is kept (a whole dataset is not cut afterwards).
    pub fn end(&self, end: End) {
        let mut state = self.lock();
        if state.end.is_none() {
            state.end = Some(end);
            self.changed.notify_all();
        }
    }

    /// `(stored, end)` as they stand.
    pub fn now(&self) -> (u64, Option<End>) {
        let state = self.lock();
        (state.stored, state.end)
    }

    /// `(stored, end)` once `stored` reaches `at_least` or the receive ended, else after
    /// `wait` as it stands.
    pub fn wait(&self, at_least: u64, wait: Duration) -> (u64, Option<End>) {
        let state = self.lock();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, wait, |s| s.end.is_none() && s.stored < at_least)
            .unwrap_or_else(|e| e.into_inner());
        (state.stored, state.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;
    use std::time::Instant;

    #[test]
    fn a_waiter_sees_progress_and_the_end() {
        let live = Arc::new(Live::default());
        assert_eq!(live.wait(10, Duration::from_millis(1)), (0, None));
        let other = live.clone();
        let waiter = thread::spawn(move || other.wait(100, Duration::from_secs(10)));
        live.advance(50);
        live.advance(120);
        assert_eq!(waiter.join().unwrap(), (120, None));
        live.end(End::Whole);
        live.end(End::Cut);
        live.advance(500);
        assert_eq!(
            live.wait(1000, Duration::from_secs(10)),
            (120, Some(End::Whole))
        );
    }

    #[test]
    fn a_cut_wakes_the_waiter_at_once() {
        let live = Arc::new(Live::default());
        let other = live.clone();
        let started = Instant::now();
        let waiter = thread::spawn(move || other.wait(100, Duration::from_secs(30)));
        thread::sleep(Duration::from_millis(20));
        live.end(End::Cut);
        assert_eq!(waiter.join().unwrap(), (0, Some(End::Cut)));
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
