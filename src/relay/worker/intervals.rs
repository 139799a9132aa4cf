//! Each worker's metrics interval: hop histograms and counters sent to the collector
//! once a second, off the hot path; the feed and group counters; the rows behind
//! `/subscribers`.

use std::rc::Rc;
use std::time::Instant;

use super::state::WorkerCtx;
use super::telemetry::METRICS_INTERVAL;
use crate::io::rt;
use crate::metrics::now_ns;
use crate::metrics::snapshot::{
    Counters, FeedCounters, GroupCounters, Interval, SubscriberRow, MAX_SUBSCRIBER_ROWS,
};

/// Topics reported per group with their missing counts, at most (the worst first):
/// a line with gaps on every topic must not turn `/metrics` into megabytes.
pub const MAX_GAP_TOPICS_REPORTED: usize = 100;

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
pub(in crate::relay) async fn metrics_tick(ctx: Rc<WorkerCtx>) {
    let mut ticker = rt::Interval::new(METRICS_INTERVAL);
    ticker.tick().await;
    while !ctx.done.get() {
        ticker.tick().await;
        send_interval(&ctx);
    }
}

/// Swaps this worker's histograms for empty ones and sends them, with the counters, to
/// the collector.
pub(in crate::relay) fn send_interval(ctx: &WorkerCtx) {
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
            writes: vec![("fanout", st.writes_fanout), ("writer", st.writes_writer)],
            write_holds: rt::held_passes(),
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
            revoked: ctx.access_counts.borrow().revoked_by_reason(),
            off_grant_messages: ctx.access_counts.borrow().off_grant.clone(),
            publishers: ctx.publishers_open.get(),
            subscribers: ctx.subscribers_open.get(),
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
pub(in crate::relay) fn feed_counters(ctx: &WorkerCtx) -> (Vec<FeedCounters>, Vec<GroupCounters>) {
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
            implausible: t.implausible,
            missing_by_topic: arbiter.worst_gaps(MAX_GAP_TOPICS_REPORTED),
        });
    }
    (feeds, groups)
}
