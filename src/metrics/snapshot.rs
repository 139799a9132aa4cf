//! What the workers report and the collector keeps: each worker's counters and interval
//! ([`Interval`]), the rows behind `/subscribers`, and the merged [`Snapshot`] that
//! `/metrics` renders. Plain data, so the renderers and the collector both read it
//! without reaching into each other.

use std::time::{Duration, SystemTime};

use super::hop::HopHistograms;

/// Counters and gauges a worker reports with each interval (totals since start).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages published on this worker.
    pub messages_in: u64,
    /// Frames written to subscribers.
    pub messages_out: u64,
    /// Writes to subscribers by who made them (`fanout`, `writer`).
    pub writes: Vec<(&'static str, u64)>,
    /// Passes of writes held back while the worker's core was saturated
    /// (`saturated_write_hold_us`).
    pub write_holds: u64,
    /// Drops by reason (`queue_full`, `conflated`, `no_topic`, `channel_full`,
    /// `slow_disconnect`).
    pub dropped: Vec<(&'static str, u64)>,
    /// Open publisher connections.
    pub publishers: u64,
    /// Open subscriber connections.
    pub subscribers: u64,
    /// Bytes queued for subscribers right now.
    pub queue_bytes: u64,
    /// Connections closed before their handshake, by reason (process-wide: reported by worker 0
    /// alone, so sums over workers stay right).
    pub refused: Vec<(&'static str, u64)>,
    /// Connections in their opening handshake now (process-wide, worker 0 alone).
    pub handshaking: u64,
    /// How often each configured bound was hit, by the bound's name.
    pub limit_hits: Vec<(&'static str, u64)>,
    /// Handshakes refused by the access rules, by reason (`unauthorized`,
    /// `forbidden_origin`).
    pub handshake_refused: Vec<(&'static str, u64)>,
    /// Open connections closed after a reload no longer allowed them, by reason
    /// (`origin`, `publisher_token`, `subscriber_token`).
    pub revoked: Vec<(&'static str, u64)>,
    /// The NATS client's counters by event (`exported`, `import_gap`, ...); reported
    /// by worker 0 alone, empty without `[nats]`.
    pub nats: Vec<(&'static str, u64)>,
    /// Whether the NATS client is connected (worker 0 alone; `None` without `[nats]`).
    pub nats_connected: Option<bool>,
    /// Publisher messages not relayed because their topic is outside the publisher's
    /// token, by the token's name.
    pub off_grant_messages: Vec<(String, u64)>,
    /// The exchange feed lines this worker dials.
    pub feeds: Vec<FeedCounters>,
    /// Their groups' arbitration.
    pub groups: Vec<GroupCounters>,
    /// permessage-deflate: messages (or, per subscriber, frames) compressed.
    pub deflate_messages: u64,
    /// Their payload bytes before compression.
    pub deflate_bytes_before: u64,
    /// Their payload bytes after.
    pub deflate_bytes_after: u64,
    /// Messages that qualified but went out plain: no subscriber could take them.
    pub deflate_skipped: u64,
    /// Of `deflate_messages`, relayed as their publisher compressed them.
    pub deflate_reused: u64,
    /// The worker's subscribers, each with its lag (at most
    /// [`MAX_SUBSCRIBER_ROWS`] per worker).
    pub subscribers_list: Vec<SubscriberRow>,
}

/// Subscribers a worker lists per interval for `/subscribers`; more are left out (and
/// the `subscribers` gauge still counts them).
pub const MAX_SUBSCRIBER_ROWS: usize = 10_000;

/// One subscriber as `/subscribers` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SubscriberRow {
    /// Its address.
    pub addr: String,
    /// The worker serving it.
    pub worker: usize,
    /// Its topics (`*` for every topic).
    pub topics: Vec<String>,
    /// Frames queued for it.
    pub queued: usize,
    /// Their bytes.
    pub queued_bytes: usize,
    /// How long the oldest queued message has waited, µs.
    pub oldest_us: u64,
    /// Messages dropped for it.
    pub drops: u64,
    /// The slow-consumer policy in force (per-topic overrides aside).
    pub policy: &'static str,
}

/// One feed line (totals since start).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedCounters {
    /// The feed's name.
    pub name: String,
    /// Its group.
    pub group: String,
    /// A session is up now.
    pub connected: bool,
    /// Sessions established.
    pub connects: u64,
    /// Failures retried (connect, TLS, close, stale, protocol).
    pub reconnects: u64,
    /// Messages received, before arbitration.
    pub messages: u64,
    /// Pings sent because the line was quiet for half of `stale_after_ms`.
    pub pings: u64,
    /// Copies dropped because another line delivered first.
    pub duplicates: u64,
    /// Milliseconds since its last message (`None`: none yet).
    pub last_message_age_ms: Option<u64>,
}

/// One group's arbitration (totals since start).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupCounters {
    /// The group's name.
    pub name: String,
    /// Messages forwarded (first copies).
    pub forwarded: u64,
    /// Copies dropped.
    pub duplicates: u64,
    /// Sequence jumps seen.
    pub gaps: u64,
    /// Sequence numbers no line delivered.
    pub missing: u64,
    /// Sources that restarted their sequence.
    pub resets: u64,
    /// Messages forwarded unarbitrated: their topic was past the arbiter's limit.
    pub untracked: u64,
    /// Messages forwarded unarbitrated: their number was too far from the last to
    /// believe (a forged or broken source).
    pub implausible: u64,
    /// Per topic with a gap: sequence numbers missing.
    pub missing_by_topic: Vec<(String, u64)>,
}

/// One worker's second.
#[derive(Debug)]
pub struct Interval {
    /// Which worker.
    pub worker: usize,
    /// When the interval started and ended.
    pub start: SystemTime,
    /// Length of the interval.
    pub duration: Duration,
    /// Latencies recorded during it.
    pub hops: HopHistograms,
    /// Totals at its end.
    pub counters: Counters,
}

/// What the collector knows: totals per worker.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Per worker: all latencies so far, and the latest counters.
    pub workers: Vec<(HopHistograms, Counters)>,
    /// Per worker: when the collector took its latest interval (`None`: none yet);
    /// `/readyz` reads it (see [`health`](super::health)).
    pub reported: Vec<Option<std::time::Instant>>,
}

impl Snapshot {
    /// Latencies of every worker together.
    pub fn merged(&self) -> HopHistograms {
        let mut all = HopHistograms::default();
        for (h, _) in &self.workers {
            all.add(h);
        }
        all
    }
}
