//! Snapshots over real sockets: a subscriber that joins mid-stream with `snapshot=1`
//! (or `"snapshot":true` in a subscribe op) gets its `subscribed` reply, then the last
//! message of each topic, then the live stream, with no gap and no duplicate, while
//! publishers on both workers keep publishing.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{Raw, Server};

const TOPICS: usize = 4;

fn seq_of(text: &str) -> (String, u64) {
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    (
        v["s"].as_str().unwrap().to_owned(),
        v["seq"].as_u64().unwrap(),
    )
}

/// Publishers, one per topic (on whichever worker each lands), each sending its topic's
/// `seq` 0, 1, 2, ... until `stop`; returns how many each sent.
fn publish_until(
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<u64>> {
    (0..TOPICS)
        .map(|t| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut p = Raw::publish(addr);
                let mut seq = 0;
                while !stop.load(Ordering::Relaxed) {
                    let m = format!(r#"{{"s":"T{t}","seq":{seq},"pad":"{}"}}"#, "x".repeat(64));
                    p.send(0x81, m.as_bytes());
                    seq += 1;
                    if seq % 4 == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                seq
            })
        })
        .collect()
}

/// What each publisher sent, once they stopped (`None` while they run).
type Sent = std::sync::Mutex<Option<HashMap<String, u64>>>;

