//! `/healthz` and `/readyz` on the metrics listener of a running relay: alive is 200
//! at once; ready is 200 once every worker has reported, and 503, naming what is down,
//! while a feed group has no line up.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::Server;

/// Status code and body of `GET path`.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let text = common::http_get(addr, path);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

/// Polls `/readyz` until it answers `status`, for at most 10 s; returns the body.
fn readyz_until(addr: SocketAddr, status: u16) -> serde_json::Value {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, body) = get(addr, "/readyz");
        if s == status {
            return serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        }
        assert!(
            Instant::now() < end,
            "/readyz never answered {status}: {s} {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn alive_at_once_and_ready_once_the_workers_report() {
    let server = Server::relay(&["--workers", "2", "--metrics", "127.0.0.1:0"], None);
    let addr = common::printed_addr(&server, "metrics on http://");
    assert_eq!(get(addr, "/healthz"), (200, "ok\n".to_owned()));
    let ready = readyz_until(addr, 200);
    assert_eq!(ready["ready"], true, "{ready}");
    let checks = ready["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 1, "no feeds, no NATS: {ready}");
    assert_eq!(checks[0]["check"], "workers");
    assert_eq!(checks[0]["detail"], "2 of 2 reported within 3s", "{ready}");
    assert_eq!(get(addr, "/nope").0, 404);
}

#[test]
fn not_ready_while_a_feed_group_has_no_line_up() {
    // A feed line dialing a port where nothing listens: it never connects.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let toml = format!(
        "[[feeds]]\nname = \"line-a\"\ngroup = \"books\"\nurl = \"ws://{dead}/\"\n\
         reconnect_initial_ms = 50\n"
    );
    let server = Server::relay(&["--workers", "1", "--metrics", "127.0.0.1:0"], Some(&toml));
    let addr = common::printed_addr(&server, "metrics on http://");
    assert_eq!(get(addr, "/healthz").0, 200, "alive even when not ready");
    // The worker reports (so `workers` passes) while the line stays down.
    let end = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let body = readyz_until(addr, 503);
        if body["checks"][0]["ok"] == true {
            break body;
        }
        assert!(Instant::now() < end, "the worker never reported: {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(body["ready"], false, "{body}");
    let feeds = &body["checks"][1];
    assert_eq!(feeds["check"], "feeds", "{body}");
    assert_eq!(feeds["ok"], false, "{body}");
    assert_eq!(feeds["detail"], "no line up in group books", "{body}");
}

/// A full disk under the interval log (`/dev/full` fails every write with ENOSPC)
/// stops the log, not the metrics: `/readyz` and `/metrics` stay current, the relay
/// serves, and at the end it prints its totals, names the log as incomplete and exits
/// non-zero.
#[test]
fn a_full_disk_under_the_hlog_stops_the_log_alone() {
    let mut server = Server::relay(
        &[
            "--workers",
            "1",
            "--metrics",
            "127.0.0.1:0",
            "--hlog",
            "/dev/full",
        ],
        None,
    );
    let addr = common::printed_addr(&server, "metrics on http://");
    readyz_until(addr, 200);
    assert!(
        server.wait_for_log("No space left on device", Duration::from_secs(10)),
        "the log's failure is not said: {}",
        server.log()
    );
    // Still collecting after the failure: a message published now is counted, and the
    // worker still reports within the readiness window.
    let relay: SocketAddr = server.addr;
    let mut publisher = common::Raw::publish(relay);
    publisher.send(0x81, br#"{"topic":"t","n":1}"#);
    common::wait_metric(addr, None, "feedrelay_messages_in_total", |n| n >= 1);
    std::thread::sleep(Duration::from_millis(3_500));
    readyz_until(addr, 200);
    drop(publisher);
    let status = server.terminate();
    assert!(
        !status.success(),
        "an incomplete log must not end in success"
    );
    let out = server.output();
    assert!(
        out.contains("messages in 1"),
        "the summary is printed: {out}"
    );
    assert!(
        out.contains("ingress"),
        "the latency table is printed: {out}"
    );
    assert!(
        out.contains("per-hop interval log: /dev/full (incomplete: "),
        "the log is named incomplete: {out}"
    );
}
