//! The Prometheus text exposition of a [`Snapshot`].

use std::fmt::Write;

use super::hop::Hop;
use super::snapshot::{Counters, FeedCounters, GroupCounters, Snapshot};

/// Histogram bucket bounds, in seconds: 1 µs to 1 s.
const BUCKETS_S: [f64; 19] = [
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2,
    5e-2, 0.1, 0.25, 0.5, 1.0,
];

/// Renders the snapshot: hop latency histograms per worker, message and drop counters,
/// connection and queue gauges.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(8 << 10);
    render_hops(s, &mut out);
    let total = |f: &dyn Fn(&Counters) -> u64| total(s, f);
    single(
        &mut out,
        (
            "feedrelay_messages_in_total",
            "counter",
            "Messages received from publishers and feeds.",
        ),
        total(&|c| c.messages_in),
    );
    single(
        &mut out,
        (
            "feedrelay_messages_out_total",
            "counter",
            "Frames written to subscribers.",
        ),
        total(&|c| c.messages_out),
    );
    single(
        &mut out,
        (
            "feedrelay_write_holds_total",
            "counter",
            "Passes of writes held back so writes carry more frames (saturated core).",
        ),
        total(&|c| c.write_holds),
    );
    render_labeled(s, &mut out);
    describe(
        &mut out,
        (
            "feedrelay_connections",
            "gauge",
            "Open connections, by role.",
        ),
    );
    let _ = writeln!(
        out,
        "feedrelay_connections{{role=\"publisher\"}} {}",
        total(&|c| c.publishers)
    );
    let _ = writeln!(
        out,
        "feedrelay_connections{{role=\"subscriber\"}} {}",
        total(&|c| c.subscribers)
    );
    let _ = writeln!(
        out,
        "feedrelay_connections{{role=\"handshaking\"}} {}",
        total(&|c| c.handshaking)
    );
    if let Some(up) = s.workers.iter().find_map(|(_, c)| c.nats_connected) {
        single(
            &mut out,
            (
                "feedrelay_nats_connected",
                "gauge",
                "1 while the NATS client is connected to a server.",
            ),
            u64::from(up),
        );
    }
    single(
        &mut out,
        (
            "feedrelay_queue_bytes",
            "gauge",
            "Bytes queued for subscribers.",
        ),
        total(&|c| c.queue_bytes),
    );
    render_deflate(s, &mut out);
    render_feeds(s, &mut out);
    out
}

/// What permessage-deflate compressed, summed over the workers.
fn render_deflate(s: &Snapshot, out: &mut String) {
    let total = |f: &dyn Fn(&Counters) -> u64| total(s, f);
    let (before, after) = (
        total(&|c| c.deflate_bytes_before),
        total(&|c| c.deflate_bytes_after),
    );
    single(
        out,
        (
            "feedrelay_deflate_messages_total",
            "counter",
            "Messages compressed (once each; per frame with per_subscriber).",
        ),
        total(&|c| c.deflate_messages),
    );
    describe(
        out,
        (
            "feedrelay_deflate_bytes_total",
            "counter",
            "Payload bytes of compressed messages, before and after compression.",
        ),
    );
    let _ = writeln!(
        out,
        "feedrelay_deflate_bytes_total{{stage=\"before\"}} {before}"
    );
    let _ = writeln!(
        out,
        "feedrelay_deflate_bytes_total{{stage=\"after\"}} {after}"
    );
    let ratio = if before == 0 {
        0.0
    } else {
        after as f64 / before as f64
    };
    single(
        out,
        (
            "feedrelay_deflate_ratio",
            "gauge",
            "Compressed bytes over uncompressed bytes, since start (0: nothing compressed).",
        ),
        format!("{ratio:.4}"),
    );
    single(
        out,
        (
            "feedrelay_deflate_skipped_total",
            "counter",
            "Messages that qualified for compression but went plain: no subscriber could take them.",
        ),
        total(&|c| c.deflate_skipped),
    );
    single(
        out,
        (
            "feedrelay_deflate_reused_total",
            "counter",
            "Of the messages compressed, those relayed as their publisher compressed them.",
        ),
        total(&|c| c.deflate_reused),
    );
}

