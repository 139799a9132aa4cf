//! A subscriber's bounded outgoing queue and what happens when it is full.
//!
//! Every subscriber has one. Relayed frames are shared `Bytes` (encoded once for
//! everyone), so queueing costs a reference count, not a copy. The queue is bounded in
//! messages and in bytes; a push that would pass either bound applies the subscriber's
//! [`SlowConsumerPolicy`], so a slow subscriber only ever affects its own queue and
//! memory stays bounded by the limits.

use std::collections::VecDeque;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// What to do when a subscriber's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlowConsumerPolicy {
    /// Close the subscriber with 1008 and a reason.
    Disconnect,
    /// Drop the new message for this subscriber and count it.
    Drop,
    /// Replace the queued message of the same topic with the new one (keeping only the
    /// latest per topic); if there is none, drop the new message and count it.
    Conflate,
}

impl SlowConsumerPolicy {
    /// The configuration word.
    pub fn name(self) -> &'static str {
        match self {
            SlowConsumerPolicy::Disconnect => "disconnect",
            SlowConsumerPolicy::Drop => "drop",
            SlowConsumerPolicy::Conflate => "conflate",
        }
    }
}

/// Bounds of one subscriber's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Frames queued at most.
    pub max_messages: usize,
    /// Bytes queued at most (frame headers included).
    pub max_bytes: usize,
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Queued at the back.
    Queued,
    /// Replaced an older queued message of the same topic (which counts as dropped).
    Conflated,
    /// Not queued (counted as dropped).
    Dropped,
    /// The queue is full under `Disconnect`: close the subscriber.
    Disconnect,
}

/// A queued frame: 40 bytes, so a push or a drain touches as few cache lines as it can
/// (every delivery writes one and reads it back, #24).
#[derive(Debug)]
struct Entry {
    frame: Bytes,
    /// When it was queued (metrics clock, ns); 0 for our own control frames.
    queued_ns: u64,
}

/// The queue itself.
#[derive(Debug)]
pub struct SubscriberQueue {
    entries: VecDeque<Entry>,
    /// Each entry's topic, in step with `entries`, once a message was queued under
    /// `Conflate` (the one policy that looks for it; `None` for the others' and for
    /// control frames). A queue that never conflates keeps no topics: its messages are
    /// queued without touching the topic's reference count or a second buffer.
    topics: Option<VecDeque<Option<Bytes>>>,
    bytes: usize,
    limits: QueueLimits,
}

impl SubscriberQueue {
    /// An empty queue with these bounds.
    pub fn new(limits: QueueLimits) -> Self {
        SubscriberQueue {
            entries: VecDeque::new(),
            topics: None,
            bytes: 0,
            limits,
        }
    }

    /// Frames queued.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// When the oldest relayed message still queued was queued (metrics clock, ns);
    /// our own control frames do not count.
    pub fn oldest_ns(&self) -> Option<u64> {
        self.entries.iter().map(|e| e.queued_ns).find(|&t| t > 0)
    }

    /// Queues `frame` at the back, with its topic if it is kept (`Conflate`).
    fn push_entry(&mut self, frame: Bytes, topic: Option<&Bytes>, queued_ns: u64) {
        self.bytes += frame.len();
        if topic.is_some() && self.topics.is_none() {
            self.topics = Some((0..self.entries.len()).map(|_| None).collect());
        }
        if let Some(topics) = self.topics.as_mut() {
            topics.push_back(topic.cloned());
        }
        self.entries.push_back(Entry { frame, queued_ns });
    }

    fn fits(&self, len: usize) -> bool {
        self.entries.len() < self.limits.max_messages && self.bytes + len <= self.limits.max_bytes
    }

