//! The Prometheus text exposition of a [`Snapshot`](super::collector::Snapshot).

use std::fmt::Write;

use super::collector::Snapshot;
use super::hop::Hop;

/// Histogram bucket bounds, in seconds: 1 µs to 1 s.
const BUCKETS_S: [f64; 19] = [
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2,
    5e-2, 0.1, 0.25, 0.5, 1.0,
];

/// Renders the snapshot: hop latency histograms per worker, message and drop counters,
/// connection and queue gauges.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(8 << 10);
    let _ = writeln!(
        out,
        "# HELP feedrelay_hop_latency_seconds Latency of each hop a relayed message takes."
    );
    let _ = writeln!(out, "# TYPE feedrelay_hop_latency_seconds histogram");
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
    let total = |f: &dyn Fn(&super::collector::Counters) -> u64| -> u64 {
        s.workers.iter().map(|(_, c)| f(c)).sum()
    };
    let _ = writeln!(
        out,
        "# HELP feedrelay_messages_in_total Messages received from publishers."
    );
    let _ = writeln!(out, "# TYPE feedrelay_messages_in_total counter");
    let _ = writeln!(
        out,
        "feedrelay_messages_in_total {}",
        total(&|c| c.messages_in)
    );
    let _ = writeln!(
        out,
        "# HELP feedrelay_messages_out_total Frames written to subscribers."
    );
    let _ = writeln!(out, "# TYPE feedrelay_messages_out_total counter");
    let _ = writeln!(
        out,
        "feedrelay_messages_out_total {}",
        total(&|c| c.messages_out)
    );
    let _ = writeln!(
        out,
        "# HELP feedrelay_dropped_total Messages dropped, by reason."
    );
    let _ = writeln!(out, "# TYPE feedrelay_dropped_total counter");
    for reason in [
        "queue_full",
        "conflated",
        "no_topic",
        "channel_full",
        "slow_disconnect",
    ] {
        let n = total(&|c| {
            c.dropped
                .iter()
                .find(|(r, _)| *r == reason)
                .map_or(0, |(_, n)| *n)
        });
        let _ = writeln!(out, "feedrelay_dropped_total{{reason=\"{reason}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP feedrelay_connections Open connections, by role."
    );
    let _ = writeln!(out, "# TYPE feedrelay_connections gauge");
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
        "# HELP feedrelay_queue_bytes Bytes queued for subscribers."
    );
    let _ = writeln!(out, "# TYPE feedrelay_queue_bytes gauge");
    let _ = writeln!(out, "feedrelay_queue_bytes {}", total(&|c| c.queue_bytes));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::collector::Counters;
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
    }
}
