//! History that outlives a relay (`[nats] history = "jetstream"`), against a real
//! `nats-server -js` on loopback: an importing relay numbers each topic as its
//! exporting origin does, so a subscriber can move between relays without a reset; a
//! restarted importing relay reads the stream back before it takes connections, so its
//! subscribers resume with nothing missed and nothing twice; a server without
//! JetStream costs the history (a `reset`), never the start.

mod common;

use std::time::{Duration, Instant};

use common::nats::NatsServer;
use common::{publish_until_relayed, Raw, Server};

/// A relay with `[nats]` on `url`, `extra` lines in the section, keeping 1,000
/// messages per topic.
fn relay(url: &str, extra: &str) -> Server {
    let toml = format!(
        "metrics_on_data_port = true\ntopic_pointer = \"/topic\"\n\
         history_messages_per_topic = 1000\n\
         [nats]\nurls = [{url:?}]\nreconnect_initial_ms = 50\nreconnect_max_ms = 500\n\
         history_fill_timeout_ms = 5000\n{extra}\n"
    );
    let r = Server::relay(&["--workers", "2"], Some(&toml));
    assert!(
        r.wait_for_log("nats: connected", Duration::from_secs(10)),
        "{}",
        r.log()
    );
    r
}

fn exporter(url: &str) -> Server {
    relay(url, "export = true\nhistory = \"jetstream\"")
}

fn importer(url: &str) -> Server {
    relay(url, "import = [\"feedrelay.>\"]\nhistory = \"jetstream\"")
}

fn envelope(m: &[u8]) -> serde_json::Value {
    serde_json::from_slice(m).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(m)))
}

