//! Reconnect delays: exponential backoff with full jitter, so a thousand relays whose
//! exchange came back do not all dial it in the same millisecond.

/// Exponential backoff with full jitter (each delay uniform in `[0, bound]`, the bound
/// doubling from `initial` to `max`); reset once a connection delivers.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial_ms: u64,
    max_ms: u64,
    jitter: bool,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    /// A backoff; `seed` seeds the jitter (any value).
    pub fn new(initial_ms: u64, max_ms: u64, jitter: bool, seed: u64) -> Backoff {
        Backoff {
            initial_ms,
            max_ms,
            jitter,
            attempt: 0,
            rng: seed | 1,
        }
    }

    /// The next delay, in ms; each call doubles the bound up to the maximum.
    pub fn next_delay_ms(&mut self) -> u64 {
        let bound = self
            .initial_ms
            .saturating_mul(1u64 << self.attempt.min(40))
            .min(self.max_ms);
        self.attempt = self.attempt.saturating_add(1);
        if !self.jitter {
            return bound;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % (bound + 1)
    }

    /// The line delivered: start again from `initial`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_max_and_jitters_below_the_bound() {
        let mut b = Backoff::new(100, 1000, false, 7);
        let d: Vec<u64> = (0..6).map(|_| b.next_delay_ms()).collect();
        assert_eq!(d, [100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay_ms(), 100);
        let mut j = Backoff::new(100, 1000, true, 7);
        let mut seen = std::collections::HashSet::new();
        for i in 0..200 {
            let bound = (100u64 << i.min(10)).min(1000);
            let d = j.next_delay_ms();
            assert!(d <= bound, "{d} > {bound}");
            seen.insert(d);
        }
        assert!(
            seen.len() > 50,
            "jitter spreads delays: {} distinct",
            seen.len()
        );
        let mut huge = Backoff::new(u64::MAX / 2, u64::MAX, false, 1);
        for _ in 0..100 {
            huge.next_delay_ms();
        }
    }
}
