//! Per-subject sequence numbers: how an importing relay knows what it missed.
//!
//! NATS core delivers at most once: a message in flight to a server that dies is gone,
//! and nobody is told. The exporting relay numbers its messages per subject
//! ([`Numbering`]); the importer ([`GapCounter`]) remembers the last number seen per
//! origin and subject and counts the numbers it never saw (`gap`) and those that came
//! late or twice (`late`). Both maps are bounded ([`MAX_TRACKED`]): a subject past the
//! bound goes unnumbered (or unchecked) and is counted.

use std::collections::HashMap;

/// Subjects (or origin-subject pairs) a map remembers at most.
pub const MAX_TRACKED: usize = 100_000;

/// The exporter's next number per subject.
#[derive(Debug, Default)]
pub struct Numbering {
    next: HashMap<String, u64>,
    /// Messages sent unnumbered because the map was full.
    pub untracked: u64,
}

impl Numbering {
    /// The number of the next message on `subject` (from 1), or `None` when the map is
    /// full and `subject` is new.
    pub fn next(&mut self, subject: &str) -> Option<u64> {
        if let Some(n) = self.next.get_mut(subject) {
            *n += 1;
            return Some(*n);
        }
        if self.next.len() >= MAX_TRACKED {
            self.untracked += 1;
            return None;
        }
        self.next.insert(subject.to_owned(), 1);
        Some(1)
    }
}

/// What the importer saw of one message's number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The next one (or the first from this origin and subject).
    InOrder,
    /// This many numbers were skipped before it.
    AfterGap(u64),
    /// At or below one already seen: late or a duplicate.
    Late,
    /// Not checked: the map is full.
    Untracked,
}

/// The importer's last number per origin and subject.
#[derive(Debug, Default)]
pub struct GapCounter {
    /// Origin -> subject -> last number; looked up by `&str`, so only a new origin or
    /// subject allocates.
    last: HashMap<String, HashMap<String, u64>>,
    tracked: usize,
}

impl GapCounter {
    /// Records message `seq` from `origin` on `subject`.
    pub fn see(&mut self, origin: &str, subject: &str, seq: u64) -> Seen {
        if let Some(last) = self.last.get_mut(origin).and_then(|m| m.get_mut(subject)) {
            let prev = *last;
            if seq <= prev {
                return Seen::Late;
            }
            *last = seq;
            return match seq - prev - 1 {
                0 => Seen::InOrder,
                skipped => Seen::AfterGap(skipped),
            };
        }
        if self.tracked >= MAX_TRACKED {
            return Seen::Untracked;
        }
        self.tracked += 1;
        self.last
            .entry(origin.to_owned())
            .or_default()
            .insert(subject.to_owned(), seq);
        Seen::InOrder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_each_subject_from_one() {
        let mut n = Numbering::default();
        assert_eq!(n.next("a"), Some(1));
        assert_eq!(n.next("a"), Some(2));
        assert_eq!(n.next("b"), Some(1));
    }

    #[test]
    fn counts_gaps_and_late_messages_per_origin_and_subject() {
        let mut g = GapCounter::default();
        assert_eq!(g.see("o1", "s", 5), Seen::InOrder, "joined late: not a gap");
        assert_eq!(g.see("o1", "s", 6), Seen::InOrder);
        assert_eq!(g.see("o1", "s", 9), Seen::AfterGap(2));
        assert_eq!(g.see("o1", "s", 9), Seen::Late);
        assert_eq!(g.see("o1", "s", 7), Seen::Late);
        assert_eq!(g.see("o2", "s", 1), Seen::InOrder, "another origin");
        assert_eq!(g.see("o1", "t", 1), Seen::InOrder, "another subject");
    }

    #[test]
    fn stops_tracking_at_the_bound_and_says_so() {
        let mut n = Numbering::default();
        let mut g = GapCounter::default();
        for i in 0..MAX_TRACKED {
            let s = i.to_string();
            assert!(n.next(&s).is_some());
            assert_eq!(g.see("o", &s, 1), Seen::InOrder);
        }
        assert_eq!(n.next("new"), None);
        assert_eq!(n.untracked, 1);
        assert_eq!(n.next("0"), Some(2), "known subjects keep their numbers");
        assert_eq!(g.see("o", "new", 1), Seen::Untracked);
        assert_eq!(g.see("o", "0", 3), Seen::AfterGap(1));
    }
}
