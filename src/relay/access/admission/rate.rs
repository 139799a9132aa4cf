//! New connections per source per second: a token bucket per address holding one
//! second's worth, so a burst up to the rate passes at once and a steady flood past it
//! is closed at accept. Buckets outlive the connections (an address that opens and
//! closes as fast as it can is still counted) and are dropped once full again, at most
//! once a second, so the map holds only the addresses active in the last second.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::source::AddressKey;

/// How often full buckets are swept out.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of every source seen in the last second or so.
#[derive(Debug)]
pub(super) struct ConnectRate {
    per_second: f64,
    buckets: HashMap<AddressKey, Bucket>,
    swept: Instant,
}

impl ConnectRate {
    /// `per_second` new connections a second per source; 0: no limit.
    pub(super) fn new(per_second: u32, now: Instant) -> ConnectRate {
        ConnectRate {
            per_second: f64::from(per_second),
            buckets: HashMap::new(),
            swept: now,
        }
    }

    /// Takes a token for a new connection from `key`; false: past the rate.
    pub(super) fn take(&mut self, key: AddressKey, now: Instant) -> bool {
        if self.per_second <= 0.0 {
            return true;
        }
        if now.saturating_duration_since(self.swept) >= SWEEP_EVERY {
            self.sweep(now);
        }
        let cap = self.per_second;
        let b = self.buckets.entry(key).or_insert(Bucket {
            tokens: cap,
            at: now,
        });
        let refill = now.saturating_duration_since(b.at).as_secs_f64() * cap;
        b.tokens = (b.tokens + refill).min(cap);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn sweep(&mut self, now: Instant) {
        let cap = self.per_second;
        self.buckets.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * cap < cap
        });
        self.swept = now;
    }

    /// Sources with a bucket now (for tests).
    #[cfg(test)]
    pub(super) fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_up_to_the_rate_passes_and_the_rest_refills() {
        let t0 = Instant::now();
        let mut r = ConnectRate::new(10, t0);
        let k = AddressKey::V4([10, 0, 0, 1]);
        assert!((0..10).all(|_| r.take(k, t0)));
        assert!(!r.take(k, t0), "the eleventh in the same instant");
        assert!(
            r.take(AddressKey::V4([10, 0, 0, 2]), t0),
            "another source has its own"
        );
        assert!(r.take(k, t0 + Duration::from_millis(100)), "one refilled");
        assert!(!r.take(k, t0 + Duration::from_millis(100)));
        // Full again after a quiet second: swept out.
        let later = t0 + Duration::from_secs(3);
        assert!(r.take(AddressKey::V4([10, 0, 0, 3]), later));
        assert_eq!(r.tracked(), 1);
        assert!(ConnectRate::new(0, t0).take(k, t0), "0: no limit");
    }
}
