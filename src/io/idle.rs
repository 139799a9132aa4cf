//! What a worker does between duty cycles: Agrona's idle strategies, chosen once at
//! start.
//!
//! A worker runs a duty cycle (take what other workers handed it, route it) and, when a
//! cycle did nothing, waits as its strategy says:
//!
//! - [`Spin`] (`spin`): polls again at once (yielding only to the worker's own IO
//!   tasks). Lowest wake-up latency; burns its core at 100% even when idle, which
//!   starves everything else on a small box, so it is never the default.
//! - [`Yield`] (`yield`): like spin, but gives the CPU to other threads between polls
//!   (`sched_yield`); still 100% of a core when nothing else wants it.
//! - [`Park`] (`park`, the default): sleeps until a producer wakes it through its
//!   [`Parker`] (one `eventfd` write, only when the worker is parked, so a busy worker
//!   costs its producers nothing). A park lasts at least the scheduler's wake-up
//!   latency, which grows on a busy host and with timer slack; isolated cores help
//!   (`tuning/` shows how).
//!
//! The loop is generic over the strategy, so spinning compiles without a virtual call.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::task::{Poll, Waker};

use serde::{Deserialize, Serialize};

use super::rt;

/// The configuration word for an idle strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum IdleMode {
    /// Busy-poll: lowest wake-up latency, burns its core.
    Spin,
    /// Poll, giving the CPU to other threads between polls.
    Yield,
    /// Sleep until a producer wakes it; no CPU when idle.
    Park,
}

impl IdleMode {
    /// The configuration word.
    pub fn name(self) -> &'static str {
        match self {
            IdleMode::Spin => "spin",
            IdleMode::Yield => "yield",
            IdleMode::Park => "park",
        }
    }
}

/// How other threads wake a parked worker. Shared (`Arc`) between the worker and its
/// producers. The wake goes through the parked task's waker, which ends the worker
/// ring's wait with one `eventfd` write.
#[derive(Debug, Default)]
pub struct Parker {
    parked: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Parker {
    /// Wakes the worker if it is parked; free (one relaxed load) if it is not.
    pub fn unpark(&self) {
        if self.parked.load(Ordering::Relaxed) && self.parked.swap(false, Ordering::SeqCst) {
            let waker = self.waker.lock().ok().and_then(|mut w| w.take());
            if let Some(w) = waker {
                w.wake();
            }
        }
    }

    /// Parks until [`unpark`](Self::unpark), unless `pending()` says work arrived after
    /// the park was announced (a producer that sent before it saw the flag did not
    /// wake us).
    async fn park(&self, pending: &impl Fn() -> bool) {
        std::future::poll_fn(|cx| {
            if let Ok(mut w) = self.waker.lock() {
                *w = Some(cx.waker().clone());
            }
            self.parked.store(true, Ordering::SeqCst);
            if pending() {
                self.parked.store(false, Ordering::SeqCst);
                return Poll::Ready(());
            }
            Poll::Pending
        })
        .await;
    }

    /// Wakes the worker for good: its loop is ending.
    pub fn release(&self) {
        self.parked.store(true, Ordering::SeqCst);
        self.unpark();
    }
}

/// What a worker does after a cycle that did no work.
pub trait IdleStrategy {
    /// Waits; `pending()` says whether work has arrived meanwhile.
    fn idle(&mut self, parker: &Parker, pending: &impl Fn() -> bool) -> impl Future<Output = ()>;
}

/// `spin`: yield to the worker's own IO tasks and poll again at once.
#[derive(Debug, Default)]
pub struct Spin;

/// `yield`: give the CPU to other threads, then poll again.
#[derive(Debug, Default)]
pub struct Yield;

/// `park`: sleep until a producer unparks the worker.
#[derive(Debug, Default)]
pub struct Park;

impl IdleStrategy for Spin {
    async fn idle(&mut self, _: &Parker, _: &impl Fn() -> bool) {
        std::hint::spin_loop();
        yield_to_ring().await;
    }
}

impl IdleStrategy for Yield {
    async fn idle(&mut self, _: &Parker, _: &impl Fn() -> bool) {
        std::thread::yield_now();
        yield_to_ring().await;
    }
}

impl IdleStrategy for Park {
    async fn idle(&mut self, parker: &Parker, pending: &impl Fn() -> bool) {
        parker.park(pending).await;
    }
}

/// Lets the worker's other tasks run; the ring loop submits what they queued and takes
/// completions without waiting, since this task is ready again.
pub async fn yield_to_ring() {
    rt::yield_now().await;
}

/// Runs duty cycles until `done()`: `do_work()` returns how much it did; after a cycle
/// with work the worker's IO tasks get a turn (what the cycle woke is submitted, since a
/// busy worker never parks), after an empty one `strategy` waits.
pub async fn run_duty_cycle<S: IdleStrategy>(
    mut strategy: S,
    parker: &Parker,
    mut do_work: impl FnMut() -> usize,
    pending: impl Fn() -> bool,
    done: impl Fn() -> bool,
) {
    while !done() {
        if do_work() > 0 {
            yield_to_ring().await;
            continue;
        }
        strategy.idle(parker, &pending).await;
    }
}

/// [`run_duty_cycle`] with the strategy `mode` names.
pub async fn run_with_mode(
    mode: IdleMode,
    parker: &Parker,
    do_work: impl FnMut() -> usize,
    pending: impl Fn() -> bool,
    done: impl Fn() -> bool,
) {
    match mode {
        IdleMode::Spin => run_duty_cycle(Spin, parker, do_work, pending, done).await,
        IdleMode::Yield => run_duty_cycle(Yield, parker, do_work, pending, done).await,
        IdleMode::Park => run_duty_cycle(Park, parker, do_work, pending, done).await,
    }
}
