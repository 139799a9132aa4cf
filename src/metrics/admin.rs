//! The admin view of a [`Snapshot`]: `/subscribers`, every
//! subscriber with its lag, as JSON, from the workers' latest intervals (at most a
//! second old).

use super::snapshot::{Snapshot, SubscriberRow};

/// `[{"addr":..,"worker":..,"topics":[..],"queued":..,"queued_bytes":..,
/// "oldest_us":..,"drops":..,"policy":..}, ..]`, worker by worker.
pub fn subscribers_json(s: &Snapshot) -> String {
    let rows: Vec<&SubscriberRow> = s
        .workers
        .iter()
        .flat_map(|(_, c)| &c.subscribers_list)
        .collect();
    simd_json::to_string(&rows).unwrap_or_else(|_| "[]".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::snapshot::Counters;

    #[test]
    fn lists_every_workers_subscribers() {
        let row = |worker| SubscriberRow {
            addr: "127.0.0.1:5".into(),
            worker,
            topics: vec!["A".into()],
            policy: "drop",
            ..SubscriberRow::default()
        };
        let counters = |worker| Counters {
            subscribers_list: vec![row(worker)],
            ..Counters::default()
        };
        let s = Snapshot {
            workers: vec![
                (Default::default(), counters(0)),
                (Default::default(), counters(1)),
            ],
            reported: Vec::new(),
        };
        let json = subscribers_json(&s);
        assert!(
            json.starts_with(r#"[{"addr":"127.0.0.1:5","worker":0,"topics":["A"],"queued":0"#),
            "{json}"
        );
        assert_eq!(json.matches("\"addr\"").count(), 2);
        assert_eq!(subscribers_json(&Snapshot::default()), "[]");
    }
}
