//! permessage-deflate through `feedrelay run` over loopback (two workers), seen on the
//! wire: each message compressed once for every subscriber that negotiated it, plain
//! frames for the others, compressed publishers inflated (a bomb gets 1009, nothing
//! else is disturbed), per-subscriber compression for comparison, and a feed line that
//! negotiates deflate with the relay it dials.

mod common;

use std::time::Duration;

use common::{http_get, metric, wait_metric, Raw, Server};
use feedrelay::ws::{Deflater, Inflater};

const COMPRESSION: &str =
    "metrics_on_data_port = true\ntopic_pointer = \"/topic\"\n[compression]\nenabled = true\nmin_bytes = 32\n";
const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

/// A subscriber to `topics` that offers deflate with the header line `offer`; returns
/// the connection and the `Sec-WebSocket-Extensions` answer (empty if none). The
/// `subscribed` reply is read (through `inflater` if it came compressed).
fn deflate_subscriber(
    addr: std::net::SocketAddr,
    topics: &str,
    offer: &str,
    inflater: &mut Inflater,
) -> (Raw, String) {
    let (mut raw, head) = Raw::handshake(addr, &format!("/ws?topics={topics}"), offer);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let answer = head
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Extensions: "))
        .unwrap_or("")
        .to_owned();
    let (first, mut reply) = raw.recv().expect("subscribed reply");
    if first & 0x40 != 0 {
        let mut plain = Vec::new();
        inflater.inflate(&reply, &mut plain, 1 << 20).unwrap();
        reply = plain;
    }
    assert!(String::from_utf8_lossy(&reply).contains("subscribed"));
    raw.s
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    (raw, answer)
}

fn message(i: usize) -> String {
    format!(
        r#"{{"topic":"T{}","seq":{i},"bids":[["101.25","3.5"],["101.20","7.0"],["101.15","1.25"]],"asks":[["101.30","2.0"],["101.35","4.5"]],"venue":"XNAS"}}"#,
        i % 3
    )
}

/// Reads `n` data messages; returns them inflated where RSV1 says so, and how many
/// came compressed.
fn read_messages(raw: &mut Raw, n: usize, inflater: &mut Inflater) -> (Vec<String>, usize) {
    let mut out = Vec::new();
    let mut compressed = 0;
    while out.len() < n {
        let (first, payload) = raw.recv().expect("a message");
        assert_eq!(first & 0x0f, 1, "text frames only, got {first:#x}");
        assert_eq!(first & 0x80, 0x80, "unfragmented");
        if first & 0x40 != 0 {
            compressed += 1;
            let mut plain = Vec::new();
            inflater.inflate(&payload, &mut plain, 1 << 20).unwrap();
            out.push(String::from_utf8(plain).unwrap());
        } else {
            out.push(String::from_utf8(payload).unwrap());
        }
    }
    (out, compressed)
}

