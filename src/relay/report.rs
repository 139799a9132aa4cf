//! What the relay tells its operator: each worker's metrics interval (hop histograms
//! and counters, sent to the collector once a second, off the hot path), the feed and
//! group counters, and the summary printed at exit.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::access::AccessCounts;
use super::compression::CompressionStats;
use super::shard::ShardStats;
use super::worker::WorkerCtx;
use crate::io::rt;
use crate::metrics::collector::{Collector, Rendered};
use crate::metrics::snapshot::{
    Counters, FeedCounters, GroupCounters, Interval, SubscriberRow, MAX_SUBSCRIBER_ROWS,
};
use crate::metrics::{now_ns, HopHistograms};

/// How often a worker hands its interval histograms to the collector.
pub const METRICS_INTERVAL: Duration = Duration::from_secs(1);

/// Topics reported per group with their missing counts, at most (the worst first):
/// a line with gaps on every topic must not turn `/metrics` into megabytes.
pub const MAX_GAP_TOPICS_REPORTED: usize = 100;

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
    /// Connections closed at accept, before any handshake, by reason (process-wide:
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

/// This worker's subscribers with their lag, for `/subscribers` (at most
/// [`MAX_SUBSCRIBER_ROWS`]); none when `/subscribers` is not served (the list costs an
/// allocation or three per subscriber each interval).
fn subscriber_rows(ctx: &WorkerCtx) -> Vec<SubscriberRow> {
    if !ctx.list_subscribers {
        return Vec::new();
    }
    let writers = ctx.writers.borrow();
    let shard = ctx.shard.borrow();
    let now = now_ns();
    writers
        .iter()
        .enumerate()
        .filter_map(|(id, w)| {
            let w = w.as_ref()?;
            let lag = shard.lag(id, now)?;
            Some(SubscriberRow {
                addr: w.peer().to_string(),
                worker: ctx.id,
                topics: shard.subscriber_topics(id),
                queued: lag.queued,
                queued_bytes: lag.queued_bytes,
                oldest_us: lag.oldest_us,
                drops: lag.drops,
                policy: shard.policy().name(),
            })
        })
        .take(MAX_SUBSCRIBER_ROWS)
        .collect()
}

/// Once per [`METRICS_INTERVAL`] until the worker is done: sends the interval.
pub(super) async fn metrics_tick(ctx: Rc<WorkerCtx>) {
    let mut ticker = rt::Interval::new(METRICS_INTERVAL);
    ticker.tick().await;
    while !ctx.done.get() {
        ticker.tick().await;
        send_interval(&ctx);
    }
}

/// Swaps this worker's histograms for empty ones and sends them, with the counters, to
/// the collector.
pub(super) fn send_interval(ctx: &WorkerCtx) {
    let Some(link) = ctx.metrics.as_ref() else {
        return;
    };
    // A cleared set from the collector; only in the first seconds is one allocated.
    let mut hops = link.spares.try_recv().unwrap_or_default();
    ctx.hops.borrow_mut().swap_out(&mut hops);
    let now = std::time::SystemTime::now();
    let started = ctx.interval_start.replace(now);
    let (feeds, groups) = feed_counters(ctx);
    let deflate = *ctx.deflate_stats.borrow();
    let subscribers_list = subscriber_rows(ctx);
    let counters = {
        let mut shard = ctx.shard.borrow_mut();
        let queue_bytes = shard.queued_bytes() as u64;
        let st = &shard.stats;
        Counters {
            messages_in: st.messages_in,
            messages_out: st.messages_out,
            dropped: vec![
                ("queue_full", st.dropped_queue_full),
                ("conflated", st.dropped_conflated),
                ("no_topic", st.dropped_no_topic),
                ("channel_full", st.dropped_channel_full),
                ("bad_topic", st.dropped_bad_topic),
                ("slow_disconnect", st.slow_disconnects),
            ],
            limit_hits: st.limit_hits(),
            handshake_refused: ctx.access_counts.borrow().by_reason(),
            off_grant_messages: ctx.access_counts.borrow().off_grant.clone(),
            publishers: ctx.publishers_live.get(),
            subscribers: ctx.subscribers_live.get(),
            queue_bytes,
            refused: match ctx.id {
                0 => ctx.admission.refused().map(|(r, n)| (r.name(), n)).to_vec(),
                _ => Vec::new(),
            },
            handshaking: match ctx.id {
                0 => ctx.admission.pending() as u64,
                _ => 0,
            },
            feeds,
            groups,
            deflate_messages: deflate.compressed,
            deflate_bytes_before: deflate.bytes_in,
            deflate_bytes_after: deflate.bytes_out,
            deflate_skipped: deflate.skipped_no_demand,
            deflate_reused: deflate.reused,
            subscribers_list,
            nats: match (ctx.id, &ctx.nats_counters) {
                (0, Some(n)) => n.snapshot(),
                _ => Vec::new(),
            },
            nats_connected: match (ctx.id, &ctx.nats_counters) {
                (0, Some(n)) => Some(n.connected()),
                _ => None,
            },
        }
    };
    let _ = link.tx.send(Interval {
        worker: ctx.id,
        start: started,
        duration: now.duration_since(started).unwrap_or_default(),
        hops,
        counters,
    });
}

