//! The relay's own sequence (`seq=1`): text messages arrive in an envelope with the
//! topic's `epoch` and `seq`, counted from 1 with no gap, across workers; other
//! subscribers get the bytes as published; a snapshot tells where the count stands;
//! a restarted relay counts in a new epoch.

mod common;

use common::{Raw, Server};

fn envelope(m: &[u8]) -> serde_json::Value {
    serde_json::from_slice(m).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(m)))
}

/// Reads until a data frame (not a reply or event) arrives.
fn next_data(sub: &mut Raw) -> (u8, Vec<u8>) {
    loop {
        let (op, m) = sub.recv().expect("a frame");
        let text = String::from_utf8_lossy(&m);
        if op == 0x81 && text.starts_with("{\"event\"") {
            continue;
        }
        return (op, m);
    }
}

/// A relay on two workers keeping 16 messages per topic, a `seq=1` subscriber at
/// `path` (its reply read) and a publisher.
fn resumable(path: &str) -> (Server, Raw, Raw) {
    let server = Server::relay(
        &["--workers", "2"],
        Some("history_messages_per_topic = 16\n"),
    );
    let (mut first, _) = Raw::handshake(server.addr, path, "");
    let _ = first.recv().expect("reply");
    let publ = Raw::publish(server.addr);
    (server, first, publ)
}

