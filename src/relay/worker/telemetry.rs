//! What a worker reports and where to: the link to the metrics collector, and the
//! summary each worker hands back when it stops, printed at exit.

use std::sync::Arc;
use std::time::Duration;

use crate::metrics::collector::{Collector, Rendered};
use crate::metrics::snapshot::{FeedCounters, GroupCounters, Interval};
use crate::metrics::HopHistograms;
use crate::relay::access::counts::AccessCounts;
use crate::relay::core::compression::CompressionStats;
use crate::relay::core::shard::ShardStats;

/// How often a worker hands its interval histograms to the collector.
pub const METRICS_INTERVAL: Duration = Duration::from_secs(1);

/// Where a worker sends its metrics, and the merged view `/metrics` renders.
#[derive(Debug, Clone)]
pub struct MetricsLink {
    /// The collector's inbox.
    pub tx: crossbeam_channel::Sender<Interval>,
    /// Cleared histograms handed back by the collector.
    pub spares: crossbeam_channel::Receiver<HopHistograms>,
    /// The snapshot as `/metrics` text (rendered by the collector, not the workers).
    pub rendered: Arc<Rendered>,
}

impl MetricsLink {
    /// The link to `collector`.
    pub fn new(collector: &Collector) -> Self {
        MetricsLink {
            tx: collector.sender(),
            spares: collector.spares(),
            rendered: collector.rendered(),
        }
    }
}

/// What a worker reports when it stops.
#[derive(Debug, Default, Clone)]
pub struct WorkerSummary {
    /// The shard's counters.
    pub stats: ShardStats,
    /// Publisher connections accepted.
    pub publishers: u64,
    /// Subscriber connections accepted.
    pub subscribers: u64,
    /// Connections refused at the handshake (bad path, bad request).
    pub refused: u64,
    /// Connections closed before any handshake (at accept, or held past the timeout), by reason (process-wide:
    /// reported by worker 0 alone).
    pub refused_at_accept: Vec<(&'static str, u64)>,
    /// Handshakes refused by the access rules, and publisher messages outside their
    /// token's topics.
    pub access: AccessCounts,
    /// The feed lines this worker dialled.
    pub feeds: Vec<FeedCounters>,
    /// Their groups' arbitration.
    pub groups: Vec<GroupCounters>,
    /// What permessage-deflate compressed.
    pub deflate: CompressionStats,
    /// The NATS client's counters (worker 0 alone; empty without `[nats]`).
    pub nats: Vec<(&'static str, u64)>,
}

/// The exit summary: messages in and out, drops by reason and topic, connections,
/// feeds and groups.
pub fn summary(workers: &[WorkerSummary]) -> String {
    let mut total = WorkerSummary::default();
    for w in workers {
        total.stats.merge(&w.stats);
        total.publishers += w.publishers;
        total.subscribers += w.subscribers;
        total.refused += w.refused;
        total
            .refused_at_accept
            .extend(w.refused_at_accept.iter().copied());
        total.access.merge(&w.access);
        total.deflate.merge(&w.deflate);
    }
    let s = &total.stats;
    let mut text = format!(
        "feedrelay run stopped: messages in {} out {} (queued {}); dropped: queue full {}, conflated {}, no topic {}, bad topic {}, channel full {}; slow consumers disconnected {}; connections: publishers {}, subscribers {}, refused {}",
        s.messages_in, s.messages_out, s.messages_queued, s.dropped_queue_full, s.dropped_conflated,
        s.dropped_no_topic, s.dropped_bad_topic, s.dropped_channel_full, s.slow_disconnects, total.publishers, total.subscribers, total.refused
    );
    let at_accept: Vec<String> = total
        .refused_at_accept
        .iter()
        .map(|(r, n)| format!("{} {n}", r.replace('_', " ")))
        .collect();
    if !at_accept.is_empty() {
        text.push_str(&format!(
            "; closed before the handshake: {}",
            at_accept.join(", ")
        ));
    }
    let a = &total.access;
    if a.unauthorized + a.forbidden_origin + a.forbidden_topic > 0 {
        text.push_str(&format!(
            "; refused at the handshake: no or bad token {}, origin not allowed {}, topics outside the token {}",
            a.unauthorized, a.forbidden_origin, a.forbidden_topic
        ));
    }
    if a.revoked.iter().sum::<u64>() > 0 {
        let by: Vec<String> = a
            .revoked_by_reason()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        text.push_str(&format!(
            "; closed by a reload's access rules: {}",
            by.join(", ")
        ));
    }
    for (name, n) in &a.off_grant {
        text.push_str(&format!(
            "\n  publisher token {name}: {n} messages outside its topics, not relayed"
        ));
    }
    let d = &total.deflate;
    if d.compressed > 0 {
        text.push_str(&format!(
            "; compressed {} messages, {} -> {} bytes ({:.1}%)",
            d.compressed,
            d.bytes_in,
            d.bytes_out,
            100.0 * d.bytes_out as f64 / d.bytes_in.max(1) as f64
        ));
    }
    for n in workers.iter().filter(|w| !w.nats.is_empty()) {
        let counts: Vec<String> = n
            .nats
            .iter()
            .map(|(what, v)| format!("{} {v}", what.replace('_', " ")))
            .collect();
        text.push_str(&format!("\n  nats: {}", counts.join(", ")));
    }
    let mut by_topic: Vec<_> = s.drops_by_topic.iter().collect();
    by_topic.sort_by(|a, b| b.1.cmp(a.1));
    for (topic, n) in by_topic.iter().take(10) {
        text.push_str(&format!(
            "\n  dropped on topic {}: {n}",
            String::from_utf8_lossy(topic)
        ));
    }
    for f in workers.iter().flat_map(|w| &w.feeds) {
        text.push_str(&format!(
            "\n  feed {} (group {}): sessions {}, reconnects {}, messages {}, copies dropped {}, pings {}",
            f.name, f.group, f.connects, f.reconnects, f.messages, f.duplicates, f.pings
        ));
    }
    for g in workers.iter().flat_map(|w| &w.groups) {
        text.push_str(&format!(
            "\n  group {}: forwarded {}, copies dropped {}, gaps {} ({} missing), source resets {}, unarbitrated {}, implausible {}",
            g.name, g.forwarded, g.duplicates, g.gaps, g.missing, g.resets, g.untracked, g.implausible
        ));
        for (topic, n) in g.missing_by_topic.iter().take(10) {
            text.push_str(&format!("\n    missing on topic {topic}: {n}"));
        }
    }
    text
}
