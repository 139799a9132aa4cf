//! Synchronisation between tasks of one worker thread: no lock, no atomic, no
//! allocation on the hot path.
//!
//! - [`WakeFlag`]: a wake-up flag. A subscriber's writer waits on one; the relay
//!   raises it when the subscriber's queue goes from empty to non-empty.
//! - [`LocalLock`]: a first-come, first-served lock (a connection's writers take turns).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Raised by [`WakeFlag::raise`], consumed by [`WakeFlag::wait`].
#[derive(Debug, Default)]
pub struct WakeFlag {
    raised: Cell<bool>,
    waiter: RefCell<Option<Waker>>,
}

impl WakeFlag {
    /// A lowered flag.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises the flag and wakes the waiting task, if any.
    pub fn raise(&self) {
        self.raised.set(true);
        if let Some(w) = self.waiter.borrow_mut().take() {
            w.wake();
        }
    }

    /// Lowers the flag without waiting (the waiter is about to take what it signals).
    pub fn lower(&self) {
        self.raised.set(false);
    }

    /// Resolves once the flag is raised (at once if it already is), lowering it.
    pub fn wait(&self) -> Wait<'_> {
        Wait { flag: self }
    }
}

/// The future of [`WakeFlag::wait`].
#[derive(Debug)]
pub struct Wait<'a> {
    flag: &'a WakeFlag,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.flag.raised.replace(false) {
            return Poll::Ready(());
        }
        let mut waiter = self.flag.waiter.borrow_mut();
        match waiter.as_ref() {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *waiter = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// A first-come, first-served async lock for tasks on one worker: whoever asked first
/// gets it first, so writers that queued their bytes in some order write them in that
/// order. No atomics; the holders are tasks of one thread.
#[derive(Debug, Default)]
pub struct LocalLock {
    next_ticket: Cell<u64>,
    serving: Cell<u64>,
    /// Tickets given up while waiting (their future was dropped).
    abandoned: RefCell<Vec<u64>>,
    waiters: RefCell<Vec<(u64, Waker)>>,
}

impl LocalLock {
    /// An unlocked lock.
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits for the lock; it is held until the guard is dropped.
    pub fn lock(&self) -> Lock<'_> {
        Lock {
            lock: self,
            ticket: None,
        }
    }

    /// Takes the lock now if it is free and nobody waits for it, without a guard (for
    /// a holder that keeps it across a ring operation rather than a scope); whoever
    /// took it must [`release`](Self::release) it.
    pub fn try_hold(&self) -> bool {
        let ticket = self.next_ticket.get();
        if self.serving.get() != ticket {
            return false;
        }
        self.next_ticket.set(ticket + 1);
        true
    }

    /// Lets go of a lock taken by [`try_hold`](Self::try_hold): the next in line gets it.
    pub fn release(&self) {
        self.advance();
    }

    /// Moves on to the next ticket still wanted, and wakes its holder.
    fn advance(&self) {
        let mut serving = self.serving.get() + 1;
        {
            let mut abandoned = self.abandoned.borrow_mut();
            while let Some(at) = abandoned.iter().position(|&t| t == serving) {
                abandoned.swap_remove(at);
                serving += 1;
            }
        }
        self.serving.set(serving);
        let mut waiters = self.waiters.borrow_mut();
        if let Some(at) = waiters.iter().position(|(t, _)| *t == serving) {
            let (_, w) = waiters.swap_remove(at);
            drop(waiters);
            w.wake();
        }
    }
}

/// The future of [`LocalLock::lock`].
#[derive(Debug)]
pub struct Lock<'a> {
    lock: &'a LocalLock,
    ticket: Option<u64>,
}

/// Holds a [`LocalLock`] until dropped.
#[derive(Debug)]
pub struct LockGuard<'a> {
    lock: &'a LocalLock,
}

impl<'a> Future for Lock<'a> {
    type Output = LockGuard<'a>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<LockGuard<'a>> {
        let lock = self.lock;
        let ticket = *self.ticket.get_or_insert_with(|| {
            let t = lock.next_ticket.get();
            lock.next_ticket.set(t + 1);
            t
        });
        if lock.serving.get() == ticket {
            self.ticket = None;
            return Poll::Ready(LockGuard { lock });
        }
        let mut waiters = lock.waiters.borrow_mut();
        match waiters.iter_mut().find(|(t, _)| *t == ticket) {
            Some((_, w)) if w.will_wake(cx.waker()) => {}
            Some((_, w)) => *w = cx.waker().clone(),
            None => waiters.push((ticket, cx.waker().clone())),
        }
        Poll::Pending
    }
}

impl Drop for Lock<'_> {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        self.lock.waiters.borrow_mut().retain(|(t, _)| *t != ticket);
        if self.lock.serving.get() == ticket {
            // Its turn came but it never took the lock: pass it on.
            self.lock.advance();
        } else {
            self.lock.abandoned.borrow_mut().push(ticket);
        }
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.lock.advance();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::ring::Ring;
    use crate::io::rt;
    use std::rc::Rc;

    #[test]
    fn raise_before_and_after_wait() {
        Ring::new().unwrap().block_on(async {
            let s = Rc::new(WakeFlag::new());
            s.raise();
            s.wait().await; // already raised: returns at once
            let s2 = Rc::clone(&s);
            let waiter = rt::spawn(async move {
                s2.wait().await;
                1
            });
            rt::yield_now().await;
            s.raise();
            assert_eq!(waiter.await, Some(1));
        });
    }

    #[test]
    fn lock_is_taken_in_the_order_asked_and_survives_a_dropped_waiter() {
        Ring::new().unwrap().block_on(async {
            let lock = Rc::new(LocalLock::new());
            let order = Rc::new(RefCell::new(Vec::new()));
            let first = lock.lock().await;
            let mut tasks = Vec::new();
            for i in 0..4 {
                let (lock, order) = (Rc::clone(&lock), Rc::clone(&order));
                tasks.push(rt::spawn(async move {
                    let _g = lock.lock().await;
                    order.borrow_mut().push(i);
                    rt::yield_now().await;
                }));
                rt::yield_now().await;
            }
            // A waiter that gives up does not block those behind it.
            let gave_up = rt::timeout(std::time::Duration::from_millis(1), lock.lock()).await;
            assert!(gave_up.is_err());
            drop(first);
            for t in tasks {
                t.await;
            }
            assert_eq!(*order.borrow(), [0, 1, 2, 3]);
            let _again = lock.lock().await;
        });
    }

    /// `try_hold` takes only a free lock nobody waits for; `release` hands it to the
    /// next in line.
    #[test]
    fn try_hold_takes_a_free_lock_and_release_passes_it_on() {
        Ring::new().unwrap().block_on(async {
            let lock = Rc::new(LocalLock::new());
            assert!(lock.try_hold());
            assert!(!lock.try_hold(), "held");
            let waiter = {
                let lock = Rc::clone(&lock);
                rt::spawn(async move {
                    let _g = lock.lock().await;
                })
            };
            rt::yield_now().await;
            assert!(!waiter.is_finished());
            lock.release();
            assert_eq!(waiter.await, Some(()));
            assert!(lock.try_hold(), "free again after the waiter's guard");
            let g = lock.lock();
            let mut g = std::pin::pin!(g);
            let waker = std::task::Waker::noop();
            let pending = g.as_mut().poll(&mut Context::from_waker(waker));
            assert!(pending.is_pending(), "a waiter queues behind the holder");
            lock.release();
            assert!(!lock.try_hold(), "the waiter's turn comes first");
        });
    }
}
