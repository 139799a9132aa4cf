//! A completion port: many operations in flight, one task that takes their results.
//!
//! An [`Op`](super::op::Op) is a future: its completion wakes the task that awaits it,
//! which polls it, and a task per socket pays a poll (and a wake) per operation. A
//! task that drives many sockets' writes at once (the relay's fan-out) submits them
//! through a [`Port`] instead: each submission hands the port what the operation must
//! keep alive (a `K` of the caller's choosing) and gets a token back; its completion
//! puts `(token, result)` on the port's list, and the port's task is woken once however
//! many completed. The port also has a flag that others raise ([`Port::raise`]) to wake
//! the same task for work of their own.
//!
//! The port, not the ring's table of operations, holds each operation's `K` until its
//! owner [releases](Port::release) it after the completion, and the completion's
//! `user_data` names the port and the token directly: a submission costs no slot in the
//! ring's table and no reference count, and a completion goes straight to its port.
//! The ring keeps every port used on it registered (and so alive) for as long as the
//! ring lives, so an operation's memory outlives the port's handle; if the ring goes
//! away with operations still in flight, their ports are leaked with them.
//!
//! Limits: at most 2^32 operations in flight on one port and 2^30 ports used on one
//! ring (a submission beyond either is refused, nothing is submitted).

use std::cell::{Cell, Ref, RefCell};
use std::rc::Rc;

use io_uring::squeue;
use slab::Slab;

use super::context::with_ring;
use crate::io::local::{Wait, WakeFlag};

/// The bit that marks a completion's `user_data` as a port's: below it, the port's
/// index in the ring's registry (bits 32..62) and the token (bits 0..32). The ring's
/// own two tags (`u64::MAX` and one below) are matched first; its table's indices
/// never reach this bit.
pub(super) const PORT_BIT: u64 = 1 << 62;

/// Ports one ring can register (the index must fit in bits 32..62).
const MAX_PORTS: usize = 1 << 30;

/// The `user_data` of a port's operation.
fn user_data(port: u32, token: u32) -> u64 {
    PORT_BIT | (u64::from(port) << 32) | u64::from(token)
}

/// The port index and token of a port's `user_data`.
pub(super) fn split(user_data: u64) -> (usize, u32) {
    (((user_data & !PORT_BIT) >> 32) as usize, user_data as u32)
}

/// What the ring calls with a port's completions (the port's `K` erased).
pub(super) trait Sink {
    /// A completion for the operation `token`.
    fn complete(&self, token: u32, result: i32);
}

/// Why a port refused a submission (nothing was submitted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// 2^32 operations already in flight on this port.
    #[error("2^32 operations in flight on one port")]
    TooManyOperations,
    /// 2^30 ports already registered with this ring.
    #[error("2^30 ports on one ring")]
    TooManyPorts,
    /// A resubmission of an operation that is in flight or was released.
    #[error("no such operation to resubmit, or it is in flight")]
    NotResubmittable,
}

/// A submission the port refused (a limit, module docs): nothing was submitted.
#[derive(Debug)]
pub struct Refused<K> {
    /// What the operation would have kept alive, handed back.
    pub keep: K,
    /// Which limit.
    pub why: PortError,
}

/// An operation's entry: what it keeps alive, and whether the kernel still has it.
struct Entry<K> {
    keep: K,
    in_flight: Cell<bool>,
}

/// What the ring and the port's task share.
struct Shared<K> {
    /// Each operation's entry, by token, from submission to release.
    entries: RefCell<Slab<Entry<K>>>,
    /// Completions not yet taken: the token and the result (`-errno` on failure).
    done: RefCell<Vec<(usize, i32)>>,
    /// Raised by [`Port::raise`] (or a completion); lowered by [`Port::ready`].
    ready: WakeFlag,
    /// The ring this port is registered with and its index there.
    registered: Cell<Option<(u64, u32)>>,
}

impl<K> Sink for Shared<K> {
    fn complete(&self, token: u32, result: i32) {
        // A shared borrow: the port's owner may hold one (`Port::keep`) when a full
        // submission queue makes the ring take completions.
        if let Some(e) = self.entries.borrow().get(token as usize) {
            e.in_flight.set(false);
        }
        self.done.borrow_mut().push((token as usize, result));
        self.ready.raise();
    }
}

/// A completion port on this thread's ring (see the module docs).
pub struct Port<K: 'static> {
    shared: Rc<Shared<K>>,
}

