//! Which subscribers want a topic, here and on the other workers.
//!
//! Each worker keeps its own table; nothing is shared between threads. A worker learns
//! what the others want through interest updates that travel on the same channels as
//! messages, so a message is handed only to workers with a subscriber for its topic.

use std::collections::HashMap;

use bytes::Bytes;

/// A subscriber's index within its worker.
pub type SubId = usize;

/// Bit `w` set: worker `w` is interested.
pub type WorkerMask = u64;

/// Most workers a relay can have (the width of [`WorkerMask`]).
pub const MAX_WORKERS: usize = 64;

/// What a topic key is: a name, or every topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Interest {
    /// One topic.
    Topic(Bytes),
    /// `*`.
    All,
}

impl Interest {
    /// The topic's name (`*` for every topic).
    pub fn name(&self) -> String {
        match self {
            Interest::All => crate::relay::core::control::WILDCARD.to_owned(),
            Interest::Topic(t) => String::from_utf8_lossy(t).into_owned(),
        }
    }
}

/// One worker's routing table.
#[derive(Debug, Default)]
pub struct RoutingTable {
    by_topic: HashMap<Bytes, Vec<SubId>>,
    wildcard: Vec<SubId>,
    remote: HashMap<Bytes, WorkerMask>,
    remote_all: WorkerMask,
}

impl RoutingTable {
    /// Adds `sub` to `interest`; true if this worker was not interested before (the
    /// other workers must be told).
    pub fn subscribe(&mut self, sub: SubId, interest: &Interest) -> bool {
        let list = match interest {
            Interest::All => &mut self.wildcard,
            Interest::Topic(t) => self.by_topic.entry(t.clone()).or_default(),
        };
        if list.contains(&sub) {
            return false;
        }
        list.push(sub);
        list.len() == 1
    }

    /// Removes `sub` from `interest`; true if this worker is no longer interested.
    pub fn unsubscribe(&mut self, sub: SubId, interest: &Interest) -> bool {
        let (list, topic) = match interest {
            Interest::All => (&mut self.wildcard, None),
            Interest::Topic(t) => match self.by_topic.get_mut(t) {
                Some(l) => (l, Some(t)),
                None => return false,
            },
        };
        let Some(at) = list.iter().position(|&s| s == sub) else {
            return false;
        };
        list.swap_remove(at);
        let now_empty = list.is_empty();
        if now_empty {
            if let Some(t) = topic {
                self.by_topic.remove(t);
            }
        }
        now_empty
    }

    /// Local subscribers of `topic` (not counting `*` subscribers).
    pub fn topic_subscribers(&self, topic: &[u8]) -> &[SubId] {
        self.by_topic.get(topic).map_or(&[], Vec::as_slice)
    }

    /// Local `*` subscribers.
    pub fn wildcard_subscribers(&self) -> &[SubId] {
        &self.wildcard
    }

    /// Records another worker's interest.
    pub fn set_remote(&mut self, worker: usize, interest: &Interest, on: bool) {
        let bit = 1u64 << worker;
        let mask = match interest {
            Interest::All => &mut self.remote_all,
            Interest::Topic(t) => self.remote.entry(t.clone()).or_default(),
        };
        if on {
            *mask |= bit;
        } else {
            *mask &= !bit;
        }
        if let Interest::Topic(t) = interest {
            if self.remote.get(t) == Some(&0) {
                self.remote.remove(t);
            }
        }
    }

    /// The other workers that want `topic`.
    pub fn remote_workers(&self, topic: &[u8]) -> WorkerMask {
        self.remote.get(topic).copied().unwrap_or(0) | self.remote_all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &'static str) -> Interest {
        Interest::Topic(Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn first_and_last_subscriber_change_interest() {
        let mut r = RoutingTable::default();
        assert!(r.subscribe(1, &t("A")));
        assert!(!r.subscribe(2, &t("A")));
        assert!(!r.subscribe(2, &t("A")), "idempotent");
        assert_eq!(r.topic_subscribers(b"A"), &[1, 2]);
        assert!(!r.unsubscribe(1, &t("A")));
        assert!(r.unsubscribe(2, &t("A")));
        assert!(!r.unsubscribe(2, &t("A")));
        assert!(r.topic_subscribers(b"A").is_empty());
        assert!(r.subscribe(3, &Interest::All));
        assert_eq!(r.wildcard_subscribers(), &[3]);
    }

    #[test]
    fn remote_interest_masks() {
        let mut r = RoutingTable::default();
        r.set_remote(1, &t("A"), true);
        r.set_remote(3, &t("A"), true);
        r.set_remote(2, &Interest::All, true);
        assert_eq!(r.remote_workers(b"A"), 0b1110);
        assert_eq!(r.remote_workers(b"B"), 0b0100);
        r.set_remote(1, &t("A"), false);
        r.set_remote(3, &t("A"), false);
        r.set_remote(2, &Interest::All, false);
        assert_eq!(r.remote_workers(b"A"), 0);
    }
}
