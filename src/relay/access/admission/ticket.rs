//! One connection's place in admission, shared between its task and whichever
//! worker frees or takes a handshake slot: granted a slot while held, or told to give
//! its slot up (evicted) while handshaking. Both are one-way flags with a waker, so a
//! worker on another core can signal a connection's task without touching its state.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// The flags and the task to wake.
#[derive(Debug, Default)]
pub(super) struct Ticket {
    granted: AtomicBool,
    evicted: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Ticket {
    pub(super) fn new() -> Arc<Ticket> {
        Arc::new(Ticket::default())
    }

    /// A handshake slot was taken for it (counted by the one who granted it).
    pub(super) fn grant(&self) {
        self.granted.store(true, Ordering::Release);
        self.wake();
    }

    pub(super) fn is_granted(&self) -> bool {
        self.granted.load(Ordering::Acquire)
    }

    /// It must give its handshake slot up to a source holding fewer.
    pub(super) fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        self.wake();
    }

    pub(super) fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }

    fn wake(&self) {
        let waker = self.waker.lock().ok().and_then(|mut w| w.take());
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Leaves `cx`'s waker to be woken by the next grant or eviction.
    fn register(&self, cx: &Context<'_>) {
        if let Ok(mut w) = self.waker.lock() {
            match w.as_ref() {
                Some(old) if old.will_wake(cx.waker()) => {}
                _ => *w = Some(cx.waker().clone()),
            }
        }
    }

    /// Ready once `flag` holds, registering `cx` otherwise (checked again after the
    /// registration, so a signal between the two is not missed).
    fn poll_flag(&self, cx: &Context<'_>, flag: fn(&Ticket) -> bool) -> Poll<()> {
        if flag(self) {
            return Poll::Ready(());
        }
        self.register(cx);
        if flag(self) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Resolves when the connection's ticket is granted a slot.
#[derive(Debug)]
pub struct Granted(pub(super) Arc<Ticket>);

impl Future for Granted {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.poll_flag(cx, Ticket::is_granted)
    }
}

/// Resolves if the connection is told to give its handshake slot up.
#[derive(Debug)]
pub struct Evicted(pub(super) Arc<Ticket>);

impl Future for Evicted {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.poll_flag(cx, Ticket::is_evicted)
    }
}
