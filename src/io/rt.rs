//! The worker's runtime as the rest of the crate sees it: spawning tasks, timers,
//! racing two futures, yielding.
//!
//! All of it runs on the thread's [`Ring`](super::ring::Ring); nothing outside `io`
//! names the ring or its executor, so replacing them changes `io` alone. Times are
//! `std::time::Instant` everywhere.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub use super::ring::task::{panic_cause, panicked, spawn, spawn_deferred, JoinHandle};
pub use super::ring::timer::Sleep;
pub use super::ring::{chunk_full, held_passes, recent_now, DEFERRED_CHUNK};

/// Sleeps for `d` (nanosecond resolution, plus the kernel's timer slack).
pub fn sleep(d: Duration) -> Sleep {
    Sleep::until(Instant::now() + d)
}

/// Sleeps until `t` (at once if it has passed).
pub fn sleep_until(t: Instant) -> Sleep {
    Sleep::until(t)
}

/// Sleeps until `t`, or forever if there is no deadline.
pub async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// The deadline passed before the future finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline passed")]
pub struct Elapsed;

/// Runs `fut` until `deadline`; on `Err(Elapsed)` the future has been dropped (do not
/// use this on a ring read whose data must not be lost: race it instead).
pub fn timeout_at<F: Future>(deadline: Instant, fut: F) -> Timeout<F> {
    Timeout {
        fut,
        sleep: Sleep::until(deadline),
    }
}

/// [`timeout_at`] `now + d`.
pub fn timeout<F: Future>(d: Duration, fut: F) -> Timeout<F> {
    timeout_at(Instant::now() + d, fut)
}

pin_project_lite::pin_project! {
    /// The future of [`timeout_at`]; a struct, so `fut` is stored once.
    #[derive(Debug)]
    #[must_use = "futures do nothing unless awaited"]
    pub struct Timeout<F> {
        #[pin]
        fut: F,
        #[pin]
        sleep: Sleep,
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        this.sleep.poll(cx).map(|()| Err(Elapsed))
    }
}

/// Lets the worker's other tasks (woken before this call) run once, then resumes.
pub async fn yield_now() {
    YieldOnce(false).await
}

/// Pending once, waking itself: the task goes to the back of the ready queue.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A periodic timer; a tick that is late delays the next (no bursts of missed ticks).
#[derive(Debug)]
pub struct Interval {
    period: Duration,
    next: Instant,
}

impl Interval {
    /// Ticks every `period`, the first at once.
    pub fn new(period: Duration) -> Interval {
        Interval {
            period,
            next: Instant::now(),
        }
    }

    /// Waits for the next tick.
    pub async fn tick(&mut self) {
        sleep_until(self.next).await;
        self.next = Instant::now().max(self.next) + self.period;
    }
}

/// Which of two raced futures finished first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Either<A, B> {
    /// The first.
    Left(A),
    /// The second.
    Right(B),
}

/// Waits for whichever of `a` and `b` finishes first (`a` is polled first) and drops
/// the other. To keep a future alive across several races (a ring read must never be
/// dropped), pass it pinned by reference: `race(read.as_mut(), timer)`.
///
/// A struct rather than an `async fn`, so the raced futures are stored once: nested
/// races inside a connection's task would otherwise hold every future twice, and
/// every connection pays for that in memory.
pub fn race<A: Future, B: Future>(a: A, b: B) -> Race<A, B> {
    Race { a, b }
}

pin_project_lite::pin_project! {
    /// The future of [`race`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless awaited"]
    pub struct Race<A, B> {
        #[pin]
        a: A,
        #[pin]
        b: B,
    }
}

impl<A: Future, B: Future> Future for Race<A, B> {
    type Output = Either<A::Output, B::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.a.poll(cx) {
            return Poll::Ready(Either::Left(v));
        }
        if let Poll::Ready(v) = this.b.poll(cx) {
            return Poll::Ready(Either::Right(v));
        }
        Poll::Pending
    }
}

/// Runs two futures to completion together (on this task) and returns both outputs.
pub async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        if ra.is_some() && rb.is_some() {
            if let (Some(x), Some(y)) = (ra.take(), rb.take()) {
                return Poll::Ready((x, y));
            }
        }
        Poll::Pending
    })
    .await
}

/// A random `u64` from the OS (a clock-derived one if the OS has no randomness to
/// give): seeds for masking keys, nonces and backoff jitter.
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9);
    }
    u64::from_ne_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn race_timeout_and_interval() {
        crate::io::ring::Ring::new().unwrap().block_on(async {
            let start = Instant::now();
            let r = race(sleep(Duration::from_millis(50)), async { 7 }).await;
            assert_eq!(r, Either::Right(7));
            let r = race(async { 1 }, std::future::pending::<()>()).await;
            assert_eq!(r, Either::Left(1));
            let mut slow = std::pin::pin!(sleep(Duration::from_millis(30)));
            // The same pinned future survives a lost race and wins the next.
            assert_eq!(race(slow.as_mut(), async {}).await, Either::Right(()));
            assert_eq!(
                race(slow.as_mut(), sleep(Duration::from_secs(5))).await,
                Either::Left(())
            );
            assert_eq!(
                timeout(Duration::from_millis(5), std::future::pending::<()>()).await,
                Err(Elapsed)
            );
            assert_eq!(timeout(Duration::from_secs(5), async { 3 }).await, Ok(3));
            let mut every = Interval::new(Duration::from_millis(10));
            for _ in 0..3 {
                every.tick().await;
            }
            assert!(start.elapsed() >= Duration::from_millis(30));
            let h = spawn(async { 5 });
            assert_eq!(h.await, Some(5));
        });
    }
}
