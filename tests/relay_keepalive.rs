//! Keepalive and idle timeout: the relay pings subscribers, and closes one that sends
//! nothing (not even a pong) for the idle timeout, as it would a half-open peer.

mod common;

use common::{Raw, Server};

#[test]
fn silent_subscribers_are_pinged_then_closed_with_1001() {
    let server = Server::relay(
        &[],
        Some("keepalive_interval_ms = 100\nidle_timeout_ms = 400\n"),
    );
    let mut raw = Raw::subscribe(server.addr, "T");
    let mut pings = 0;
    loop {
        let (first, payload) = raw.recv().expect("a ping or the close");
        match first {
            0x89 => pings += 1,
            0x88 => {
                assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1001);
                assert!(String::from_utf8_lossy(&payload[2..]).contains("idle timeout"));
                break;
            }
            other => panic!("unexpected frame {other:#x}"),
        }
    }
    assert!(pings >= 2, "pinged {pings} times before closing");
}

#[test]
fn answering_pings_keeps_a_subscriber_alive() {
    let server = Server::relay(
        &[],
        Some("keepalive_interval_ms = 100\nidle_timeout_ms = 400\n"),
    );
    let mut raw = Raw::subscribe(server.addr, "T");
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_millis(1200) {
        let (first, payload) = raw.recv().expect("a ping");
        assert_eq!(first, 0x89, "only pings while we answer them");
        raw.send(0x8a, &payload);
    }
}

#[test]
fn a_client_that_never_finishes_its_handshake_is_dropped() {
    let server = Server::relay(&[], Some("handshake_timeout_ms = 200\n"));
    let mut raw = Raw::tcp(server.addr);
    raw.send_bytes(b"GET /ws?topics=T HTTP/1.1\r\nHost: x\r\n");
    let started = std::time::Instant::now();
    assert!(raw.read_to_end().is_empty(), "closed without an answer");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
