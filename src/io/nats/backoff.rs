//! How long to wait before each attempt to reach a NATS server.

use std::time::Duration;

/// The wait before connection attempt `attempt` (from 1, counted since the last
/// success): none for the first, then `initial` doubled per attempt, at most `max`.
pub fn backoff(attempt: usize, initial: Duration, max: Duration) -> Duration {
    if attempt <= 1 {
        return Duration::ZERO;
    }
    let doublings = u32::try_from(attempt - 2).unwrap_or(u32::MAX).min(30);
    initial.saturating_mul(1 << doublings).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap() {
        let (i, m) = (Duration::from_millis(100), Duration::from_secs(2));
        let waits: Vec<u128> = (1..=8).map(|r| backoff(r, i, m).as_millis()).collect();
        assert_eq!(waits, [0, 100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(backoff(usize::MAX, i, m), m);
    }
}
