//! Exchange feeds end to end over loopback: `feedrelay run` dials `feedrelay
//! mock-exchange` processes (ws:// and wss:// with rcgen certificates) and a raw
//! subscriber checks what comes out: TLS trust and refusal, reconnect after an exchange
//! restart, A/B arbitration when a line dies, faulty feeds beside a clean one, and a
//! chain of two relays.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Raw, Server, TempDir};

/// A fresh directory under the system temp dir, removed when the test ends.
fn temp_dir(name: &str) -> TempDir {
    TempDir::new(&format!("feeds-{name}"))
}

/// A `[[feeds]]` table for a mock exchange at `url`, subscribing to every stream.
fn feed(name: &str, url: &str, extra: &str) -> String {
    format!(
        r#"
[[feeds]]
name = "{name}"
url = "{url}"
subscribe = ['{{"method":"SUBSCRIBE","params":["*"],"id":1}}']
seq_pointer = "/data/u"
reconnect_initial_ms = 50
reconnect_max_ms = 400
{extra}
"#
    )
}

/// A `[[feeds]]` table for a wss:// mock exchange whose CA is in `certs`.
fn tls_feed(name: &str, url: &str, certs: &std::path::Path, extra: &str) -> String {
    let ca = certs.join("ca.pem");
    feed(
        name,
        url,
        &format!("ca_file = \"{}\"\n{extra}", ca.display()),
    )
}

const RELAY_HEAD: &str = "topic_pointer = \"/data/s\"\nmetrics_on_data_port = true\n";

/// A trade's topic and sequence number.
fn trade(payload: &[u8]) -> Option<(String, u64)> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    Some((
        v["data"]["s"].as_str()?.to_owned(),
        v["data"]["u"].as_u64()?,
    ))
}

/// Reads text frames until `until` says stop or `limit` passes; returns the payloads.
fn collect(
    sub: &mut Raw,
    limit: Duration,
    mut until: impl FnMut(&[Vec<u8>]) -> bool,
) -> Vec<Vec<u8>> {
    sub.s
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let end = Instant::now() + limit;
    let mut got = Vec::new();
    while Instant::now() < end && !until(&got) {
        if let Some((first, payload)) = sub.recv_or_timeout() {
            if first == 0x81 {
                got.push(payload);
            }
        }
    }
    got
}

/// Per topic: the sequence numbers, checked strictly consecutive (no gap, no copy, no
/// reorder). Returns messages per topic.
fn assert_consecutive(msgs: &[Vec<u8>]) -> HashMap<String, Vec<u64>> {
    let mut by_topic: HashMap<String, Vec<u64>> = HashMap::new();
    for m in msgs {
        let (topic, seq) =
            trade(m).unwrap_or_else(|| panic!("not a trade: {}", String::from_utf8_lossy(m)));
        let seqs = by_topic.entry(topic.clone()).or_default();
        if let Some(&last) = seqs.last() {
            assert_eq!(seq, last + 1, "topic {topic}: {last} then {seq}");
        }
        seqs.push(seq);
    }
    by_topic
}

/// A subscriber to every topic, without the relay's events (tests/feed_events.rs has
/// those): every frame it gets is a relayed message.
fn subscriber(relay: &Server) -> Raw {
    Raw::subscribe(relay.addr, "*&events=0")
}

#[test]
fn wss_feed_trusted_by_ca_file_relays_in_order_and_answers_pings() {
    let dir = temp_dir("wss-ok");
    let certs = dir.join("certs");
    let certs_arg = certs.display().to_string();
    let exchange = Server::mock_exchange(&[
        "--tls-self-signed",
        &certs_arg,
        "--rate",
        "1000",
        "--ping-ms",
        "200",
    ]);
    let url = format!("wss://localhost:{}/stream", exchange.addr.port());
    let toml = format!("{RELAY_HEAD}{}", tls_feed("tls", &url, &certs, ""));
    let mut relay = Server::relay(&["--workers", "1"], Some(&toml));
    let mut sub = subscriber(&relay);
    // 1.5 s at 1000 trades/s; the exchange pings every 200 ms and drops a client that
    // leaves three unanswered, so one session throughout means the pings were answered.
    let msgs = collect(&mut sub, Duration::from_secs(10), |g| g.len() >= 1500);
    assert!(msgs.len() >= 1500, "only {} messages", msgs.len());
    let by_topic = assert_consecutive(&msgs);
    assert_eq!(by_topic.len(), 20, "every symbol: {:?}", by_topic.keys());
    let metrics = common::http_get(relay.addr, "/metrics");
    for want in [
        "feedrelay_feed_connected{feed=\"tls\",group=\"tls\"} 1",
        "feedrelay_feed_reconnects_total{feed=\"tls\",group=\"tls\"} 0",
        "feedrelay_group_missing_total{group=\"tls\"} 0",
    ] {
        assert!(metrics.contains(want), "{want} not in {metrics}");
    }
    relay.terminate();
    let out = relay.output();
    assert!(
        out.contains("feed tls (group tls): sessions 1, reconnects 0"),
        "{out}"
    );
    assert!(out.contains("gaps 0 (0 missing)"), "{out}");
}

