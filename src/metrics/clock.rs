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

/// Monotonic nanoseconds since the first call in this process.
#[inline]
pub fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}
