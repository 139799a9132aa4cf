//! The operator's status page on the metrics listener: `/status` (one HTML file with
//! its script inline: no build step, nothing fetched from outside the box) polls
//! `/status.json` once a second, which this module renders from the collector's
//! snapshot and the last minute of per-hop latency ([`RecentHops`]).
//!
//! The last minute is kept as figures, not histograms: per worker, per hop and per
//! one-second interval, the count, p50, p99 and max (a histogram per second for a
//! minute would hold tens of megabytes). The page draws each hop's p99 per second,
//! worst worker first.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::hop::{Hop, HopHistograms};
use super::snapshot::{Snapshot, SubscriberRow};

/// How far back the per-hop figures reach.
pub const RECENT: Duration = Duration::from_secs(60);

/// Most subscribers the page lists: the ones whose oldest queued message waited
/// longest.
pub const SLOWEST_LISTED: usize = 10;

/// The page itself.
pub const STATUS_HTML: &str = include_str!("status.html");

/// One worker's one-second figures for one hop.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HopSecond {
    at: Instant,
    worker: usize,
    hop: Hop,
    count: u64,
    p50_ns: u64,
    p99_ns: u64,
    max_ns: u64,
}

/// The last [`RECENT`] of per-hop figures, as the collector took them.
#[derive(Debug, Default)]
pub struct RecentHops {
    rows: VecDeque<HopSecond>,
}

impl RecentHops {
    /// Notes `worker`'s interval ending at `at` (hops with no sample are skipped) and
    /// forgets what is older than [`RECENT`].
    pub fn push(&mut self, at: Instant, worker: usize, hops: &HopHistograms) {
        for hop in Hop::ALL {
            let h = hops.get(hop);
            if h.is_empty() {
                continue;
            }
            self.rows.push_back(HopSecond {
                at,
                worker,
                hop,
                count: h.len(),
                p50_ns: h.value_at_quantile(0.5),
                p99_ns: h.value_at_quantile(0.99),
                max_ns: h.max(),
            });
        }
        while self
            .rows
            .front()
            .is_some_and(|r| at.saturating_duration_since(r.at) > RECENT)
        {
            self.rows.pop_front();
        }
    }
}

#[derive(Serialize)]
struct Status<'a> {
    workers: Vec<WorkerRow>,
    feeds: Vec<FeedRow<'a>>,
    slowest: Vec<&'a SubscriberRow>,
    hops: Vec<HopSeries>,
    ready: bool,
    checks: Vec<(&'static str, bool, String)>,
}

#[derive(Serialize)]
struct WorkerRow {
    worker: usize,
    reported_ms_ago: Option<u64>,
    messages_in: u64,
    messages_out: u64,
    publishers: u64,
    subscribers: u64,
    queue_bytes: u64,
    dropped: u64,
}

#[derive(Serialize)]
struct FeedRow<'a> {
    name: &'a str,
    group: &'a str,
    connected: bool,
    last_message_age_ms: Option<u64>,
    messages: u64,
    reconnects: u64,
}

/// One hop's last minute: per second (seconds ago, oldest first), the worst worker's
/// p99, and the count over all workers.
#[derive(Serialize)]
struct HopSeries {
    hop: &'static str,
    seconds_ago: Vec<u64>,
    p99_us: Vec<f64>,
    count: Vec<u64>,
    p50_us_last: f64,
    max_us_minute: f64,
}

fn series(recent: &RecentHops, hop: Hop, now: Instant) -> Option<HopSeries> {
    let mut by_second: std::collections::BTreeMap<u64, (u64, u64)> = Default::default();
    let mut p50_last = (u64::MAX, 0);
    let mut max = 0;
    for r in recent.rows.iter().filter(|r| r.hop == hop) {
        let ago = now.saturating_duration_since(r.at).as_secs();
        let e = by_second.entry(ago).or_insert((0, 0));
        e.0 = e.0.max(r.p99_ns);
        e.1 += r.count;
        if ago <= p50_last.0 {
            p50_last = (ago, r.p50_ns);
        }
        max = max.max(r.max_ns);
    }
    if by_second.is_empty() {
        return None;
    }
    let rows: Vec<_> = by_second.into_iter().rev().collect();
    Some(HopSeries {
        hop: hop.name(),
        seconds_ago: rows.iter().map(|(s, _)| *s).collect(),
        p99_us: rows.iter().map(|(_, (p, _))| *p as f64 / 1e3).collect(),
        count: rows.iter().map(|(_, (_, c))| *c).collect(),
        p50_us_last: p50_last.1 as f64 / 1e3,
        max_us_minute: max as f64 / 1e3,
    })
}