    /// Queues a relayed frame of `topic` at time `now_ns`, or applies `policy` if it
    /// does not fit.
    pub fn push(
        &mut self,
        topic: &Bytes,
        frame: Bytes,
        policy: SlowConsumerPolicy,
        now_ns: u64,
    ) -> Push {
        if self.fits(frame.len()) {
            let conflating = policy == SlowConsumerPolicy::Conflate;
            self.push_entry(frame, conflating.then_some(topic), now_ns);
            return Push::Queued;
        }
        match policy {
            SlowConsumerPolicy::Disconnect => Push::Disconnect,
            SlowConsumerPolicy::Drop => Push::Dropped,
            SlowConsumerPolicy::Conflate => {
                let Some(topics) = self.topics.as_mut() else {
                    return Push::Dropped;
                };
                let Some(at) = topics.iter().position(|t| t.as_ref() == Some(topic)) else {
                    return Push::Dropped;
                };
                let old_len = self.entries[at].frame.len();
                if self.bytes - old_len + frame.len() > self.limits.max_bytes {
                    return Push::Dropped;
                }
                // Remove and push at the back: the topic's latest value goes out after
                // what was queued before it, and the topic's own order is kept.
                topics.remove(at);
                self.entries.remove(at);
                self.bytes -= old_len;
                self.push_entry(frame, Some(topic), now_ns);
                Push::Conflated
            }
        }
    }

    /// Queues a frame of our own (a control reply, a pong): not subject to the policy,
    /// but it must fit; `false` means the subscriber is not reading and must go.
    pub fn push_control(&mut self, frame: Bytes) -> bool {
        if !self.fits(frame.len()) {
            return false;
        }
        self.push_entry(frame, None, 0);
        true
    }

    /// Moves up to `max` frames into `out` (for one vectored write); returns their bytes.
    pub fn drain_into(&mut self, out: &mut Vec<Bytes>, max: usize) -> usize {
        self.drain_timed(out, None, max)
    }

    /// Like [`drain_into`](Self::drain_into), also pushing each frame's queue time
    /// (0 for control frames) into `times`.
    pub fn drain_timed(
        &mut self,
        out: &mut Vec<Bytes>,
        mut times: Option<&mut Vec<u64>>,
        max: usize,
    ) -> usize {
        let n = max.saturating_sub(out.len()).min(self.entries.len());
        let mut taken = 0;
        for e in self.entries.drain(..n) {
            taken += e.frame.len();
            out.push(e.frame);
            if let Some(t) = times.as_deref_mut() {
                t.push(e.queued_ns);
            }
        }
        // The topics of the frames taken, all at once (not a check per frame).
        if let Some(topics) = self.topics.as_mut() {
            topics.drain(..n);
        }
        self.bytes -= taken;
        taken
    }

