//! A/B arbitration: feeds in one `group` carry the same data on independent lines.
//! Each message has a topic and, read by `seq_pointer`, a per-topic sequence number.
//! The [`Arbiter`] forwards the first copy of each (topic, seq) and drops later copies,
//! so either line can die without loss or duplicates downstream. A sequence number more
//! than one past the last forwarded is a gap: the missing count is added to the topic's
//! gap counter (gaps are observed, never invented: a topic's first message sets its
//! baseline). A line whose own sequence goes backwards within one connection has been
//! reset at the source; its number becomes the topic's new baseline. A number too far
//! from the last to believe ([`jump`](crate::relay::core::jump): a forged `u = 2^64-1`)
//! is forwarded and counted but moves nothing, so it cannot make the genuine messages
//! after it look like copies.

use std::collections::HashMap;

use crate::relay::core::jump::{Judged, JumpGuard};

/// What the arbiter decided for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// First copy: forward it.
    Forward,
    /// Seen already (from this line or another): drop it.
    Duplicate,
}

/// Per-topic arbitration state and counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicSeq {
    /// Last sequence number forwarded.
    pub last: u64,
    /// Messages forwarded.
    pub forwarded: u64,
    /// Copies dropped.
    pub duplicates: u64,
    /// Sequence numbers never seen on any line.
    pub missing: u64,
    /// Times a jump past `last + 1` was seen.
    pub gaps: u64,
    /// Times a line's sequence went backwards (source reset).
    pub resets: u64,
    /// Numbers too far from the last to believe: forwarded, not arbitrated.
    pub implausible: u64,
    /// The run of such numbers since the last believable one.
    guard: JumpGuard,
}

/// A gap just observed: `from..=to` were never seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// First missing sequence number.
    pub from: u64,
    /// Last missing sequence number.
    pub to: u64,
}

/// Topics one group's arbiter tracks at most. A message on a topic past the limit is
/// forwarded unarbitrated and counted (an exchange that invents topics without end
/// cannot grow the relay's memory without end).
pub const MAX_ARBITRATED_TOPICS: usize = 100_000;

/// A/B arbitration for one group of lines (see the module docs).
#[derive(Debug, Default)]
pub struct Arbiter {
    topics: HashMap<Box<[u8]>, TopicSeq>,
    /// Per line: the last sequence number it sent per topic, this connection.
    lines: Vec<HashMap<Box<[u8]>, u64>>,
    /// Messages forwarded unarbitrated because their topic was past the limit.
    untracked: u64,
    limit: usize,
}

impl Arbiter {
    /// An arbiter for `lines` lines.
    pub fn new(lines: usize) -> Arbiter {
        Arbiter::with_limit(lines, MAX_ARBITRATED_TOPICS)
    }

    /// An arbiter tracking at most `limit` topics.
    pub fn with_limit(lines: usize, limit: usize) -> Arbiter {
        Arbiter {
            topics: HashMap::new(),
            lines: vec![HashMap::new(); lines],
            untracked: 0,
            limit,
        }
    }

    /// Messages forwarded unarbitrated because their topic was past the limit.
    pub fn untracked(&self) -> u64 {
        self.untracked
    }

