//! Graceful shutdown: SIGINT and SIGTERM become a signal every task can wait on.
//!
//! The trigger may fire from any thread (the signal thread, a test); waiting tasks are
//! woken through their wakers, which reach each worker's ring from outside. A waiting
//! future registers its waker once and removes it when dropped, so the many short
//! waits of a connection's loop leave nothing behind.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use slab::Slab;

/// What the trigger and its listeners share.
#[derive(Debug, Default)]
struct State {
    fired: AtomicBool,
    waiters: Mutex<Slab<Waker>>,
}

/// Fires the shutdown.
#[derive(Debug)]
pub struct Trigger(Arc<State>);

/// Waits for the shutdown; clone one per task.
#[derive(Debug, Clone)]
pub struct Shutdown(Arc<State>);

/// A trigger and the first of its listeners.
pub fn channel() -> (Trigger, Shutdown) {
    let state = Arc::new(State::default());
    (Trigger(Arc::clone(&state)), Shutdown(state))
}

impl Trigger {
    /// Tells every [`Shutdown`] to stop.
    pub fn fire(&self) {
        self.0.fired.store(true, Ordering::SeqCst);
        let waiters: Vec<Waker> = match self.0.waiters.lock() {
            Ok(mut w) => w.drain().collect(),
            Err(_) => Vec::new(),
        };
        for w in waiters {
            w.wake();
        }
    }

    /// Fires on the first SIGINT or SIGTERM, from a thread of its own.
    pub fn fire_on_signals(self) -> std::io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        std::thread::Builder::new()
            .name("feedrelay-signals".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    tracing::info!(signal = sig, "shutting down");
                    self.fire();
                }
            })?;
        Ok(())
    }
}

impl Shutdown {
    /// Whether shutdown has begun.
    pub fn is_triggered(&self) -> bool {
        self.0.fired.load(Ordering::SeqCst)
    }

    /// Resolves once shutdown has begun (at once if it already has).
    pub fn wait(&mut self) -> Wait<'_> {
        Wait {
            state: &self.0,
            key: None,
        }
    }

    /// Runs `work` unless shutdown begins first: its output, or `None` (then `work` is
    /// dropped). For what has nothing to flush, such as a handshake in progress.
    pub async fn unless<F: Future>(&self, work: F) -> Option<F::Output> {
        let mut stop = self.clone();
        match crate::io::rt::race(work, stop.wait()).await {
            crate::io::rt::Either::Left(out) => Some(out),
            crate::io::rt::Either::Right(()) => None,
        }
    }
}

/// The future of [`Shutdown::wait`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Wait<'a> {
    state: &'a State,
    key: Option<usize>,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.state.fired.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        let Ok(mut waiters) = self.state.waiters.lock() else {
            return Poll::Pending;
        };
        match self.key.and_then(|k| waiters.get_mut(k)) {
            Some(w) if w.will_wake(cx.waker()) => {}
            Some(w) => *w = cx.waker().clone(),
            None => self.key = Some(waiters.insert(cx.waker().clone())),
        }
        drop(waiters);
        // Fired between the first check and the registration: do not miss it.
        if self.state.fired.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            if let Ok(mut waiters) = self.state.waiters.lock() {
                waiters.try_remove(k);
            }
        }
    }
}
