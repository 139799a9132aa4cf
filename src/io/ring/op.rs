//! One ring operation as a future: the submission entry goes into the ring when the
//! `Op` is made, the completion wakes the task that awaits it, and the memory the
//! kernel reads or writes (buffers, `iovec`s, socket addresses) is owned by the `Op`
//! until the completion has arrived, even if the future is dropped first.
//!
//! A dropped `Op` whose completion has not arrived hands its memory to the ring (the
//! only allocation on this path, and only then) and asks the kernel to cancel it; the
//! memory is freed when the (cancelled) completion comes. So a buffer is never freed
//! while the kernel may still write into it.

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use io_uring::{opcode, squeue};

use super::context::with_ring;

/// `user_data` of the cancel requests the ring makes itself (their completions are
/// ignored).
pub(super) const CANCEL_TAG: u64 = u64::MAX - 1;

/// What an operation's slot holds.
pub(super) enum Slot {
    /// Submitted; `waker` is the task awaiting it.
    InFlight { waker: Option<Waker> },
    /// Completed: the result (`-errno` on failure) and the completion's flags.
    Done { result: i32 },
    /// The future was dropped before its completion: the memory the kernel may still
    /// touch lives here until the completion arrives. `yields_fd`: a successful
    /// result is a descriptor that nobody will take, closed when it comes.
    Orphaned {
        _memory: Box<dyn Any>,
        yields_fd: bool,
    },
}

impl Slot {
    /// Records a completion; returns whether the slot can be freed now (an orphan's).
    pub(super) fn complete(&mut self, result: i32) -> bool {
        match self {
            Slot::InFlight { waker } => {
                if let Some(w) = waker.take() {
                    w.wake();
                }
                *self = Slot::Done { result };
                false
            }
            Slot::Orphaned { yields_fd, .. } => {
                if *yields_fd && result >= 0 {
                    // SAFETY: the completion's descriptor is new and owned by no one
                    // (its future is gone); closing it is the only thing left to do.
                    unsafe { libc::close(result) };
                }
                true
            }
            // A second completion for a one-shot op cannot happen; keep the first.
            Slot::Done { .. } => false,
        }
    }
}

/// An operation in flight, owning `D` (the memory the kernel uses) until it completes.
pub struct Op<D: 'static> {
    /// The slot and the memory, until the completion is taken.
    state: Option<(usize, D)>,
    /// A successful result is a new descriptor (accept): see [`Op::yields_fd`].
    yields_fd: bool,
    /// Ops belong to the thread (ring) that made them.
    _not_send: PhantomData<*const ()>,
}

impl<D: 'static> Op<D> {
    /// Submits `entry` on this thread's ring, `data` owning every buffer the entry
    /// points into.
    ///
    /// # Safety
    ///
    /// Every pointer in `entry` must point into memory owned by `data` (on the heap,
    /// so moving `data` does not move it), or be valid for as long as the op is in
    /// flight; the file descriptor must stay open until the completion.
    pub unsafe fn submit(entry: squeue::Entry, data: D) -> Op<D> {
        let index = with_ring(|ring| {
            let index = ring.ops.borrow_mut().insert(Slot::InFlight { waker: None });
            // SAFETY: the caller guarantees the entry's memory outlives the op, and the
            // slot keeps `data` (here or orphaned) until the completion arrives.
            unsafe { ring.push(entry.user_data(index as u64)) };
            index
        });
        Op {
            state: Some((index, data)),
            yields_fd: false,
            _not_send: PhantomData,
        }
    }

    /// Marks an op whose successful result is a new descriptor (accept): if the future
    /// is dropped before the completion, the ring closes what it returns.
    pub fn yields_fd(mut self) -> Op<D> {
        self.yields_fd = true;
        self
    }
}

impl<D: 'static + Unpin> Future for Op<D> {
    /// The completion's result (`>= 0`, or `-errno`) and the memory, back.
    type Output = (i32, D);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // As with any future, polling after completion is the caller's bug.
        let index = match &self.state {
            Some((index, _)) => *index,
            None => panic!("ring op polled after it completed"),
        };
        let done = with_ring(|ring| {
            let mut ops = ring.ops.borrow_mut();
            match &mut ops[index] {
                Slot::Done { result } => {
                    let r = *result;
                    ops.remove(index);
                    Some(r)
                }
                Slot::InFlight { waker } => {
                    match waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        _ => *waker = Some(cx.waker().clone()),
                    }
                    None
                }
                Slot::Orphaned { .. } => Some(-libc::ECANCELED),
            }
        });
        match (done, self.state.take()) {
            (Some(result), Some((_, data))) => Poll::Ready((result, data)),
            (_, state) => {
                self.state = state;
                Poll::Pending
            }
        }
    }
}

impl<D: 'static> Drop for Op<D> {
    fn drop(&mut self) {
        let Some((index, data)) = self.state.take() else {
            return;
        };
        // If the thread's ring is gone there is nothing to cancel (its drop waited for
        // or abandoned every op).
        let _ = super::context::try_with_ring(|ring| {
            let mut ops = ring.ops.borrow_mut();
            match ops.get_mut(index) {
                Some(Slot::Done { .. }) => {
                    ops.remove(index);
                }
                Some(slot @ Slot::InFlight { .. }) => {
                    *slot = Slot::Orphaned {
                        _memory: Box::new(data),
                        yields_fd: self.yields_fd,
                    };
                    drop(ops);
                    let cancel = opcode::AsyncCancel::new(index as u64)
                        .build()
                        .user_data(CANCEL_TAG);
                    // SAFETY: a cancel request points to no memory.
                    unsafe { ring.push(cancel) };
                }
                Some(Slot::Orphaned { .. }) | None => {}
            }
        });
    }
}