/// Publishes messages `from..=to` of topics `A` and `B` (each numbered in `n`).
fn send(p: &mut Raw, from: u64, to: u64) {
    for n in from..=to {
        for t in ["A", "B"] {
            p.send(0x81, format!(r#"{{"topic":"{t}","n":{n}}}"#).as_bytes());
        }
    }
}

/// Reads envelopes until each of `A` and `B` reached `n` = `to`; returns what came
/// per topic as (epoch, seq, n), and every event seen.
fn read_until(sub: &mut Raw, to: u64) -> (Vec<(String, u64, u64)>, Vec<String>) {
    let (mut got, mut events) = (Vec::new(), Vec::new());
    let mut last = [0u64; 2];
    let end = Instant::now() + Duration::from_secs(20);
    while last.iter().any(|&l| l < to) {
        assert!(Instant::now() < end, "stopped at {last:?}; {events:?}");
        let (_, m) = sub.recv().expect("a frame");
        let v = envelope(&m);
        if v.get("event").is_some() || v.get("type").is_some() {
            events.push(v.to_string());
            continue;
        }
        if v["msg"]["topic"] == "probe" {
            continue;
        }
        let i = usize::from(v["topic"] == "B");
        let n = v["msg"]["n"].as_u64().expect("n");
        last[i] = n;
        let epoch = v["epoch"].as_str().expect("epoch").to_owned();
        got.push((
            v["topic"].as_str().unwrap().to_owned(),
            epoch,
            v["seq"].as_u64().unwrap(),
            n,
        ));
    }
    let got = got
        .into_iter()
        .map(|(t, e, s, n)| (format!("{t}/{e}"), s, n))
        .collect();
    (got, events)
}

/// The exporter's own numbering: what a `seq=1` subscriber of it sees.
fn origin_positions(sub: &mut Raw, to: u64) -> Vec<(String, u64, u64)> {
    read_until(sub, to).0
}

#[test]
fn a_restarted_importing_relay_resumes_its_subscribers_from_the_stream() {
    let dir = common::TempDir::new("jetstream");
    let store = dir.0.display().to_string();
    let nats = NatsServer::start_with(&["-js", "-sd", &store]);
    let url = nats.url();
    let origin = exporter(&url);
    let mut edge = importer(&url);
    assert!(edge.wait_for_log("history read back", Duration::from_secs(10)));
    {
        let mut p = Raw::publish(origin.addr);
        let mut probe = Raw::subscribe(edge.addr, "probe");
        publish_until_relayed(&mut p, &mut probe, br#"{"topic":"probe"}"#, &edge);
    }
    let mut publisher = Raw::publish(origin.addr);
    let (mut at_origin, _) = Raw::handshake(origin.addr, "/ws?topics=A,B&seq=1", "");
    let (mut at_edge, _) = Raw::handshake(edge.addr, "/ws?topics=A,B&seq=1", "");
    let _ = (at_origin.recv(), at_edge.recv());
    send(&mut publisher, 1, 50);
    let (seen, events) = read_until(&mut at_edge, 50);
    assert!(events.is_empty(), "{events:?}");
    let (mut ours, mut theirs) = (seen.clone(), origin_positions(&mut at_origin, 50));
    ours.sort();
    theirs.sort();
    assert_eq!(
        ours, theirs,
        "the edge numbers each topic as its origin does"
    );
    let epoch_of = |topic: &str| -> String {
        let (key, ..) = seen.iter().find(|(k, ..)| k.starts_with(topic)).unwrap();
        key[2..].to_owned()
    };
    let (epoch_a, epoch_b) = (epoch_of("A/"), epoch_of("B/"));
    let last_seq = |topic: &str| {
        seen.iter()
            .filter(|(k, ..)| k.starts_with(topic))
            .map(|(_, s, _)| *s)
            .max()
            .unwrap()
    };
    let (seq_a, seq_b) = (last_seq("A/"), last_seq("B/"));
    drop(at_edge);

    // The edge goes away; the origin goes on; a new edge process starts.
    let stopped = edge.terminate();
    assert!(stopped.success(), "{stopped:?}");
    send(&mut publisher, 51, 120);
    origin_positions(&mut at_origin, 120);
    let edge = importer(&url);
    assert!(
        edge.wait_for_log("history read back", Duration::from_secs(10)),
        "{}",
        edge.log()
    );
    let (mut again, _) = Raw::handshake(edge.addr, "/ws?seq=1", "");
    again.send(
        0x81,
        format!(
            r#"{{"op":"subscribe","topics":["A","B"],"resume":{{"A":["{epoch_a}",{seq_a}],"B":["{epoch_b}",{seq_b}]}}}}"#
        )
        .as_bytes(),
    );
    send(&mut publisher, 121, 150);
    let (resumed, events) = read_until(&mut again, 150);
    assert!(
        !events.iter().any(|e| e.contains("reset")),
        "no reset: the history came from the stream; {events:?}"
    );
    for (topic, epoch, from) in [("A", &epoch_a, seq_a), ("B", &epoch_b, seq_b)] {
        let key = format!("{topic}/{epoch}");
        let seqs: Vec<u64> = resumed
            .iter()
            .filter(|(k, ..)| *k == key)
            .map(|(_, s, _)| *s)
            .collect();
        let want: Vec<u64> = (from + 1..=from + 100).collect();
        assert_eq!(
            seqs, want,
            "{topic}: every message after the resume point once, in order, same epoch"
        );
        assert!(
            resumed
                .iter()
                .filter(|(k, ..)| k.starts_with(&format!("{topic}/")))
                .all(|(k, ..)| *k == key),
            "{topic}: one epoch throughout"
        );
    }
    // The stream's 2 x 120 messages (and the probe) were read back.
    let name = "feedrelay_nats_total{event=\"history_read\"}";
    common::wait_metric(edge.addr, None, name, |n| n >= 240);
}

#[test]
fn without_jetstream_the_relay_starts_on_time_and_a_resume_is_a_reset() {
    let nats = NatsServer::start(0);
    let started = Instant::now();
    let edge = importer(&nats.url());
    assert!(
        edge.wait_for_log("starting without it", Duration::from_secs(10)),
        "{}",
        edge.log()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let origin = relay(&nats.url(), "export = true");
    let mut p = Raw::publish(origin.addr);
    let mut probe = Raw::subscribe(edge.addr, "probe");
    publish_until_relayed(&mut p, &mut probe, br#"{"topic":"probe"}"#, &edge);
    send(&mut p, 1, 3);
    let (mut sub, _) = Raw::handshake(edge.addr, "/ws?topics=A&seq=1&snapshot=1", "");
    let _ = sub.recv();
    let v = envelope(&sub.recv().expect("A's last message").1);
    assert_eq!(v["topic"], "A", "{v}");
}

#[test]
fn a_bad_history_setting_is_refused_naming_the_field() {
    let dir = common::TempDir::new("nats-history-config");
    let path = dir.0.join("bad.toml");
    let head = "listen = \"127.0.0.1:0\"\n";
    let nats = "[nats]\nurls = [\"nats://127.0.0.1:4222\"]\nimport = [\"feedrelay.>\"]\n";
    for (top, line, field) in [
        ("", "history = \"jetstream\"", "history_messages_per_topic"),
        (
            "history_messages_per_topic = 8\n",
            "history = \"mongo\"",
            "history",
        ),
        (
            "history_messages_per_topic = 8\n",
            "history_stream = \"a.b\"",
            "nats.history_stream",
        ),
        (
            "history_messages_per_topic = 8\n",
            "history_fill_timeout_ms = 0",
            "nats.history_fill_timeout_ms",
        ),
        (
            "history_messages_per_topic = 8\n",
            "history_fill_max_bytes = 0",
            "nats.history_fill_max_bytes",
        ),
    ] {
        std::fs::write(&path, format!("{head}{top}{nats}{line}\n")).unwrap();
        let (code, out) = common::run_with_config(&path);
        assert_ne!(code, Some(0), "{line}");
        assert!(out.contains(field), "{line}: {out}");
    }
}

#[test]
fn with_no_server_at_start_the_relay_starts_within_the_connect_timeout() {
    let port = common::nats::free_port();
    let toml = format!(
        "topic_pointer = \"/topic\"\nhistory_messages_per_topic = 8\n\
         [nats]\nurls = [\"nats://127.0.0.1:{port}\"]\nimport = [\"feedrelay.>\"]\n\
         history = \"jetstream\"\nconnect_timeout_ms = 500\nhistory_fill_timeout_ms = 30000\n"
    );
    let started = Instant::now();
    let relay = Server::relay(&[], Some(&toml));
    assert!(
        relay.wait_for_log(
            "no server reached within connect_timeout_ms",
            Duration::from_secs(5)
        ),
        "{}",
        relay.log()
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "not held for the fill timeout: {:?}",
        started.elapsed()
    );
    // It serves locally meanwhile.
    let mut p = Raw::publish(relay.addr);
    let mut sub = Raw::subscribe(relay.addr, "A");
    publish_until_relayed(&mut p, &mut sub, br#"{"topic":"A"}"#, &relay);
}
