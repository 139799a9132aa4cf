//! Per-hop metrics end to end: `GET /metrics` on the relay's port, the percentile table
//! on shutdown, and the `.hlog` file decoded by an independent HdrHistogram
//! implementation (Python `hdrhistogram`), whose counts must match what was relayed.

mod common;

use std::process::Command;

use common::{python, script, Server};
use feedrelay::io::driver::client::{Incoming, WsClient};
use feedrelay::io::ring::Ring;
use feedrelay::ws::{Limits, MessageKind};

const MESSAGES: usize = 300;
const SUBSCRIBERS: usize = 4;

fn get_metrics(addr: std::net::SocketAddr) -> String {
    common::http_get(addr, "/metrics")
}

fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{line_start} not in metrics:\n{text}"))
}

#[test]
fn hop_latencies_reach_metrics_the_table_and_the_hlog() {
    let hlog = std::env::temp_dir().join(format!("feedrelay-test-{}.hlog", std::process::id()));
    let mut server = Server::relay(
        &[
            "--workers",
            "2",
            "--hlog",
            hlog.to_str().unwrap(),
            "--metrics",
            "127.0.0.1:0",
        ],
        Some("metrics_on_data_port = true\n"),
    );
    let url = format!("ws://{}/", server.addr);
    Ring::new().unwrap().block_on(async {
        let mut subs = Vec::new();
        for _ in 0..SUBSCRIBERS {
            let mut c = WsClient::connect(&format!("{url}ws?topics=*"), &[], Limits::default())
                .await
                .unwrap();
            assert!(matches!(c.recv().await.unwrap(), Incoming::Message(..)));
            subs.push(c);
        }
        let publ = WsClient::connect(&format!("{url}pub"), &[], Limits::default())
            .await
            .unwrap();
        for seq in 0..MESSAGES {
            publ.send(
                MessageKind::Text,
                format!(r#"{{"s":"T{}","seq":{seq}}}"#, seq % 3).as_bytes(),
            )
            .await
            .unwrap();
        }
        for s in &mut subs {
            for _ in 0..MESSAGES {
                assert!(matches!(s.recv().await.unwrap(), Incoming::Message(..)));
            }
        }
    });
    // Let each worker hand in an interval, then read /metrics.
    std::thread::sleep(std::time::Duration::from_millis(1300));
    let text = get_metrics(server.addr);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(
        metric(&text, "feedrelay_messages_in_total "),
        MESSAGES as u64
    );
    let ingress: u64 = (0..2)
        .map(|w| {
            metric(
                &text,
                &format!("feedrelay_hop_latency_seconds_count{{hop=\"ingress\",worker=\"{w}\"}}"),
            )
        })
        .sum();
    let egress: u64 = (0..2)
        .map(|w| {
            metric(
                &text,
                &format!("feedrelay_hop_latency_seconds_count{{hop=\"egress\",worker=\"{w}\"}}"),
            )
        })
        .sum();
    assert_eq!(ingress, MESSAGES as u64);
    assert_eq!(egress, (MESSAGES * SUBSCRIBERS) as u64);
    // The clients closed when their ring ended: the gauge is back to zero.
    assert_eq!(
        metric(&text, "feedrelay_connections{role=\"subscriber\"} "),
        0
    );
    assert_eq!(
        metric(&text, "feedrelay_dropped_total{reason=\"queue_full\"} "),
        0
    );

    assert_eq!(server.terminate().code(), Some(0));
    let out = server.output();
    assert!(
        out.lines()
            .any(|l| l.starts_with("hop ") && l.contains(" count ") && l.contains("p99.99 us"))
            && out.contains("egress"),
        "{out}"
    );

    let decoded = Command::new(python())
        .arg(script("hlog_counts.py"))
        .arg(&hlog)
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&decoded.stdout).into_owned();
    assert!(
        decoded.status.success(),
        "{}{json}",
        String::from_utf8_lossy(&decoded.stderr)
    );
    println!("python hdrhistogram read: {json}");
    assert!(
        json.contains(&format!(r#""ingress": {{"count": {MESSAGES},"#)),
        "{json}"
    );
    assert!(
        json.contains(&format!(
            r#""egress": {{"count": {},"#,
            MESSAGES * SUBSCRIBERS
        )),
        "{json}"
    );
    let _ = std::fs::remove_file(&hlog);
}
