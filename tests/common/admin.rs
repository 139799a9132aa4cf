//! Speaking to the relay's HTTP side as a scraper would: plain `GET`s (from a source
//! address of the test's choosing), `/metrics` samples, and `/subscribers` listings
//! waited for until they hold what a test expects.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::Raw;

/// A plain `GET path` over HTTP/1.1; returns the whole response.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    http_get_from(addr, path, None)
}

/// [`http_get`] from a source address of our choosing.
pub fn http_get_from(addr: SocketAddr, path: &str, source: Option<std::net::IpAddr>) -> String {
    let mut s = match source {
        Some(ip) => Raw::tcp_from(addr, ip).s,
        None => TcpStream::connect(addr).unwrap(),
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Reads `/subscribers` at `admin` (from `source`) until it holds every one of `wanted`,
/// up to 5 s (the list follows connections as they come); returns the last reading,
/// for the caller's assertions.
pub fn subscribers_listing(
    admin: SocketAddr,
    source: Option<std::net::IpAddr>,
    wanted: &[&str],
) -> String {
    let mut listed = String::new();
    for _ in 0..50 {
        listed = http_get_from(admin, "/subscribers", source);
        if wanted.iter().all(|w| listed.contains(w)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    listed
}

/// The value of the sample whose line starts with `name` (e.g.
/// `feedrelay_dropped_total{reason="bad_topic"}`) in a `/metrics` text.
pub fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Scrapes `/metrics` (from `source`) until the sample `name` satisfies `ok`; the
/// workers report once a second, so this allows ten.
pub fn wait_metric(
    addr: SocketAddr,
    source: Option<std::net::IpAddr>,
    name: &str,
    ok: impl Fn(u64) -> bool,
) {
    let end = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = http_get_from(addr, "/metrics", source);
        if metric(&text, name).is_some_and(&ok) {
            return;
        }
        assert!(
            std::time::Instant::now() < end,
            "{name} never as expected: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
