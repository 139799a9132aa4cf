//! Admission before the handshake, over loopback: one address flooding the relay with
//! connections that never speak is held to its caps while clients from other addresses
//! are served within a second; a burst of real clients from one address is held and
//! served in turn, none cut mid-handshake; a full relay stops accepting (the connection
//! waits in the backlog) instead of answering 503; IPv6 sources are held to theirs too.

mod common;

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{wait_metric, Raw, Server};

const CAPS: &str = "max_pending_per_address = 16\nmax_connections_per_address = 32\nhandshake_timeout_ms = 3000\nmetrics_on_data_port = true\n";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A TCP connection from `source` that never sends a byte.
fn silent(addr: SocketAddr, source: IpAddr) -> TcpStream {
    let raw = Raw::tcp_from(addr, source);
    raw.s
}

/// Whether the relay closed `s` (end of stream or reset) within `within`.
fn closed_by_relay(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 16];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn a_flood_from_one_address_leaves_the_others_served() {
    feedrelay::io::limits::raise_fd_limit(8192);
    let server = Server::relay(&["--workers", "2"], Some(CAPS));
    let addr = server.addr;
    let flooder = ip("127.0.0.1");
    // 2,000 connections that never send a handshake, from one address.
    let mut flood: Vec<TcpStream> = (0..2_000).map(|_| silent(addr, flooder)).collect();
    // Clients from other addresses get in at once.
    let start = Instant::now();
    let mut sub = Raw::subscribe_from(addr, "T", Some(ip("127.0.0.2")));
    let mut publ = {
        let mut p = Raw::tcp_from(addr, ip("127.0.0.3"));
        p.send_bytes(
            format!("GET /pub HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").as_bytes(),
        );
        assert!(p.read_http_head().starts_with("HTTP/1.1 101"));
        p
    };
    publ.send(0x81, br#"{"s":"T","n":1}"#);
    let (_, got) = sub.recv().expect("a message through the relay");
    assert_eq!(got, br#"{"s":"T","n":1}"#);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(1), "served in {took:?}");
    // The flood beyond what the address may hold (32: 16 handshaking, 16 held for a
    // slot) was closed at accept.
    let closed = flood
        .iter_mut()
        .rev()
        .take(100)
        .map(|s| closed_by_relay(s, Duration::from_millis(500)))
        .filter(|&c| c)
        .count();
    assert_eq!(closed, 100, "connections past the address's cap are closed");
    let scraper = ip("127.0.0.4");
    let refused = "feedrelay_refused_total{reason=\"address_connections\"}";
    wait_metric(addr, Some(scraper), refused, |n| n >= 1_900);
    // The ones it kept leave room again when they go (or time out of the handshake).
    drop(flood);
    let handshaking = "feedrelay_connections{role=\"handshaking\"}";
    wait_metric(addr, Some(scraper), handshaking, |n| n == 0);
}

#[test]
fn a_full_relay_pauses_accepting_instead_of_refusing() {
    let server = Server::relay(
        &["--workers", "1"],
        Some("max_connections = 3\nmax_pending_handshakes = 3\n"),
    );
    let addr = server.addr;
    let held: Vec<Raw> = (0..3).map(|_| Raw::subscribe(addr, "T")).collect();
    // A fourth connects (the kernel completes TCP into the backlog) but is not served.
    let mut waiting = Raw::tcp(addr);
    waiting.send_bytes(
        format!("GET /ws?topics=T HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").as_bytes(),
    );
    waiting
        .s
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut b = [0u8; 1];
    let early = waiting.s.read(&mut b);
    assert!(
        matches!(&early, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "no answer while full (not a 503): {early:?}"
    );
    // One leaves: the waiting one is accepted and upgraded.
    drop(held);
    waiting
        .s
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let head = waiting.read_http_head();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
}

#[test]
fn ipv6_sources_are_held_to_their_caps() {
    let server = Server::relay(&["--workers", "1", "--listen", "[::1]:0"], Some(CAPS));
    let addr = server.addr;
    let source = ip("::1");
    let mut flood: Vec<TcpStream> = (0..100).map(|_| silent(addr, source)).collect();
    let closed = flood
        .iter_mut()
        .skip(32)
        .map(|s| closed_by_relay(s, Duration::from_millis(500)))
        .filter(|&c| c)
        .count();
    assert_eq!(closed, 68, "past 32 open from one /64, closed at accept");
    // (50 ms each: all 32 looked at well within the 3 s handshake timeout.)
    let kept = flood
        .iter_mut()
        .take(32)
        .map(|s| closed_by_relay(s, Duration::from_millis(50)))
        .filter(|&c| c)
        .count();
    assert_eq!(kept, 0, "16 wait for their handshake, 16 for a slot");
}

/// A held connection that gets no slot within the handshake timeout is closed and
/// counted. One slot per address: A takes it and stays silent; B and C are held. When A
/// times out, B (first in line) gets the slot unless its own wait ran out first; C
/// cannot outwait B's handshake: at least one of them is closed as held too long.
#[test]
fn a_connection_held_past_the_timeout_is_closed_and_counted() {
    let caps = "max_pending_per_address = 1\nmax_connections_per_address = 3\nhandshake_timeout_ms = 1000\nmetrics_on_data_port = true\n";
    let server = Server::relay(&["--workers", "1"], Some(caps));
    let addr = server.addr;
    let source = ip("127.0.0.1");
    let mut held: Vec<TcpStream> = (0..3).map(|_| silent(addr, source)).collect();
    let closed = held
        .iter_mut()
        .map(|s| closed_by_relay(s, Duration::from_secs(4)))
        .filter(|&c| c)
        .count();
    assert_eq!(
        closed, 3,
        "each closed: A and whoever got its slot at the handshake timeout, the rest held too long"
    );
    let held_too_long = "feedrelay_refused_total{reason=\"address_pending\"}";
    wait_metric(addr, Some(ip("127.0.0.4")), held_too_long, |n| n >= 1);
}

/// Bursts are not attacks: 1,000 clients from one address (a gateway; every desk
/// reconnecting after a restart) open at once, far past the 64 handshakes one address
/// may have under way: each is held for a slot and served in turn, none closed.
#[test]
fn a_burst_from_one_address_is_served_in_turn_not_cut() {
    feedrelay::io::limits::raise_fd_limit(8192);
    let server = Server::relay(&["--workers", "2"], None);
    let addr = server.addr;
    let start = Instant::now();
    let mut clients: Vec<Raw> = (0..1_000).map(|_| Raw::tcp(addr)).collect();
    for c in &mut clients {
        c.send_bytes(
            format!("GET /ws?topics=T HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").as_bytes(),
        );
    }
    for (i, c) in clients.iter_mut().enumerate() {
        c.s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let head = c.read_http_head();
        assert!(head.starts_with("HTTP/1.1 101"), "client {i}: {head:?}");
    }
    let took = start.elapsed();
    assert!(took < Duration::from_secs(5), "1,000 served in {took:?}");
    drop(clients);
    let mut server = server;
    assert_eq!(server.terminate().code(), Some(0));
    let out = server.output();
    assert!(out.contains("address pending 0"), "{out}");
}

/// Budgets an attacker cannot fill alone: 16 addresses hold every handshake slot of
/// the relay (8 each of 128) with connections that never speak, and hold more besides.
/// A 17th address still subscribes and gets a message within a second: its connection
/// evicts the oldest handshake of a source holding more (counted), and a freed slot
/// goes to the source holding fewest.
#[test]
fn sixteen_addresses_cannot_fill_the_pending_budget_for_everyone() {
    feedrelay::io::limits::raise_fd_limit(8192);
    let caps = "max_pending_handshakes = 128\nmax_pending_per_address = 8\nmax_connections_per_address = 16\nhandshake_timeout_ms = 5000\nmetrics_on_data_port = true\n";
    let server = Server::relay(&["--workers", "2"], Some(caps));
    let addr = server.addr;
    let flood: Vec<TcpStream> = (10..26)
        .flat_map(|host| (0..16).map(move |_| ip(&format!("127.0.0.{host}"))))
        .map(|source| silent(addr, source))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    let mut sub = Raw::subscribe_from(addr, "T", Some(ip("127.0.0.2")));
    let mut publ = Raw::tcp_from(addr, ip("127.0.0.3"));
    publ.send_bytes(
        format!("GET /pub HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").as_bytes(),
    );
    assert!(publ.read_http_head().starts_with("HTTP/1.1 101"));
    publ.send(0x81, br#"{"s":"T","n":1}"#);
    let (_, got) = sub.recv().expect("a message through the relay");
    assert_eq!(got, br#"{"s":"T","n":1}"#);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(1), "served in {took:?}");
    let evicted = "feedrelay_refused_total{reason=\"evicted\"}";
    wait_metric(addr, Some(ip("127.0.0.4")), evicted, |n| n >= 2);
    drop(flood);
}

/// New connections per source per second: a source past the rate is closed at accept
/// (counted), others are not affected.
#[test]
fn a_source_past_its_connection_rate_is_closed_at_accept() {
    let caps = "max_new_connections_per_address_per_second = 20\nmetrics_on_data_port = true\n";
    let server = Server::relay(&["--workers", "1"], Some(caps));
    let addr = server.addr;
    let source = ip("127.0.0.5");
    let mut conns: Vec<TcpStream> = (0..40).map(|_| silent(addr, source)).collect();
    let closed = conns
        .iter_mut()
        .map(|s| closed_by_relay(s, Duration::from_millis(200)))
        .filter(|&c| c)
        .count();
    // 20 pass at once, a few more refill while the 40 connect; the rest are closed.
    assert!((10..=20).contains(&closed), "{closed} of 40 closed");
    let _other = Raw::subscribe_from(addr, "T", Some(ip("127.0.0.6")));
    let rate = "feedrelay_refused_total{reason=\"address_rate\"}";
    wait_metric(addr, Some(ip("127.0.0.7")), rate, |n| n >= 10);
}
