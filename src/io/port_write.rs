//! One connection's writes submitted through a completion port
//! ([`Port`]), for a task that writes many connections at once (the relay's fan-out)
//! rather than a task per connection awaiting its own writes.
//!
//! A [`PortWriter`] owns the batch being written and the connection (through its
//! driver), and hands itself to the ring as the memory to keep until the completion:
//! so the batch is never changed or freed while the kernel reads it, and the socket
//! stays open, whatever its owner does meanwhile. While a write is in flight it holds
//! the connection's write turn (nothing else writes in between) and its write
//! deadline (a peer that stops reading gets its socket shut down, which ends the
//! write). Plain TCP only: TLS records are made by the connection's own tasks.

use std::any::Any;
use std::cell::{Cell, RefCell, RefMut};
use std::io;
use std::rc::Rc;
use std::time::Duration;

use super::driver::Driver;
use super::ring::deadline::Armed;
use super::ring::port::Port;
use super::ring::WriteBatch;

/// A connection's writes through a [`Port`] (see the module docs).
pub struct PortWriter {
    driver: Rc<Driver>,
    /// The frames being written (the kernel reads them where they are).
    batch: RefCell<WriteBatch>,
    /// A write is in flight: the batch is the kernel's.
    in_flight: Cell<bool>,
    /// The write turn is taken (from [`begin`](Self::begin) to the write's end).
    holding: Cell<bool>,
    /// The write's deadline, while it is in flight.
    deadline: RefCell<Option<(Armed, Duration)>>,
}

impl std::fmt::Debug for PortWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortWriter")
            .field("in_flight", &self.in_flight.get())
            .finish()
    }
}

/// How a write through the port ended.
#[derive(Debug)]
pub enum Written {
    /// The socket took part of it; the rest is in flight again.
    Partly,
    /// Done: every frame written, or the write failed (then the frames are dropped).
    Done(io::Result<()>),
}

impl PortWriter {
    /// A writer for the connection `driver` drives.
    pub fn new(driver: Rc<Driver>) -> PortWriter {
        PortWriter {
            driver,
            batch: RefCell::new(WriteBatch::default()),
            in_flight: Cell::new(false),
            holding: Cell::new(false),
            deadline: RefCell::new(None),
        }
    }

    /// Whether a write is in flight.
    pub fn in_flight(&self) -> bool {
        self.in_flight.get()
    }

    /// Takes the connection's write turn and gives the (empty) batch to fill; `None`
    /// if the connection is TLS, a write is in flight, or another writer has the turn.
    /// Follow with [`submit`](Self::submit), or [`abandon`](Self::abandon) if there is
    /// nothing to write.
    pub fn begin(&self) -> Option<RefMut<'_, WriteBatch>> {
        if self.holding.get() || self.driver.transport().begin_port_write().is_none() {
            return None;
        }
        self.holding.set(true);
        Some(self.batch.borrow_mut())
    }

    /// Gives the turn back without writing (the batch is cleared).
    pub fn abandon(&self) {
        if self.holding.replace(false) && !self.in_flight.get() {
            let mut batch = self.batch.borrow_mut();
            batch.frames.clear();
            batch.times.clear();
            self.driver.transport().end_port_write();
        }
    }

    /// Submits the batch through `port`; its completion comes back as `token`, to be
    /// handed to [`completed`](Self::completed). Does nothing unless the turn was taken
    /// with [`begin`](Self::begin) and no write is in flight.
    pub fn submit(self: &Rc<Self>, port: &Port, token: u64) {
        if !self.holding.get() || self.in_flight.get() {
            return;
        }
        *self.deadline.borrow_mut() = self.driver.transport().write_deadline();
        self.send(port, token);
    }

    fn send(self: &Rc<Self>, port: &Port, token: u64) {
        let entry = {
            let mut batch = self.batch.borrow_mut();
            batch.send_entry(self.driver.transport().tcp())
        };
        self.in_flight.set(true);
        let keep: Rc<dyn Any> = Rc::<PortWriter>::clone(self);
        // SAFETY: the entry points into `self.batch` (frames behind `Bytes`, the iovecs
        // and msghdr in the batch's heap memory), which nothing changes while
        // `in_flight` is set (`begin` refuses, `completed` clears it first); `keep` is
        // this writer, which owns the batch and, through its driver, the socket's
        // descriptor, and the ring holds it until the completion arrives.
        unsafe { port.submit(entry, token, keep) };
    }

    /// Takes the result of the write in flight (its completion's `res`). A partly
    /// written batch is resubmitted at once, as `token` again.
    pub fn completed(self: &Rc<Self>, port: &Port, token: u64, res: i32) -> Written {
        if !self.in_flight.replace(false) {
            return Written::Done(Ok(()));
        }
        let sent = self.batch.borrow_mut().sent(res);
        let expired = self
            .deadline
            .borrow()
            .as_ref()
            .is_some_and(|(a, _)| a.expired());
        if matches!(sent, Ok(false)) && !expired {
            self.send(port, token);
            return Written::Partly;
        }
        let transport = self.driver.transport();
        let res = transport.write_result(self.deadline.take(), sent.map(drop));
        if res.is_err() {
            self.batch.borrow_mut().frames.clear();
        }
        self.holding.set(false);
        transport.end_port_write();
        Written::Done(res)
    }

    /// The queue times of the frames of the write that just ended (see
    /// [`WriteBatch::times`]), taken out of the batch.
    pub fn take_times(&self, mut each: impl FnMut(u64)) -> usize {
        if self.in_flight.get() {
            return 0;
        }
        let mut batch = self.batch.borrow_mut();
        let n = batch.times.len();
        batch.times.drain(..).for_each(&mut each);
        n
    }
}
