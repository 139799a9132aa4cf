//! `feedrelay demo` end to end: it runs for the given time, prints the live table, then
//! the final one with every hop and end-to-end latency filled, and writes its hlog.

mod common;

use std::process::Command;

#[test]
fn demo_runs_reports_every_hop_and_writes_the_hlog() {
    demo(&[]);
}

/// `--feed`: two in-process mock exchanges as A/B lines the relay dials.
#[test]
fn demo_through_ab_feed_lines_arbitrates_and_reports() {
    let text = demo(&["--feed"]);
    assert!(
        text.contains("two mock exchanges as A/B feed lines"),
        "{text}"
    );
    assert!(text.contains("group mock: forwarded"), "{text}");
    assert!(text.contains("gaps 0 (0 missing)"), "{text}");
    for line in ["mock-a", "mock-b"] {
        assert!(
            text.contains(&format!(
                "feed {line} (group mock): sessions 1, reconnects 0"
            )),
            "{text}"
        );
    }
}

/// `--feed --outage`: both lines down and back; the late snapshot and the events are
/// printed as a subscriber got them.
#[test]
fn demo_shows_a_snapshot_and_the_events_of_an_outage() {
    let text = demo_for("11", &["--feed", "--outage"]);
    assert!(
        text.contains("late subscriber (snapshot=1, every topic): {\"event\":\"subscribed\"")
            && text.contains("then the last message of 20 topics"),
        "{text}"
    );
    let stale = text.find(r#"event: {"event":"stale","feed":"mock","topics":["#);
    let live = text.find(r#"event: {"event":"live","feed":"mock""#);
    let gap = text.find(r#"event: {"event":"gap","topic":"#);
    assert!(
        matches!((stale, live, gap), (Some(s), Some(l), Some(g)) if s < l && l < g),
        "stale, then live, then gaps: {text}"
    );
    assert_eq!(text.matches(r#""event":"stale""#).count(), 1, "{text}");
}

/// `--nats URL`: the exchange publishes to an exporting relay, the demo's relay imports
/// across a real nats-server; the table has the import hop, nothing is dropped.
#[test]
fn demo_across_nats_reports_the_import_hop() {
    let nats = common::nats::NatsServer::start(0);
    let text = demo(&["--nats", &nats.url()]);
    assert!(
        text.contains(&format!("to a relay exporting to {}", nats.url())),
        "{text}"
    );
    let last = text.rsplit("final:").next().unwrap_or_default();
    let import = last
        .lines()
        .find(|l| l.trim_start().starts_with("import "))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok());
    assert!(import.is_some_and(|n| n > 1_000), "{last}");
    assert!(last.contains("dropped 0"), "{last}");
}

/// Runs the demo for 3 s with `extra` flags; checks the final table, the hlog and the
/// plot; returns what it printed.
fn demo(extra: &[&str]) -> String {
    demo_for("3", extra)
}

/// [`demo`] for `seconds`.
fn demo_for(seconds: &str, extra: &[&str]) -> String {
    let hlog = std::env::temp_dir().join(format!(
        "feedrelay-demo-test-{}-{}-{seconds}.hlog",
        std::process::id(),
        extra.len()
    ));
    let out = Command::new(env!("CARGO_BIN_EXE_feedrelay"))
        .args([
            "demo",
            "--duration",
            seconds,
            "--rate",
            "2000",
            "--subs",
            "4",
            "--workers",
            "2",
        ])
        .args(extra)
        .arg("--hlog")
        .arg(&hlog)
        .output()
        .expect("run demo");
    let text = common::succeeded(&out);
    let final_table = text
        .split("final:")
        .nth(1)
        .unwrap_or_else(|| panic!("no final table in {text}"));
    for hop in ["ingress", "queue", "egress", "end2end"] {
        let count: u64 = final_table
            .lines()
            .find(|l| l.trim_start().starts_with(hop))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("{hop} missing in {final_table}"));
        // `queue` is timed only for messages that cross workers; SO_REUSEPORT may put the
        // exchange and every subscriber on one worker (1 run in 16 with 5 connections).
        assert!(
            count > 0 || hop == "queue",
            "{hop} has no samples: {final_table}"
        );
    }
    let log = std::fs::read_to_string(&hlog).expect("hlog written");
    assert!(
        log.contains("Tag=ingress") && log.contains("Tag=egress"),
        "{log}"
    );
    let plot = hlog.with_extension("svg");
    let svg = std::fs::read_to_string(&plot).expect("plot written");
    assert!(
        svg.contains("<svg") && svg.contains("end2end"),
        "{svg:.300}"
    );
    let _ = std::fs::remove_file(&plot);
    let _ = std::fs::remove_file(&hlog);
    text
}
