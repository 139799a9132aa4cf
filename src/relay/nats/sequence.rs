//! Per-subject sequence numbers: how an importing relay knows what it missed.
//!
//! NATS core delivers at most once: a message in flight to a server that dies is gone,
//! and nobody is told. The exporting relay numbers its messages per topic, so per
//! subject ([`Numbering`], which also keeps each topic's subject, escaped once); the
//! importer ([`GapCounter`]) remembers the last number seen per
//! origin and subject and counts the numbers it never saw (`gap`) and those that came
//! late or twice (`late`). A number too far from the last to believe (a forged
//! `Feedrelay-Seq`, see [`jump`](crate::relay::core::jump)) is relayed and counted
//! (`implausible`) but moves nothing, so it cannot make later genuine messages look
//! late. Both maps are bounded ([`MAX_TRACKED`]): a subject past the bound goes
//! unnumbered (or unchecked) and is counted.

use std::collections::HashMap;

use bytes::Bytes;

use crate::io::nats::Seen;
use crate::relay::core::jump::{Judged, JumpGuard};

/// Subjects (or origin-subject pairs) a map remembers at most.
pub const MAX_TRACKED: usize = 100_000;

/// The exporter's subject and last number per topic.
#[derive(Debug)]
pub struct Numbering<S> {
    /// Keyed by a copy of the topic (never the relayed frame's slice, which would keep
    /// its whole chunk alive).
    topics: HashMap<Bytes, (S, u64)>,
    /// Messages sent unnumbered because the map was full.
    pub untracked: u64,
}

impl<S> Default for Numbering<S> {
    fn default() -> Self {
        Numbering {
            topics: HashMap::new(),
            untracked: 0,
        }
    }
}

impl<S: Clone> Numbering<S> {
    /// `topic`'s subject (`subject` makes it, once per topic) and the number of its
    /// next message, from 1; no number when the map is full and `topic` is new.
    pub fn next(&mut self, topic: &[u8], subject: impl FnOnce() -> S) -> (S, Option<u64>) {
        if let Some((s, n)) = self.topics.get_mut(topic) {
            *n += 1;
            return (s.clone(), Some(*n));
        }
        if self.topics.len() >= MAX_TRACKED {
            self.untracked += 1;
            return (subject(), None);
        }
        let s = subject();
        self.topics
            .insert(Bytes::copy_from_slice(topic), (s.clone(), 1));
        (s, Some(1))
    }
}

/// The importer's last number per origin and subject.
#[derive(Debug, Default)]
pub struct GapCounter {
    /// Origin -> subject -> last number (and the run of unbelievable ones since);
    /// looked up by `&str`, so only a new origin or subject allocates.
    last: HashMap<String, HashMap<String, (u64, JumpGuard)>>,
    tracked: usize,
}

impl GapCounter {
    /// Records message `seq` from `origin` on `subject`.
    pub fn see(&mut self, origin: &str, subject: &str, seq: u64) -> Seen {
        if let Some((last, guard)) = self.last.get_mut(origin).and_then(|m| m.get_mut(subject)) {
            let prev = *last;
            match guard.judge(prev, seq) {
                Judged::Plausible => {}
                Judged::Implausible => return Seen::Implausible,
                Judged::Rebase => {
                    *last = seq;
                    return Seen::Restarted;
                }
            }
            if seq == 1 && prev > 1 {
                *last = 1;
                return Seen::Restarted;
            }
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
            .insert(subject.to_owned(), (seq, JumpGuard::default()));
        Seen::InOrder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_each_topic_from_one_and_makes_its_subject_once() {
        let mut n = Numbering::default();
        let made = std::cell::Cell::new(0);
        let mut next = |t: &[u8]| {
            n.next(t, || {
                made.set(made.get() + 1);
                format!("p.{}", String::from_utf8_lossy(t))
            })
        };
        assert_eq!(next(b"a"), ("p.a".to_string(), Some(1)));
        assert_eq!(next(b"a"), ("p.a".to_string(), Some(2)));
        assert_eq!(next(b"b"), ("p.b".to_string(), Some(1)));
        assert_eq!(made.get(), 2);
    }

    #[test]
    fn counts_gaps_and_late_messages_per_origin_and_subject() {
        let mut g = GapCounter::default();
        assert_eq!(g.see("o1", "s", 5), Seen::InOrder, "joined late: not a gap");
        assert_eq!(g.see("o1", "s", 6), Seen::InOrder);
        assert_eq!(g.see("o1", "s", 9), Seen::AfterGap(2));
        assert_eq!(g.see("o1", "s", 9), Seen::Late);
        assert_eq!(g.see("o1", "s", 7), Seen::Late);
        assert_eq!(g.see("o1", "s", 1), Seen::Restarted);
        assert_eq!(g.see("o1", "s", 2), Seen::InOrder);
        assert_eq!(g.see("o3", "s", 1), Seen::InOrder);
        assert_eq!(g.see("o3", "s", 1), Seen::Late, "a copy of the first");
        assert_eq!(g.see("o2", "s", 1), Seen::InOrder, "another origin");
        assert_eq!(g.see("o1", "t", 1), Seen::InOrder, "another subject");
    }

    /// A forged `Feedrelay-Seq: 2^64-1` is relayed as implausible and the genuine
    /// numbers after it stay in order, none late.
    #[test]
    fn a_forged_far_number_makes_nothing_late() {
        let mut g = GapCounter::default();
        assert_eq!(g.see("a", "s", 7), Seen::InOrder);
        assert_eq!(g.see("a", "s", u64::MAX), Seen::Implausible);
        assert_eq!(g.see("a", "s", 8), Seen::InOrder);
        assert_eq!(g.see("a", "s", 8), Seen::Late, "a real copy is still late");
    }

    #[test]
    fn stops_tracking_at_the_bound_and_says_so() {
        let mut n = Numbering::default();
        let mut g = GapCounter::default();
        for i in 0..MAX_TRACKED {
            let s = i.to_string();
            assert!(n.next(s.as_bytes(), || ()).1.is_some());
            assert_eq!(g.see("o", &s, 1), Seen::InOrder);
        }
        assert_eq!(n.next(b"new", || ()).1, None);
        assert_eq!(n.untracked, 1);
        assert_eq!(
            n.next(b"0", || ()).1,
            Some(2),
            "known topics keep their numbers"
        );
        assert_eq!(g.see("o", "new", 1), Seen::Untracked);
        assert_eq!(g.see("o", "0", 3), Seen::AfterGap(1));
    }
}
