//! Pacing a saturated ring's output: fewer, fuller writes when the worker has no idle
//! time left, none of it otherwise.
//!
//! When a pass over the subscribers' writers lasts longer than the gap between two
//! messages, the next pass starts at once and each write carries what came during the
//! last one; a cheaper write then only makes shorter passes and more, smaller writes,
//! whose per-segment kernel cost (the receiver's too, on loopback) takes the core back.
//! So while the ring has been saturated (idle less than [`SATURATED_IDLE_PERMILLE`] of
//! the last [`WINDOW`]), the next pass of writes waits for half the last pass's length
//! after it ended, at most `max_hold`: the frames that arrive meanwhile ride in the same
//! writes. Input is still read during the hold. A ring with a fifth of its time idle
//! never holds, so a quiet feed pays no latency for it.
//!
//! Measured (`tuning/RESULTS.md`, issue #24): at 5k msg/s x 100 subscribers on one
//! core, segments and CPU per delivery fall by about a third at the same p50. Known
//! cost: time spent holding has output pending, so it is not idle time, and a ring
//! that started holding below saturation keeps holding; at 2k x 100 (82% busy without
//! holds) that nearly doubled the p50 to save 14% CPU.
//!
//! Pure bookkeeping over the times the ring hands in, so it is tested without a ring.

use std::time::{Duration, Instant};

/// The span over which idle time is summed to decide whether the ring is saturated.
pub const WINDOW: Duration = Duration::from_millis(10);

/// Idle below this share of a [`WINDOW`] (per mille) is saturation. Measured, pinned, 3
/// rounds at 5k msg/s x 100 subscribers: 50 (5%) caught about half the saturated
/// windows (segments 0.86x the unpaced build's), 200 nearly all (0.66x); at 20k x 10,
/// a core 70-75% busy, 200 did not hold.
pub const SATURATED_IDLE_PERMILLE: u32 = 200;

/// The default upper bound on one hold.
pub const DEFAULT_MAX_HOLD: Duration = Duration::from_micros(250);

/// The longest hold a ring may be configured with.
pub const MAX_HOLD_LIMIT: Duration = Duration::from_millis(10);

/// Whether the ring is saturated, and until when its deferred tasks wait.
#[derive(Debug)]
pub(super) struct Pacing {
    /// Upper bound on one hold; zero turns pacing off.
    max_hold: Duration,
    window_start: Instant,
    /// Idle time (waiting with no output pending) since `window_start`.
    idle: Duration,
    saturated: bool,
    hold_until: Option<Instant>,
    /// Passes held since the ring started.
    holds: u64,
}

impl Pacing {
    /// Pacing with holds of at most `max_hold` (zero: never hold).
    pub(super) fn new(max_hold: Duration, now: Instant) -> Pacing {
        Pacing {
            max_hold,
            window_start: now,
            idle: Duration::ZERO,
            saturated: false,
            hold_until: None,
            holds: 0,
        }
    }

    /// Whether pacing is on (when off, the ring need not report anything).
    pub(super) fn enabled(&self) -> bool {
        !self.max_hold.is_zero()
    }

    /// The ring waited `waited` with no output pending, up to `now`.
    pub(super) fn idled(&mut self, waited: Duration, now: Instant) {
        self.idle += waited;
        self.roll(now);
    }

    /// A pass of deferred tasks ran from `start` to `end`: while saturated, the next
    /// one is held.
    pub(super) fn pass_done(&mut self, start: Instant, end: Instant) {
        self.roll(end);
        if self.saturated && self.enabled() {
            let hold = (end.saturating_duration_since(start) / 2).min(self.max_hold);
            if !hold.is_zero() {
                self.hold_until = Some(end + hold);
                self.holds += 1;
            }
        }
    }

    /// Until when deferred tasks wait, if they do at `now`.
    pub(super) fn held(&mut self, now: Instant) -> Option<Instant> {
        match self.hold_until {
            Some(t) if now < t => Some(t),
            _ => {
                self.hold_until = None;
                None
            }
        }
    }

    /// Passes held so far.
    pub(super) fn holds(&self) -> u64 {
        self.holds
    }

    fn roll(&mut self, now: Instant) {
        let span = now.saturating_duration_since(self.window_start);
        if span >= WINDOW {
            self.saturated =
                self.idle.as_nanos() * 1000 < span.as_nanos() * SATURATED_IDLE_PERMILLE as u128;
            self.idle = Duration::ZERO;
            self.window_start = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const US: Duration = Duration::from_micros(1);

    /// Runs passes of `pass` back to back with `idle` between them for two windows.
    fn run(p: &mut Pacing, t: &mut Instant, pass: Duration, idle: Duration) {
        let end = *t + 2 * WINDOW + MS;
        while *t < end {
            let start = *t;
            *t += pass;
            p.pass_done(start, *t);
            if !idle.is_zero() {
                *t += idle;
                p.idled(idle, *t);
            }
        }
    }

    #[test]
    fn a_saturated_ring_holds_half_a_pass() {
        let mut t = Instant::now();
        let mut p = Pacing::new(DEFAULT_MAX_HOLD, t);
        run(&mut p, &mut t, 400 * US, Duration::ZERO);
        assert_eq!(p.held(t), Some(t + 200 * US), "half of the last pass");
        assert_eq!(p.held(t + 199 * US), Some(t + 200 * US));
        assert_eq!(p.held(t + 200 * US), None, "over when due");
        assert_eq!(p.held(t), None, "and forgotten");
        assert!(p.holds() > 0);
    }

    #[test]
    fn a_hold_never_exceeds_its_bound() {
        let mut t = Instant::now();
        let mut p = Pacing::new(100 * US, t);
        run(&mut p, &mut t, 3 * MS, Duration::ZERO);
        assert_eq!(p.held(t), Some(t + 100 * US));
    }

    #[test]
    fn a_ring_with_idle_time_does_not_hold() {
        let mut t = Instant::now();
        let mut p = Pacing::new(DEFAULT_MAX_HOLD, t);
        // 25% idle: loaded, not saturated.
        run(&mut p, &mut t, 75 * US, 25 * US);
        assert_eq!(p.held(t), None);
        assert_eq!(p.holds(), 0);
        // Under the threshold (15% idle): saturated.
        run(&mut p, &mut t, 85 * US, 15 * US);
        assert!(p.holds() > 0);
        // Idle again: holds stop after one window.
        let before = p.holds();
        run(&mut p, &mut t, 50 * US, 50 * US);
        let after_one_window = p.holds();
        run(&mut p, &mut t, 50 * US, 50 * US);
        assert_eq!(p.holds(), after_one_window, "no more holds once idle");
        assert!(after_one_window - before < 200, "at most a window's worth");
    }

    #[test]
    fn off_means_never() {
        let mut t = Instant::now();
        let mut p = Pacing::new(Duration::ZERO, t);
        assert!(!p.enabled());
        run(&mut p, &mut t, 400 * US, Duration::ZERO);
        assert_eq!(p.held(t), None);
        assert_eq!(p.holds(), 0);
    }
}
