//! Behind a load balancer: connections from `proxy_protocol_from` start with a PROXY
//! protocol v2 header, and the client's address in it is the one per-source limits and
//! `/subscribers` see, not the balancer's. A trusted peer without a valid header is
//! closed and counted; from anyone else a header is just bytes.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use common::{http_get_from, wait_metric, Raw, Server};

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
    let mut s = TcpStream::connect(relay).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&header(client.parse().unwrap(), relay))
        .unwrap();
    s.write_all(UPGRADE.as_bytes()).unwrap();
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
    let mut listed = String::new();
    for _ in 0..50 {
        listed = http_get_from(metrics, "/subscribers", scraper);
        if listed.contains("198.51.100.8:6001") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
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
