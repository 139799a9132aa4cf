//! Pacing a saturated ring's output: fewer, fuller writes when the worker has no idle
//! time left, none of it otherwise.
//!
//! When a pass over the subscribers' writers lasts longer than the gap between two
//! messages, the next pass starts at once and each write carries what came during the
//! last one; a cheaper write then only makes shorter passes and more, smaller writes,
//! whose per-segment kernel cost (the receiver's too, on loopback) takes the core back.
//! So while the ring is saturated, the next pass of writes waits for half the last
//! pass's length after it ended, at most `max_hold`: the frames that arrive meanwhile
//! ride in the same writes. Input is still read during the hold.
//!
//! Saturated means idle less than [`SATURATED_IDLE_PERMILLE`] of a [`WINDOW`], in
//! two windows in a row without holds. Time spent holding has output pending, so it is
//! not idle time: a held window says nothing about whether the ring still needs to
//! hold, and judged by it a ring that once held would hold for good (measured: at 2k
//! msg/s x 100 subscribers, a core 82% busy without holds, that nearly doubled the
//! p50). So while holding, one window in [`PROBE_EVERY`] runs without holds, and its
//! idle time decides whether the holds go on.
//!
//! Measured (`tuning/RESULTS.md`, issue #24): at 5k msg/s x 100 subscribers on one
//! core, segments and CPU per delivery fall by about a third at the same p50.
//!
//! Pure bookkeeping over the times the ring hands in, so it is tested without a ring.

use std::time::{Duration, Instant};

/// The span over which idle time is summed to decide whether the ring is saturated.
pub const WINDOW: Duration = Duration::from_millis(10);

/// Idle below this share of a [`WINDOW`] without holds (per mille) is saturation. A
/// core 82% busy (2k msg/s x 100 subscribers, one core) is not saturated: holding
/// there nearly doubled the p50 to save 14% CPU; one 95% busy (4k x 100) is, and
/// holding there lowered p50, p99 and CPU.
pub const SATURATED_IDLE_PERMILLE: u32 = 100;

/// Windows in a row under the threshold before holds start: one busy window is not
/// saturation.
pub const ENTER_AFTER: u32 = 2;

