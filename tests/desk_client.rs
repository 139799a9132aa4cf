//! The reference client (`examples/desk_client.py`, Python `websockets`) driven through
//! a network cut and a rolling restart while a publisher sends 10,000 messages a second
//! over ten topics. The continuity contract: every message of every topic arrives once
//! and in order, or is covered by a reset (a new epoch) — never a silent hole. Through a
//! cut the client resumes from the relay's history and misses nothing; through a
//! restart (the new relay has no history) every topic shows one reset.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Raw, Server};

const TOPICS: usize = 10;
const RATE: u64 = 10_000;

/// A publisher at `RATE` messages a second over `TOPICS` topics until `stop`,
/// reconnecting (to whichever relay has the address) when its connection ends.
fn publish(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut sent = 0u64;
        let mut publ: Option<Raw> = None;
        while !stop.load(Ordering::Relaxed) {
            let due = start + Duration::from_nanos(sent * 1_000_000_000 / RATE);
            if let Some(w) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(w);
            }
            if publ.is_none() {
                match std::panic::catch_unwind(|| Raw::publish(addr)) {
                    Ok(p) => publ = Some(p),
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                }
            }
            let m = format!(r#"{{"s":"T{}","n":{sent}}}"#, sent % TOPICS as u64);
            let ok = publ.as_mut().map(|p| {
                std::io::Write::write_all(&mut p.s, &Raw::frame(0x81, m.as_bytes(), true)).is_ok()
                    && (sent % 100 != 0 || !closing(p))
            });
            if ok != Some(true) {
                publ = None;
            }
            sent += 1;
        }
        sent
    })
}

/// Whether the relay sent something (its close, when it stops): then the close is
/// answered and the publisher dials again, as a real one would.
fn closing(p: &mut Raw) -> bool {
    let mut b = [0u8; 64];
    let _ = p.s.set_nonblocking(true);
    let got = std::io::Read::read(&mut p.s, &mut b);
    let _ = p.s.set_nonblocking(false);
    match got {
        Ok(0) => true,
        Ok(_) => {
            let _ = std::io::Write::write_all(&mut p.s, &Raw::frame(0x88, &[0x03, 0xe9], true));
            true
        }
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// Runs the client for `seconds` (with a cut after `cut_after`); its summary lines.
fn client(addr: SocketAddr, seconds: f64, cut_after: Option<f64>) -> std::process::Child {
    let topics: Vec<String> = (0..TOPICS).map(|i| format!("T{i}")).collect();
    let mut cmd = Command::new(common::python());
    cmd.arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/desk_client.py"))
        .arg(format!("ws://{addr}"))
        .arg(topics.join(","))
        .args(["--seconds", &seconds.to_string()]);
    if let Some(c) = cut_after {
        cmd.args(["--cut-after", &c.to_string()]);
    }
    cmd.stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the reference client")
}

fn summary(child: std::process::Child) -> (Vec<serde_json::Value>, serde_json::Value) {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "client failed");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (events, topics): (Vec<_>, Vec<_>) =
        lines.into_iter().partition(|v| v.get("events").is_some());
    (topics, events[0]["events"].clone())
}

/// Within each topic's last epoch: every number from the first seen to the last was
/// either received or counted missed, none twice or out of order.
fn accounted(topics: &[serde_json::Value]) {
    assert_eq!(topics.len(), TOPICS);
    for t in topics {
        let n = |k: &str| t[k].as_u64().unwrap();
        assert_eq!(n("out_of_order"), 0, "{t}");
        assert!(n("received") > 0, "{t}");
        assert_eq!(
            n("received") + n("missed"),
            n("last_seq") - n("first_seq") + 1,
            "{t}"
        );
    }
}

#[test]
fn through_a_network_cut_nothing_is_lost() {
    let history = Some("history_messages_per_topic = 4096\n");
    let mut server = Server::relay(&["--workers", "2"], history);
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = publish(server.addr, Arc::clone(&stop));
    let c = client(server.addr, 4.0, Some(1.5));
    let (topics, events) = summary(c);
    stop.store(true, Ordering::Relaxed);
    let sent = publisher.join().unwrap();
    accounted(&topics);
    assert!(
        events["connects"].as_u64().unwrap() >= 2,
        "reconnected after the cut: {events}"
    );
    let received: u64 = topics.iter().map(|t| t["received"].as_u64().unwrap()).sum();
    let missed: u64 = topics.iter().map(|t| t["missed"].as_u64().unwrap()).sum();
    assert!(
        topics.iter().all(|t| t["resets"] == 0),
        "same relay, same epochs: {topics:?}"
    );
    println!("the publisher sent {sent} in all; over the client's last epoch it received {received} and knows it missed {missed}");
    server.terminate();
    let summary_lines = server.output();
    assert_eq!(
        missed, 0,
        "resumed from the history: nothing missed ({received} received)\n{summary_lines}"
    );
}

#[test]
fn through_a_rolling_restart_the_client_is_told_and_resets() {
    let mut first = Server::relay(&["--workers", "2"], None);
    let addr = first.addr;
    let stop = Arc::new(AtomicBool::new(false));
    // Both connect while the first is alone on the address.
    let publisher = publish(addr, Arc::clone(&stop));
    let c = client(addr, 5.0, None);
    std::thread::sleep(Duration::from_millis(1_500));
    let listen = addr.to_string();
    let second = Server::relay(&["--workers", "2", "--listen", &listen], None);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(first.terminate().code(), Some(0));
    let (topics, events) = summary(c);
    stop.store(true, Ordering::Relaxed);
    publisher.join().unwrap();
    drop(second);
    // Told, reconnected to the second, and every topic's count started over there.
    assert_eq!(events["shutdown"], 1, "{events}");
    assert!(events["connects"].as_u64().unwrap() >= 2, "{events}");
    assert!(topics.iter().all(|t| t["resets"] == 1), "{topics:?}");
    accounted(&topics);
}
