//! Refused handshakes, logged at info for the operator, but never so many that a flood
//! of bad logins floods the log: at most [`LOGGED_PER_SECOND`] lines per worker per
//! second, then one line saying how many were left out. The line names the source and
//! the reason, never the token (reasons never quote one).

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Refusals logged per worker per second; the rest are counted and summed up.
pub const LOGGED_PER_SECOND: u32 = 10;

const WINDOW: Duration = Duration::from_secs(1);

/// One worker's refusal log budget.
#[derive(Debug, Default)]
pub struct RefusalLog {
    window_start: Cell<Option<Instant>>,
    logged: Cell<u32>,
    left_out: Cell<u64>,
}

/// What to log for one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Log this refusal's line.
    pub log: bool,
    /// Refusals left out in the window that just ended (say so first, if not 0).
    pub left_out: u64,
}

impl RefusalLog {
    /// A refusal at `now`: whether its line fits this second's budget, and how many
    /// the last full window left out.
    pub fn refused(&self, now: Instant) -> Verdict {
        let mut left_out = 0;
        let expired = self
            .window_start
            .get()
            .map_or(true, |start| now.saturating_duration_since(start) >= WINDOW);
        if expired {
            left_out = self.left_out.replace(0);
            self.window_start.set(Some(now));
            self.logged.set(0);
        }
        let log = self.logged.get() < LOGGED_PER_SECOND;
        if log {
            self.logged.set(self.logged.get() + 1);
        } else {
            self.left_out.set(self.left_out.get() + 1);
        }
        Verdict { log, left_out }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_a_second_then_one_line_for_the_rest() {
        let log = RefusalLog::default();
        let t0 = Instant::now();
        let verdicts: Vec<_> = (0..25).map(|_| log.refused(t0)).collect();
        assert_eq!(verdicts.iter().filter(|v| v.log).count(), 10);
        assert!(verdicts.iter().all(|v| v.left_out == 0));
        // The next second: its first refusal is logged, and the 15 left out are told.
        let next = log.refused(t0 + WINDOW);
        assert_eq!(
            next,
            Verdict {
                log: true,
                left_out: 15
            }
        );
        // Just inside the window, still counted against it.
        let log = RefusalLog::default();
        log.refused(t0);
        for _ in 0..9 {
            assert!(log.refused(t0 + WINDOW - Duration::from_nanos(1)).log);
        }
        assert!(!log.refused(t0 + WINDOW - Duration::from_nanos(1)).log);
    }
}
