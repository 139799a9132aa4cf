//! Every bound a client can reach, hit over loopback: the relay answers with a clear
//! error or close code, counts the hit in `/metrics`, and keeps serving everyone else.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{wait_metric, Raw, Server};

const LIMITS: &str = "max_subscriptions = 8\nmax_topic_bytes = 16\nmax_control_bytes = 1024\nmax_fragments = 4\nwrite_timeout_ms = 500\nmetrics_on_data_port = true\n";

fn hits(limit: &str) -> String {
    format!("feedrelay_limit_hits_total{{limit=\"{limit}\"}}")
}

/// A subscriber on `T` that reads what the publisher sends within a second.
fn assert_still_served(addr: std::net::SocketAddr, n: u32) {
    let mut sub = Raw::subscribe(addr, "T");
    let mut publ = Raw::publish(addr);
    let body = format!(r#"{{"s":"T","n":{n}}}"#);
    let start = Instant::now();
    publ.send(0x81, body.as_bytes());
    let (_, got) = sub.recv().expect("a message through the relay");
    assert_eq!(got, body.as_bytes());
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn subscription_and_control_bounds_answer_errors_and_are_counted() {
    let server = Server::relay(&["--workers", "1"], Some(LIMITS));
    let addr = server.addr;
    let mut sub = Raw::subscribe(addr, "A");
    let reply = |sub: &mut Raw, req: &str| {
        sub.send(0x81, req.as_bytes());
        let (_, r) = sub.recv().expect("a reply");
        String::from_utf8(r).unwrap()
    };
    // Nine topics: more than one connection may hold, refused whole.
    let nine: Vec<String> = (0..9).map(|i| format!("\"t{i}\"")).collect();
    let r = reply(
        &mut sub,
        &format!(r#"{{"op":"subscribe","topics":[{}]}}"#, nine.join(",")),
    );
    assert!(r.contains("9 topics in one request; at most 8"), "{r}");
    // Seven more fit beside A; the eighth does not.
    let seven: Vec<String> = (0..7).map(|i| format!("\"t{i}\"")).collect();
    let r = reply(
        &mut sub,
        &format!(r#"{{"op":"subscribe","topics":[{}]}}"#, seven.join(",")),
    );
    assert!(r.contains("\"event\":\"subscribed\""), "{r}");
    let r = reply(&mut sub, r#"{"op":"subscribe","topics":["one-too-many"]}"#);
    assert!(r.contains("at most 8 subscriptions"), "{r}");
    // Names: too long, or with a control character.
    let r = reply(
        &mut sub,
        r#"{"op":"subscribe","topics":["seventeen-bytes!!"]}"#,
    );
    assert!(r.contains("longer than 16 bytes"), "{r}");
    let r = reply(&mut sub, r#"{"op":"unsubscribe","topics":["a\u0007"]}"#);
    assert!(r.contains("control character"), "{r}");
    wait_metric(addr, None, &hits("max_subscriptions"), |n| n == 1);
    wait_metric(addr, None, &hits("control_request"), |n| n == 4);
    // A control message over max_control_bytes closes the subscriber with 1009.
    let big = format!(r#"{{"op":"subscribe","topics":["{}"]}}"#, "x".repeat(2000));
    sub.send(0x81, big.as_bytes());
    sub.expect_close(Some(1009));
    wait_metric(addr, None, &hits("max_message_bytes"), |n| n == 1);
    assert_still_served(addr, 1);
}

#[test]
fn a_huge_subscription_request_does_not_stall_the_worker() {
    // The default limits, one worker: 32,000 topics in one message (about 300 KB, under
    // the 1 MiB message limit once control messages may be that large).
    let server = Server::relay(&["--workers", "1"], Some("max_control_bytes = 1048576\n"));
    let addr = server.addr;
    let mut other = Raw::subscribe(addr, "T");
    let mut publ = Raw::publish(addr);
    let mut sub = Raw::subscribe(addr, "A");
    let topics: Vec<String> = (0..32_000).map(|i| format!("\"topic-{i}\"")).collect();
    let req = format!(r#"{{"op":"subscribe","topics":[{}]}}"#, topics.join(","));
    let start = Instant::now();
    sub.send(0x81, req.as_bytes());
    publ.send(0x81, br#"{"s":"T","n":1}"#);
    let (_, got) = other.recv().expect("the other subscriber is served");
    assert_eq!(got, br#"{"s":"T","n":1}"#);
    let (_, r) = sub.recv().expect("an error reply");
    let r = String::from_utf8(r).unwrap();
    assert!(
        r.contains("32000 topics in one request; at most 1024"),
        "{r}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "answered in {:?}",
        start.elapsed()
    );
}

#[test]
fn publisher_topic_names_and_fragments_are_bounded() {
    let server = Server::relay(&["--workers", "1"], Some(LIMITS));
    let addr = server.addr;
    let mut sub = Raw::subscribe(addr, "*");
    let mut publ = Raw::publish(addr);
    publ.send(0x81, br#"{"s":"this-topic-is-too-long","n":1}"#);
    publ.send(0x81, br#"{"s":"ok","n":2}"#);
    let (_, got) = sub.recv().expect("the good message");
    assert_eq!(got, br#"{"s":"ok","n":2}"#, "the bad one was dropped");
    wait_metric(
        addr,
        None,
        "feedrelay_dropped_total{reason=\"bad_topic\"}",
        |n| n == 1,
    );
    // Four fragments are fine; five close the publisher with 1009.
    let mut msg = Vec::new();
    msg.extend(Raw::frame(0x01, br#"{"s":"ok","#, true));
    msg.extend(Raw::frame(0x00, br#""n":"#, true));
    msg.extend(Raw::frame(0x00, b"3", true));
    msg.extend(Raw::frame(0x80, b"}", true));
    publ.send_bytes(&msg);
    let (_, got) = sub.recv().expect("the fragmented message");
    assert_eq!(got, br#"{"s":"ok","n":3}"#);
    for part in [&b"{"[..], b"\"s\"", b":\"ok\"", b",\"n\":4"] {
        let first = if part == b"{" { 0x01 } else { 0x00 };
        publ.send(first, part);
    }
    publ.send(0x00, b"}");
    publ.expect_close(Some(1009));
    wait_metric(addr, None, &hits("max_fragments"), |n| n == 1);
}

#[test]
fn a_publisher_that_never_reads_is_cut_at_the_write_timeout() {
    let server = Server::relay(&["--workers", "1"], Some(LIMITS));
    let addr = server.addr;
    let mut publ = Raw::publish(addr);
    // Pings (each answered with a pong) never read, until the relay's send buffer and
    // our receive buffer are full (a few MB). Not by shrinking our receive buffer after
    // the connection is up: the kernel then drops segments and both ends sit in
    // retransmission back-off with the relay's write done, which is not what this tests.
    publ.s
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let ping = Raw::frame(0x89, &[7u8; 125], true);
    let start = Instant::now();
    let mut cut = false;
    while start.elapsed() < Duration::from_secs(30) {
        match publ.s.write(&ping) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            // Reset: the relay shut the connection (our unread pongs die with it).
            Err(_) => {
                cut = true;
                break;
            }
        }
    }
    if !cut {
        let ss = std::process::Command::new("ss")
            .args([
                "-tnmi",
                "state",
                "established",
                &format!("( sport = :{} or dport = :{} )", addr.port(), addr.port()),
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        panic!(
            "the relay kept a publisher that never reads\n{ss}\n{}",
            server.log()
        );
    }
    wait_metric(
        addr,
        None,
        "feedrelay_connections{role=\"publisher\"}",
        |n| n == 0,
    );
    assert_still_served(addr, 2);
}

/// Per connection, control messages past `max_control_per_second` are ignored unparsed
/// (one error reply a second, counted); the connection stays and is served, and its
/// budget renews the next second.
#[test]
fn control_messages_past_the_rate_are_ignored_and_counted() {
    let config = "max_control_per_second = 10\nmetrics_on_data_port = true\n";
    let server = Server::relay(&["--workers", "1"], Some(config));
    let addr = server.addr;
    let mut sub = Raw::subscribe(addr, "A");
    for _ in 0..50 {
        sub.send(0x81, br#"{"op":"stats"}"#);
    }
    let mut replies = Vec::new();
    sub.s
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    while let Some((_, r)) = sub.recv_or_timeout() {
        replies.push(String::from_utf8(r).unwrap());
    }
    let errors: Vec<_> = replies.iter().filter(|r| r.contains("\"error\"")).collect();
    assert_eq!(replies.len(), 11, "ten answered, one error: {replies:?}");
    assert!(
        errors.len() == 1 && errors[0].contains("at most 10 control messages a second"),
        "{errors:?}"
    );
    wait_metric(addr, None, &hits("max_control_per_second"), |n| n == 40);
    std::thread::sleep(Duration::from_millis(1_100));
    sub.s
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    sub.send(0x81, br#"{"op":"subscribe","topics":["T"]}"#);
    let (_, r) = sub.recv().expect("answered again the next second");
    assert!(String::from_utf8_lossy(&r).contains("subscribed"));
    assert_still_served(addr, 1);
}

/// The relay-wide subscription budget: subscriptions over all connections past
/// `max_subscription_bytes` are refused with an error (counted) and change nothing;
/// a connection that leaves gives its share back.
#[test]
fn the_relay_wide_subscription_budget_is_enforced() {
    // Each subscription to a one-letter topic counts 65 bytes: room for four.
    let config = "max_subscription_bytes = 260\nmetrics_on_data_port = true\n";
    let server = Server::relay(&["--workers", "2"], Some(config));
    let addr = server.addr;
    let first = Raw::subscribe(addr, "A,B");
    let mut second = Raw::subscribe(addr, "C");
    second.send(0x81, br#"{"op":"subscribe","topics":["D","E"]}"#);
    let (_, r) = second.recv().expect("a reply");
    let r = String::from_utf8_lossy(&r).into_owned();
    assert!(r.contains("error") && r.contains("budget"), "{r}");
    second.send(0x81, br#"{"op":"subscribe","topics":["D"]}"#);
    let (_, r) = second.recv().expect("a reply");
    assert!(String::from_utf8_lossy(&r).contains("subscribed"));
    wait_metric(addr, None, &hits("max_subscription_bytes"), |n| n == 1);
    drop(first);
    std::thread::sleep(Duration::from_millis(200));
    second.send(0x81, br#"{"op":"subscribe","topics":["E","F"]}"#);
    let (_, r) = second.recv().expect("a reply");
    assert!(String::from_utf8_lossy(&r).contains("subscribed"));
}
