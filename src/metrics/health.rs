//! What `/healthz` and `/readyz` answer, read from a [`Snapshot`].
//!
//! - *Alive* (`/healthz`) is answering at all: the metrics thread serves it without
//!   looking at the workers, so a load balancer's liveness probe never restarts a relay
//!   that is busy.
//! - *Ready* (`/readyz`) is every check below passing; an orchestrator sends traffic
//!   only then, and stops when one fails:
//!   - `workers`: every worker reported its last interval within [`WORKER_SILENT_AFTER`]
//!     (a worker reports once a second; one that stops is stuck or gone);
//!   - `feeds`: every feed group has a line with a session up (a group with none
//!     relays nothing);
//!   - `nats`: the NATS client is connected, when `[nats]` is configured.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::snapshot::Snapshot;

/// A worker whose latest interval is older than this is not ready (three of its
/// one-second intervals missed).
pub const WORKER_SILENT_AFTER: Duration = Duration::from_secs(3);

/// One readiness check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// `workers`, `feeds` or `nats`.
    pub name: &'static str,
    /// It passes.
    pub ok: bool,
    /// What was seen, for the operator.
    pub detail: String,
}

/// Whether the relay is ready, and why (not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// The checks, in a fixed order; only those that apply (no `feeds` without feed
    /// lines, no `nats` without `[nats]`).
    pub checks: Vec<Check>,
}

impl Readiness {
    /// Every check passes.
    pub fn ready(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// `{"ready":B,"checks":[{"check":"workers","ok":B,"detail":".."},..]}`.
    pub fn json(&self) -> String {
        let mut out = format!("{{\"ready\":{},\"checks\":[", self.ready());
        for (i, c) in self.checks.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(
                out,
                "{sep}{{\"check\":\"{}\",\"ok\":{},\"detail\":{}}}",
                c.name,
                c.ok,
                simd_json::to_string(&c.detail).unwrap_or_else(|_| "\"\"".into())
            );
        }
        out.push_str("]}\n");
        out
    }
}

/// The relay's readiness at `now`, from the collector's snapshot.
pub fn readiness(s: &Snapshot, now: Instant) -> Readiness {
    let mut checks = vec![workers(s, now)];
    if let Some(c) = feeds(s) {
        checks.push(c);
    }
    if let Some(c) = nats(s) {
        checks.push(c);
    }
    Readiness { checks }
}

fn workers(s: &Snapshot, now: Instant) -> Check {
    let total = s.workers.len();
    let silent: Vec<String> = (0..total)
        .filter(|&w| {
            s.reported.get(w).copied().flatten().map_or(true, |at| {
                now.saturating_duration_since(at) > WORKER_SILENT_AFTER
            })
        })
        .map(|w| w.to_string())
        .collect();
    Check {
        name: "workers",
        ok: total > 0 && silent.is_empty(),
        detail: if silent.is_empty() {
            format!("{total} of {total} reported within {WORKER_SILENT_AFTER:?}")
        } else {
            format!(
                "no report within {WORKER_SILENT_AFTER:?} from worker {}",
                silent.join(", ")
            )
        },
    }
}

fn feeds(s: &Snapshot) -> Option<Check> {
    let lines: Vec<_> = s.workers.iter().flat_map(|(_, c)| &c.feeds).collect();
    if lines.is_empty() {
        return None;
    }
    let mut groups: Vec<&str> = lines.iter().map(|f| f.group.as_str()).collect();
    groups.sort_unstable();
    groups.dedup();
    let down: Vec<&str> = groups
        .iter()
        .copied()
        .filter(|g| !lines.iter().any(|f| f.group == *g && f.connected))
        .collect();
    Some(Check {
        name: "feeds",
        ok: down.is_empty(),
        detail: if down.is_empty() {
            format!(
                "{} of {} groups have a line up ({} lines up of {})",
                groups.len(),
                groups.len(),
                lines.iter().filter(|f| f.connected).count(),
                lines.len()
            )
        } else {
            format!("no line up in group {}", down.join(", "))
        },
    })
}

fn nats(s: &Snapshot) -> Option<Check> {
    let up = s.workers.iter().find_map(|(_, c)| c.nats_connected)?;
    Some(Check {
        name: "nats",
        ok: up,
        detail: if up { "connected" } else { "not connected" }.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::snapshot::{Counters, FeedCounters};

    fn line(name: &str, group: &str, connected: bool) -> FeedCounters {
        FeedCounters {
            name: name.into(),
            group: group.into(),
            connected,
            ..FeedCounters::default()
        }
    }

    fn snapshot(workers: Vec<Counters>, reported: Vec<Option<Instant>>) -> Snapshot {
        Snapshot {
            workers: workers
                .into_iter()
                .map(|c| (Default::default(), c))
                .collect(),
            reported,
        }
    }

    #[test]
    fn ready_when_every_worker_reported_recently() {
        let now = Instant::now();
        let s = snapshot(vec![Counters::default(); 2], vec![Some(now); 2]);
        let r = readiness(&s, now);
        assert!(r.ready(), "{r:?}");
        assert_eq!(r.checks.len(), 1, "no feeds, no nats: one check");
        assert!(r.json().starts_with("{\"ready\":true,"), "{}", r.json());
    }

    #[test]
    fn a_silent_or_unreported_worker_is_not_ready() {
        let now = Instant::now();
        let old = now - WORKER_SILENT_AFTER - Duration::from_millis(1);
        let s = snapshot(
            vec![Counters::default(); 3],
            vec![Some(now), Some(old), None],
        );
        let r = readiness(&s, now);
        assert!(!r.ready());
        assert!(r.checks[0].detail.contains("worker 1, 2"), "{r:?}");
        // At the limit itself it still counts as reported.
        let s = snapshot(
            vec![Counters::default()],
            vec![Some(now - WORKER_SILENT_AFTER)],
        );
        assert!(readiness(&s, now).ready());
        // No workers at all is not ready either.
        assert!(!readiness(&snapshot(vec![], vec![]), now).ready());
    }

    #[test]
    fn a_feed_group_needs_one_line_up() {
        let now = Instant::now();
        let w0 = Counters {
            feeds: vec![line("a1", "A", false), line("b1", "B", true)],
            ..Counters::default()
        };
        let w1 = Counters {
            feeds: vec![line("a2", "A", true)],
            ..Counters::default()
        };
        let s = snapshot(vec![w0.clone(), w1], vec![Some(now); 2]);
        let r = readiness(&s, now);
        assert!(r.ready(), "A has a2 up, B has b1: {r:?}");
        assert_eq!(
            r.checks[1].detail,
            "2 of 2 groups have a line up (2 lines up of 3)"
        );
        let s = snapshot(vec![w0], vec![Some(now)]);
        let r = readiness(&s, now);
        assert!(!r.ready());
        assert_eq!(r.checks[1].detail, "no line up in group A");
        assert!(r
            .json()
            .contains(r#"{"check":"feeds","ok":false,"detail":"no line up in group A"}"#));
    }

    #[test]
    fn nats_counts_only_when_configured() {
        let now = Instant::now();
        let down = Counters {
            nats_connected: Some(false),
            ..Counters::default()
        };
        let r = readiness(&snapshot(vec![down], vec![Some(now)]), now);
        assert!(!r.ready());
        assert_eq!(r.checks[1].name, "nats");
        let up = Counters {
            nats_connected: Some(true),
            ..Counters::default()
        };
        assert!(readiness(&snapshot(vec![up], vec![Some(now)]), now).ready());
    }
}
