//! A shard's counters: what was relayed, queued, written and dropped, and why, with
//! drops counted per topic for a bounded number of topics. Merged off the hot path.

use std::collections::HashMap;

use bytes::Bytes;

use crate::ws::WsError;

/// Counters of one shard; merged off the hot path.
#[derive(Debug, Default, Clone)]
pub struct ShardStats {
    /// Messages published on this worker.
    pub messages_in: u64,
    /// Frames queued for subscribers (written later).
    pub messages_queued: u64,
    /// Frames written to subscribers.
    pub messages_out: u64,
    /// Writes to subscribers made by the worker's fan-out (parked writers).
    pub writes_fanout: u64,
    /// Writes to subscribers made by their own writer tasks.
    pub writes_writer: u64,
    /// Dropped because a subscriber's queue was full (`drop`, or `conflate` with no
    /// message of that topic queued).
    pub dropped_queue_full: u64,
    /// Replaced in a queue by a newer message of the same topic.
    pub dropped_conflated: u64,
    /// Subscribers disconnected as slow consumers.
    pub slow_disconnects: u64,
    /// Messages with no topic and no default topic.
    pub dropped_no_topic: u64,
    /// Hops not sent because another worker's channel was full.
    pub dropped_channel_full: u64,
    /// Messages whose topic broke the naming rules (length, characters).
    pub dropped_bad_topic: u64,
    /// Subscribe requests refused for the subscription limit.
    pub refused_subscriptions: u64,
    /// Control requests answered with an error (malformed, too many topics, a bad
    /// topic name, not text).
    pub control_errors: u64,
    /// Connections closed (1009) for a frame or message over its size limit.
    pub oversized_messages: u64,
    /// Connections closed (1009) for a message in more fragments than allowed.
    pub too_many_fragments: u64,
    /// Drops (all reasons above except disconnects) per topic, for at most
    /// `max_drop_topics` topics; the keys are copies (they hold no frame).
    pub drops_by_topic: HashMap<Bytes, u64>,
    /// Drops on topics past `max_drop_topics`.
    pub drops_other_topics: u64,
    /// Subscriptions answered with a snapshot.
    pub snapshots: u64,
    /// Events (stale, live, gap) queued for subscribers.
    pub events: u64,
    /// Messages the last-value cache could not keep (larger than its byte bound).
    pub last_value_refused: u64,
    /// Topics the last-value cache evicted (least recently updated) to make room.
    pub last_value_evicted: u64,
    /// `refresh` requests past a subscriber's per-second budget, refused unverified.
    pub refreshes_refused: u64,
    /// Control messages past a subscriber's per-second budget, ignored unparsed.
    pub controls_refused: u64,
    /// Subscribe requests refused because the relay-wide subscription budget is spent.
    pub subscription_budget_refused: u64,
}

impl ShardStats {
    /// Counts a connection failed for one of the size limits (other protocol errors
    /// are the peer's and counted by the driver).
    pub fn count_limit(&mut self, e: &WsError) {
        match e {
            WsError::FrameTooLarge { .. } | WsError::MessageTooLarge { .. } => {
                self.oversized_messages += 1
            }
            WsError::TooManyFragments { .. } => self.too_many_fragments += 1,
            _ => {}
        }
    }

    /// How often each configured bound was hit, by the bound's metrics label.
    pub fn limit_hits(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("max_subscriptions", self.refused_subscriptions),
            ("control_request", self.control_errors),
            ("max_topic_bytes", self.dropped_bad_topic),
            ("max_message_bytes", self.oversized_messages),
            ("max_fragments", self.too_many_fragments),
            ("max_drop_topics", self.drops_other_topics),
            ("last_value_max", self.last_value_refused),
            ("last_value_evicted", self.last_value_evicted),
            ("max_refreshes_per_second", self.refreshes_refused),
            ("max_control_per_second", self.controls_refused),
            ("max_subscription_bytes", self.subscription_budget_refused),
        ]
    }

    /// Counts a drop on `topic`, under its own name while there is room for it.
    pub fn count_drop(&mut self, topic: &[u8], max_topics: usize) {
        if let Some(n) = self.drops_by_topic.get_mut(topic) {
            *n += 1;
        } else if self.drops_by_topic.len() < max_topics {
            self.drops_by_topic.insert(Bytes::copy_from_slice(topic), 1);
        } else {
            self.drops_other_topics += 1;
        }
    }
}

impl ShardStats {
    /// Adds another shard's counters to these.
    pub fn merge(&mut self, other: &ShardStats) {
        self.messages_in += other.messages_in;
        self.messages_queued += other.messages_queued;
        self.messages_out += other.messages_out;
        self.writes_fanout += other.writes_fanout;
        self.writes_writer += other.writes_writer;
        self.dropped_queue_full += other.dropped_queue_full;
        self.dropped_conflated += other.dropped_conflated;
        self.slow_disconnects += other.slow_disconnects;
        self.dropped_no_topic += other.dropped_no_topic;
        self.dropped_channel_full += other.dropped_channel_full;
        self.dropped_bad_topic += other.dropped_bad_topic;
        self.refused_subscriptions += other.refused_subscriptions;
        self.control_errors += other.control_errors;
        self.oversized_messages += other.oversized_messages;
        self.too_many_fragments += other.too_many_fragments;
        self.drops_other_topics += other.drops_other_topics;
        self.snapshots += other.snapshots;
        self.events += other.events;
        self.last_value_refused += other.last_value_refused;
        self.last_value_evicted += other.last_value_evicted;
        self.refreshes_refused += other.refreshes_refused;
        self.controls_refused += other.controls_refused;
        self.subscription_budget_refused += other.subscription_budget_refused;
        for (t, n) in &other.drops_by_topic {
            *self.drops_by_topic.entry(t.clone()).or_default() += n;
        }
    }
}