    /// Drops everything queued (the subscriber is going away).
    pub fn clear(&mut self) {
        self.entries.clear();
        if let Some(topics) = self.topics.as_mut() {
            topics.clear();
        }
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(max_messages: usize, max_bytes: usize) -> SubscriberQueue {
        SubscriberQueue::new(QueueLimits {
            max_messages,
            max_bytes,
        })
    }

    fn drain(q: &mut SubscriberQueue) -> Vec<Bytes> {
        let mut out = Vec::new();
        q.drain_into(&mut out, usize::MAX);
        out
    }

    const A: Bytes = Bytes::from_static(b"A");
    const B: Bytes = Bytes::from_static(b"B");

    #[test]
    fn bounded_by_messages_and_bytes() {
        let mut q = q(2, 10);
        assert_eq!(
            q.push(&A, Bytes::from_static(b"1234"), SlowConsumerPolicy::Drop, 1),
            Push::Queued
        );
        assert_eq!(
            q.push(&A, Bytes::from_static(b"5678"), SlowConsumerPolicy::Drop, 1),
            Push::Queued
        );
        assert_eq!(
            q.push(&A, Bytes::from_static(b"9"), SlowConsumerPolicy::Drop, 1),
            Push::Dropped
        );
        assert_eq!((q.len(), q.bytes()), (2, 8));
        let mut q2 = self::q(10, 10);
        q2.push(
            &A,
            Bytes::from_static(b"12345678"),
            SlowConsumerPolicy::Drop,
            1,
        );
        assert_eq!(
            q2.push(&A, Bytes::from_static(b"123"), SlowConsumerPolicy::Drop, 1),
            Push::Dropped
        );
        assert_eq!(
            q2.push(&A, Bytes::from_static(b"12"), SlowConsumerPolicy::Drop, 1),
            Push::Queued
        );
    }

    #[test]
    fn disconnect_policy_says_so() {
        let mut q = q(1, 100);
        q.push(
            &A,
            Bytes::from_static(b"x"),
            SlowConsumerPolicy::Disconnect,
            1,
        );
        assert_eq!(
            q.push(
                &A,
                Bytes::from_static(b"y"),
                SlowConsumerPolicy::Disconnect,
                1
            ),
            Push::Disconnect
        );
    }

    /// Queues `frame` of `topic` under `policy`.
    fn put(
        q: &mut SubscriberQueue,
        topic: &Bytes,
        frame: &'static [u8],
        policy: SlowConsumerPolicy,
    ) -> Push {
        q.push(topic, Bytes::from_static(frame), policy, 1)
    }

    #[test]
    fn conflate_keeps_latest_per_topic_in_order() {
        use SlowConsumerPolicy::Conflate;
        let mut q = q(2, 100);
        put(&mut q, &A, b"a1", Conflate);
        put(&mut q, &B, b"b1", Conflate);
        assert_eq!(put(&mut q, &A, b"a2", Conflate), Push::Conflated);
        assert_eq!(put(&mut q, &A, b"a3", Conflate), Push::Conflated);
        let c = Bytes::from_static(b"C");
        assert_eq!(put(&mut q, &c, b"c1", Conflate), Push::Dropped);
        assert_eq!(drain(&mut q), [&b"b1"[..], &b"a3"[..]]);
        assert_eq!(q.bytes(), 0);
    }

    /// Topics are kept only from the first conflating push on, in step with the frames
    /// queued before it (control frames, other policies' messages), through drains.
    #[test]
    fn conflate_after_other_entries_replaces_the_right_one() {
        use SlowConsumerPolicy::{Conflate, Drop};
        let mut q = q(4, 100);
        assert!(q.push_control(Bytes::from_static(b"pong")));
        put(&mut q, &A, b"a0", Drop);
        put(&mut q, &A, b"a1", Conflate);
        put(&mut q, &B, b"b1", Conflate);
        // Full: A's conflating entry is replaced, not the Drop-policy one of A.
        assert_eq!(put(&mut q, &A, b"a2", Conflate), Push::Conflated);
        let mut out = Vec::new();
        q.drain_into(&mut out, 2);
        assert_eq!(out, [&b"pong"[..], &b"a0"[..]]);
        put(&mut q, &A, b"a3", Drop);
        put(&mut q, &B, b"b2", Conflate);
        // Full again: B's oldest (b1, now at the front) goes.
        assert_eq!(put(&mut q, &B, b"b3", Conflate), Push::Conflated);
        let rest = [&b"a2"[..], &b"a3"[..], &b"b2"[..], &b"b3"[..]];
        assert_eq!(drain(&mut q), rest);
        assert_eq!((q.len(), q.bytes()), (0, 0));
    }

    #[test]
    fn drain_respects_batch_size_and_control_frames_are_bounded() {
        let mut q = q(3, 100);
        assert!(q.push_control(Bytes::from_static(b"pong")));
        q.push(&A, Bytes::from_static(b"m1"), SlowConsumerPolicy::Drop, 1);
        q.push(&A, Bytes::from_static(b"m2"), SlowConsumerPolicy::Drop, 1);
        assert!(!q.push_control(Bytes::from_static(b"reply")));
        let mut out = Vec::new();
        assert_eq!(q.drain_into(&mut out, 2), 6);
        assert_eq!(out.len(), 2);
        assert_eq!((q.len(), q.bytes()), (1, 2));
    }
}