/// Reads a snapshot subscription as it arrives (a subscriber that does not read would
/// have its queue overflow): the reply first, then per topic consecutive `seq`s from
/// the snapshot on, until each topic reached what `last` says was sent (once known).
/// Returns the first `seq` seen per topic.
fn check_stream(raw: &mut Raw, last: &Sent) -> HashMap<String, u64> {
    let (first, reply) = raw.recv().expect("the reply");
    assert_eq!(first, 0x81);
    let reply = String::from_utf8(reply).unwrap();
    assert!(
        reply.contains(r#""event":"subscribed""#),
        "reply first, got {reply}"
    );
    let topics: Vec<String> = (0..TOPICS).map(|t| format!("T{t}")).collect();
    consecutive_until_sent(raw, last, &topics)
}

/// Reads until each of `topics` reached what `last` says was sent (messages of other
/// topics are passed over), checking each topic's `seq`s consecutive from the first
/// one seen, which it returns per topic. Nothing for 10 s once the publishers
/// stopped is a stall.
fn consecutive_until_sent(raw: &mut Raw, last: &Sent, topics: &[String]) -> HashMap<String, u64> {
    let mut next: HashMap<String, u64> = HashMap::new();
    let mut firsts = HashMap::new();
    let done = |next: &HashMap<String, u64>| {
        last.lock().unwrap().as_ref().is_some_and(|last| {
            topics
                .iter()
                .all(|t| next.get(t).is_some_and(|&n| n >= last[t]))
        })
    };
    raw.s
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut quiet = 0;
    while !done(&next) {
        let Some((_, payload)) = raw.recv_or_timeout() else {
            // Nothing for a while: fine while the publishers still run (what was sent
            // is known only when they stop), a stall after.
            quiet += 1;
            assert!(
                quiet < 100,
                "stalled at {next:?}, sent {:?}",
                last.lock().unwrap()
            );
            continue;
        };
        quiet = 0;
        let (topic, seq) = seq_of(std::str::from_utf8(&payload).unwrap());
        if !topics.contains(&topic) {
            continue;
        }
        match next.get(&topic) {
            None => {
                firsts.insert(topic.clone(), seq);
            }
            Some(&want) => assert_eq!(seq, want, "{topic}: gap or duplicate"),
        }
        next.insert(topic, seq + 1);
    }
    firsts
}

#[test]
fn late_subscribers_get_the_last_values_then_the_stream_without_gap_or_duplicate() {
    // Queues large enough that a test reader never falls behind into drops, and
    // `disconnect` if one did: any gap seen is the relay's.
    let server = Server::relay(
        &["--workers", "2"],
        Some("queue_max_messages = 1000000\nqueue_max_bytes = 268435456\nslow_consumer = \"disconnect\"\n"),
    );
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let publishers = publish_until(addr, Arc::clone(&stop));
    std::thread::sleep(Duration::from_millis(300));
    let topics: Vec<String> = (0..TOPICS).map(|t| format!("T{t}")).collect();
    let last = Arc::new(std::sync::Mutex::new(None));
    // Joiners at different moments, on both workers (connections spread by the kernel).
    let mut joiners = Vec::new();
    for i in 0..8 {
        std::thread::sleep(Duration::from_millis(40));
        let path = if i % 2 == 0 {
            format!("/ws?topics={}&snapshot=1", topics.join(","))
        } else {
            "/ws?topics=*&snapshot=1".to_owned()
        };
        let (mut raw, head) = Raw::handshake(addr, &path, "");
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        raw.s
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let last = Arc::clone(&last);
        joiners.push(std::thread::spawn(move || check_stream(&mut raw, &last)));
    }
    // One that changes its topics: T0 first, then T1-T3 with a snapshot.
    let mut changer = Raw::subscribe(addr, "T0");
    changer
        .s
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    changer.send(
        0x81,
        br#"{"op":"subscribe","topics":["T1","T2","T3"],"snapshot":true}"#,
    );
    let changer = {
        let last = Arc::clone(&last);
        std::thread::spawn(move || read_changer(&mut changer, &last))
    };
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let sent: HashMap<String, u64> = publishers
        .into_iter()
        .enumerate()
        .map(|(t, p)| (format!("T{t}"), p.join().unwrap()))
        .collect();
    *last.lock().unwrap() = Some(sent);
    if std::env::var("DEBUG_SNAPSHOT").is_ok() {
        std::thread::sleep(Duration::from_secs(3));
        let mut server = server;
        server.terminate();
        println!("{}", server.output());
        return;
    }
    for joiner in joiners {
        let firsts = joiner.join().unwrap();
        assert_eq!(
            firsts.len(),
            TOPICS,
            "every topic had a last value: {firsts:?}"
        );
        assert!(
            firsts.values().all(|&s| s > 0),
            "joined mid-stream: {firsts:?}"
        );
    }
    changer.join().unwrap();
}

/// The subscriber that changes its topics: T0 messages flow throughout; after the
/// reply to its second request, each of T1-T3 starts at its snapshot and runs on
/// without a gap or a duplicate until what was sent.
fn read_changer(changer: &mut Raw, last: &Sent) {
    let reply = loop {
        let (_, p) = changer.recv().unwrap();
        let text = String::from_utf8(p).unwrap();
        if text.contains("subscribed") {
            break text;
        }
        assert!(text.contains(r#""s":"T0""#), "{text}");
    };
    assert!(reply.contains("T1"), "{reply}");
    let topics = ["T1", "T2", "T3"].map(String::from);
    consecutive_until_sent(changer, last, &topics);
}

#[test]
fn a_snapshot_of_an_idle_topic_is_its_last_message_and_off_means_refused() {
    let server = Server::relay(&["--workers", "2"], None);
    let mut p = Raw::publish(server.addr);
    for seq in 0..3 {
        p.send(0x81, format!(r#"{{"s":"IDLE","seq":{seq}}}"#).as_bytes());
    }
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..4 {
        let (mut raw, _) = Raw::handshake(server.addr, "/ws?topics=IDLE,NEVER&snapshot=1", "");
        let (_, reply) = raw.recv().unwrap();
        assert!(String::from_utf8_lossy(&reply).contains("subscribed"));
        let (_, m) = raw.recv().unwrap();
        assert_eq!(seq_of(std::str::from_utf8(&m).unwrap()), ("IDLE".into(), 2));
    }
    let off = Server::relay(&["--workers", "1"], Some("last_value_max_topics = 0\n"));
    let mut raw = Raw::subscribe(off.addr, "A");
    raw.send(
        0x81,
        br#"{"op":"subscribe","topics":["B"],"snapshot":true}"#,
    );
    let (_, m) = raw.recv().unwrap();
    assert!(String::from_utf8_lossy(&m).contains("snapshots are off"));
}

/// A `*` snapshot larger than the subscriber's queue is streamed as it reads, not a
/// 1008: 2,000 cached topics to a subscriber whose queue holds 16; then a live message
/// after the snapshot, in order.
#[test]
fn a_wildcard_snapshot_larger_than_the_queue_is_streamed() {
    let server = Server::relay(
        &["--workers", "2"],
        Some("queue_max_messages = 16\nslow_consumer = \"disconnect\"\n"),
    );
    let addr = server.addr;
    let mut p = Raw::publish(addr);
    for i in 0..2_000 {
        p.send(0x81, format!(r#"{{"s":"K{i}","v":{i}}}"#).as_bytes());
    }
    // The last one ingested: all before it are cached.
    let mut probe = Raw::subscribe(addr, "K1999");
    p.send(0x81, br#"{"s":"K1999","v":"again"}"#);
    // (It may see K1999's first message too, if it subscribed before that was routed.)
    while !String::from_utf8_lossy(&probe.recv().expect("the probe's message").1).contains("again")
    {
    }
    let (mut sub, head) = Raw::handshake(addr, "/ws?topics=*&snapshot=1", "");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let (_, reply) = sub.recv().expect("the reply");
    assert!(String::from_utf8_lossy(&reply).contains("subscribed"));
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 2_000 {
        let (op, m) = sub.recv().expect("a snapshot frame, not a close");
        assert_eq!(op, 0x81, "{}", String::from_utf8_lossy(&m));
        let v: serde_json::Value = serde_json::from_slice(&m).unwrap();
        seen.insert(v["s"].as_str().unwrap().to_owned());
    }
    p.send(0x81, br#"{"s":"K7","v":"live"}"#);
    let (_, m) = sub.recv().expect("the live message after the snapshot");
    assert_eq!(m, br#"{"s":"K7","v":"live"}"#);
}
