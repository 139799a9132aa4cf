//! Memory per idle subscriber: the relay's resident set before and after 10,000
//! subscribers connect and sit idle (target: at most 16 KiB each). Idle subscribers
//! must be cheap: each holds a small read buffer, not a frame-sized one.

mod common;

use std::io::Write;
use std::net::TcpStream;

use common::Server;

const SUBSCRIBERS: usize = 10_000;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn raise_fd_limit() {
    let hard = feedrelay::io::limits::fd_limits().1;
    feedrelay::io::limits::raise_fd_limit(hard);
    assert!(
        hard as usize > SUBSCRIBERS + 100,
        "need an open-file limit above {SUBSCRIBERS}"
    );
}

fn connect(server: &Server, topic: usize) -> TcpStream {
    let mut s = TcpStream::connect(server.addr).unwrap();
    let req = format!(
        "GET /ws?topics=T{topic} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    s
}

#[test]
fn ten_thousand_idle_subscribers_cost_at_most_16_kib_each() {
    raise_fd_limit();
    let server = Server::relay(&["--workers", "2"], Some(
            "max_connections = 12000\nmax_connections_per_address = 12000\nmax_pending_per_address = 12000\nmax_pending_handshakes = 12000\nmax_new_connections_per_address_per_second = 0\n",
        ));
    let pid = server.child.id();
    // Warm up: the first connections pay for one-time allocations.
    let warm: Vec<TcpStream> = (0..200).map(|i| connect(&server, i % 50)).collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before = rss_kib(pid);
    let mut subs = Vec::with_capacity(SUBSCRIBERS);
    for i in 0..SUBSCRIBERS {
        subs.push(connect(&server, i % 500));
    }
    // Wait until every handshake has been answered (the relay has them all).
    for s in &mut subs {
        let mut b = [0u8; 1];
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        use std::io::Read;
        assert_eq!(s.read(&mut b).unwrap(), 1, "handshake answered");
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let after = rss_kib(pid);
    let per_sub = (after.saturating_sub(before)) as f64 / SUBSCRIBERS as f64;
    println!("relay RSS {before} KiB -> {after} KiB with {SUBSCRIBERS} idle subscribers: {per_sub:.2} KiB each");
    assert!(per_sub <= 16.0, "{per_sub:.2} KiB per idle subscriber");
    drop(warm);
}
