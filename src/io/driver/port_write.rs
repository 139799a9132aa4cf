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

use std::cell::{Cell, RefCell, RefMut};
use std::io;
use std::rc::Rc;
use std::time::Duration;

use super::Driver;
use crate::io::ring::deadline::Armed;
use crate::io::ring::port::Port;
use crate::io::ring::WriteBatch;

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

/// What a write through a [`Port`] keeps alive until it ends: the writer's owner.
///
/// The port holds the `K` until the write's completion; the batch and the socket the
/// kernel uses are the writer's, so `K` must own the writer. A reference handed out
/// from `&self` of a `'static` type lives as long as `self` (or longer), and the
/// writer checks, per write, that it is the one `writer` names.
pub trait OwnsWriter: 'static {
    /// The writer this owns.
    fn writer(&self) -> &PortWriter;
}

impl OwnsWriter for Rc<PortWriter> {
    fn writer(&self) -> &PortWriter {
        self
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
    /// Let go of the batch, then follow with [`submit`](Self::submit), or
    /// [`abandon`](Self::abandon) if there is nothing to write.
    pub fn begin(&self) -> Option<RefMut<'_, WriteBatch>> {
        if self.holding.get() || self.driver.transport().begin_port_write().is_none() {
            return None;
        }
        self.holding.set(true);
        Some(self.batch.borrow_mut())
    }

    /// Gives the turn back without writing (the batch is cleared); nothing while a
    /// write is in flight.
    pub fn abandon(&self) {
        if self.in_flight.get() {
            return;
        }
        if self.holding.replace(false) {
            let mut batch = self.batch.borrow_mut();
            batch.frames.clear();
            batch.times.clear();
            self.driver.transport().end_port_write();
        }
    }

    /// Submits the batch through `port`, with `keep` (which owns this writer) held by
    /// the port until the write ends; returns the token its completion comes back
    /// with, to be handed to [`completed`](Self::completed). Refused, `keep` handed
    /// back and nothing submitted (the turn is still held: [`abandon`](Self::abandon)
    /// it), unless the turn was taken with [`begin`](Self::begin), no write is in
    /// flight, `keep` is this writer's owner and the port takes it.
    pub fn submit<K: OwnsWriter>(&self, port: &Port<K>, keep: K) -> Result<usize, K> {
        if !self.holding.get() || self.in_flight.get() || !std::ptr::eq(keep.writer(), self) {
            return Err(keep);
        }
        *self.deadline.borrow_mut() = self.driver.transport().watch_write();
        let entry = self.entry();
        self.in_flight.set(true);
        // SAFETY: the entry points into `self.batch` (frames behind `Bytes`, the iovecs
        // and msghdr in the batch's heap memory), which nothing changes while
        // `in_flight` is set (`begin` refuses, `completed` clears it first). `keep`
        // owns this writer (checked above: `OwnsWriter` hands out a reference that
        // lives as long as `keep`), which owns the batch and, through its driver, the
        // socket's descriptor; the port holds `keep` until the completion.
        match unsafe { port.submit(entry, keep) } {
            Ok(token) => Ok(token),
            Err(refused) => {
                tracing::error!(error = %refused.why, "port write refused");
                self.in_flight.set(false);
                *self.deadline.borrow_mut() = None;
                Err(refused.keep)
            }
        }
    }

    /// The submission entry for what is left of the batch.
    fn entry(&self) -> io_uring::squeue::Entry {
        let mut batch = self.batch.borrow_mut();
        batch.send_entry(self.driver.transport().tcp())
    }