/// What `/status.json` answers at `now`.
pub fn status_json(s: &Snapshot, recent: &RecentHops, now: Instant) -> String {
    let workers = s
        .workers
        .iter()
        .enumerate()
        .map(|(w, (_, c))| WorkerRow {
            worker: w,
            reported_ms_ago: s
                .reported
                .get(w)
                .copied()
                .flatten()
                .map(|at| now.saturating_duration_since(at).as_millis() as u64),
            messages_in: c.messages_in,
            messages_out: c.messages_out,
            publishers: c.publishers,
            subscribers: c.subscribers,
            queue_bytes: c.queue_bytes,
            dropped: c.dropped.iter().map(|(_, n)| n).sum(),
        })
        .collect();
    let feeds = s
        .workers
        .iter()
        .flat_map(|(_, c)| &c.feeds)
        .map(|f| FeedRow {
            name: &f.name,
            group: &f.group,
            connected: f.connected,
            last_message_age_ms: f.last_message_age_ms,
            messages: f.messages,
            reconnects: f.reconnects,
        })
        .collect();
    let mut slowest: Vec<&SubscriberRow> = s
        .workers
        .iter()
        .flat_map(|(_, c)| &c.subscribers_list)
        .collect();
    slowest.sort_by(|a, b| b.oldest_us.cmp(&a.oldest_us).then(b.queued.cmp(&a.queued)));
    slowest.truncate(SLOWEST_LISTED);
    let readiness = super::health::readiness(s, now);
    let status = Status {
        workers,
        feeds,
        slowest,
        hops: Hop::ALL
            .into_iter()
            .filter_map(|h| series(recent, h, now))
            .collect(),
        ready: readiness.ready(),
        checks: readiness
            .checks
            .into_iter()
            .map(|c| (c.name, c.ok, c.detail))
            .collect(),
    };
    simd_json::to_string(&status).unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::snapshot::Counters;

    fn hops_with(hop: Hop, values_ns: &[u64]) -> HopHistograms {
        let mut h = HopHistograms::default();
        for &v in values_ns {
            h.record(hop, v);
        }
        h
    }

    #[test]
    fn keeps_a_minute_and_the_worst_worker_per_second() {
        let t0 = Instant::now();
        let mut recent = RecentHops::default();
        recent.push(t0, 0, &hops_with(Hop::Egress, &[1_000; 100]));
        recent.push(t0, 1, &hops_with(Hop::Egress, &[9_000; 100]));
        let later = t0 + Duration::from_secs(1);
        recent.push(later, 0, &hops_with(Hop::Egress, &[2_000; 10]));
        let s = series(&recent, Hop::Egress, later).unwrap();
        assert_eq!(s.seconds_ago, vec![1, 0], "oldest first");
        assert_eq!(s.count, vec![200, 10]);
        assert!(
            (s.p99_us[0] - 9.0).abs() < 0.1,
            "worst worker: {:?}",
            s.p99_us
        );
        assert!((s.p50_us_last - 2.0).abs() < 0.1, "{}", s.p50_us_last);
        assert!(series(&recent, Hop::Ingress, later).is_none());
        // Past the minute, the first second is forgotten.
        let much_later = t0 + RECENT + Duration::from_secs(2);
        recent.push(much_later, 0, &hops_with(Hop::Egress, &[3_000]));
        let s = series(&recent, Hop::Egress, much_later).unwrap();
        assert_eq!(s.seconds_ago, vec![0], "{:?}", s.seconds_ago);
    }

    #[test]
    fn lists_the_slowest_subscribers_first_and_at_most_ten() {
        let row = |oldest_us| SubscriberRow {
            addr: format!("127.0.0.1:{oldest_us}"),
            oldest_us,
            policy: "drop",
            ..SubscriberRow::default()
        };
        let c = Counters {
            subscribers_list: (0..15).map(row).collect(),
            messages_in: 7,
            ..Counters::default()
        };
        let now = Instant::now();
        let s = Snapshot {
            workers: vec![(HopHistograms::default(), c)],
            reported: vec![Some(now)],
        };
        let json: serde_json::Value =
            serde_json::from_str(&status_json(&s, &RecentHops::default(), now)).unwrap();
        let slowest = json["slowest"].as_array().unwrap();
        assert_eq!(slowest.len(), SLOWEST_LISTED);
        assert_eq!(slowest[0]["oldest_us"], 14);
        assert_eq!(json["workers"][0]["messages_in"], 7);
        assert_eq!(json["ready"], true);
    }
}