/// Hop latency histograms, per worker.
fn render_hops(s: &Snapshot, out: &mut String) {
    describe(
        out,
        (
            "feedrelay_hop_latency_seconds",
            "histogram",
            "Latency of each hop a relayed message takes.",
        ),
    );
    for (w, (hops, _)) in s.workers.iter().enumerate() {
        for hop in Hop::ALL {
            let h = hops.get(hop);
            let labels = format!("hop=\"{}\",worker=\"{w}\"", hop.name());
            for b in BUCKETS_S {
                let le_ns = (b * 1e9) as u64;
                let count = if h.is_empty() {
                    0
                } else {
                    h.count_between(0, le_ns)
                };
                let _ = writeln!(
                    out,
                    "feedrelay_hop_latency_seconds_bucket{{{labels},le=\"{b}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "feedrelay_hop_latency_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.len()
            );
            let sum_s = h.mean() * h.len() as f64 / 1e9;
            let _ = writeln!(out, "feedrelay_hop_latency_seconds_sum{{{labels}}} {sum_s}");
            let _ = writeln!(
                out,
                "feedrelay_hop_latency_seconds_count{{{labels}}} {}",
                h.len()
            );
        }
    }
}

/// The counters labelled by reason, limit or token, summed over the workers.
fn render_labeled(s: &Snapshot, out: &mut String) {
    let counter = |name, help| (name, "counter", help);
    by_label(
        s,
        counter("feedrelay_dropped_total", "Messages dropped, by reason."),
        "reason",
        |c| &c.dropped,
        out,
    );
    by_label(
        s,
        counter(
            "feedrelay_subscriber_writes_total",
            "Writes to subscribers, by who made them: the worker's fan-out (plain connections with nothing else to send) or the subscriber's own writer (TLS, per-subscriber compression, replies and closes while it is awake).",
        ),
        "path",
        |c| &c.writes,
        out,
    );
    by_label(
        s,
        counter(
            "feedrelay_refused_total",
            "Connections closed before any handshake (at accept, or held for a handshake slot past the timeout), by reason.",
        ),
        "reason",
        |c| &c.refused,
        out,
    );
    by_label(
        s,
        counter(
            "feedrelay_limit_hits_total",
            "Times a configured bound was hit, by setting.",
        ),
        "limit",
        |c| &c.limit_hits,
        out,
    );
    by_label(
        s,
        counter(
            "feedrelay_handshake_refused_total",
            "Handshakes refused by the access rules, by reason.",
        ),
        "reason",
        |c| &c.handshake_refused,
        out,
    );
    by_label(
        s,
        counter(
            "feedrelay_revoked_total",
            "Open connections closed because a reload's access rules no longer allow them, by reason.",
        ),
        "reason",
        |c| &c.revoked,
        out,
    );
    if s.workers.iter().any(|(_, c)| !c.nats.is_empty()) {
        by_label(
            s,
            counter(
                "feedrelay_nats_total",
                "The NATS backbone: messages exported, imported, dropped, gaps seen, connects, by event.",
            ),
            "event",
            |c| &c.nats,
            out,
        );
    }
    by_label(
        s,
        counter(
            "feedrelay_off_grant_messages_total",
            "Publisher messages not relayed: topic outside the publisher's token, by token name.",
        ),
        "token",
        |c| &c.off_grant_messages,
        out,
    );
}

/// One sample per label value, summed over the workers, in the order first seen.
fn by_label<L: AsRef<str>>(
    s: &Snapshot,
    metric: Metric,
    key: &str,
    counts: impl Fn(&Counters) -> &Vec<(L, u64)>,
    out: &mut String,
) {
    describe(out, metric);
    let name = metric.0;
    let mut values: Vec<&str> = Vec::new();
    for (_, c) in &s.workers {
        for (v, _) in counts(c) {
            if !values.contains(&v.as_ref()) {
                values.push(v.as_ref());
            }
        }
    }
    for value in values {
        let n: u64 = s
            .workers
            .iter()
            .flat_map(|(_, c)| counts(c).iter())
            .filter(|(v, _)| v.as_ref() == value)
            .map(|(_, n)| n)
            .sum();
        let _ = writeln!(out, "{name}{{{key}=\"{}\"}} {n}", label(value));
    }
}

/// Label values are escaped as the exposition format wants (`\`, `"`, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A metric: name, type, help.
type Metric = (&'static str, &'static str, &'static str);

/// Writes a metric's `# HELP` and `# TYPE` lines.
fn describe(out: &mut String, (name, kind, help): Metric) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One counter summed over the workers.
fn total(s: &Snapshot, f: &dyn Fn(&Counters) -> u64) -> u64 {
    s.workers.iter().map(|(_, c)| f(c)).sum()
}

/// A metric with one unlabelled sample: its header and `name value`.
fn single(out: &mut String, metric: Metric, value: impl std::fmt::Display) {
    describe(out, metric);
    let _ = writeln!(out, "{} {value}", metric.0);
}

/// How a per-feed metric reads a line's counters (`None`: no sample).
type FeedValue = fn(&FeedCounters) -> Option<u64>;

/// How a per-group metric reads a group's counters.
type GroupValue = fn(&GroupCounters) -> u64;

/// The per-feed-line metrics.
const PER_FEED: [(Metric, FeedValue); 7] = [
    (
        (
            "feedrelay_feed_connected",
            "gauge",
            "1 while the feed line has a session.",
        ),
        |f| Some(f.connected as u64),
    ),
    (
        (
            "feedrelay_feed_connects_total",
            "counter",
            "Sessions established.",
        ),
        |f| Some(f.connects),
    ),
    (
        (
            "feedrelay_feed_reconnects_total",
            "counter",
            "Failures retried (refused, TLS, closed, stale, protocol).",
        ),
        |f| Some(f.reconnects),
    ),
    (
        (
            "feedrelay_feed_messages_total",
            "counter",
            "Messages received on the line, before arbitration.",
        ),
        |f| Some(f.messages),
    ),
    (
        (
            "feedrelay_feed_pings_total",
            "counter",
            "Pings sent because the line was quiet.",
        ),
        |f| Some(f.pings),
    ),
    (
        (
            "feedrelay_feed_duplicates_total",
            "counter",
            "Copies dropped: another line of the group delivered first.",
        ),
        |f| Some(f.duplicates),
    ),
    (
        (
            "feedrelay_feed_last_message_age_seconds",
            "gauge",
            "Time since the line's last message.",
        ),
        |f| f.last_message_age_ms,
    ),
];

/// The per-group (arbitration) metrics.
const PER_GROUP: [(Metric, GroupValue); 6] = [
    (
        (
            "feedrelay_group_forwarded_total",
            "counter",
            "First copies forwarded by the group's arbiter.",
        ),
        |g| g.forwarded,
    ),
    (
        (
            "feedrelay_group_gaps_total",
            "counter",
            "Sequence jumps no line filled.",
        ),
        |g| g.gaps,
    ),
    (
        (
            "feedrelay_group_missing_total",
            "counter",
            "Sequence numbers no line delivered.",
        ),
        |g| g.missing,
    ),
    (
        (
            "feedrelay_group_untracked_total",
            "counter",
            "Messages forwarded unarbitrated: their topic was past the arbiter's limit.",
        ),
        |g| g.untracked,
    ),
    (
        (
            "feedrelay_group_implausible_total",
            "counter",
            "Messages forwarded unarbitrated: their sequence number was too far from the last to believe.",
        ),
        |g| g.implausible,
    ),
    (
        (
            "feedrelay_group_resets_total",
            "counter",
            "Sources that restarted their sequence.",
        ),
        |g| g.resets,
    ),
];

/// Per feed line: up, sessions, reconnects, messages, copies dropped, last message age;
/// per group: forwarded, gaps and missing sequence numbers (per topic with a gap).
fn render_feeds(s: &Snapshot, out: &mut String) {
    let feeds: Vec<_> = s.workers.iter().flat_map(|(_, c)| &c.feeds).collect();
    let groups: Vec<_> = s.workers.iter().flat_map(|(_, c)| &c.groups).collect();
    if feeds.is_empty() {
        return;
    }
    for (metric, value) in PER_FEED {
        describe(out, metric);
        let name = metric.0;
        for f in &feeds {
            let Some(v) = value(f) else { continue };
            let labels = format!("feed=\"{}\",group=\"{}\"", label(&f.name), label(&f.group));
            if name.ends_with("_seconds") {
                let _ = writeln!(out, "{name}{{{labels}}} {}", v as f64 / 1e3);
            } else {
                let _ = writeln!(out, "{name}{{{labels}}} {v}");
            }
        }
    }
    for (metric, value) in PER_GROUP {
        describe(out, metric);
        let name = metric.0;
        for g in &groups {
            let _ = writeln!(out, "{name}{{group=\"{}\"}} {}", label(&g.name), value(g));
        }
    }
    let name = "feedrelay_topic_missing_total";
    describe(
        out,
        (
            name,
            "counter",
            "Sequence numbers no line delivered, per topic with a gap.",
        ),
    );
    for g in &groups {
        for (topic, n) in &g.missing_by_topic {
            let _ = writeln!(
                out,
                "{name}{{group=\"{}\",topic=\"{}\"}} {n}",
                label(&g.name),
                label(topic)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::snapshot::Counters;
    use crate::metrics::HopHistograms;

    #[test]
    fn renders_histograms_and_counters() {
        let mut h = HopHistograms::default();
        h.record(Hop::Egress, 3_000); // 3 µs
        h.record(Hop::Egress, 2_000_000); // 2 ms
        let c = Counters {
            messages_in: 5,
            dropped: vec![("queue_full", 2)],
            subscribers: 3,
            ..Counters::default()
        };
        let text = render(&Snapshot {
            workers: vec![(h, c)],
            ..Snapshot::default()
        });
        assert!(text.contains("feedrelay_hop_latency_seconds_bucket{hop=\"egress\",worker=\"0\",le=\"0.000005\"} 1"), "{text}");
        assert!(text.contains(
            "feedrelay_hop_latency_seconds_bucket{hop=\"egress\",worker=\"0\",le=\"+Inf\"} 2"
        ));
        assert!(
            text.contains("feedrelay_hop_latency_seconds_count{hop=\"ingress\",worker=\"0\"} 0")
        );
        assert!(text.contains("feedrelay_messages_in_total 5"));
        assert!(text.contains("feedrelay_dropped_total{reason=\"queue_full\"} 2"));
        assert!(text.contains("feedrelay_connections{role=\"subscriber\"} 3"));
        assert!(
            !text.contains("feedrelay_feed_"),
            "no feeds, no feed metrics"
        );
        assert!(
            !text.contains("feedrelay_nats_"),
            "no [nats], no NATS metrics"
        );
    }

    #[test]
    fn renders_the_nats_client() {
        let c = Counters {
            nats: vec![("exported", 9), ("import_gap", 2)],
            nats_connected: Some(true),
            ..Counters::default()
        };
        let text = render(&Snapshot {
            workers: vec![(HopHistograms::default(), c), Default::default()],
            ..Snapshot::default()
        });
        assert!(
            text.contains("feedrelay_nats_total{event=\"exported\"} 9"),
            "{text}"
        );
        assert!(text.contains("feedrelay_nats_total{event=\"import_gap\"} 2"));
        assert!(text.contains("feedrelay_nats_connected 1"));
    }

    #[test]
    fn renders_feeds_and_groups() {
        use crate::metrics::snapshot::{FeedCounters, GroupCounters};
        let c = Counters {
            feeds: vec![FeedCounters {
                name: "bin\"a".into(),
                group: "g".into(),
                connected: true,
                connects: 2,
                reconnects: 1,
                messages: 10,
                pings: 7,
                duplicates: 4,
                last_message_age_ms: Some(1500),
            }],
            groups: vec![GroupCounters {
                name: "g".into(),
                forwarded: 6,
                gaps: 1,
                missing: 3,
                missing_by_topic: vec![("BTC".into(), 3)],
                ..GroupCounters::default()
            }],
            ..Counters::default()
        };
        let text = render(&Snapshot {
            workers: vec![(HopHistograms::default(), c)],
            ..Snapshot::default()
        });
        for want in [
            "feedrelay_feed_connected{feed=\"bin\\\"a\",group=\"g\"} 1",
            "feedrelay_feed_reconnects_total{feed=\"bin\\\"a\",group=\"g\"} 1",
            "feedrelay_feed_last_message_age_seconds{feed=\"bin\\\"a\",group=\"g\"} 1.5",
            "feedrelay_group_missing_total{group=\"g\"} 3",
            "feedrelay_feed_pings_total{feed=\"bin\\\"a\",group=\"g\"} 7",
            "feedrelay_topic_missing_total{group=\"g\",topic=\"BTC\"} 3",
        ] {
            assert!(text.contains(want), "{want} not in\n{text}");
        }
    }
}
