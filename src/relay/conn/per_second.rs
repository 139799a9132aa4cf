//! A count of requests in the current one-second window, for the per-connection
//! budgets of control messages and token refreshes: cheap enough to check before a
//! request is even parsed.

use std::time::{Duration, Instant};

/// What a window says of one more request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the budget.
    Allowed,
    /// The first past it in this window (worth one error reply).
    FirstRefused,
    /// Past it again in this window (counted, not answered).
    Refused,
}

/// Requests in the one-second window that began at `start`.
#[derive(Debug, Default, Clone, Copy)]
pub struct PerSecond {
    start: Option<Instant>,
    n: u32,
}

impl PerSecond {
    /// Counts one request at `now` against a budget of `max` a second.
    pub fn count(&mut self, now: Instant, max: u32) -> Verdict {
        let new_window = self.start.map_or(true, |s| {
            now.saturating_duration_since(s) >= Duration::from_secs(1)
        });
        if new_window {
            self.start = Some(now);
            self.n = 0;
        }
        self.n = self.n.saturating_add(1);
        match self.n {
            n if n <= max => Verdict::Allowed,
            n if n == max + 1 => Verdict::FirstRefused,
            _ => Verdict::Refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_renews_each_second() {
        let t0 = Instant::now();
        let mut w = PerSecond::default();
        assert!((0..3).all(|_| w.count(t0, 3) == Verdict::Allowed));
        assert_eq!(w.count(t0, 3), Verdict::FirstRefused);
        assert_eq!(
            w.count(t0 + Duration::from_millis(999), 3),
            Verdict::Refused
        );
        assert_eq!(w.count(t0 + Duration::from_secs(1), 3), Verdict::Allowed);
    }
}
