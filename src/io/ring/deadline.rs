//! Deadlines on socket writes. A write still in flight at its deadline has its socket
//! shut down both ways, which ends the operation with an error (and the connection's
//! reads with end of stream): a peer that stops reading cannot hold a connection, its
//! queue or the task writing to it for longer than the timeout.
//!
//! Not a timer per write, nor a registration per write: a socket registers one
//! [`WriteWatch`] with its ring (at its first write under a timeout) and each write
//! arms it (two cell writes, its deadline taken from the ring's
//! [`recent_now`](super::recent_now), not a clock read) and disarms it when done. One
//! sweeper task per ring looks at the armed watches every quarter of the shortest
//! timeout in use. Most writes finish at once (the socket had room) and never meet the
//! sweeper; a deadline is kept to within a quarter of its timeout.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use slab::Slab;

use super::context::{try_with_ring, with_ring};
use super::timer::Sleep;

/// The sweeper never looks more often than this, whatever the timeouts.
const MIN_SWEEP: Duration = Duration::from_millis(5);

/// One socket's watch, shared by its [`WriteWatch`] and the ring's sweeper.
#[derive(Debug)]
struct Watch {
    fd: RawFd,
    /// The armed write's deadline (`None`: no write in flight).
    deadline: Cell<Option<Instant>>,
    /// The sweeper shut the socket down for the armed write.
    expired: Cell<bool>,
    /// The timeout of the last arming (the ring's sweep interval already allows for it).
    timeout: Cell<Option<Duration>>,
}

/// A ring's write watches.
pub(super) struct Deadlines {
    watches: RefCell<Slab<Rc<Watch>>>,
    /// Time between sweeps: a quarter of the shortest timeout armed so far.
    every: Cell<Duration>,
    /// The sweeper task has been spawned on this ring.
    sweeping: Cell<bool>,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            watches: RefCell::new(Slab::new()),
            every: Cell::new(Duration::MAX),
            sweeping: Cell::new(false),
        }
    }
}

impl Deadlines {
    /// Shuts down the sockets of the armed writes past their deadline; marks them
    /// expired.
    fn sweep(&self, now: Instant) {
        for (_, w) in self.watches.borrow().iter() {
            if !w.expired.get() && w.deadline.get().is_some_and(|d| d <= now) {
                w.expired.set(true);
                // SAFETY: shutdown(2) takes no memory. `fd` is open: a watch is armed
                // only by a write in flight ([`Armed`] disarms it when the write ends
                // or is dropped), and that write borrows the socket that owns the
                // descriptor.
                unsafe { libc::shutdown(w.fd, libc::SHUT_RDWR) };
            }
        }
    }
}

/// A socket's write deadline, registered with this thread's ring until dropped.
#[derive(Debug)]
pub struct WriteWatch {
    key: usize,
    watch: Rc<Watch>,
}

impl WriteWatch {
    /// Registers the socket `fd`, which must stay open while a write is armed (see
    /// [`arm`](Self::arm)).
    pub fn register(fd: RawFd) -> WriteWatch {
        let watch = Rc::new(Watch {
            fd,
            deadline: Cell::new(None),
            expired: Cell::new(false),
            timeout: Cell::new(None),
        });
        let key = with_ring(|r| r.deadlines.watches.borrow_mut().insert(Rc::clone(&watch)));
        WriteWatch { key, watch }
    }

    /// Arms the watch for a write that must finish within `timeout`; disarmed when the
    /// returned guard is dropped (hold it across the write, which borrows the socket).
    pub fn arm(&self, timeout: Duration) -> Armed {
        with_ring(|r| {
            // The ring's time of its last completions, not a clock read per write: the
            // deadline is early by at most the time the ring's tasks have run since.
            self.watch.deadline.set(Some(r.now.get() + timeout));
            self.watch.expired.set(false);
            if self.watch.timeout.replace(Some(timeout)) != Some(timeout) {
                let d = &r.deadlines;
                d.every.set(d.every.get().min((timeout / 4).max(MIN_SWEEP)));
                if !d.sweeping.replace(true) {
                    // Once per ring: the sweeper lives as long as the ring's tasks do.
                    super::task::spawn(sweeper());
                }
            }
        });
        Armed {
            watch: Rc::clone(&self.watch),
        }
    }
}

impl Drop for WriteWatch {
    fn drop(&mut self) {
        let _ = try_with_ring(|r| r.deadlines.watches.borrow_mut().try_remove(self.key));
    }
}

/// An armed write; dropping it disarms the watch.
#[derive(Debug)]
#[must_use = "the deadline is kept only while this lives"]
pub struct Armed {
    watch: Rc<Watch>,
}

impl Armed {
    /// The deadline passed and the socket was shut down.
    pub fn expired(&self) -> bool {
        self.watch.expired.get()
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        self.watch.deadline.set(None);
    }
}

/// Sweeps this ring's deadlines every [`Deadlines::every`] while the ring runs.
async fn sweeper() {
    loop {
        let every = with_ring(|r| r.deadlines.every.get());
        Sleep::until(Instant::now() + every).await;
        with_ring(|r| r.deadlines.sweep(Instant::now()));
    }
}
