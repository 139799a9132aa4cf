//! A subscriber's lag, visible: `{"op":"stats"}` answers with its own queue depth,
//! oldest age and drops; a subscriber that stays behind is logged once with its
//! figures.

mod common;

use std::time::{Duration, Instant};

use common::{Raw, Server};

/// Publishes `n` messages of `topic` padded by `pad` bytes from a fresh publisher.
fn publish(addr: std::net::SocketAddr, topic: &str, n: u64, pad: usize) {
    let mut publ = Raw::publish(addr);
    let pad = "p".repeat(pad);
    for seq in 0..n {
        let m = format!(r#"{{"s":"{topic}","seq":{seq},"p":"{pad}"}}"#);
        publ.send(0x81, m.as_bytes());
    }
}

#[test]
fn stats_answer_with_the_subscribers_own_queue_and_drops() {
    let server = Server::relay(
        &["--workers", "2"],
        Some("queue_max_messages = 64\nslow_consumer = \"drop\"\n"),
    );
    let mut sub = Raw::subscribe(server.addr, "A");
    sub.s
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    sub.send(0x81, br#"{"op":"stats"}"#);
    let (_, p) = sub.recv().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
    assert_eq!(v["event"], "stats", "{v}");
    assert_eq!(
        (v["drops"].as_u64(), v["queued"].as_u64()),
        (Some(0), Some(0)),
        "{v}"
    );
    assert!(v["queued_bytes"].is_u64() && v["oldest_us"].is_u64(), "{v}");
    // Not reading while 20,000 messages arrive: the queue (64) overflows and drops.
    publish(server.addr, "A", 20_000, 1000);
    // Then read what is left (a stats request into a full queue would close the
    // subscriber, as any control reply does) and ask.
    sub.s
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    while sub.recv_or_timeout().is_some() {}
    sub.s
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    sub.send(0x81, br#"{"op":"stats"}"#);
    let end = Instant::now() + Duration::from_secs(10);
    let stats = loop {
        assert!(Instant::now() < end, "no stats reply");
        let (first, p) = sub.recv().unwrap();
        if first != 0x81 {
            continue; // a ping
        }
        let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
        if v["event"] == "stats" {
            break v;
        }
    };
    assert!(stats["drops"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["queued"].as_u64().unwrap() <= 64, "{stats}");
    let bad = {
        sub.send(0x81, br#"{"op":"stats","topics":["A"]}"#);
        loop {
            let (first, p) = sub.recv().unwrap();
            if first != 0x81 {
                continue;
            }
            let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
            if v["event"] == "error" {
                break v;
            }
        }
    };
    assert!(bad["reason"].as_str().unwrap().contains("stats"), "{bad}");
}

#[test]
fn a_subscriber_that_stays_behind_is_logged_once() {
    let server = Server::relay(
        &["--workers", "1"],
        Some("keepalive_interval_ms = 100\nidle_timeout_ms = 60000\nslow_subscriber_log_ms = 200\nslow_consumer = \"drop\"\n"),
    );
    let _slow = Raw::subscribe(server.addr, "B");
    // Enough to fill the socket buffers, so messages wait in the relay's queue.
    publish(server.addr, "B", 8_000, 4000);
    assert!(
        server.wait_for_log("subscriber behind", Duration::from_secs(10)),
        "{}",
        server.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    let log = server.log();
    assert_eq!(log.matches("subscriber behind").count(), 1, "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("subscriber behind"))
        .unwrap();
    for field in ["queued=", "queued_bytes=", "oldest_ms=", "drops=", "peer="] {
        assert!(line.contains(field), "{line}");
    }
}

/// `/subscribers` beside `/metrics` lists every subscriber on every worker with its
/// topics, lag and policy.
#[test]
fn the_admin_endpoint_lists_every_subscriber_with_its_lag() {
    let server = Server::relay(&["--workers", "2", "--metrics", "127.0.0.1:0"], None);
    let subs: Vec<Raw> = (0..4)
        .map(|i| Raw::subscribe(server.addr, if i == 0 { "*" } else { "A,B" }))
        .collect();
    let admin = common::printed_addr(&server, "subscribers on http://");
    let end = Instant::now() + Duration::from_secs(10);
    // The workers report once a second.
    let rows = loop {
        assert!(Instant::now() < end, "never listed all four");
        let text = common::http_get(admin, "/subscribers");
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("[]");
        let rows: Vec<serde_json::Value> = serde_json::from_str(body).unwrap_or_default();
        if rows.len() == subs.len() {
            assert!(text.contains("application/json"), "{text}");
            break rows;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let wildcard = rows
        .iter()
        .filter(|r| r["topics"] == serde_json::json!(["*"]))
        .count();
    assert_eq!(wildcard, 1, "{rows:?}");
    for r in &rows {
        assert!(r["addr"].as_str().unwrap().starts_with("127.0.0.1:"), "{r}");
        assert!(
            r["worker"].as_u64().unwrap() < 2 && r["policy"] == "drop",
            "{r}"
        );
        for field in ["queued", "queued_bytes", "oldest_us", "drops"] {
            assert!(r[field].is_u64(), "{field} in {r}");
        }
    }
}
