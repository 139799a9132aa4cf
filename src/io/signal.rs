//! A wake-up flag for tasks on one worker thread: no lock, no atomic, no allocation.
//!
//! A subscriber's writer waits on one; the relay raises it when the subscriber's queue
//! goes from empty to non-empty. `tokio::sync::Notify` would do the same job but takes a
//! mutex when a waiter is present, which is the common case here, once per subscriber
//! per message.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Raised by [`LocalSignal::raise`], consumed by [`LocalSignal::wait`].
#[derive(Debug, Default)]
pub struct LocalSignal {
    raised: Cell<bool>,
    waiter: RefCell<Option<Waker>>,
}

impl LocalSignal {
    /// A lowered signal.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises the signal and wakes the waiting task, if any.
    pub fn raise(&self) {
        self.raised.set(true);
        if let Some(w) = self.waiter.borrow_mut().take() {
            w.wake();
        }
    }

    /// Resolves once the signal is raised (at once if it already is), lowering it.
    pub fn wait(&self) -> Wait<'_> {
        Wait { signal: self }
    }
}

/// The future of [`LocalSignal::wait`].
#[derive(Debug)]
pub struct Wait<'a> {
    signal: &'a LocalSignal,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.raised.replace(false) {
            return Poll::Ready(());
        }
        let mut waiter = self.signal.waiter.borrow_mut();
        match waiter.as_ref() {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *waiter = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn raise_before_and_after_wait() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            let s = Rc::new(LocalSignal::new());
            s.raise();
            s.wait().await; // already raised: returns at once
            let s2 = Rc::clone(&s);
            let waiter = tokio::task::spawn_local(async move {
                s2.wait().await;
                1
            });
            tokio::task::yield_now().await;
            s.raise();
            assert_eq!(waiter.await.unwrap(), 1);
        });
    }
}
