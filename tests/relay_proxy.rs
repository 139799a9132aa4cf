//! Behind a load balancer: connections from `proxy_protocol_from` start with a PROXY
//! protocol header (v1 or v2), and the client's address in it is the one per-source limits and
//! `/subscribers` see, not the balancer's. A trusted peer without a valid header is
//! closed and counted; from anyone else a header is just bytes.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use common::{subscribers_listing, wait_metric, Raw, Server};

/// A v2 PROXY header for TCP over IPv4 from `src` to `dst`.
fn header(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else {
        panic!("IPv4 only here")
    };
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&s.ip().octets());
    h.extend_from_slice(&d.ip().octets());
    h.extend_from_slice(&s.port().to_be_bytes());
    h.extend_from_slice(&d.port().to_be_bytes());
    h
}

const UPGRADE: &str = "GET /ws?topics=T HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Connects from 127.0.0.1 (the trusted balancer) as the client `client`; returns the
/// answer's status line (or what ended it).
fn via_balancer(relay: SocketAddr, client: &str) -> (TcpStream, String) {
    via_balancer_sending(relay, &[&header(client.parse().unwrap(), relay)])
}

/// Connects from 127.0.0.1, writes `parts` 30 ms apart (each its own segment), the
/// last with the upgrade request right behind it in the same write (so a header read
/// that takes a byte too many fails the upgrade); returns the answer's status line (or what ended it).
fn via_balancer_sending(relay: SocketAddr, parts: &[&[u8]]) -> (TcpStream, String) {
    let mut s = TcpStream::connect(relay).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let mut bytes = part.to_vec();
        if last {
            bytes.extend_from_slice(UPGRADE.as_bytes());
        }
        if let Err(e) = s.write_all(&bytes) {
            // Closed by the relay before the rest was written.
            return (s, format!("closed: {e}"));
        }
        if !last {
            std::thread::sleep(Duration::from_millis(30));
        }
    }
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    (s, String::from_utf8_lossy(&head).into_owned())
}

#[test]
fn the_client_behind_a_trusted_balancer_is_the_source() {
    let config = "proxy_protocol_from = [\"127.0.0.1\"]\nmax_connections_per_address = 2\nmetrics_on_data_port = true\n";
    let server = Server::relay(
        &["--workers", "1", "--metrics", "127.0.0.1:0"],
        Some(config),
    );
    let addr = server.addr;
    let a1 = via_balancer(addr, "198.51.100.7:5001");
    let a2 = via_balancer(addr, "198.51.100.7:5002");
    assert!(a1.1.starts_with("HTTP/1.1 101") && a2.1.starts_with("HTTP/1.1 101"));
    // A third from the same client is past its cap; another client is not.
    let a3 = via_balancer(addr, "198.51.100.7:5003");
    assert!(!a3.1.starts_with("HTTP/1.1 101"), "{}", a3.1);
    let b1 = via_balancer(addr, "198.51.100.8:6001");
    assert!(b1.1.starts_with("HTTP/1.1 101"), "{}", b1.1);
    // /subscribers lists the clients, not the balancer.
    let metrics = common::printed_addr(&server, "metrics on http://");
    let scraper = Some("127.0.0.4".parse::<IpAddr>().unwrap());
    let listed = subscribers_listing(
        metrics,
        scraper,
        &["198.51.100.7:5001", "198.51.100.8:6001"],
    );
    assert!(
        listed.contains("198.51.100.7:5001") && listed.contains("198.51.100.8:6001"),
        "{listed}"
    );
    assert!(!listed.contains("\"127.0.0.1:"), "{listed}");
    // The balancer without a header: closed, counted.
    let mut bare = TcpStream::connect(addr).unwrap();
    bare.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    bare.write_all(UPGRADE.as_bytes()).unwrap();
    let mut rest = Vec::new();
    let _ = bare.read_to_end(&mut rest);
    assert!(
        !String::from_utf8_lossy(&rest).contains("101"),
        "closed, not upgraded"
    );
    let bad = "feedrelay_refused_total{reason=\"proxy_header\"}";
    wait_metric(addr, scraper, bad, |n| n == 1);
    drop((a1, a2, a3, b1));
}