/// While holding, one window in this many runs without holds (a probe): its idle time
/// says whether the ring still needs them. Measured against the self-sustaining holds
/// before it (pinned, 3 rounds): 8 took the p50 at 2k x 100 from 651 to 363 µs but
/// cost p99 12-21% at 4k, 5k and 10k x 100 (a saturated core falls behind in every
/// window it does not hold); 32 took it to 427 µs with 5k and 10k x 100 unchanged
/// within the rounds' spread.
pub const PROBE_EVERY: u32 = 32;

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
    /// Windows without holds in a row whose idle time was under the threshold.
    low_windows: u32,
    /// Windows held since the last probe.
    held_windows: u32,
    /// The current window is a probe: saturated, but not holding.
    probing: bool,
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
            low_windows: 0,
            held_windows: 0,
            probing: false,
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
        if self.holding() && self.enabled() {
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

    /// Whether passes are held in the current window: saturated, and not a probe.
    fn holding(&self) -> bool {
        self.saturated && !self.probing
    }

    /// Closes the window once it has lasted [`WINDOW`].
    fn roll(&mut self, now: Instant) {
        let span = now.saturating_duration_since(self.window_start);
        if span < WINDOW {
            return;
        }
        if self.holding() {
            // A held window: its idle time is not the ring's own (see the module doc).
            self.held_windows += 1;
            if self.held_windows >= PROBE_EVERY {
                self.held_windows = 0;
                self.probing = true;
            }
        } else {
            let low =
                self.idle.as_nanos() * 1000 < span.as_nanos() * SATURATED_IDLE_PERMILLE as u128;
            self.low_windows = if low { self.low_windows + 1 } else { 0 };
            // A probe that found the ring still busy keeps the holds on at once.
            self.saturated = (self.probing && low) || self.low_windows >= ENTER_AFTER;
            self.probing = false;
        }
        self.idle = Duration::ZERO;
        self.window_start = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const US: Duration = Duration::from_micros(1);

    /// Runs passes of `pass` with `idle` between them for `windows` windows. A hold
    /// is waited out in full and takes its time out of that idle time first (a held
    /// ring waits with output pending, which is not idle), as on a ring whose messages
    /// come at a fixed rate.
    fn run_for(p: &mut Pacing, t: &mut Instant, pass: Duration, idle: Duration, windows: u32) {
        let end = *t + windows * WINDOW + MS;
        while *t < end {
            let start = *t;
            *t += pass;
            p.pass_done(start, *t);
            let held = p.held(*t).map_or(Duration::ZERO, |until| until - *t);
            *t += held;
            let rest = idle.saturating_sub(held);
            if !rest.is_zero() {
                *t += rest;
                p.idled(rest, *t);
            }
        }
    }

    fn run(p: &mut Pacing, t: &mut Instant, pass: Duration, idle: Duration) {
        run_for(p, t, pass, idle, 2);
    }

    /// Passes held during `windows` more windows of this load.
    fn holds_over(
        p: &mut Pacing,
        t: &mut Instant,
        pass: Duration,
        idle: Duration,
        windows: u32,
    ) -> u64 {
        let before = p.holds();
        run_for(p, t, pass, idle, windows);
        p.holds() - before
    }

    #[test]
    fn a_saturated_ring_holds_half_a_pass() {
        let mut t = Instant::now();
        let mut p = Pacing::new(DEFAULT_MAX_HOLD, t);
        run_for(&mut p, &mut t, 400 * US, Duration::ZERO, 3);
        p.pass_done(t - 400 * US, t);
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
        run_for(&mut p, &mut t, 3 * MS, Duration::ZERO, 4);
        p.pass_done(t - 3 * MS, t);
        assert_eq!(p.held(t), Some(t + 100 * US));
    }

    #[test]
    fn a_ring_with_idle_time_does_not_hold() {
        let mut t = Instant::now();
        let mut p = Pacing::new(DEFAULT_MAX_HOLD, t);
        // 18% idle (a core 82% busy): loaded, not saturated.
        assert_eq!(holds_over(&mut p, &mut t, 82 * US, 18 * US, 20), 0);
        // Under the threshold (5% idle): saturated after two windows.
        assert!(holds_over(&mut p, &mut t, 95 * US, 5 * US, 4) > 0);
    }

    #[test]
    fn one_busy_window_is_not_saturation() {
        let mut t = Instant::now();
        let mut p = Pacing::new(DEFAULT_MAX_HOLD, t);
        for _ in 0..5 {
            assert_eq!(holds_over(&mut p, &mut t, 100 * US, Duration::ZERO, 1), 0);
            assert_eq!(holds_over(&mut p, &mut t, 50 * US, 50 * US, 1), 0);
        }
    }

    /// The ring this is about: 82% busy without holds, whose holds would eat all of
    /// its idle time. It may start holding on a busy stretch, but a probe ends it.
    #[test]
    fn holds_do_not_keep_themselves_on() {
        let mut t = Instant::now();
        let mut p = Pacing::new(DEFAULT_MAX_HOLD, t);
        // A busy stretch starts the holds; then the load eases to 82% busy, where a
        // 250 µs hold after each 600 µs pass would leave no idle time at all.
        assert!(holds_over(&mut p, &mut t, 600 * US, Duration::ZERO, 3) > 0);
        let during_probe_wait = holds_over(&mut p, &mut t, 600 * US, 132 * US, PROBE_EVERY + 2);
        assert!(during_probe_wait > 0, "holds until the probe");
        assert_eq!(
            holds_over(&mut p, &mut t, 600 * US, 132 * US, 20),
            0,
            "the probe saw 18% idle: no more holds"
        );
    }

    #[test]
    fn a_probe_that_finds_the_ring_busy_keeps_the_holds() {
        let mut t = Instant::now();
        let mut p = Pacing::new(DEFAULT_MAX_HOLD, t);
        run_for(&mut p, &mut t, 400 * US, Duration::ZERO, 3);
        // Saturated for good: every stretch of PROBE_EVERY + 1 windows holds in all
        // but its probe window.
        for _ in 0..4 {
            let windows = PROBE_EVERY + 1;
            let held = holds_over(&mut p, &mut t, 400 * US, Duration::ZERO, windows);
            // A 400 µs pass and its 200 µs hold: 16 passes a window.
            let per_window = (WINDOW.as_micros() / 600) as u64;
            assert!(
                held >= per_window * u64::from(PROBE_EVERY - 1),
                "held {held}"
            );
        }
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
