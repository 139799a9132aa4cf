//! Sequence numbers too far from the last one to believe.
//!
//! A/B arbitration and NATS import accounting drop a message whose number is at or
//! below the last one seen. Believed blindly, one forged number (`u = 2^64-1` in a
//! payload, `Feedrelay-Seq: 18446744073709551615` in a header) would make every later
//! genuine message look old, and the stream would go silent. So a number more than
//! [`MAX_SEQ_JUMP`] away from the last one, either way, is not believed: its message is
//! passed on (nothing genuine is ever dropped for it) and counted, and the last number
//! stays. Only when [`REBASE_AFTER`] such numbers in a row agree with each other (each
//! above the one before, within the bound) with no believable one between them, are
//! they taken as the stream's new baseline (a source that restarted far away, a line
//! back after hours). A forger who wins a baseline that way loses it as soon as the
//! genuine stream, itself then "too far", runs three in a row.

/// The largest distance from the last number that is believed.
pub const MAX_SEQ_JUMP: u64 = 1 << 20;

/// How many agreeing unbelievable numbers in a row make a new baseline.
pub const REBASE_AFTER: u8 = 3;

/// The run of unbelievable numbers seen since the last believable one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JumpGuard {
    candidate: u64,
    run: u8,
}

/// What the guard makes of a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judged {
    /// Within [`MAX_SEQ_JUMP`] of the last: judge it as usual.
    Plausible,
    /// Too far: pass the message on, count it, keep the last number.
    Implausible,
    /// Too far, but the [`REBASE_AFTER`]th in a row that agree: make it the last.
    Rebase,
}

impl JumpGuard {
    /// Judges `seq` against `last`.
    pub fn judge(&mut self, last: u64, seq: u64) -> Judged {
        if seq.abs_diff(last) <= MAX_SEQ_JUMP {
            self.run = 0;
            return Judged::Plausible;
        }
        let agrees = self.run > 0 && seq > self.candidate && seq - self.candidate <= MAX_SEQ_JUMP;
        self.run = if agrees { self.run + 1 } else { 1 };
        self.candidate = seq;
        if self.run >= REBASE_AFTER {
            self.run = 0;
            Judged::Rebase
        } else {
            Judged::Implausible
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_far_number_is_not_believed_and_three_in_a_row_are() {
        let mut g = JumpGuard::default();
        assert_eq!(g.judge(100, 101), Judged::Plausible);
        assert_eq!(g.judge(100, 100 + MAX_SEQ_JUMP), Judged::Plausible);
        assert_eq!(g.judge(100, u64::MAX), Judged::Implausible);
        assert_eq!(g.judge(100, 102), Judged::Plausible, "the run is broken");
        assert_eq!(g.judge(100, u64::MAX - 2), Judged::Implausible);
        assert_eq!(g.judge(100, u64::MAX - 1), Judged::Implausible);
        assert_eq!(g.judge(100, u64::MAX), Judged::Rebase);
        // Far below (a forged baseline, the genuine stream still running): same rule.
        let last = u64::MAX;
        assert_eq!(g.judge(last, 103), Judged::Implausible);
        assert_eq!(g.judge(last, 104), Judged::Implausible);
        assert_eq!(g.judge(last, 105), Judged::Rebase);
        // Numbers that do not agree (not rising, or apart) start the run again.
        assert_eq!(g.judge(0, 5_000_000), Judged::Implausible);
        assert_eq!(g.judge(0, 4_999_999), Judged::Implausible);
        assert_eq!(g.judge(0, 9_000_000), Judged::Implausible);
        assert_eq!(g.judge(0, 9_000_001), Judged::Implausible);
        assert_eq!(g.judge(0, 9_000_002), Judged::Rebase);
    }
}
