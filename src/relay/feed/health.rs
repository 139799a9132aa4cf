//! Whether a group of feed lines is delivering, and which topics it carries: what the
//! `stale` and `live` events to subscribers are made of.
//!
//! A group is stale when none of its lines is connected, or when lines are connected
//! (answering pings) but none has delivered a message for `stale_after_ms`; it is live
//! again when one of them delivers a message. Each change is reported once; the topics
//! are those the group delivered, at most [`MAX_TOPICS`] of them.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Topics a group remembers for its events (more are not named in them).
pub const MAX_TOPICS: usize = 10_000;

/// A change in a group's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// No line is connected any more.
    Stale,
    /// A line delivered again after the group was stale.
    Live,
}

impl Change {
    /// The event's name.
    pub fn name(self) -> &'static str {
        match self {
            Change::Stale => "stale",
            Change::Live => "live",
        }
    }
}

/// One group's health.
#[derive(Debug, Default)]
pub struct GroupHealth {
    /// Lines connected now.
    up: Cell<usize>,
    /// Reported stale, not yet live again.
    stale: Cell<bool>,
    /// When a line of the group last delivered a batch of messages.
    last_delivered: Cell<Option<Instant>>,
    topics: RefCell<HashSet<Bytes>>,
}

impl GroupHealth {
    /// A line connected.
    pub fn line_up(&self) {
        self.up.set(self.up.get() + 1);
    }

    /// A line's session ended (or a connect failed, `was_up` false): stale if no line
    /// is left.
    pub fn line_down(&self, was_up: bool) -> Option<Change> {
        if was_up {
            self.up.set(self.up.get().saturating_sub(1));
        }
        (self.up.get() == 0 && !self.stale.replace(true)).then_some(Change::Stale)
    }

    /// A message of `topic` was delivered: live again if it was stale.
    pub fn delivered(&self, topic: &[u8]) -> Option<Change> {
        let mut topics = self.topics.borrow_mut();
        if topics.len() < MAX_TOPICS && !topics.contains(topic) {
            topics.insert(Bytes::copy_from_slice(topic));
        }
        self.stale.replace(false).then_some(Change::Live)
    }

    /// A line delivered messages at `at` (once per read, not per message).
    pub fn delivered_at(&self, at: Instant) {
        self.last_delivered.set(Some(at));
    }

    /// Checked when a connected line has been quiet a while: stale if the group has
    /// delivered nothing for `stale` (lines may still answer pings).
    pub fn silent(&self, stale: Duration, now: Instant) -> Option<Change> {
        let last = self.last_delivered.get()?;
        (now.duration_since(last) >= stale && !self.stale.replace(true)).then_some(Change::Stale)
    }

    /// The topics it delivered, sorted.
    pub fn topics(&self) -> Vec<Bytes> {
        let mut t: Vec<Bytes> = self.topics.borrow().iter().cloned().collect();
        t.sort();
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_change_is_reported_once() {
        let h = GroupHealth::default();
        h.line_up();
        h.line_up();
        assert_eq!(h.delivered(b"B"), None);
        assert_eq!(h.line_down(true), None, "one line of two left");
        assert_eq!(h.line_down(true), Some(Change::Stale));
        assert_eq!(h.line_down(false), None, "reported already");
        assert_eq!(h.delivered(b"A"), Some(Change::Live));
        assert_eq!(h.delivered(b"A"), None);
        assert_eq!(
            h.topics(),
            vec![Bytes::from_static(b"A"), Bytes::from_static(b"B")]
        );
        // A group that never connects is stale at its first failure.
        let never = GroupHealth::default();
        assert_eq!(never.line_down(false), Some(Change::Stale));
        // Connected but silent: stale once after `stale` without a delivery.
        let quiet = GroupHealth::default();
        let t0 = Instant::now();
        let stale = Duration::from_millis(400);
        assert_eq!(
            quiet.silent(stale, t0),
            None,
            "nothing delivered yet: no baseline"
        );
        quiet.delivered_at(t0);
        assert_eq!(quiet.silent(stale, t0 + stale / 2), None);
        assert_eq!(quiet.silent(stale, t0 + stale), Some(Change::Stale));
        assert_eq!(quiet.silent(stale, t0 + stale * 2), None, "once");
        assert_eq!(quiet.delivered(b"A"), Some(Change::Live));
    }
}