#[test]
fn subscribers_that_ask_get_envelopes_the_others_the_bytes_as_sent() {
    let server = Server::relay(&["--workers", "2"], None);
    let addr = server.addr;
    // Several of each, so both workers hold some.
    let mut numbered: Vec<Raw> = (0..4)
        .map(|_| Raw::handshake(addr, "/ws?topics=T&seq=1", "").0)
        .collect();
    let mut plain: Vec<Raw> = (0..4).map(|_| Raw::subscribe(addr, "T")).collect();
    for s in &mut numbered {
        let (_, reply) = s.recv().expect("reply");
        assert!(String::from_utf8_lossy(&reply).contains("subscribed"));
    }
    let mut publ = Raw::publish(addr);
    for i in 1..=5 {
        publ.send(0x81, format!(r#"{{"s":"T","px":{i}}}"#).as_bytes());
    }
    publ.send(0x82, br#"{"s":"T","bin":1}"#);
    let mut epochs = std::collections::HashSet::new();
    for s in &mut numbered {
        for i in 1..=5u64 {
            let (op, m) = next_data(s);
            assert_eq!(op, 0x81);
            let v = envelope(&m);
            assert_eq!(v["topic"], "T");
            assert_eq!(v["seq"], i, "{v}");
            assert_eq!(v["msg"]["px"], i);
            epochs.insert(v["epoch"].as_str().unwrap().to_owned());
        }
        let (op, m) = next_data(s);
        assert_eq!(
            (op, m.as_slice()),
            (0x82, &br#"{"s":"T","bin":1}"#[..]),
            "binary unwrapped"
        );
    }
    assert_eq!(epochs.len(), 1, "one count for the topic: {epochs:?}");
    assert_eq!(epochs.iter().next().unwrap().len(), 16);
    for s in &mut plain {
        for i in 1..=5 {
            let (_, m) = next_data(s);
            assert_eq!(m, format!(r#"{{"s":"T","px":{i}}}"#).as_bytes());
        }
    }
    // A snapshot tells where the count stands.
    let (mut late, _) = Raw::handshake(addr, "/ws?topics=T&seq=1&snapshot=1", "");
    let (_, reply) = late.recv().expect("reply");
    assert!(String::from_utf8_lossy(&reply).contains("subscribed"));
    let (op, m) = late.recv().expect("the snapshot");
    // The last value is the binary message: as it was sent.
    assert_eq!((op, m.as_slice()), (0x82, &br#"{"s":"T","bin":1}"#[..]));
    publ.send(0x81, br#"{"s":"T","px":6}"#);
    let v = envelope(&next_data(&mut late).1);
    assert_eq!(v["seq"], 6, "seq counts the topic's text messages: {v}");
    let (mut snap, _) = Raw::handshake(addr, "/ws?topics=T&seq=1&snapshot=1", "");
    let _ = snap.recv().expect("reply");
    let v = envelope(&snap.recv().expect("the snapshot").1);
    assert_eq!(
        (v["seq"].as_u64(), v["msg"]["px"].as_u64()),
        (Some(6), Some(6))
    );
}

#[test]
fn a_restarted_relay_counts_in_a_new_epoch() {
    let epoch_of = || {
        let server = Server::relay(&["--workers", "1"], None);
        let (mut s, _) = Raw::handshake(server.addr, "/ws?topics=T&seq=1", "");
        let _ = s.recv().expect("reply");
        Raw::publish(server.addr).send(0x81, br#"{"s":"T"}"#);
        let v = envelope(&next_data(&mut s).1);
        assert_eq!(v["seq"], 1);
        v["epoch"].as_str().unwrap().to_owned()
    };
    assert_ne!(epoch_of(), epoch_of());
}

/// Resume: a subscriber that reconnects with where it left a topic gets exactly what
/// came after (no gap, no copy), then the live stream; one whose position the history
/// no longer reaches (or of another epoch) gets a `reset` event and the last message.
#[test]
fn a_reconnecting_subscriber_resumes_where_it_left_off() {
    let (server, mut first, mut publ) = resumable("/ws?topics=T&seq=1");
    let addr = server.addr;
    let send = |p: &mut Raw, from: u64, to: u64| {
        for i in from..=to {
            p.send(0x81, format!(r#"{{"s":"T","px":{i}}}"#).as_bytes());
        }
    };
    send(&mut publ, 1, 5);
    let mut epoch = String::new();
    for i in 1..=5u64 {
        let v = envelope(&next_data(&mut first).1);
        assert_eq!(v["seq"], i);
        epoch = v["epoch"].as_str().unwrap().to_owned();
    }
    drop(first); // a network cut: it knows it has up to seq 5
    send(&mut publ, 6, 12);
    let (mut again, _) = Raw::handshake(addr, "/ws?seq=1", "");
    again.send(
        0x81,
        format!(r#"{{"op":"subscribe","topics":["T"],"resume":{{"T":["{epoch}",5]}}}}"#).as_bytes(),
    );
    let (_, reply) = again.recv().expect("reply");
    assert!(String::from_utf8_lossy(&reply).contains("subscribed"));
    send(&mut publ, 13, 14);
    for i in 6..=14u64 {
        let v = envelope(&next_data(&mut again).1);
        assert_eq!(
            (v["seq"].as_u64(), v["msg"]["px"].as_u64()),
            (Some(i), Some(i)),
            "{v}"
        );
        assert_eq!(v["epoch"], epoch.as_str());
    }
    // Past what the history holds (16): a reset, then the last message, then live.
    send(&mut publ, 15, 40);
    // (Once the relay has them all: `again` has seen the 40th.)
    while envelope(&next_data(&mut again).1)["seq"] != 40 {}
    let (mut late, _) = Raw::handshake(addr, "/ws?seq=1", "");
    late.send(
        0x81,
        format!(r#"{{"op":"subscribe","topics":["T"],"resume":{{"T":["{epoch}",3]}}}}"#).as_bytes(),
    );
    let _ = late.recv().expect("reply");
    let (_, reset) = late.recv().expect("the reset");
    let r: serde_json::Value = serde_json::from_slice(&reset).unwrap();
    assert_eq!(
        (r["event"].as_str(), r["topic"].as_str()),
        (Some("reset"), Some("T")),
        "{r}"
    );
    assert_eq!(r["seq"], 40);
    let v = envelope(&late.recv().expect("the last message").1);
    assert_eq!(v["seq"], 40);
    send(&mut publ, 41, 41);
    assert_eq!(envelope(&next_data(&mut late).1)["seq"], 41);
    // Another epoch (a restarted relay's, say): a reset too.
    let (mut other, _) = Raw::handshake(addr, "/ws?seq=1", "");
    other.send(
        0x81,
        br#"{"op":"subscribe","topics":["T"],"resume":{"T":["0123456789abcdef",41]}}"#,
    );
    let _ = other.recv().expect("reply");
    let (_, reset) = other.recv().expect("the reset");
    assert!(String::from_utf8_lossy(&reset).contains(r#""event":"reset""#));
}

/// `*` resumes too: every topic the relay holds, each from its position (or a
/// snapshot when the subscriber gives none for it).
#[test]
fn a_wildcard_subscriber_resumes_each_topic() {
    let (server, mut first, mut publ) = resumable("/ws?topics=*&seq=1");
    let addr = server.addr;
    for i in 1..=3 {
        publ.send(0x81, format!(r#"{{"s":"A","n":{i}}}"#).as_bytes());
        publ.send(0x81, format!(r#"{{"s":"B","n":{i}}}"#).as_bytes());
    }
    let mut epochs = std::collections::HashMap::new();
    for _ in 0..6 {
        let v = envelope(&next_data(&mut first).1);
        epochs.insert(
            v["topic"].as_str().unwrap().to_owned(),
            v["epoch"].as_str().unwrap().to_owned(),
        );
    }
    drop(first);
    for i in 4..=6 {
        publ.send(0x81, format!(r#"{{"s":"A","n":{i}}}"#).as_bytes());
    }
    publ.send(0x81, br#"{"s":"C","n":1}"#);
    // Wait until the relay has them all (a probe sees C).
    let mut probe = Raw::subscribe(addr, "C");
    publ.send(0x81, br#"{"s":"C","n":2}"#);
    while !String::from_utf8_lossy(&probe.recv().unwrap().1).contains(r#""n":2"#) {}
    let (mut again, _) = Raw::handshake(addr, "/ws?seq=1", "");
    let resume = format!(
        r#"{{"op":"subscribe","topics":["*"],"resume":{{"A":["{}",2],"B":["{}",3]}}}}"#,
        epochs["A"], epochs["B"]
    );
    again.send(0x81, resume.as_bytes());
    let _ = again.recv().expect("reply");
    let mut got: Vec<(String, u64)> = Vec::new();
    while got.len() < 5 {
        let v = envelope(&next_data(&mut again).1);
        got.push((
            v["topic"].as_str().unwrap().to_owned(),
            v["seq"].as_u64().unwrap(),
        ));
    }
    got.sort();
    let want: Vec<(String, u64)> = vec![
        ("A".into(), 3),
        ("A".into(), 4),
        ("A".into(), 5),
        ("A".into(), 6),
        ("C".into(), 2),
    ];
    assert_eq!(
        got, want,
        "A after 2, nothing of B (up to date), C's last value"
    );
}
