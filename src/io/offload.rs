//! CPU work a worker must not do inline: a few helper threads run it, and the task that
//! asked awaits the result. A signature check (an RS256 or ES256 verification costs tens
//! of µs) on a worker's thread delays every other socket of that worker by as much; on a
//! helper thread it delays only the handshake that needs it.
//!
//! The queue is bounded ([`Offload::run`] says [`Busy`] when it is full, and the
//! caller refuses the request rather than wait or do the work inline). The helpers keep
//! off the workers' cores (any other online core; where there is none, anywhere): a
//! helper sharing a worker's core would take it for a whole scheduler slice, worse for
//! the worker's sockets than the check done inline (measured, `tuning/RESULTS.md`).
//! They stop when the last [`Offload`] handle is dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crossbeam_channel::{Sender, TrySendError};

use super::IoError;

type Job = Box<dyn FnOnce() + Send>;

/// The helper threads' queue.
#[derive(Debug, Clone)]
pub struct Offload {
    jobs: Sender<Job>,
}

/// The queue is full: the caller should refuse the request (the helpers are behind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl Offload {
    /// `threads` helpers named `name`, taking at most `queue` waiting jobs, on any
    /// online core but those in `avoid` (the workers').
    pub fn start(
        threads: usize,
        queue: usize,
        name: &str,
        avoid: &[usize],
    ) -> Result<Offload, IoError> {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(queue);
        let allowed: Vec<usize> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .filter(|c| !avoid.contains(c))
            .collect();
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let allowed = allowed.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    if !allowed.is_empty() {
                        if let Err(e) = super::worker::pin_current_thread(&allowed) {
                            tracing::warn!("{e}; the helper runs where the scheduler puts it");
                        }
                    }
                    for job in rx {
                        job();
                    }
                })
                .map_err(|e| IoError::op("spawn thread for", name, e))?;
        }
        Ok(Offload { jobs: tx })
    }

    /// Runs `work` on a helper; the returned future resolves to its result.
    pub fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<Pending<T>, Busy> {
        let slot = Arc::new(Slot {
            state: Mutex::new(State {
                value: None,
                waker: None,
            }),
        });
        let filled = Arc::clone(&slot);
        let job: Job = Box::new(move || filled.fill(work()));
        match self.jobs.try_send(job) {
            Ok(()) => Ok(Pending { slot }),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Busy),
        }
    }
}

struct State<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

struct Slot<T> {
    state: Mutex<State<T>>,
}

impl<T> Slot<T> {
    fn fill(&self, value: T) {
        let waker = match self.state.lock() {
            Ok(mut s) => {
                s.value = Some(value);
                s.waker.take()
            }
            Err(_) => None,
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The result of work handed to a helper (see [`Offload::run`]). Dropping it before
/// the work is done is fine: the result is dropped when it comes.
pub struct Pending<T> {
    slot: Arc<Slot<T>>,
}

impl<T> std::fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").finish_non_exhaustive()
    }
}

impl<T> Future for Pending<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let Ok(mut s) = self.slot.state.lock() else {
            return Poll::Pending;
        };
        match s.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                match &s.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => s.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn work_runs_on_a_helper_and_wakes_the_task() {
        let off = Offload::start(1, 4, "test-offload", &[]).unwrap();
        let done = crate::io::ring::Ring::new().unwrap().block_on(async move {
            off.run(|| std::thread::current().name().map(str::to_owned))
                .unwrap()
                .await
        });
        assert_eq!(done.as_deref(), Some("test-offload-0"));
    }

    #[test]
    fn a_full_queue_says_busy() {
        let off = Offload::start(1, 1, "test-offload-busy", &[]).unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        // One running (blocked on the channel), one queued: the next is refused.
        let _running = off
            .run(move || rx.recv_timeout(Duration::from_secs(5)))
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let _queued = off.run(|| ()).unwrap();
        assert_eq!(off.run(|| ()).err(), Some(Busy));
        drop(tx);
    }
}