/// The feeds' and groups' counters now.
pub(super) fn feed_counters(ctx: &WorkerCtx) -> (Vec<FeedCounters>, Vec<GroupCounters>) {
    let now = Instant::now();
    let lines = ctx.feeds.borrow();
    let feeds = lines
        .iter()
        .map(|l| {
            let st = &l.state;
            FeedCounters {
                name: l.config.name.clone(),
                group: l.group.name.clone(),
                connected: st.connected.get(),
                connects: st.connects.get(),
                reconnects: st.reconnects.get(),
                messages: st.messages.get(),
                pings: st.pings.get(),
                duplicates: st.duplicates.get(),
                last_message_age_ms: st
                    .last_message
                    .get()
                    .map(|t| now.duration_since(t).as_millis() as u64),
            }
        })
        .collect();
    let mut groups: Vec<GroupCounters> = Vec::new();
    for l in lines.iter() {
        if groups.iter().any(|g| g.name == l.group.name) || !l.group.sequenced {
            continue;
        }
        let arbiter = l.group.arbiter.borrow();
        let t = arbiter.totals();
        groups.push(GroupCounters {
            name: l.group.name.clone(),
            forwarded: t.forwarded,
            duplicates: t.duplicates,
            gaps: t.gaps,
            missing: t.missing,
            resets: t.resets,
            untracked: arbiter.untracked(),
            missing_by_topic: arbiter.worst_gaps(MAX_GAP_TOPICS_REPORTED),
        });
    }
    (feeds, groups)
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
        "feedrelay run stopped: messages in {} out {} (queued {}); dropped: queue full {}, conflated {}, no topic {}, channel full {}; slow consumers disconnected {}; connections: publishers {}, subscribers {}, refused {}",
        s.messages_in, s.messages_out, s.messages_queued, s.dropped_queue_full, s.dropped_conflated,
        s.dropped_no_topic, s.dropped_channel_full, s.slow_disconnects, total.publishers, total.subscribers, total.refused
    );
    let at_accept: Vec<String> = total
        .refused_at_accept
        .iter()
        .map(|(r, n)| format!("{} {n}", r.replace('_', " ")))
        .collect();
    if !at_accept.is_empty() {
        text.push_str(&format!("; closed at accept: {}", at_accept.join(", ")));
    }
    let a = &total.access;
    if a.unauthorized + a.forbidden_origin + a.forbidden_topic > 0 {
        text.push_str(&format!(
            "; refused at the handshake: no or bad token {}, origin not allowed {}, topics outside the token {}",
            a.unauthorized, a.forbidden_origin, a.forbidden_topic
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
            "\n  group {}: forwarded {}, copies dropped {}, gaps {} ({} missing), source resets {}, unarbitrated {}",
            g.name, g.forwarded, g.duplicates, g.gaps, g.missing, g.resets, g.untracked
        ));
        for (topic, n) in g.missing_by_topic.iter().take(10) {
            text.push_str(&format!("\n    missing on topic {topic}: {n}"));
        }
    }
    text
}