#[test]
fn wss_over_ipv6_loopback_verifies_the_certificate_ip() {
    let dir = temp_dir("wss-v6");
    let certs = dir.join("certs");
    let certs_arg = certs.display().to_string();
    let exchange = Server::mock_exchange(&["--listen", "[::1]:0", "--tls-self-signed", &certs_arg]);
    let url = format!("wss://[::1]:{}/stream", exchange.addr.port());
    let toml = format!("{RELAY_HEAD}{}", tls_feed("v6", &url, &certs, ""));
    let mut relay = Server::relay(&["--workers", "1"], Some(&toml));
    let mut sub = subscriber(&relay);
    let msgs = collect(&mut sub, Duration::from_secs(10), |g| g.len() >= 200);
    assert!(msgs.len() >= 200, "{}", relay.log());
    assert_consecutive(&msgs);
    relay.terminate();
    assert!(relay
        .output()
        .contains("feed v6 (group v6): sessions 1, reconnects 0"));
}

#[test]
fn a_feed_without_the_required_header_is_refused_and_retried() {
    let exchange = Server::mock_exchange(&["--require-header", "X-Api-Key=k3y"]);
    let toml = format!(
        "{RELAY_HEAD}{}",
        feed("nokey", &format!("ws://{}/stream", exchange.addr), "")
    );
    let mut relay = Server::relay(&["--workers", "1"], Some(&toml));
    assert!(relay.wait_for_log("feed=nokey", Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(300));
    let log = relay.log();
    assert!(log.contains("401"), "{log}");
    relay.terminate();
    let out = relay.output();
    assert!(
        out.contains("feed nokey (group nokey): sessions 0"),
        "{out}"
    );
    assert!(!out.contains("reconnects 0,"), "retried: {out}");
}

#[test]
fn a_quiet_line_is_pinged_and_kept_while_a_stalled_one_is_redialled() {
    // Both go quiet after 20 trades and never ping; the quiet one still answers pings.
    // The quiet one is wss://: the ping is written through TLS while a read waits.
    let dir = temp_dir("quiet");
    let certs = dir.join("certs");
    let certs_arg = certs.display().to_string();
    let quiet = Server::mock_exchange(&[
        "--tls-self-signed",
        &certs_arg,
        "--quiet-after",
        "20",
        "--ping-ms",
        "600000",
    ]);
    let stalled = Server::mock_exchange(&["--stall-after", "20", "--ping-ms", "600000"]);
    let toml = format!(
        "{RELAY_HEAD}{}{}",
        tls_feed(
            "quiet",
            &format!("wss://localhost:{}/stream", quiet.addr.port()),
            &certs,
            "stale_after_ms = 400"
        ),
        feed(
            "stalled",
            &format!("ws://{}/stream", stalled.addr),
            "stale_after_ms = 400"
        ),
    );
    let mut relay = Server::relay(&["--workers", "1"], Some(&toml));
    std::thread::sleep(Duration::from_millis(2500));
    relay.terminate();
    let out = relay.output();
    let line = |name: &str| {
        out.lines()
            .find(|l| l.contains(&format!("feed {name} ")))
            .unwrap_or_default()
            .to_owned()
    };
    let q = line("quiet");
    assert!(q.contains("sessions 1, reconnects 0"), "{q}\n{out}");
    let pings: u64 = q
        .rsplit("pings ")
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(pings >= 5, "pinged every 200 ms of quiet: {q}");
    let s = line("stalled");
    assert!(!s.contains("reconnects 0,"), "{s}");
    assert!(
        relay
            .log()
            .contains("stale: nothing received for 400 ms (pinged)"),
        "{}",
        relay.log()
    );
}

#[test]
fn wrong_ca_and_wrong_host_name_are_refused_with_a_clear_log_line() {
    let dir = temp_dir("wss-bad");
    let (good, other) = (dir.join("good"), dir.join("other"));
    let (good_arg, other_arg) = (good.display().to_string(), other.display().to_string());
    let exchange = Server::mock_exchange(&["--tls-self-signed", &good_arg]);
    // A second CA the exchange's certificate was not signed by.
    let _unrelated = Server::mock_exchange(&["--tls-self-signed", &other_arg]);
    // A certificate for another name, signed by a CA the relay trusts.
    let named = dir.join("named");
    let named_arg = named.display().to_string();
    let misnamed = Server::mock_exchange(&[
        "--tls-self-signed",
        &named_arg,
        "--tls-name",
        "exchange.test",
    ]);
    let port = exchange.addr.port();
    let toml = format!(
        "{RELAY_HEAD}{}{}",
        tls_feed(
            "wrong-ca",
            &format!("wss://localhost:{port}/stream"),
            &other,
            ""
        ),
        tls_feed(
            "wrong-host",
            &format!("wss://127.0.0.1:{}/stream", misnamed.addr.port()),
            &named,
            ""
        ),
    );
    let mut relay = Server::relay(&["--workers", "1"], Some(&toml));
    assert!(
        relay.wait_for_log("feed=wrong-ca", Duration::from_secs(10)),
        "{}",
        relay.log()
    );
    assert!(
        relay.wait_for_log("feed=wrong-host", Duration::from_secs(10)),
        "{}",
        relay.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    let log = relay.log();
    let line = |feed: &str| {
        log.lines()
            .find(|l| {
                (l.contains(&format!("feed=\"{feed}\"")) || l.contains(&format!("feed={feed} ")))
                    && l.contains("feed down")
            })
            .unwrap_or_default()
            .to_owned()
    };
    let ca = line("wrong-ca");
    assert!(
        ca.contains("feed down") && ca.contains("UnknownIssuer"),
        "{ca}"
    );
    let host = line("wrong-host");
    assert!(
        host.contains("feed down") && host.contains("certificate not valid for name"),
        "{host}"
    );
    // Each failure is logged once, however often it is retried.
    assert_eq!(log.matches("feed down").count(), 2, "{log}");
    relay.terminate();
    let out = relay.output();
    assert!(out.contains("messages in 0 "), "nothing relayed: {out}");
    assert!(
        out.contains("feed wrong-ca (group wrong-ca): sessions 0"),
        "{out}"
    );
}

#[test]
fn exchange_restart_resumes_after_backoff_with_subscribe_resent() {
    let exchange = Server::mock_exchange(&["--rate", "1000"]);
    let addr: SocketAddr = exchange.addr;
    let toml = format!(
        "{RELAY_HEAD}{}",
        feed("restart", &format!("ws://{addr}/stream"), "")
    );
    let mut relay = Server::relay(&["--workers", "1"], Some(&toml));
    let mut sub = subscriber(&relay);
    let before = collect(&mut sub, Duration::from_secs(10), |g| g.len() >= 200);
    assert!(before.len() >= 200);
    drop(exchange); // SIGKILL: no close frame, as when a process dies.
    assert!(
        relay.wait_for_log("feed down", Duration::from_secs(10)),
        "{}",
        relay.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    // The same port again; the mock answers nothing until it is subscribed, so data
    // after the restart proves the subscribe message was sent again.
    let listen = addr.to_string();
    let restarted = Instant::now();
    let _exchange = Server::mock_exchange(&["--listen", &listen, "--rate", "1000"]);
    let after = collect(&mut sub, Duration::from_secs(10), |g| !g.is_empty());
    let first = restarted.elapsed();
    assert!(
        !after.is_empty(),
        "no data after the restart: {}",
        relay.log()
    );
    let rest = collect(&mut sub, Duration::from_secs(10), |g| g.len() >= 200);
    // Per topic, in order across the restart; the trades made while it was down are a
    // gap the relay counts (it never invents or hides one).
    let mut all = before.clone();
    all.extend(after);
    all.extend(rest);
    let mut last: HashMap<String, u64> = HashMap::new();
    for m in &all {
        let (t, s) = trade(m).unwrap();
        if let Some(&l) = last.get(&t) {
            assert!(s > l, "{t}: {l} then {s}");
        }
        last.insert(t, s);
    }
    assert!(
        relay.log().contains("feed connected again"),
        "{}",
        relay.log()
    );
    relay.terminate();
    let out = relay.output();
    assert!(
        out.contains("feed restart (group restart): sessions 2"),
        "{out}"
    );
    let missing: u64 = out
        .split("gaps ")
        .nth(1)
        .and_then(|s| s.split(" (").nth(1))
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(
        missing > 0,
        "the downtime shows as missing sequence numbers: {out}"
    );
    println!(
        "exchange restart → first relayed message: {:.1} ms",
        first.as_secs_f64() * 1e3
    );
}

#[test]
fn ab_lines_survive_one_dying_with_every_seq_once_and_in_order() {
    let a = Server::mock_exchange(&["--rate", "1000"]);
    let b = Server::mock_exchange(&["--rate", "1000"]);
    let toml = format!(
        "{RELAY_HEAD}{}{}",
        feed(
            "line-a",
            &format!("ws://{}/stream", a.addr),
            "group = \"ab\""
        ),
        feed(
            "line-b",
            &format!("ws://{}/stream", b.addr),
            "group = \"ab\""
        ),
    );
    let mut relay = Server::relay(&["--workers", "2"], Some(&toml));
    assert!(relay.wait_for_log("feed=line-b", Duration::from_secs(10)));
    assert!(relay.wait_for_log("feed=line-a", Duration::from_secs(10)));
    let mut sub = subscriber(&relay);
    let mut msgs = collect(&mut sub, Duration::from_secs(10), |g| g.len() >= 1000);
    drop(a); // line A dies mid-stream
    msgs.extend(collect(&mut sub, Duration::from_secs(10), |g| {
        g.len() >= 1000
    }));
    let by_topic = assert_consecutive(&msgs);
    assert_eq!(by_topic.len(), 20);
    assert!(msgs.len() >= 2000);
    relay.terminate();
    let out = relay.output();
    assert!(out.contains("group ab: forwarded"), "{out}");
    assert!(out.contains("gaps 0 (0 missing)"), "{out}");
    let dropped: u64 = out
        .split("group ab: forwarded ")
        .nth(1)
        .and_then(|s| s.split("copies dropped ").nth(1))
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(
        dropped > 500,
        "both lines delivered, the arbiter dropped the copies: {out}"
    );
}

#[test]
fn garbage_oversized_stalled_and_dropped_feeds_do_not_disturb_a_clean_one() {
    let clean = Server::mock_exchange(&["--rate", "1000"]);
    let dir = temp_dir("slow-tls");
    let certs = dir.join("certs");
    let certs_arg = certs.display().to_string();
    let slow_extra = format!(
        "ca_file = \"{}\"\nconnect_timeout_ms = 300\n",
        certs.join("ca.pem").display()
    );
    let faulty = [
        (
            "garbage",
            Server::mock_exchange(&["--rate", "500", "--garbage-after", "50"]),
            String::new(),
        ),
        (
            "oversized",
            Server::mock_exchange(&["--rate", "500", "--oversized-after", "50"]),
            String::new(),
        ),
        (
            "stall",
            Server::mock_exchange(&["--rate", "500", "--stall-after", "50"]),
            String::new(),
        ),
        (
            "drop",
            Server::mock_exchange(&["--rate", "500", "--drop-after", "50"]),
            String::new(),
        ),
        (
            "slowtls",
            Server::mock_exchange(&["--tls-self-signed", &certs_arg, "--slow-tls-ms", "1000"]),
            slow_extra,
        ),
    ];
    // The faulty feeds' topics are their stream names (`btcusdt@trade`), the clean
    // feed's the symbols (`BTCUSDT`): the subscriber takes the clean ones only.
    let mut toml = format!(
        "{RELAY_HEAD}{}",
        feed("clean", &format!("ws://{}/stream", clean.addr), "")
    );
    for (name, server, extra) in &faulty {
        let scheme = if extra.is_empty() { "ws" } else { "wss" };
        toml.push_str(&feed(
            name,
            &format!("{scheme}://localhost:{}/stream", server.addr.port()),
            &format!("topic_pointer = \"/stream\"\nstale_after_ms = 300\n{extra}"),
        ));
    }
    let mut relay = Server::relay(&["--workers", "2"], Some(&toml));
    let symbols = "BTCUSDT,ETHUSDT,SOLUSDT,BNBUSDT,XRPUSDT,ADAUSDT,DOGEUSDT,AVAXUSDT,DOTUSDT,LINKUSDT,\
                   LTCUSDT,TRXUSDT,ATOMUSDT,NEARUSDT,APTUSDT,ARBUSDT,OPUSDT,FILUSDT,ETCUSDT,XLMUSDT";
    let mut sub = Raw::subscribe(relay.addr, symbols);
    let msgs = collect(&mut sub, Duration::from_secs(15), |g| g.len() >= 3000);
    assert!(msgs.len() >= 3000, "only {}", msgs.len());
    assert_consecutive(&msgs);
    let log = relay.log();
    for (name, _, _) in &faulty {
        assert!(
            log.contains(&format!("feed={name}")),
            "{name} never failed: {log}"
        );
    }
    assert!(log.contains("stale: nothing received for 300 ms"), "{log}");
    assert!(
        log.contains("timed out"),
        "the slow TLS handshake hits connect_timeout_ms: {log}"
    );
    relay.terminate();
    let out = relay.output();
    assert!(
        out.contains("feed clean (group clean): sessions 1, reconnects 0"),
        "{out}"
    );
    for (name, _, _) in &faulty {
        let line = out
            .lines()
            .find(|l| l.contains(&format!("feed {name} ")))
            .unwrap_or_default();
        assert!(!line.contains("reconnects 0,"), "{line}");
    }
}

#[test]
fn a_chain_of_two_relays_delivers_everything_in_order() {
    // Queues deep enough for the whole burst: this test is about the chain, not about
    // the slow-consumer policy (tests/relay_slow_consumer.rs).
    const QUEUES: &str = "queue_max_messages = 65536\nqueue_max_bytes = 67108864\n";
    let upstream = Server::relay(&["--workers", "2"], Some(QUEUES));
    let toml = format!(
        "{QUEUES}topic_pointer = \"/s\"\n[[feeds]]\nname = \"upstream\"\nurl = \"ws://{}/ws?topics=*\"\nseq_pointer = \"/seq\"\n",
        upstream.addr
    );
    let mut downstream = Server::relay(&["--workers", "2"], Some(&toml));
    let mut sub = Raw::subscribe(downstream.addr, "*");
    sub.s
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut publisher = Raw::publish(upstream.addr);
    // The chain is up once a probe makes it through.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut probe = 0u64;
    'up: loop {
        assert!(
            Instant::now() < deadline,
            "chain never came up: {}",
            downstream.log()
        );
        publisher.send(0x81, format!(r#"{{"s":"probe","seq":{probe}}}"#).as_bytes());
        probe += 1;
        while let Some((first, _)) = sub.recv_or_timeout() {
            if first == 0x81 {
                break 'up;
            }
        }
    }
    const N: u64 = 20_000;
    for i in 0..N {
        let m = format!(
            r#"{{"s":"T{}","seq":{},"pad":"xxxxxxxxxxxxxxxxxxxxxxxx"}}"#,
            i % 4,
            i / 4
        );
        publisher.send(0x81, m.as_bytes());
        if i % 500 == 499 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let mut next = [0u64; 4];
    let end = Instant::now() + Duration::from_secs(20);
    while next.iter().sum::<u64>() < N && Instant::now() < end {
        let Some((first, payload)) = sub.recv_or_timeout() else {
            continue;
        };
        if first != 0x81 {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        let topic = v["s"].as_str().unwrap();
        if topic == "probe" {
            continue;
        }
        let t: usize = topic[1..].parse().unwrap();
        assert_eq!(v["seq"].as_u64().unwrap(), next[t], "topic {topic}");
        next[t] += 1;
    }
    assert_eq!(next.iter().sum::<u64>(), N, "delivered through the chain");
    downstream.terminate();
    let out = downstream.output();
    assert!(out.contains("gaps 0 (0 missing)"), "{out}");
}

/// `subprotocols` on a relay and `[[feeds]] subprotocols` on the relay dialling it: a
/// feed offering one the upstream serves is relayed; one offering only others is
/// refused with 400 (and retried, logged), while clients offering none still connect.
#[test]
fn feeds_offer_subprotocols_and_relays_choose_or_refuse() {
    let upstream = Server::relay(
        &["--workers", "1"],
        Some("subprotocols = [\"feedrelay.v1\", \"json\"]\n"),
    );
    let feed = |offer: &str| {
        format!(
            "topic_pointer = \"/s\"\n[[feeds]]\nname = \"up\"\nurl = \"ws://{}/ws?topics=*\"\nsubprotocols = [{offer}]\nreconnect_initial_ms = 50\nreconnect_max_ms = 200\n",
            upstream.addr
        )
    };
    let good = Server::relay(
        &["--workers", "1"],
        Some(&feed("\"x.v9\", \"feedrelay.v1\"")),
    );
    let bad = Server::relay(&["--workers", "1"], Some(&feed("\"other.v2\"")));
    let mut sub = Raw::subscribe(good.addr, "*");
    let mut publisher = Raw::publish(upstream.addr);
    common::publish_until_relayed(&mut publisher, &mut sub, br#"{"s":"P"}"#, &good);
    assert!(
        bad.wait_for_log("400", Duration::from_secs(10)),
        "the refused feed logs why: {}",
        bad.log()
    );
}
