//! Timers on a ring, ordered by deadline. The ring's wait ends at the earliest one (a
//! timeout on `io_uring_enter`: nanosecond resolution, plus the kernel's timer slack,
//! 50 µs by default for a normal thread); then every timer due fires.
//!
//! A timer leaves the order when its `Sleep` is dropped, so a timer that is re-made
//! often (a deadline pushed back by every read) costs nothing after it is gone; the
//! hot paths still avoid that by re-arming their deadline only when it fires.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use slab::Slab;

use super::context::with_ring;

/// One registered timer.
struct Entry {
    waker: Option<Waker>,
    fired: bool,
    /// Its place in the order: (deadline, sequence).
    at: (Instant, u64),
}

/// A ring's timers.
#[derive(Default)]
pub(super) struct Timers {
    entries: RefCell<Slab<Entry>>,
    /// (deadline, sequence) → entry, for timers not fired yet.
    order: RefCell<BTreeMap<(Instant, u64), usize>>,
    sequence: Cell<u64>,
}

impl Timers {
    /// The earliest deadline still pending, if any.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.order.borrow().keys().next().map(|(at, _)| *at)
    }

    /// Fires every timer due at `now`; returns how many.
    pub(super) fn fire_due(&self, now: Instant) -> usize {
        let mut fired = 0;
        loop {
            let key = {
                let mut order = self.order.borrow_mut();
                match order.first_key_value() {
                    Some((&(at, _), _)) if at <= now => order.pop_first().map(|(_, k)| k),
                    _ => None,
                }
            };
            let Some(key) = key else { break };
            let waker = self.entries.borrow_mut().get_mut(key).and_then(|e| {
                e.fired = true;
                e.waker.take()
            });
            if let Some(w) = waker {
                fired += 1;
                w.wake();
            }
        }
        fired
    }

    /// Registers a timer for `deadline`; returns its key.
    fn insert(&self, deadline: Instant, waker: Waker) -> usize {
        let sequence = self.sequence.get() + 1;
        self.sequence.set(sequence);
        let at = (deadline, sequence);
        let key = self.entries.borrow_mut().insert(Entry {
            waker: Some(waker),
            fired: false,
            at,
        });
        self.order.borrow_mut().insert(at, key);
        key
    }

    /// Forgets timer `key` (fired or not).
    fn remove(&self, key: usize) {
        let mut entries = self.entries.borrow_mut();
        if let Some(entry) = entries.try_remove(key) {
            if !entry.fired {
                self.order.borrow_mut().remove(&entry.at);
            }
        }
    }
}

/// Sleeps until a deadline (at once if it has passed).
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    deadline: Instant,
    key: Option<usize>,
}

impl Sleep {
    /// A sleep until `deadline`.
    pub fn until(deadline: Instant) -> Sleep {
        Sleep {
            deadline,
            key: None,
        }
    }

    /// When it ends.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Judged by the ring's time of its last completions, not a clock read per poll
        // (a served connection polls its idle timer at every read). A deadline that
        // passed since then is caught by the ring's next turn: its wait is bounded by
        // the earliest timer, and the timers fire after it.
        if super::recent_now() >= self.deadline {
            return Poll::Ready(());
        }
        let (deadline, key) = (self.deadline, self.key);
        let (ready, key) = with_ring(|ring| {
            let timers = &ring.timers;
            let Some(k) = key else {
                return (false, Some(timers.insert(deadline, cx.waker().clone())));
            };
            let mut entries = timers.entries.borrow_mut();
            match entries.get_mut(k) {
                Some(e) if e.fired => (true, Some(k)),
                Some(e) => {
                    match &e.waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        _ => e.waker = Some(cx.waker().clone()),
                    }
                    (false, Some(k))
                }
                None => (true, None),
            }
        });
        self.key = key;
        if ready {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            let _ = super::context::try_with_ring(|ring| ring.timers.remove(k));
        }
    }
}