/// The text header nginx and Envoy send by default: the client is the source, a line in
/// pieces is taken whole and not a byte past it (the upgrade after it succeeds),
/// `UNKNOWN` keeps the balancer's address, a line past the bound is refused.
#[test]
fn a_v1_line_names_the_client_too() {
    let config = "proxy_protocol_from = [\"127.0.0.1\"]\nmetrics_on_data_port = true\n";
    let server = Server::relay(
        &["--workers", "1", "--metrics", "127.0.0.1:0"],
        Some(config),
    );
    let addr = server.addr;
    let line = format!("PROXY TCP4 198.51.100.9 127.0.0.1 7001 {}\r\n", addr.port());
    let whole = via_balancer_sending(addr, &[line.as_bytes()]);
    assert!(whole.1.starts_with("HTTP/1.1 101"), "{}", whole.1);
    // In three segments, the CR and LF apart: the relay waits for the line's end.
    let (head, tail) = line.split_at(line.len() - 1);
    let (start, middle) = head.split_at(9);
    let split = via_balancer_sending(
        addr,
        &[start.as_bytes(), middle.as_bytes(), tail.as_bytes()],
    );
    assert!(split.1.starts_with("HTTP/1.1 101"), "{}", split.1);
    let six = via_balancer_sending(addr, &[b"PROXY TCP6 2001:db8::9 2001:db8::1 7003 443\r\n"]);
    assert!(six.1.starts_with("HTTP/1.1 101"), "{}", six.1);
    let unknown = via_balancer_sending(addr, &[b"PROXY UNKNOWN\r\n"]);
    assert!(unknown.1.starts_with("HTTP/1.1 101"), "{}", unknown.1);
    let metrics = common::printed_addr(&server, "metrics on http://");
    let scraper = Some("127.0.0.4".parse::<IpAddr>().unwrap());
    let wanted = ["198.51.100.9:7001", "[2001:db8::9]:7003", "\"127.0.0.1:"];
    let listed = subscribers_listing(metrics, scraper, &wanted);
    assert!(listed.contains("198.51.100.9:7001"), "{listed}");
    assert!(listed.contains("[2001:db8::9]:7003"), "{listed}");
    assert!(
        listed.contains("\"127.0.0.1:"),
        "UNKNOWN keeps the balancer: {listed}"
    );
    // No CRLF within 107 bytes, or a malformed line: closed, counted.
    let long = format!("PROXY UNKNOWN {}\r\n", "x".repeat(100));
    let refused = via_balancer_sending(addr, &[long.as_bytes()]);
    assert!(!refused.1.contains("101"), "{}", refused.1);
    let bad = via_balancer_sending(addr, &[b"PROXY TCP4 198.51.100.9 127.0.0.1 07001 1\r\n"]);
    assert!(!bad.1.contains("101"), "{}", bad.1);
    let counted = "feedrelay_refused_total{reason=\"proxy_header\"}";
    wait_metric(addr, scraper, counted, |n| n == 2);
    drop((whole, split, six, unknown));
}

#[test]
fn from_an_untrusted_address_a_header_is_just_bytes() {
    let config = "proxy_protocol_from = [\"127.0.0.1\"]\n";
    let server = Server::relay(&["--workers", "1"], Some(config));
    let addr = server.addr;
    let mut s = Raw::tcp_from(addr, "127.0.0.9".parse().unwrap());
    s.send_bytes(&header("198.51.100.7:5001".parse().unwrap(), addr));
    s.send_bytes(UPGRADE.as_bytes());
    let head = s.read_http_head();
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    // Direct clients are served as themselves.
    let _direct = Raw::subscribe_from(addr, "T", Some("127.0.0.9".parse().unwrap()));
}

#[test]
fn a_bad_proxy_list_is_refused_naming_the_field() {
    let dir = common::TempDir::new("proxy-config");
    let path = dir.join("relay.toml");
    std::fs::write(&path, "proxy_protocol_from = [\"10.0.0.0/40\"]\n").unwrap();
    let (code, out) = common::run_with_config(&path);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("proxy_protocol_from"), "{out}");
}