    /// Decides for a message of `topic` with `seq` from `line`; a gap it reveals is
    /// returned for logging (already counted).
    pub fn check(&mut self, line: usize, topic: &[u8], seq: u64) -> (Verdict, Option<Gap>) {
        if self.topics.len() >= self.limit && !self.topics.contains_key(topic) {
            self.untracked += 1;
            return (Verdict::Forward, None);
        }
        let mut reset = false;
        if let Some(own) = self.lines.get_mut(line) {
            match own.get_mut(topic) {
                Some(prev) => {
                    reset = seq < *prev;
                    *prev = seq;
                }
                None => {
                    own.insert(topic.into(), seq);
                }
            }
        }
        let Some(t) = self.topics.get_mut(topic) else {
            self.topics.insert(
                topic.into(),
                TopicSeq {
                    last: seq,
                    forwarded: 1,
                    ..TopicSeq::default()
                },
            );
            return (Verdict::Forward, None);
        };
        match t.guard.judge(t.last, seq) {
            Judged::Plausible => {}
            Judged::Implausible => {
                t.implausible += 1;
                t.forwarded += 1;
                return (Verdict::Forward, None);
            }
            Judged::Rebase => {
                t.resets += 1;
                t.last = seq;
                t.forwarded += 1;
                return (Verdict::Forward, None);
            }
        }
        if reset && seq <= t.last {
            t.resets += 1;
            t.last = seq;
            t.forwarded += 1;
            return (Verdict::Forward, None);
        }
        if seq <= t.last {
            t.duplicates += 1;
            return (Verdict::Duplicate, None);
        }
        let gap = (seq > t.last + 1).then(|| Gap {
            from: t.last + 1,
            to: seq - 1,
        });
        if let Some(g) = gap {
            t.gaps += 1;
            // Sequence numbers come from the exchange: a hostile jump must not wrap.
            t.missing = t.missing.saturating_add(g.to - g.from + 1);
        }
        t.last = seq;
        t.forwarded += 1;
        (Verdict::Forward, gap)
    }

    /// `line` reconnected: forget what it sent (a new connection may replay).
    pub fn line_reconnected(&mut self, line: usize) {
        if let Some(own) = self.lines.get_mut(line) {
            own.clear();
        }
    }