    /// Takes the result of the write in flight (its completion's `res`, for `token`). A
    /// partly written batch is resubmitted at once, as `token` again.
    pub fn completed<K: OwnsWriter>(&self, port: &Port<K>, token: usize, res: i32) -> Written {
        if !self.in_flight.replace(false) {
            return Written::Done(Ok(()));
        }
        let mut sent = self.batch.borrow_mut().sent(res);
        let expired = self
            .deadline
            .borrow()
            .as_ref()
            .is_some_and(|(a, _)| a.expired());
        if matches!(sent, Ok(false)) && !expired {
            let ours = port
                .keep(token)
                .is_some_and(|k| std::ptr::eq(k.writer(), self));
            let entry = self.entry();
            self.in_flight.set(true);
            // SAFETY: as in `submit`: the entry points into the batch, unchanged while
            // `in_flight` is set, and `token`'s keep (checked to be this writer's owner)
            // is held by the port until the completion.
            let resubmitted = ours && unsafe { port.resubmit(entry, token) }.is_ok();
            if resubmitted {
                return Written::Partly;
            }
            self.in_flight.set(false);
            sent = Err(io::Error::other("a partly done port write could not go on"));
        }
        let transport = self.driver.transport();
        let res = transport.check_deadline(self.deadline.take(), sent.map(drop));
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

#[cfg(test)]
mod tests {
    use std::io::Read;

    use bytes::Bytes;

    use super::*;
    use crate::io::ring::{self, Ring};
    use crate::io::transport::Transport;
    use crate::ws::{Limits, Role};

    /// A writer over a plain loopback connection, and the peer's end (std).
    async fn pair() -> (Rc<PortWriter>, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = ring::connect(addr).await.unwrap();
        let (peer, _) = listener.accept().unwrap();
        let driver = Driver::new(
            Transport::plain(stream),
            addr,
            Role::Server,
            Limits::default(),
            Vec::new(),
        );
        (Rc::new(PortWriter::new(Rc::new(driver))), peer)
    }

    /// Submits `w`'s batch through `port`, waits for the write to end and releases it;
    /// how it ended, and how many times the socket took part of it.
    async fn write(w: &Rc<PortWriter>, port: &Port<Rc<PortWriter>>) -> (io::Result<()>, usize) {
        let Ok(token) = w.submit(port, Rc::clone(w)) else {
            panic!("the write was refused");
        };
        assert!(w.in_flight());
        assert!(
            w.begin().is_none(),
            "no second write while one is in flight"
        );
        let (mut partly, mut got) = (0, Vec::new());
        loop {
            port.ready().await;
            port.take(&mut got);
            for (t, res) in got.drain(..) {
                assert_eq!(t, token);
                match w.completed(port, token, res) {
                    Written::Partly => partly += 1,
                    Written::Done(res) => {
                        assert!(port.release(token).is_some(), "the port held the writer");
                        return (res, partly);
                    }
                }
            }
        }
    }

    /// Frames larger than the socket takes at once go out whole and in order (the rest
    /// resubmitted from where the socket stopped); the write turn is held meanwhile and
    /// given back after; the queue times come back once.
    #[test]
    fn a_batch_goes_out_whole_through_partial_writes_holding_the_turn() {
        Ring::new().unwrap().block_on(async {
            let (w, mut peer) = pair().await;
            let frames: Vec<Bytes> = (0u8..4).map(|i| Bytes::from(vec![i; 3 << 20])).collect();
            let total: usize = frames.iter().map(Bytes::len).sum();
            let reader = std::thread::spawn(move || {
                let mut all = Vec::new();
                peer.read_to_end(&mut all).unwrap();
                all
            });
            let port = Port::new();
            {
                let mut batch = w.begin().expect("the turn is free");
                batch.frames.extend(frames.iter().cloned());
                batch.times.extend([1, 2, 3, 4]);
            }
            let (res, partly) = write(&w, &port).await;
            res.unwrap();
            assert!(partly > 0, "12 MiB in one send on loopback");
            let mut times = Vec::new();
            assert_eq!(w.take_times(|t| times.push(t)), 4);
            assert_eq!(times, [1, 2, 3, 4]);
            assert!(w.begin().is_some(), "the turn is free again");
            w.abandon();
            w.driver.transport().shutdown_both_now();
            let all = reader.join().unwrap();
            assert_eq!(all.len(), total);
            let expected: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
            assert!(all == expected, "bytes out of order");
        });
    }

    /// A write is refused, nothing submitted and the turn still held, without the turn,
    /// while one is in flight, or with a keep that does not own the writer.
    #[test]
    fn a_write_is_refused_unless_it_is_the_writers_own() {
        Ring::new().unwrap().block_on(async {
            let (w, _peer) = pair().await;
            let (other, _other_peer) = pair().await;
            let port = Port::new();
            assert!(w.submit(&port, Rc::clone(&w)).is_err(), "no turn taken");
            w.begin()
                .expect("the turn is free")
                .frames
                .push(Bytes::from_static(b"x"));
            assert!(w.submit(&port, Rc::clone(&other)).is_err(), "not its owner");
            assert!(!w.in_flight());
            let token = w.submit(&port, Rc::clone(&w)).expect("its own");
            assert!(w.submit(&port, Rc::clone(&w)).is_err(), "one in flight");
            let mut got = Vec::new();
            while got.is_empty() {
                port.ready().await;
                port.take(&mut got);
            }
            assert!(matches!(
                w.completed(&port, token, got[0].1),
                Written::Done(Ok(()))
            ));
            assert!(port.release(token).is_some());
        });
    }

    /// A write to a peer that is gone fails, drops its frames and gives the turn back.
    #[test]
    fn a_write_to_a_vanished_peer_fails_and_gives_the_turn_back() {
        Ring::new().unwrap().block_on(async {
            let (w, peer) = pair().await;
            drop(peer);
            let port = Port::new();
            let mut failed = false;
            // The first writes may still be taken by the kernel before the reset.
            for _ in 0..50 {
                {
                    let mut batch = w.begin().expect("the turn is free");
                    batch.frames.push(Bytes::from(vec![7u8; 64 << 10]));
                    batch.times.push(0);
                }
                let (res, _) = write(&w, &port).await;
                w.take_times(|_| {});
                if res.is_err() {
                    failed = true;
                    break;
                }
                crate::io::rt::sleep(std::time::Duration::from_millis(2)).await;
            }
            assert!(failed, "writes to a closed peer kept succeeding");
            let batch = w.begin().expect("the turn is back after a failure");
            assert!(batch.frames.is_empty());
        });
    }
}
