//! A subscription with a snapshot, while it is put together.
//!
//! The subscriber asked for the last message of each new topic before the live stream.
//! Its own worker's last values are taken at once; every other worker is asked (a
//! control hop, after the interest hop that makes it route the topics here) and
//! answers with its own, on the control channel, ordered with its data hops
//! ([`links`](crate::relay::worker::links) merges the two in the order they were sent). So for each
//! worker: the messages it sent before its answer are older than the snapshot and are
//! skipped for this subscriber; those after it are live. Until every worker has
//! answered, live messages for the new topics are held here; then the `subscribed`
//! reply goes out, then the snapshot, then what was held, then the live stream: no gap
//! and no duplicate between the snapshot and the stream, per worker the topic's
//! messages enter on.

use std::collections::HashSet;

use bytes::Bytes;

use crate::relay::core::routing::{Interest, WorkerMask};

/// What [`PendingSnapshot::offer`] did with a live message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Not one of the snapshot's topics: deliver it as usual.
    NotCovered,
    /// Older than its worker's snapshot: not for this subscriber.
    Skipped,
    /// Held until the snapshot is complete.
    Held,
    /// Held would exceed the bound: dropped (counted by the caller).
    Dropped,
}

/// See the module docs.
#[derive(Debug)]
pub struct PendingSnapshot {
    /// The subscription generation it belongs to (stale answers are ignored).
    pub generation: u64,
    /// Workers whose answer has not arrived.
    waiting: WorkerMask,
    /// The topics covered (besides `all`).
    topics: HashSet<Bytes>,
    all: bool,
    /// Snapshot frames so far, this worker's first.
    frames: Vec<Bytes>,
    /// Live frames for the snapshot's topics since each worker answered.
    held: Vec<Bytes>,
    /// Most frames held (the subscriber's queue bound).
    max_held: usize,
    /// The `subscribed` reply.
    reply: Bytes,
}

impl PendingSnapshot {
    /// A snapshot of `topics` for subscription `generation`, waiting for the workers
    /// in `waiting`, starting with this worker's `frames`.
    pub fn new(
        generation: u64,
        waiting: WorkerMask,
        topics: &[Interest],
        frames: Vec<Bytes>,
        reply: Bytes,
        max_held: usize,
    ) -> Self {
        PendingSnapshot {
            generation,
            waiting,
            all: topics.contains(&Interest::All),
            topics: topics
                .iter()
                .filter_map(|i| match i {
                    Interest::Topic(t) => Some(t.clone()),
                    Interest::All => None,
                })
                .collect(),
            frames,
            held: Vec::new(),
            max_held,
            reply,
        }
    }

    fn covers(&self, topic: &[u8]) -> bool {
        self.all || self.topics.contains(topic)
    }

    /// A live message of `topic` from worker `origin`.
    pub fn offer(&mut self, origin: usize, topic: &[u8], frame: &Bytes) -> Offered {
        if !self.covers(topic) {
            return Offered::NotCovered;
        }
        if self.waiting & (1 << origin) != 0 {
            return Offered::Skipped;
        }
        if self.held.len() >= self.max_held {
            return Offered::Dropped;
        }
        self.held.push(frame.clone());
        Offered::Held
    }

    /// Worker `origin`'s answer; true once every worker has answered.
    pub fn answered(&mut self, origin: usize, frames: Vec<Bytes>) -> bool {
        if self.waiting & (1 << origin) != 0 {
            self.waiting &= !(1 << origin);
            self.frames.extend(frames);
        }
        self.waiting == 0
    }

    /// What goes to the subscriber, in order: the reply, the snapshot, what was held.
    pub fn into_frames(self) -> impl Iterator<Item = Bytes> {
        std::iter::once(self.reply)
            .chain(self.frames)
            .chain(self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn older_messages_are_skipped_later_ones_held_until_every_worker_answered() {
        let topics = [Interest::Topic(b("A"))];
        let mut p = PendingSnapshot::new(1, 0b110, &topics, vec![b("a0@0")], b("ok"), 2);
        assert_eq!(p.offer(1, b"A", &b("a1@1")), Offered::Skipped);
        assert_eq!(
            p.offer(0, b"A", &b("a1@0")),
            Offered::Held,
            "this worker's: live"
        );
        assert_eq!(p.offer(1, b"B", &b("b")), Offered::NotCovered);
        assert!(!p.answered(1, vec![b("a1@1")]));
        assert_eq!(p.offer(1, b"A", &b("a2@1")), Offered::Held);
        assert_eq!(p.offer(1, b"A", &b("a3@1")), Offered::Dropped, "bounded");
        assert!(!p.answered(1, vec![b("again")]), "an answer counts once");
        assert!(p.answered(2, vec![]));
        let out: Vec<Bytes> = p.into_frames().collect();
        assert_eq!(
            out,
            vec![b("ok"), b("a0@0"), b("a1@1"), b("a1@0"), b("a2@1")]
        );
    }

    #[test]
    fn a_wildcard_snapshot_covers_every_topic() {
        let mut p = PendingSnapshot::new(1, 0b10, &[Interest::All], vec![], b("ok"), 10);
        assert_eq!(p.offer(1, b"anything", &b("x")), Offered::Skipped);
        assert!(p.answered(1, vec![]));
    }
}
