//! A completion port: many operations in flight, one task that takes their results.
//!
//! An [`Op`](super::op::Op) is a future: its completion wakes the task that awaits it,
//! which polls it, and a task per socket pays a poll (and a wake) per operation. A
//! task that drives many sockets' writes at once (the relay's fan-out) submits them
//! through a [`Port`] instead: each operation carries a token of the caller's
//! choosing, its completion puts `(token, result)` on the port's list, and the port's
//! task is woken once however many completed. The port also has a flag that others
//! raise ([`Port::raise`]) to wake the same task for work of their own.
//!
//! The memory an operation points into is the caller's, kept alive by the ring: each
//! submission hands the ring an `Rc` of what owns it, dropped only when the completion
//! has arrived (or leaked with the ring's other operations if the ring goes away with
//! it in flight). So the caller may forget an operation without cancelling it.

use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;

use io_uring::squeue;

use super::context::with_ring;
use super::op::Slot;
use crate::io::local::{Wait, WakeFlag};

/// What the ring and the port's task share.
#[derive(Default)]
pub(super) struct PortShared {
    /// Completions not yet taken: the submission's token and the result (`-errno` on
    /// failure).
    done: RefCell<Vec<(u64, i32)>>,
    /// Raised by [`Port::raise`] (or a completion); lowered by [`Port::ready`].
    ready: WakeFlag,
}

impl PortShared {
    /// A completion for the submission `token` (called by the ring).
    pub(super) fn complete(&self, token: u64, result: i32) {
        self.done.borrow_mut().push((token, result));
        self.ready.raise();
    }
}

/// A completion port on this thread's ring (see the module docs).
#[derive(Clone, Default)]
pub struct Port {
    shared: Rc<PortShared>,
}

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Port")
            .field("done", &self.shared.done.borrow().len())
            .finish()
    }
}

impl Port {
    /// A port with nothing in flight.
    pub fn new() -> Port {
        Port::default()
    }

    /// Submits `entry` on this thread's ring; its completion comes back through this
    /// port as `(token, result)`. The ring holds `keep` until then.
    ///
    /// # Safety
    ///
    /// Every pointer in `entry` must point into memory that `keep` owns (on the heap,
    /// not moved or freed while `keep` lives), and its file descriptor must stay open
    /// until the completion (owning the descriptor through `keep` does that).
    pub unsafe fn submit(&self, entry: squeue::Entry, token: u64, keep: Rc<dyn Any>) {
        with_ring(|ring| {
            let index = ring.ops.borrow_mut().insert(Slot::Port {
                port: Rc::clone(&self.shared),
                token,
                _keep: keep,
            });
            // SAFETY: the caller guarantees the entry's memory is owned by `keep`, which
            // the slot holds until the completion arrives.
            unsafe { ring.push(entry.user_data(index as u64)) };
        });
    }

    /// Wakes the port's task: work other than completions is waiting for it.
    pub fn raise(&self) {
        self.shared.ready.raise();
    }

    /// Moves the completions that arrived so far into `into`, in the order they came.
    pub fn take(&self, into: &mut Vec<(u64, i32)>) {
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

    /// Completions come back with their tokens, one wake for several; the memory stays
    /// alive through the ring while the caller holds nothing.
    #[test]
    fn completions_come_back_with_their_tokens() {
        let ring = Ring::new().unwrap();
        ring.block_on(async {
            let port = Port::new();
            for token in [7u64, 9, 11] {
                // SAFETY: a NOP points to no memory.
                unsafe { port.submit(opcode::Nop::new().build(), token, Rc::new(())) };
            }
            let mut got = Vec::new();
            while got.len() < 3 {
                port.ready().await;
                port.take(&mut got);
            }
            got.sort_unstable();
            assert_eq!(got, vec![(7, 0), (9, 0), (11, 0)]);
        });
    }

    /// A read whose buffer only the ring holds: the caller drops its handle at once,
    /// the kernel still writes into live memory, and the result comes back.
    #[test]
    fn the_ring_keeps_the_memory_of_a_forgotten_operation() {
        let ring = Ring::new().unwrap();
        ring.block_on(async {
            let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
            let port = Port::new();
            let buf: Rc<RefCell<Vec<u8>>> = Rc::new(RefCell::new(vec![0u8; 16]));
            let ptr = buf.borrow_mut().as_mut_ptr();
            let entry = opcode::Recv::new(types::Fd(b.as_raw_fd()), ptr, 16).build();
            // SAFETY: the buffer is owned by the Rc handed to the ring as `keep`.
            unsafe { port.submit(entry, 1, Rc::clone(&buf) as Rc<dyn Any>) };
            let weak = Rc::downgrade(&buf);
            drop(buf);
            assert!(weak.upgrade().is_some(), "the ring holds the buffer");
            rt::sleep(std::time::Duration::from_millis(5)).await;
            a.write_all(b"hello").unwrap();
            let mut got = Vec::new();
            while got.is_empty() {
                port.ready().await;
                port.take(&mut got);
            }
            assert_eq!(got, vec![(1, 5)]);
            assert!(weak.upgrade().is_none(), "released after the completion");
        });
    }

    /// `raise` wakes the port's task with no completion.
    #[test]
    fn raise_wakes_the_waiting_task() {
        let ring = Ring::new().unwrap();
        ring.block_on(async {
            let port = Port::new();
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
