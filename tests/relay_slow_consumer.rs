//! A subscriber that stops reading, under each slow-consumer policy: the publisher and
//! the other subscribers carry on and get everything, the relay's memory stays bounded
//! by the queue limits, and every drop is counted.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::{Raw, Server};
use feedrelay::io::driver::client::{Incoming, WsClient};
use feedrelay::io::ring::Ring;
use feedrelay::ws::{Limits, MessageKind};

const MESSAGES: usize = 2000;
const PAD: usize = 8 * 1024;

fn config(policy: &str) -> String {
    format!("slow_consumer = \"{policy}\"\nqueue_max_messages = 100\nqueue_max_bytes = 1048576\n")
}

/// Starts a relay with `policy`, a subscriber that never reads, and a full run of
/// messages that a fast subscriber must get in time.
fn stall_one_subscriber(policy: &str) -> (Server, Raw) {
    let server = Server::relay(&["--workers", "2"], Some(&config(policy)));
    let slow = stalled_subscriber(&server);
    let took = run_with_stalled_subscriber(&server);
    assert!(
        took < Duration::from_secs(20),
        "fast subscriber took {took:?}"
    );
    (server, slow)
}

/// A subscriber that completes the handshake and then never reads again.
fn stalled_subscriber(server: &Server) -> Raw {
    Raw::subscribe(server.addr, "T")
}

fn seq_of(m: &[u8]) -> usize {
    let s = String::from_utf8_lossy(&m[..m.len().min(64)]).into_owned();
    let at = s.find("\"seq\":").unwrap() + 6;
    s[at..].split(',').next().unwrap().parse().unwrap()
}

/// At most this many messages published and not yet read by the fast subscriber:
/// below its queue's 100, so a fast reader never fills its queue, however the host's
/// socket buffers are sized (with large ones an unpaced publisher runs far ahead).
const WINDOW: usize = 50;

/// Publishes MESSAGES while a fast subscriber reads them all (the publisher keeps
/// within [`WINDOW`] of it); returns how long the fast subscriber took to get
/// everything.
fn run_with_stalled_subscriber(server: &Server) -> Duration {
    let url = format!("ws://{}/", server.addr);
    Ring::new().unwrap().block_on(async {
        let mut fast = WsClient::connect(&format!("{url}ws?topics=T"), &[], Limits::default())
            .await
            .unwrap();
        assert!(
            matches!(fast.recv().await.unwrap(), Incoming::Message(..)),
            "subscribed reply"
        );
        let publ = WsClient::connect(&format!("{url}pub"), &[], Limits::default())
            .await
            .unwrap();
        let started = Instant::now();
        let read = std::rc::Rc::new(std::cell::Cell::new(0usize));
        let progress = std::rc::Rc::new(feedrelay::io::local::WakeFlag::new());
        let reader = feedrelay::io::rt::spawn({
            let (read, progress) = (read.clone(), progress.clone());
            async move {
                for expected in 0..MESSAGES {
                    match fast.recv().await.unwrap() {
                        Incoming::Message(MessageKind::Text, m) => {
                            assert_eq!(seq_of(&m), expected)
                        }
                        other => panic!("{other:?}"),
                    }
                    read.set(expected + 1);
                    progress.raise();
                }
            }
        });
        let pad = "x".repeat(PAD);
        for seq in 0..MESSAGES {
            while seq >= read.get() + WINDOW {
                progress.wait().await;
            }
            let m = format!(r#"{{"s":"T","seq":{seq},"pad":"{pad}"}}"#);
            publ.send(MessageKind::Text, m.as_bytes()).await.unwrap();
        }
        reader.await.unwrap();
        started.elapsed()
    })
}

/// Reads what the stalled subscriber was sent, until the relay closes it or 2 s of
/// silence; returns the sequence numbers seen and the close code, if any.
fn drain_stalled(raw: &mut Raw) -> (Vec<usize>, Option<u16>) {
    raw.s
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut seqs = Vec::new();
    let mut close = None;
    while let Some((first, payload)) = raw.recv_or_timeout() {
        match first {
            0x81 => seqs.push(seq_of(&payload)),
            0x88 => {
                close = Some(u16::from_be_bytes([payload[0], payload[1]]));
                break;
            }
            _ => {}
        }
    }
    (seqs, close)
}

#[test]
fn drop_policy_counts_drops_and_keeps_order() {
    let (mut server, mut slow) = stall_one_subscriber("drop");
    let (seqs, close) = drain_stalled(&mut slow);
    assert_eq!(close, None);
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "order kept across drops"
    );
    assert!(seqs.len() < MESSAGES, "some were dropped");
    drop(slow);
    assert_eq!(server.terminate().code(), Some(0));
    let out = server.output();
    let dropped = MESSAGES - seqs.len();
    assert!(
        out.contains(&format!("queue full {dropped},")),
        "{dropped} drops expected in: {out}"
    );
    assert!(
        out.contains(&format!("dropped on topic T: {dropped}")),
        "{out}"
    );
}

#[test]
fn conflate_policy_keeps_the_latest_and_counts() {
    let (mut server, mut slow) = stall_one_subscriber("conflate");
    let (seqs, _) = drain_stalled(&mut slow);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "order kept");
    assert_eq!(
        seqs.last(),
        Some(&(MESSAGES - 1)),
        "the latest message is never lost"
    );
    drop(slow);
    assert_eq!(server.terminate().code(), Some(0));
    let out = server.output();
    assert!(
        out.contains(&format!("conflated {},", MESSAGES - seqs.len())),
        "{out}"
    );
}

#[test]
fn disconnect_policy_cuts_the_slow_subscriber_only() {
    let (mut server, mut slow) = stall_one_subscriber("disconnect");
    let (seqs, close) = drain_stalled(&mut slow);
    assert!(seqs.len() < MESSAGES);
    // Either our 1008 close got through, or the subscriber was cut off after the linger
    // period because its socket was full: in both cases, the connection is gone.
    if let Some(code) = close {
        assert_eq!(code, 1008);
    } else {
        let mut rest = Vec::new();
        let _ = slow.s.read_to_end(&mut rest);
    }
    drop(slow);
    assert_eq!(server.terminate().code(), Some(0));
    let out = server.output();
    assert!(out.contains("slow consumers disconnected 1;"), "{out}");
}

/// `[topic_policies]` re-read on SIGHUP: the relay starts with `drop` for everything;
/// after the reload topic T is `disconnect`, and a stalled subscriber of T is cut.
#[test]
fn topic_policies_follow_a_sighup() {
    let mut server = Server::relay(&["--workers", "2"], Some(&config("drop")));
    let path = server.config_file().unwrap().to_owned();
    std::fs::write(
        &path,
        format!("{}[topic_policies]\nT = \"disconnect\"\n", config("drop")),
    )
    .unwrap();
    server.hangup();
    assert!(server.wait_for_log("reloaded on SIGHUP", Duration::from_secs(5)));
    // Workers pick a reload up within a second.
    std::thread::sleep(Duration::from_millis(1500));
    let mut slow = stalled_subscriber(&server);
    run_with_stalled_subscriber(&server);
    let (seqs, _) = drain_stalled(&mut slow);
    assert!(seqs.len() < MESSAGES);
    drop(slow);
    assert_eq!(server.terminate().code(), Some(0));
    let out = server.output();
    assert!(out.contains("slow consumers disconnected 1;"), "{out}");
}