impl<K: 'static> Clone for Port<K> {
    fn clone(&self) -> Self {
        Port {
            shared: Rc::clone(&self.shared),
        }
    }
}

impl<K: 'static> Default for Port<K> {
    fn default() -> Self {
        Port {
            shared: Rc::new(Shared {
                entries: RefCell::new(Slab::new()),
                done: RefCell::new(Vec::new()),
                ready: WakeFlag::new(),
                registered: Cell::new(None),
            }),
        }
    }
}

impl<K: 'static> std::fmt::Debug for Port<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Port")
            .field("entries", &self.shared.entries.borrow().len())
            .field("done", &self.shared.done.borrow().len())
            .finish()
    }
}

impl<K: 'static> Port<K> {
    /// A port with nothing in flight.
    pub fn new() -> Port<K> {
        Port::default()
    }

    /// Submits `entry` on this thread's ring with `keep` as what it keeps alive;
    /// returns the token its completion comes back with. The port holds `keep` until
    /// [`release`](Self::release)d after that completion.
    ///
    /// # Safety
    ///
    /// Every pointer in `entry` must point into memory that `keep` owns (on the heap,
    /// not moved or freed while `keep` lives), and its file descriptor must stay open
    /// until the completion (owning the descriptor through `keep` does that).
    pub unsafe fn submit(&self, entry: squeue::Entry, keep: K) -> Result<usize, Refused<K>> {
        let token = self.shared.entries.borrow_mut().insert(Entry {
            keep,
            in_flight: Cell::new(true),
        });
        let pushed = match u32::try_from(token) {
            // SAFETY: the caller's guarantee, and the entry just made holds `keep`
            // until its completion.
            Ok(_) => unsafe { self.push(entry, token) },
            Err(_) => Err(PortError::TooManyOperations),
        };
        match pushed {
            Ok(()) => Ok(token),
            Err(why) => Err(Refused {
                keep: self.shared.entries.borrow_mut().remove(token).keep,
                why,
            }),
        }
    }

    /// Submits `entry` again as the operation `token`, whose last completion was taken
    /// and whose entry is not released (a write that went out in part, continued).
    ///
    /// # Safety
    ///
    /// As for [`submit`](Self::submit), with the `keep` given for `token`.
    pub unsafe fn resubmit(&self, entry: squeue::Entry, token: usize) -> Result<(), PortError> {
        match self.shared.entries.borrow().get(token) {
            Some(e) if !e.in_flight.get() => e.in_flight.set(true),
            _ => return Err(PortError::NotResubmittable),
        }
        // SAFETY: the caller's guarantee; the entry holds its `keep`.
        let pushed = unsafe { self.push(entry, token) };
        if pushed.is_err() {
            if let Some(e) = self.shared.entries.borrow().get(token) {
                e.in_flight.set(false);
            }
        }
        pushed
    }

    /// Pushes `entry` as operation `token` on this thread's ring, registering the port
    /// with the ring first if it is new there.
    ///
    /// # Safety
    ///
    /// The entry's memory is owned by the `keep` of `token`'s entry.
    unsafe fn push(&self, entry: squeue::Entry, token: usize) -> Result<(), PortError> {
        with_ring(|ring| {
            let port = match self.shared.registered.get() {
                Some((id, port)) if id == ring.id => port,
                _ => {
                    let mut ports = ring.ports.borrow_mut();
                    if ports.len() >= MAX_PORTS {
                        return Err(PortError::TooManyPorts);
                    }
                    ports.push(Rc::clone(&self.shared) as Rc<dyn Sink>);
                    let port = (ports.len() - 1) as u32;
                    self.shared.registered.set(Some((ring.id, port)));
                    port
                }
            };
            ring.port_ops.set(ring.port_ops.get() + 1);
            // SAFETY: the caller's guarantee; the ring keeps the port (and so the
            // entry's `keep`) registered while it lives, and the entry is released
            // only after its completion.
            unsafe { ring.push(entry.user_data(user_data(port, token as u32))) };
            Ok(())
        })
    }

    /// What operation `token` keeps alive, while it is not released.
    pub fn keep(&self, token: usize) -> Option<Ref<'_, K>> {
        Ref::filter_map(self.shared.entries.borrow(), |e| {
            e.get(token).map(|e| &e.keep)
        })
        .ok()
    }

    /// Ends operation `token` (its completion was taken and nothing resubmitted it):
    /// its `keep` back. `None` if there is no such operation or it is in flight.
    pub fn release(&self, token: usize) -> Option<K> {
        let mut entries = self.shared.entries.borrow_mut();
        if entries.get(token)?.in_flight.get() {
            return None;
        }
        Some(entries.remove(token).keep)
    }

    /// Wakes the port's task: work other than completions is waiting for it.
    pub fn raise(&self) {
        self.shared.ready.raise();
    }

    /// Moves the completions that arrived so far into `into`, in the order they came.
    pub fn take(&self, into: &mut Vec<(usize, i32)>) {
        into.append(&mut self.shared.done.borrow_mut());
    }

    /// Resolves when the port was raised or a completion arrived since the last time
    /// it resolved (at once if so).
    pub fn ready(&self) -> Wait<'_> {
        self.shared.ready.wait()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;

    use io_uring::{opcode, types};

    use super::*;
    use crate::io::ring::Ring;
    use crate::io::rt;

    /// Takes completions until `n` arrived.
    async fn take_n<K>(port: &Port<K>, n: usize) -> Vec<(usize, i32)> {
        let mut got = Vec::new();
        while got.len() < n {
            port.ready().await;
            port.take(&mut got);
        }
        got
    }

    /// Completions come back with their tokens, one wake for several; each keep stays
    /// with the port until released, and only after its completion.
    #[test]
    fn completions_come_back_with_their_tokens() {
        let ring = Ring::new().unwrap();
        ring.block_on(async {
            let port = Port::new();
            let mut tokens = Vec::new();
            for keep in ["a", "b", "c"] {
                // SAFETY: a NOP points to no memory.
                let token = unsafe { port.submit(opcode::Nop::new().build(), keep) }.unwrap();
                tokens.push(token);
            }
            assert!(port.release(tokens[0]).is_none(), "in flight: not released");
            let mut got = take_n(&port, 3).await;
            got.sort_unstable();
            let mut expected: Vec<_> = tokens.iter().map(|&t| (t, 0)).collect();
            expected.sort_unstable();
            assert_eq!(got, expected);
            assert_eq!(port.keep(tokens[1]).as_deref(), Some(&"b"));
            let released: Vec<_> = tokens.iter().map(|&t| port.release(t)).collect();
            assert_eq!(released, [Some("a"), Some("b"), Some("c")]);
            assert!(port.release(tokens[0]).is_none(), "released once");
            assert!(port.keep(tokens[0]).is_none());
        });
    }

    /// A read whose buffer only the ring holds: the caller drops the port's handle and
    /// its own at once, the kernel still writes into live memory, and the result comes
    /// back to a clone of the port.
    #[test]
    fn the_ring_keeps_the_memory_of_a_forgotten_operation() {
        let ring = Ring::new().unwrap();
        ring.block_on(async {
            let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
            let port: Port<Rc<RefCell<Vec<u8>>>> = Port::new();
            let watching = port.clone();
            let buf = Rc::new(RefCell::new(vec![0u8; 16]));
            let ptr = buf.borrow_mut().as_mut_ptr();
            let entry = opcode::Recv::new(types::Fd(b.as_raw_fd()), ptr, 16).build();
            // SAFETY: the buffer is owned by the Rc handed to the port as `keep`.
            let token = unsafe { port.submit(entry, Rc::clone(&buf)) }.unwrap();
            let weak = Rc::downgrade(&buf);
            drop(buf);
            drop(port);
            assert!(weak.upgrade().is_some(), "the port holds the buffer");
            rt::sleep(std::time::Duration::from_millis(5)).await;
            a.write_all(b"hello").unwrap();
            assert_eq!(take_n(&watching, 1).await, vec![(token, 5)]);
            let keep = watching.release(token).expect("done, not released");
            assert_eq!(&keep.borrow()[..5], b"hello");
            drop(keep);
            assert!(weak.upgrade().is_none(), "freed once released");
        });
    }

    /// A resubmitted operation completes again under its token; it cannot be
    /// resubmitted while in flight, nor once released.
    #[test]
    fn an_operation_goes_on_under_its_token() {
        let ring = Ring::new().unwrap();
        ring.block_on(async {
            let port = Port::new();
            let nop = || opcode::Nop::new().build();
            // SAFETY: a NOP points to no memory.
            let token = unsafe { port.submit(nop(), ()) }.unwrap();
            // SAFETY: as above.
            assert!(unsafe { port.resubmit(nop(), token) }.is_err(), "in flight");
            assert_eq!(take_n(&port, 1).await, vec![(token, 0)]);
            // SAFETY: as above.
            unsafe { port.resubmit(nop(), token) }.unwrap();
            assert!(port.release(token).is_none(), "in flight again");
            assert_eq!(take_n(&port, 1).await, vec![(token, 0)]);
            assert_eq!(port.release(token), Some(()));
            // SAFETY: as above.
            assert!(unsafe { port.resubmit(nop(), token) }.is_err(), "released");
        });
    }

    /// Two ports on one ring each get their own completions; a port used on a second
    /// ring (one after the other on a thread) is registered there too.
    #[test]
    fn completions_go_to_their_own_port() {
        let first: Port<u8> = Port::new();
        for _ in 0..2 {
            let ring = Ring::new().unwrap();
            ring.block_on(async {
                let second: Port<u8> = Port::new();
                for i in 0..50u8 {
                    let (port, keep) = if i % 2 == 0 {
                        (&first, i)
                    } else {
                        (&second, i)
                    };
                    // SAFETY: a NOP points to no memory.
                    unsafe { port.submit(opcode::Nop::new().build(), keep) }.unwrap();
                }
                for (port, parity) in [(&first, 0), (&second, 1)] {
                    let got = take_n(port, 25).await;
                    for (token, res) in got {
                        assert_eq!(res, 0);
                        assert_eq!(port.release(token).map(|k| k % 2), Some(parity));
                    }
                }
            });
        }
    }

    /// A ring that goes away with a port's operation in flight waits for it (bounded)
    /// before it frees the port's memory: the buffer is freed with what the kernel
    /// wrote into it.
    #[test]
    fn a_ring_waits_for_its_ports_operations_before_it_goes() {
        /// A read buffer that records what it holds when it is freed.
        #[derive(Debug)]
        struct Probe {
            buf: Vec<u8>,
            seen: Rc<RefCell<Vec<u8>>>,
        }
        impl Drop for Probe {
            fn drop(&mut self) {
                *self.seen.borrow_mut() = self.buf.clone();
            }
        }
        let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let seen = Rc::new(RefCell::new(Vec::new()));
        let ring = Ring::new().unwrap();
        ring.block_on(async {
            let port = Port::new();
            let mut probe = Box::new(Probe {
                buf: vec![0u8; 4],
                seen: Rc::clone(&seen),
            });
            let entry = opcode::Recv::new(types::Fd(b.as_raw_fd()), probe.buf.as_mut_ptr(), 4);
            // SAFETY: the buffer is on the heap, owned by the probe handed to the port.
            unsafe { port.submit(entry.build(), probe) }.unwrap();
        });
        let writer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            a.write_all(b"late").unwrap();
            a
        });
        drop(ring);
        assert_eq!(
            &seen.borrow()[..],
            b"late",
            "freed before the read completed"
        );
        writer.join().unwrap();
    }

    /// What a port still holds when its ring goes (an operation done but never
    /// released) is dropped with the ring, inside the ring's context, not before.
    #[test]
    fn what_a_port_still_holds_goes_with_its_ring() {
        /// Records, when dropped, whether a ring was current.
        #[derive(Debug)]
        struct InRing(Rc<Cell<Option<bool>>>);
        impl Drop for InRing {
            fn drop(&mut self) {
                self.0
                    .set(Some(super::super::context::try_with_ring(|_| ()).is_some()));
            }
        }
        let seen = Rc::new(Cell::new(None));
        let ring = Ring::new().unwrap();
        ring.block_on(async {
            let port = Port::new();
            let keep = InRing(Rc::clone(&seen));
            // SAFETY: a NOP points to no memory.
            unsafe { port.submit(opcode::Nop::new().build(), keep) }.unwrap();
            take_n(&port, 1).await;
        });
        assert_eq!(seen.get(), None, "held while the ring lives");
        drop(ring);
        assert_eq!(seen.get(), Some(true));
    }

    /// `raise` wakes the port's task with no completion.
    #[test]
    fn raise_wakes_the_waiting_task() {
        let ring = Ring::new().unwrap();
        ring.block_on(async {
            let port: Port<()> = Port::new();
            let waiting = {
                let port = port.clone();
                rt::spawn(async move {
                    port.ready().await;
                    let mut got = Vec::new();
                    port.take(&mut got);
                    got.len()
                })
            };
            rt::sleep(std::time::Duration::from_millis(2)).await;
            assert!(!waiting.is_finished());
            port.raise();
            assert_eq!(waiting.await, Some(0));
        });
    }
}