#[test]
fn each_message_is_compressed_once_for_every_subscriber_that_can_take_it() {
    let server = Server::relay(&["--workers", "2"], Some(COMPRESSION));
    let mut deflaters: Vec<(Raw, String)> = (0..3)
        .map(|_| deflate_subscriber(server.addr, "*", OFFER, &mut Inflater::new(true)))
        .collect();
    for (_, answer) in &deflaters {
        assert_eq!(answer, "permessage-deflate; server_no_context_takeover");
    }
    // A subscriber that asks for a smaller window than the relay compresses with
    // negotiates it, and gets plain frames; one that offers nothing gets plain frames.
    let small = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n";
    let (mut narrow, answer) =
        deflate_subscriber(server.addr, "*", small, &mut Inflater::new(true));
    assert_eq!(
        answer,
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=10"
    );
    let (mut plain, answer) = deflate_subscriber(server.addr, "*", "", &mut Inflater::new(true));
    assert_eq!(answer, "");
    let mut publisher = Raw::publish(server.addr);
    const N: usize = 600;
    for i in 0..N {
        publisher.send(0x81, message(i).as_bytes());
        // A short one: under min_bytes, never compressed.
        if i % 100 == 0 {
            publisher.send(0x81, br#"{"topic":"T0","seq":-1}"#);
        }
    }
    let expected: Vec<String> = (0..N)
        .flat_map(|i| {
            let short = (i % 100 == 0).then(|| r#"{"topic":"T0","seq":-1}"#.to_owned());
            std::iter::once(message(i)).chain(short)
        })
        .collect();
    for (raw, _) in &mut deflaters {
        let (got, compressed) = read_messages(raw, expected.len(), &mut Inflater::new(true));
        assert_eq!(got, expected);
        assert_eq!(compressed, N, "every long message compressed, no short one");
    }
    for raw in [&mut narrow, &mut plain] {
        let (got, compressed) = read_messages(raw, expected.len(), &mut Inflater::new(true));
        assert_eq!((got == expected, compressed), (true, 0));
    }
    // Once per message, whichever worker the subscribers are on and however many.
    wait_metric(server.addr, None, "feedrelay_deflate_messages_total", |n| {
        n == N as u64
    });
    let text = http_get(server.addr, "/metrics");
    let before = metric(&text, "feedrelay_deflate_bytes_total{stage=\"before\"}").unwrap();
    let after = metric(&text, "feedrelay_deflate_bytes_total{stage=\"after\"}").unwrap();
    let raw_bytes: usize = (0..N).map(|i| message(i).len()).sum();
    assert_eq!(before, raw_bytes as u64);
    assert!(after * 10 < before * 9, "{after} of {before}");
    assert!(text.contains("feedrelay_hop_latency_seconds_count{hop=\"deflate\""));
}

#[test]
fn compressed_publishers_are_inflated_and_a_deflate_bomb_gets_1009() {
    let server = Server::relay(
        &["--workers", "2"],
        Some(&format!(
            "max_message_bytes = 65536\nmax_frame_bytes = 65536\n{COMPRESSION}"
        )),
    );
    let mut sub = Raw::subscribe(server.addr, "*");
    sub.s
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (mut publisher, head) = Raw::handshake(server.addr, "/pub", OFFER);
    assert!(head.contains("permessage-deflate"), "{head}");
    // With context takeover: each message may refer back to the one before.
    let mut deflater = Deflater::new(6, 15, false);
    for i in 0..200 {
        let mut z = Vec::new();
        deflater.compress(message(i).as_bytes(), &mut z);
        publisher.send(0xc1, &z);
    }
    for i in 0..200 {
        let (first, payload) = sub.recv().unwrap();
        assert_eq!(
            (first, String::from_utf8(payload).unwrap()),
            (0x81, message(i))
        );
    }
    // 16 MiB of one byte, compressed to a few KiB: over max_message_bytes once inflated.
    let mut bomb = Vec::new();
    Deflater::new(9, 15, true).compress(&vec![b'a'; 16 << 20], &mut bomb);
    assert!(bomb.len() < 65536);
    publisher.send(0xc1, &bomb);
    publisher.expect_close(Some(1009));
    let mut other = Raw::publish(server.addr);
    other.send(0x81, message(7).as_bytes());
    let (_, payload) = sub.recv().unwrap();
    assert_eq!(String::from_utf8(payload).unwrap(), message(7));
    wait_metric(
        server.addr,
        None,
        "feedrelay_limit_hits_total{limit=\"max_message_bytes\"}",
        |n| n == 1,
    );
}

#[test]
fn per_subscriber_compression_compresses_once_per_delivery_with_context() {
    let config = format!("{COMPRESSION}per_subscriber = true\n");
    let server = Server::relay(&["--workers", "2"], Some(&config));
    // Each subscriber's frames refer back to the ones before, its reply included.
    let mut subs: Vec<(Raw, String, Inflater)> = (0..3)
        .map(|_| {
            let mut inflater = Inflater::new(false);
            let (raw, answer) = deflate_subscriber(server.addr, "T1", OFFER, &mut inflater);
            (raw, answer, inflater)
        })
        .collect();
    for (_, answer, _) in &subs {
        assert_eq!(answer, "permessage-deflate", "context takeover kept");
    }
    let mut publisher = Raw::publish(server.addr);
    let expected: Vec<String> = (0..300).filter(|i| i % 3 == 1).map(message).collect();
    for i in 0..300 {
        publisher.send(0x81, message(i).as_bytes());
    }
    for (raw, _, inflater) in &mut subs {
        let (got, compressed) = read_messages(raw, expected.len(), inflater);
        assert_eq!((got == expected, compressed), (true, expected.len()));
    }
    // Once per delivery: every message and every reply, for each subscriber.
    wait_metric(server.addr, None, "feedrelay_deflate_messages_total", |n| {
        n == 3 * (expected.len() as u64 + 1)
    });
}

/// A relay dials another with `[[feeds]] compression = true`: the upstream compresses,
/// the feed line inflates, the downstream subscriber gets the messages unchanged.
#[test]
fn feed_lines_negotiate_deflate_with_their_upstream() {
    let upstream = Server::relay(&["--workers", "1"], Some(COMPRESSION));
    let downstream = Server::relay(
        &["--workers", "1"],
        Some(&format!(
            "topic_pointer = \"/topic\"\n[[feeds]]\nname = \"up\"\nurl = \"ws://{}/ws?topics=*\"\ncompression = true\nreconnect_initial_ms = 50\nreconnect_max_ms = 200\n",
            upstream.addr
        )),
    );
    let mut sub = Raw::subscribe(downstream.addr, "*");
    let mut publisher = Raw::publish(upstream.addr);
    // Until the feed line is up, what is published upstream goes nowhere.
    common::publish_until_relayed(&mut publisher, &mut sub, message(0).as_bytes(), &downstream);
    for i in 1..=100 {
        publisher.send(0x81, message(i).as_bytes());
    }
    let mut next = 1;
    while next <= 100 {
        let (_, payload) = sub.recv().unwrap();
        let text = String::from_utf8(payload).unwrap();
        if text == message(0) {
            continue; // copies sent while the line came up
        }
        assert_eq!(text, message(next));
        next += 1;
    }
    // The upstream compressed for the feed line.
    wait_metric(
        upstream.addr,
        None,
        "feedrelay_deflate_messages_total",
        |n| n >= 100,
    );
}

/// With `reuse_publisher_frames`, the relay asks clients for
/// `client_no_context_takeover`: a publisher's compressed messages then stand alone
/// and go to deflate subscribers byte for byte as they came, compressed by nobody else.
#[test]
fn a_publishers_standalone_compressed_messages_are_relayed_as_they_came() {
    let config = format!("{COMPRESSION}reuse_publisher_frames = true\n");
    let server = Server::relay(&["--workers", "2"], Some(&config));
    let (mut sub, answer) = deflate_subscriber(server.addr, "*", OFFER, &mut Inflater::new(true));
    assert_eq!(
        answer,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
    let (mut plain, _) = deflate_subscriber(server.addr, "*", "", &mut Inflater::new(true));
    let (mut publisher, head) = Raw::handshake(server.addr, "/pub", OFFER);
    assert!(head.contains("client_no_context_takeover"), "{head}");
    // Level 9, where the relay would use 1: the bytes show whose compression arrived.
    let mut deflater = Deflater::new(9, 15, true);
    let mut sent = Vec::new();
    for i in 0..100 {
        let mut z = Vec::new();
        deflater.compress(message(i).as_bytes(), &mut z);
        publisher.send(0xc1, &z);
        sent.push(z);
    }
    for (i, z) in sent.iter().enumerate() {
        assert_eq!(
            sub.recv().unwrap(),
            (0xc1, z.clone()),
            "message {i} as it came"
        );
        let (first, text) = plain.recv().unwrap();
        assert_eq!(
            (first, String::from_utf8(text).unwrap()),
            (0x81, message(i))
        );
    }
    wait_metric(server.addr, None, "feedrelay_deflate_reused_total", |n| {
        n == 100
    });
    let text = http_get(server.addr, "/metrics");
    assert_eq!(metric(&text, "feedrelay_deflate_messages_total"), Some(100));
}