    /// Per-topic state, sorted by topic.
    pub fn topics(&self) -> Vec<(String, TopicSeq)> {
        let mut v: Vec<_> = self
            .topics
            .iter()
            .map(|(k, t)| (String::from_utf8_lossy(k).into_owned(), t.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The `max` topics with the most missing sequence numbers, worst first (names are
    /// made only for topics with a gap: this runs every metrics interval).
    pub fn worst_gaps(&self, max: usize) -> Vec<(String, u64)> {
        let mut gaps: Vec<(&[u8], u64)> = self
            .topics
            .iter()
            .filter(|(_, t)| t.missing > 0)
            .map(|(k, t)| (&k[..], t.missing))
            .collect();
        gaps.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        gaps.truncate(max);
        gaps.into_iter()
            .map(|(k, n)| (String::from_utf8_lossy(k).into_owned(), n))
            .collect()
    }

    /// Totals over all topics.
    pub fn totals(&self) -> TopicSeq {
        let mut sum = TopicSeq::default();
        for t in self.topics.values() {
            sum.forwarded += t.forwarded;
            sum.duplicates += t.duplicates;
            sum.missing = sum.missing.saturating_add(t.missing);
            sum.gaps += t.gaps;
            sum.resets += t.resets;
            sum.implausible += t.implausible;
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arbitration_forwards_first_copies_in_order() {
        let mut a = Arbiter::new(2);
        let mut out = Vec::new();
        // Line 0 leads, line 1 lags by two; line 0 dies after 5.
        let events = [
            (0, 1),
            (0, 2),
            (1, 1),
            (0, 3),
            (1, 2),
            (0, 4),
            (1, 3),
            (0, 5),
            (1, 4),
            (1, 5),
            (1, 6),
            (1, 7),
        ];
        for (line, seq) in events {
            if a.check(line, b"T", seq).0 == Verdict::Forward {
                out.push(seq);
            }
        }
        assert_eq!(out, [1, 2, 3, 4, 5, 6, 7]);
        let t = a.totals();
        assert_eq!((t.forwarded, t.duplicates, t.gaps, t.missing), (7, 5, 0, 0));
    }

    #[test]
    fn gaps_are_counted_not_invented() {
        let mut a = Arbiter::new(1);
        // The first message sets the baseline: no gap before it.
        assert_eq!(a.check(0, b"T", 100), (Verdict::Forward, None));
        assert_eq!(a.check(0, b"U", 5), (Verdict::Forward, None));
        assert_eq!(
            a.check(0, b"T", 104),
            (Verdict::Forward, Some(Gap { from: 101, to: 103 }))
        );
        assert_eq!(a.check(0, b"T", 105).0, Verdict::Forward);
        let topics = a.topics();
        assert_eq!(topics[0].0, "T");
        assert_eq!((topics[0].1.gaps, topics[0].1.missing), (1, 3));
        assert_eq!((topics[1].1.gaps, topics[1].1.missing), (0, 0));
    }

    #[test]
    fn topics_past_the_limit_pass_unarbitrated_and_counted() {
        let mut a = Arbiter::with_limit(2, 2);
        assert_eq!(a.check(0, b"A", 1).0, Verdict::Forward);
        assert_eq!(a.check(0, b"B", 1).0, Verdict::Forward);
        // C is past the limit: both copies pass, counted, and nothing is stored for it.
        assert_eq!(a.check(0, b"C", 1).0, Verdict::Forward);
        assert_eq!(a.check(1, b"C", 1).0, Verdict::Forward);
        assert_eq!(a.untracked(), 2);
        assert_eq!(a.topics().len(), 2);
        // Known topics are still arbitrated.
        assert_eq!(a.check(1, b"A", 1).0, Verdict::Duplicate);
        assert_eq!(Arbiter::new(1).limit, MAX_ARBITRATED_TOPICS);
    }

    #[test]
    fn gap_report_is_the_worst_topics_bounded() {
        const MAX: usize = 100;
        let mut a = Arbiter::new(1);
        for i in 0..500u64 {
            let topic = format!("T{i:03}");
            a.check(0, topic.as_bytes(), 1);
            a.check(0, topic.as_bytes(), 2 + i % 7);
        }
        a.check(0, b"WORST", 1);
        a.check(0, b"WORST", 1_002);
        let report = a.worst_gaps(MAX);
        assert_eq!(report.len(), MAX);
        assert_eq!(report[0], ("WORST".to_owned(), 1_000));
        assert!(report.iter().all(|(_, n)| *n > 0));
        assert!(report.windows(2).all(|w| w[0].1 >= w[1].1));
    }

    #[test]
    fn a_line_going_backwards_is_a_source_reset() {
        let mut a = Arbiter::new(1);
        for s in 1..=10 {
            a.check(0, b"T", s);
        }
        assert_eq!(a.check(0, b"T", 1).0, Verdict::Forward);
        assert_eq!(a.check(0, b"T", 2).0, Verdict::Forward);
        assert_eq!(a.totals().resets, 1);
        // After a reconnect the line may replay: copies, not a reset.
        a.line_reconnected(0);
        assert_eq!(a.check(0, b"T", 1).0, Verdict::Duplicate);
        assert_eq!(a.check(0, b"T", 3).0, Verdict::Forward);
    }

    /// A forged `u = 2^64-1` on one line cannot make the genuine messages after it
    /// copies: it is forwarded and counted, the genuine stream goes on arbitrated.
    #[test]
    fn a_forged_far_number_silences_nothing() {
        let mut a = Arbiter::new(3);
        assert_eq!(a.check(0, b"T", 10).0, Verdict::Forward);
        assert_eq!(a.check(2, b"T", u64::MAX).0, Verdict::Forward, "passed on");
        for seq in 11..20 {
            assert_eq!(a.check(0, b"T", seq).0, Verdict::Forward, "{seq}");
            assert_eq!(a.check(1, b"T", seq).0, Verdict::Duplicate, "{seq}");
        }
        let t = &a.topics()[0].1;
        assert_eq!((t.last, t.implausible, t.missing), (19, 1, 0));
        // Even three agreeing forged numbers win the baseline only until the genuine
        // stream has run three: no genuine message is dropped meanwhile.
        for f in [u64::MAX - 2, u64::MAX - 1, u64::MAX] {
            assert_eq!(a.check(2, b"T", f).0, Verdict::Forward);
        }
        let forwarded: Vec<_> = (20..26).map(|seq| a.check(0, b"T", seq).0).collect();
        assert!(
            forwarded.iter().all(|v| *v == Verdict::Forward),
            "{forwarded:?}"
        );
        assert_eq!(a.topics()[0].1.last, 25);
        assert_eq!(
            a.check(1, b"T", 25).0,
            Verdict::Duplicate,
            "arbitrated again"
        );
    }
}
