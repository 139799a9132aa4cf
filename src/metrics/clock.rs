//! The clock every hop is timed with: monotonic nanoseconds since the process started.
//!
//! `Instant::now()` is `clock_gettime(CLOCK_MONOTONIC)` through the vDSO: no system
//! call, and on hosts with a stable TSC (the `tsc` clocksource) it reads the TSC. The
//! criterion bench `hop_record` measures it next to a histogram record. A raw `rdtsc`
//! would save a few ns but needs calibration and invariant-TSC checks; not worth it
//! until the bench says so.

use std::sync::OnceLock;
use std::time::Instant;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Wall-clock (`CLOCK_REALTIME`) nanoseconds since the Unix epoch, for timestamps
/// that cross processes (a message's scheduled send time); 0 before 1970.
pub fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Monotonic nanoseconds since the first call in this process.
#[inline]
pub fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// `t` on this clock: monotonic nanoseconds since the first call (0 for an earlier `t`).
#[inline]
pub fn ns_at(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_nanos() as u64
}
