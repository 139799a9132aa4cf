//! Deadlines on socket writes. A write still in flight at its deadline has its socket
//! shut down both ways, which ends the operation with an error (and the connection's
//! reads with end of stream): a peer that stops reading cannot hold a connection, its
//! queue or the task writing to it for longer than the timeout.
//!
//! Not a timer per write: a write registers its deadline in a slab (one clock read, an
//! insert and a remove), and one sweeper task per ring looks at the slab every quarter
//! of the shortest timeout in use. Most writes finish at once (the socket had room) and
//! never meet the sweeper; a deadline is kept to within a quarter of its timeout.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use slab::Slab;

use super::context::{try_with_ring, with_ring};
use super::timer::Sleep;

/// The sweeper never looks more often than this, whatever the timeouts.
const MIN_SWEEP: Duration = Duration::from_millis(5);

/// One write in flight.
struct Entry {
    deadline: Instant,
    fd: RawFd,
    expired: bool,
}

/// A ring's write deadlines.
pub(super) struct Deadlines {
    entries: RefCell<Slab<Entry>>,
    /// Time between sweeps: a quarter of the shortest timeout registered so far.
    every: Cell<Duration>,
    /// The sweeper task has been spawned on this ring.
    sweeping: Cell<bool>,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            entries: RefCell::new(Slab::new()),
            every: Cell::new(Duration::MAX),
            sweeping: Cell::new(false),
        }
    }
}

impl Deadlines {
    /// Shuts down the sockets of the writes past their deadline; marks them expired.
    fn sweep(&self, now: Instant) {
        for (_, e) in self.entries.borrow_mut().iter_mut() {
            if !e.expired && e.deadline <= now {
                e.expired = true;
                // SAFETY: shutdown(2) takes no memory. `fd` is open: the entry is
                // removed (its guard dropped) before the write that registered it ends,
                // and that write borrows the socket that owns the descriptor.
                unsafe { libc::shutdown(e.fd, libc::SHUT_RDWR) };
            }
        }
    }
}

/// A write's deadline, registered until this is dropped.
#[derive(Debug)]
#[must_use = "the deadline is kept only while this lives"]
pub struct WriteDeadline {
    key: usize,
}

impl WriteDeadline {
    /// The deadline passed and the socket was shut down.
    pub fn expired(&self) -> bool {
        try_with_ring(|r| {
            r.deadlines
                .entries
                .borrow()
                .get(self.key)
                .is_some_and(|e| e.expired)
        })
        .unwrap_or(false)
    }
}

impl Drop for WriteDeadline {
    fn drop(&mut self) {
        let _ = try_with_ring(|r| r.deadlines.entries.borrow_mut().try_remove(self.key));
    }
}

/// Registers a write on `fd` that must finish within `timeout`. `fd` must stay open
/// until the returned guard is dropped (hold the guard across the write, which borrows
/// the socket).
pub fn watch_write(fd: RawFd, timeout: Duration) -> WriteDeadline {
    with_ring(|r| {
        let d = &r.deadlines;
        let key = d.entries.borrow_mut().insert(Entry {
            deadline: Instant::now() + timeout,
            fd,
            expired: false,
        });
        d.every.set(d.every.get().min((timeout / 4).max(MIN_SWEEP)));
        if !d.sweeping.replace(true) {
            // Once per ring: the sweeper lives as long as the ring's tasks do.
            super::task::spawn(sweeper());
        }
        WriteDeadline { key }
    })
}

/// Sweeps this ring's deadlines every [`Deadlines::every`] while the ring runs.
async fn sweeper() {
    loop {
        let every = with_ring(|r| r.deadlines.every.get());
        Sleep::until(Instant::now() + every).await;
        with_ring(|r| r.deadlines.sweep(Instant::now()));
    }
}
