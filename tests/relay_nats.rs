//! NATS as the backbone between relays, against real `nats-server`s on loopback: two
//! relays across one server, a cluster node killed under the relays mid-stream, a
//! relay started with no server reachable, and the headers seen by an independent
//! NATS client (async-nats in the test, not the relay's).

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::nats::{free_port, NatsServer};
use common::{http_get, metric, publish_until_relayed, wait_metric, Raw, Server};

const TOPICS: u64 = 4;

/// A relay config with `[nats]` on `urls` plus `extra` lines in the section. The
/// subscribers' queues hold a whole run: what is measured here is NATS, not a test
/// reader descheduled on a busy machine.
fn config(urls: &[String], extra: &str) -> String {
    config_with("topic_pointer = \"/topic\"\n", urls, extra)
}

/// [`config`] with `head` (top-level settings, `[[feeds]]`) before `[nats]`.
fn config_with(head: &str, urls: &[String], extra: &str) -> String {
    let urls: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    format!(
        "metrics_on_data_port = true\nqueue_max_messages = 65536\nqueue_max_bytes = 67108864\n{head}\
         [nats]\nurls = [{}]\nreconnect_initial_ms = 50\nreconnect_max_ms = 500\n{extra}\n",
        urls.join(", ")
    )
}

fn relay(urls: &[String], extra: &str) -> Server {
    relay_with("topic_pointer = \"/topic\"\n", urls, extra)
}

/// [`relay`] with `head` before `[nats]` (see [`config_with`]).
fn relay_with(head: &str, urls: &[String], extra: &str) -> Server {
    let r = Server::relay(&[], Some(&config_with(head, urls, extra)));
    assert!(
        r.wait_for_log("nats: connected", Duration::from_secs(10)),
        "{}",
        r.log()
    );
    r
}

/// Waits (as `wait_metric` does) until `server`'s NATS counter `event` satisfies `ok`.
fn wait_nats(server: &Server, event: &str, ok: impl Fn(u64) -> bool) {
    let name = format!("feedrelay_nats_total{{event=\"{event}\"}}");
    wait_metric(server.addr, None, &name, ok);
}

fn nats_metric(server: &Server, event: &str) -> u64 {
    let text = http_get(server.addr, "/metrics");
    metric(&text, &format!("feedrelay_nats_total{{event=\"{event}\"}}")).unwrap_or(0)
}

/// Waits until `to` relays what `from` publishes (the import subscription is in place);
/// the probes are on topic `probe`, which the readers skip.
fn link_up(from: &Server, to: &Server) {
    let mut publisher = Raw::publish(from.addr);
    let mut sub = Raw::subscribe(to.addr, "probe");
    publish_until_relayed(&mut publisher, &mut sub, br#"{"topic":"probe"}"#, to);
}

/// Reads `{"topic":..,"seq":..}` messages on `sub` until nothing came for `quiet` (or
/// 60 s passed); returns each topic's sequence numbers in arrival order.
fn collect(mut sub: Raw, quiet: Duration) -> JoinHandle<BTreeMap<String, Vec<u64>>> {
    std::thread::spawn(move || {
        sub.s.set_read_timeout(Some(quiet)).unwrap();
        let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        let end = Instant::now() + Duration::from_secs(60);
        while Instant::now() < end {
            let Some((_, payload)) = sub.recv_or_timeout() else {
                break;
            };
            let text = String::from_utf8_lossy(&payload);
            let field = |name: &str| -> Option<String> {
                let at = text.find(&format!("\"{name}\":"))? + name.len() + 3;
                let rest = text[at..].trim_start_matches('"');
                Some(rest.split(['"', ',', '}']).next()?.to_string())
            };
            if let (Some(t), Some(n)) = (field("topic"), field("seq")) {
                if t.starts_with('T') {
                    seen.entry(t).or_default().push(n.parse().unwrap());
                }
            }
        }
        seen
    })
}

/// Publishes `count` messages round-robin over [`TOPICS`] topics at `rate` per second
/// (open loop: each at its scheduled time), calling `at_half` once halfway.
fn publish(addr: SocketAddr, count: u64, rate: u64, mut at_half: impl FnMut()) {
    let mut p = Raw::publish(addr);
    let start = Instant::now();
    for i in 0..count {
        let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let msg = format!(
            r#"{{"topic":"T{}","seq":{},"pad":"{}"}}"#,
            i % TOPICS,
            i / TOPICS + 1,
            "x".repeat(64)
        );
        p.send(0x81, msg.as_bytes());
        if i == count / 2 {
            at_half();
        }
    }
}

/// Each topic's numbers strictly increase (order kept); returns how many arrived.
fn in_order(seen: &BTreeMap<String, Vec<u64>>) -> u64 {
    for (topic, seqs) in seen {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{topic} out of order or duplicated"
        );
    }
    seen.values().map(|v| v.len() as u64).sum()
}

#[test]
fn two_relays_across_one_server_carry_20000_messages_in_order_without_looping() {
    let nats = NatsServer::start(0);
    let both = "export = true\nimport = [\"feedrelay.>\"]";
    let a = relay(&[nats.url()], both);
    let b = relay(&[nats.url()], both);
    link_up(&a, &b);
    link_up(&b, &a);
    let on_b = collect(Raw::subscribe(b.addr, "*"), Duration::from_secs(2));
    let on_a = collect(Raw::subscribe(a.addr, "*"), Duration::from_secs(2));
    publish(a.addr, 20_000, 20_000, || {});
    let (on_a, on_b) = (on_a.join().unwrap(), on_b.join().unwrap());
    assert_eq!(in_order(&on_b), 20_000, "across NATS: {}", b.log());
    for (topic, seqs) in &on_b {
        assert_eq!(seqs.len(), 5_000, "{topic}");
    }
    assert_eq!(
        in_order(&on_a),
        20_000,
        "locally, each once: nothing came back"
    );
    assert!(nats_metric(&a, "exported") >= 20_000);
    assert!(
        nats_metric(&b, "exported") < 1_000,
        "B re-exported what it imported"
    );
    assert_eq!(nats_metric(&b, "import_gap"), 0);
    // The hand-off from the NATS thread to a worker is a hop of its own.
    let imports: u64 = http_get(b.addr, "/metrics")
        .lines()
        .filter(|l| l.starts_with("feedrelay_hop_latency_seconds_count{hop=\"import\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(imports >= 20_000, "import hop recorded {imports} times");
}

#[test]
fn a_killed_cluster_node_costs_a_bounded_counted_gap_and_order_is_kept() {
    let mut cluster = NatsServer::cluster(3);
    // Both relays know only node 0 and learn the others from it.
    let first = [cluster[0].url()];
    let a = relay(&first, "export = true");
    let b = relay(&first, "import = [\"feedrelay.>\"]");
    link_up(&a, &b);
    assert_eq!(cluster[0].connections(), 2);
    let on_b = collect(
        Raw::subscribe(b.addr, "T0,T1,T2,T3"),
        Duration::from_secs(3),
    );
    let (count, rate) = (10_000, 2_000);
    let mut node0 = Some(cluster.remove(0));
    publish(a.addr, count, rate, || {
        if let Some(mut n) = node0.take() {
            n.kill();
        }
    });
    let seen = on_b.join().unwrap();
    let received = in_order(&seen);
    let missing = count - received;
    // Bounded: well under a second of the stream.
    assert!(missing < rate, "lost {missing} of {count}: {}", b.log());
    wait_metric(a.addr, None, "feedrelay_nats_connected", |v| v == 1);
    wait_metric(b.addr, None, "feedrelay_nats_connected", |v| v == 1);
    assert_eq!(cluster[0].connections() + cluster[1].connections(), 2);
    // Counted: every message that never arrived is one of these.
    let counted = nats_metric(&a, "export_dropped_disconnected")
        + nats_metric(&a, "export_dropped_full")
        + nats_metric(&a, "export_errors")
        + nats_metric(&b, "import_gap")
        + nats_metric(&b, "import_dropped_full");
    eprintln!("failover: {missing} of {count} missing, {counted} counted");
    assert_eq!(missing, counted, "a: {}\nb: {}", a.log(), b.log());
    assert!(nats_metric(&a, "disconnects") >= 1 && nats_metric(&b, "disconnects") >= 1);
}

#[test]
fn with_no_server_at_start_the_relay_serves_locally_and_connects_later() {
    let port = free_port();
    let urls = [format!("nats://127.0.0.1:{port}")];
    let r = Server::relay(
        &[],
        Some(&config(&urls, "export = true\nconnect_timeout_ms = 300")),
    );
    assert!(
        r.wait_for_log("no server reachable at start", Duration::from_secs(10)),
        "{}",
        r.log()
    );
    let mut p = Raw::publish(r.addr);
    let mut sub = Raw::subscribe(r.addr, "T0");
    p.send(0x81, br#"{"topic":"T0","seq":1}"#);
    let (first, payload) = sub.recv().expect("relayed locally");
    assert_eq!(
        (first, payload.as_slice()),
        (0x81, &br#"{"topic":"T0","seq":1}"#[..])
    );
    wait_nats(&r, "export_dropped_disconnected", |n| n == 1);
    let _nats = NatsServer::start(port);
    assert!(
        r.wait_for_log("nats: connected", Duration::from_secs(10)),
        "{}",
        r.log()
    );
    p.send(0x81, br#"{"topic":"T0","seq":2}"#);
    assert_eq!(
        sub.recv().expect("still relayed").1,
        br#"{"topic":"T0","seq":2}"#
    );
    wait_nats(&r, "exported", |n| n == 1);
}

#[test]
fn an_independent_client_sees_subjects_and_headers_and_is_imported() {
    let nats = NatsServer::start(0);
    let r = relay(
        &[nats.url()],
        "export = true\nimport = [\"desk.in.>\"]\nsubject_prefix = \"desk\"\norigin = \"box-r\"",
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use futures_util::StreamExt;
        let client = async_nats::connect(nats.url()).await.unwrap();
        let mut exported = client.subscribe("desk.>").await.unwrap();
        client.flush().await.unwrap();
        let mut p = Raw::publish(r.addr);
        p.send(0x81, br#"{"topic":"book.BTC/USD","px":1}"#);
        let m = tokio::time::timeout(Duration::from_secs(10), exported.next())
            .await
            .expect("exported within 10 s")
            .unwrap();
        assert_eq!(m.subject.as_str(), "desk.book%2EBTC%2FUSD");
        assert_eq!(&m.payload[..], br#"{"topic":"book.BTC/USD","px":1}"#);
        let h = m.headers.expect("headers");
        assert_eq!(h.get("Feedrelay-Origin").map(|v| v.as_str()), Some("box-r"));
        assert_eq!(h.get("Feedrelay-Seq").map(|v| v.as_str()), Some("1"));

        let mut sub = Raw::subscribe(r.addr, "X");
        let mut own = async_nats::HeaderMap::new();
        own.insert("Feedrelay-Origin", "box-r");
        client
            .publish_with_headers("desk.in.X", own, r#"{"topic":"X","n":0}"#.into())
            .await
            .unwrap();
        client
            .publish("desk.in.X", r#"{"topic":"X","n":1}"#.into())
            .await
            .unwrap();
        let mut binary = async_nats::HeaderMap::new();
        binary.insert("Feedrelay-Kind", "binary");
        client
            .publish_with_headers("desk.in.X", binary, r#"{"topic":"X","n":2}"#.into())
            .await
            .unwrap();
        client.flush().await.unwrap();
        // The message with the relay's own origin is skipped; the others come in order.
        assert_eq!(
            sub.recv().unwrap(),
            (0x81, br#"{"topic":"X","n":1}"#.to_vec())
        );
        assert_eq!(
            sub.recv().unwrap(),
            (0x82, br#"{"topic":"X","n":2}"#.to_vec())
        );
    });
    assert_eq!(nats_metric(&r, "import_skipped_own"), 0, "not reported yet");
    wait_nats(&r, "import_skipped_own", |n| n == 1);
}

#[test]
fn tls_to_the_server_with_the_configured_ca_and_not_without_it() {
    let dir = common::TempDir::new("nats-tls");
    let certs = common::localhost_certs(&dir.0);
    let nats = NatsServer::start_tls(&certs.cert, &certs.key);
    let url = [format!("tls://127.0.0.1:{}", nats.port)];
    let ca = format!("ca_file = {:?}", certs.ca.display().to_string());
    let a = relay(&url, &format!("export = true\n{ca}"));
    let b = relay(&url, &format!("import = [\"feedrelay.>\"]\n{ca}"));
    link_up(&a, &b);
    // Without the CA the server is not trusted: the relay never connects, says why,
    // and still relays locally.
    let c = Server::relay(&[], Some(&config(&url, "export = true")));
    assert!(
        c.wait_for_log("no server reachable at start", Duration::from_secs(10)),
        "{}",
        c.log()
    );
    assert!(!c.log().contains("nats: connected"));
    let mut p = Raw::publish(c.addr);
    let mut sub = Raw::subscribe(c.addr, "T0");
    p.send(0x81, br#"{"topic":"T0","seq":1}"#);
    assert_eq!(
        sub.recv().expect("relayed locally").1,
        br#"{"topic":"T0","seq":1}"#
    );
    // Still trying to connect, it stops on SIGTERM as promptly as ever.
    drop((p, sub));
    let mut c = c;
    assert!(c.terminate().success());
}

#[test]
fn feed_lines_are_exported_once_after_arbitration() {
    let (x, y) = (
        Server::mock_exchange(&["--rate", "1000"]),
        Server::mock_exchange(&["--rate", "1000"]),
    );
    let nats = NatsServer::start(0);
    let line = |name: &str, ex: &Server| {
        format!(
            "[[feeds]]\nname = \"{name}\"\ngroup = \"ab\"\nurl = \"ws://{}/stream\"\n\
             subscribe = ['{{\"method\":\"SUBSCRIBE\",\"params\":[\"*\"],\"id\":1}}']\n\
             seq_pointer = \"/data/u\"\n",
            ex.addr
        )
    };
    let head = format!(
        "topic_pointer = \"/data/s\"\n{}{}",
        line("line-a", &x),
        line("line-b", &y)
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut relay, by_subject) = rt.block_on(async {
        use futures_util::StreamExt;
        let client = async_nats::connect(nats.url()).await.unwrap();
        let mut exported = client.subscribe("feedrelay.>").await.unwrap();
        client.flush().await.unwrap();
        let relay = Server::relay(
            &[],
            Some(&config_with(&head, &[nats.url()], "export = true")),
        );
        let mut by_subject: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        let end = tokio::time::Instant::now() + Duration::from_secs(3);
        while let Ok(Some(m)) = tokio::time::timeout_at(end, exported.next()).await {
            let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
            let u = v["data"]["u"].as_u64().unwrap();
            by_subject.entry(m.subject.to_string()).or_default().push(u);
        }
        (relay, by_subject)
    });
    assert_eq!(
        by_subject.len(),
        20,
        "every symbol: {:?}",
        by_subject.keys()
    );
    let mut total = 0;
    for (subject, us) in &by_subject {
        assert!(
            us.windows(2).all(|w| w[1] == w[0] + 1),
            "{subject}: once each, in order: {us:?}"
        );
        total += us.len();
    }
    assert!(total > 1_000, "{total} exported");
    relay.terminate();
    let out = relay.output();
    let dropped: u64 = out
        .split("copies dropped ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(
        dropped > 0,
        "both lines delivered, the copies were dropped before NATS: {out}"
    );
}

#[test]
fn the_nats_thread_is_pinned_where_configured() {
    let nats = NatsServer::start(0);
    let last = std::thread::available_parallelism().map_or(1, |n| n.get()) - 1;
    let r = relay(&[nats.url()], &format!("export = true\ncore = {last}"));
    let tasks = format!("/proc/{}/task", r.child.id());
    let allowed = std::fs::read_dir(&tasks)
        .unwrap()
        .flatten()
        .find(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim() == "feedrelay-nats")
        })
        .map(|t| std::fs::read_to_string(t.path().join("status")).unwrap())
        .expect("a thread named feedrelay-nats");
    let line = allowed
        .lines()
        .find(|l| l.starts_with("Cpus_allowed_list:"))
        .unwrap();
    assert_eq!(
        line.split_whitespace().nth(1),
        Some(last.to_string().as_str()),
        "{line}"
    );
}

#[test]
fn overlapping_import_patterns_relay_each_message_once() {
    let nats = NatsServer::start(0);
    let a = relay(&[nats.url()], "export = true");
    // NATS delivers a message once per matching subscription: T0's come twice.
    let b = relay(
        &[nats.url()],
        "import = [\"feedrelay.>\", \"feedrelay.T0\"]",
    );
    link_up(&a, &b);
    let on_b = collect(Raw::subscribe(b.addr, "T0,T1"), Duration::from_secs(2));
    publish(a.addr, 200, 1_000, || {});
    let seen = on_b.join().unwrap();
    assert_eq!(in_order(&seen), 100, "T0 and T1, each once: {seen:?}");
    wait_nats(&b, "import_late", |n| n == 50);
}

#[test]
fn credentials_are_presented_and_wrong_ones_keep_the_relay_local() {
    let with_token = NatsServer::start_with(&["--auth", "s3cret"]);
    let ok = relay(&[with_token.url()], "export = true\ntoken = \"s3cret\"");
    drop(ok);
    let with_user = NatsServer::start_with(&["--user", "desk", "--pass", "pw"]);
    let ok = relay(
        &[with_user.url()],
        "export = true\nuser = \"desk\"\npassword = \"pw\"",
    );
    drop(ok);
    let wrong = Server::relay(
        &[],
        Some(&config(
            &[with_token.url()],
            "export = true\ntoken = \"guess\"\nconnect_timeout_ms = 300",
        )),
    );
    assert!(
        wrong.wait_for_log("no server reachable at start", Duration::from_secs(10)),
        "{}",
        wrong.log()
    );
    assert!(
        wrong.log().contains("connection attempt 1 failed"),
        "{}",
        wrong.log()
    );
    assert!(!wrong.log().contains("nats: connected"));
}

#[test]
fn messages_over_the_servers_limits_are_relayed_locally_and_counted() {
    let dir = common::TempDir::new("nats-max-payload");
    let conf = dir.0.join("nats.conf");
    std::fs::write(&conf, "max_payload: 1024\n").unwrap();
    let nats = NatsServer::start_with(&["-c", &conf.display().to_string()]);
    let a = relay_with(
        "topic_pointer = \"/topic\"\nmax_topic_bytes = 2000\n",
        &[nats.url()],
        "export = true",
    );
    let b = relay(&[nats.url()], "import = [\"feedrelay.>\"]");
    link_up(&a, &b);
    let mut here = Raw::subscribe(a.addr, "T0");
    let mut there = Raw::subscribe(b.addr, "T0");
    let mut p = Raw::publish(a.addr);
    let big = format!(r#"{{"topic":"T0","seq":1,"pad":"{}"}}"#, "x".repeat(2_000));
    p.send(0x81, big.as_bytes());
    p.send(0x81, br#"{"topic":"T0","seq":2}"#);
    assert_eq!(here.recv().unwrap().1, big.as_bytes(), "relayed locally");
    assert_eq!(here.recv().unwrap().1, br#"{"topic":"T0","seq":2}"#);
    assert_eq!(
        there.recv().unwrap().1,
        br#"{"topic":"T0","seq":2}"#,
        "the next one crosses"
    );
    // A topic whose subject would pass NATS' documented 4 KiB protocol line: the same.
    let long = ".".repeat(1_500);
    let mut on_long = Raw::subscribe(a.addr, &long);
    let msg = format!(r#"{{"topic":"{long}","seq":1}}"#);
    p.send(0x81, msg.as_bytes());
    p.send(0x81, br#"{"topic":"T0","seq":3}"#);
    assert_eq!(on_long.recv().unwrap().1, msg.as_bytes(), "relayed locally");
    assert_eq!(there.recv().unwrap().1, br#"{"topic":"T0","seq":3}"#);
    wait_nats(&a, "export_errors", |n| n == 2);
    assert!(
        a.log().contains("over the server's max_payload"),
        "{}",
        a.log()
    );
    assert_eq!(nats_metric(&a, "disconnects"), 0, "{}", a.log());
}

#[test]
fn a_hot_standby_exporting_the_same_feed_is_arbitrated_by_the_importer() {
    let nats = NatsServer::start(0);
    let primary = relay(&[nats.url()], "export = true");
    let standby = relay(&[nats.url()], "export = true");
    let arbitrated = relay(
        &[nats.url()],
        "import = [\"feedrelay.>\"]\nseq_pointer = \"/seq\"",
    );
    let plain = relay(&[nats.url()], "import = [\"feedrelay.>\"]");
    for to in [&arbitrated, &plain] {
        link_up(&primary, to);
        link_up(&standby, to);
    }
    let on_arbitrated = collect(
        Raw::subscribe(arbitrated.addr, "T0,T1,T2,T3"),
        Duration::from_secs(2),
    );
    let on_plain = collect(
        Raw::subscribe(plain.addr, "T0,T1,T2,T3"),
        Duration::from_secs(2),
    );
    // The same stream into both exporting relays, as two A/B lines would carry it.
    let (mut p1, mut p2) = (Raw::publish(primary.addr), Raw::publish(standby.addr));
    for i in 0..2_000u64 {
        let msg = format!(r#"{{"topic":"T{}","seq":{}}}"#, i % TOPICS, i / TOPICS + 1);
        p1.send(0x81, msg.as_bytes());
        p2.send(0x81, msg.as_bytes());
        if i % 100 == 99 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let seen = on_arbitrated.join().unwrap();
    assert_eq!(in_order(&seen), 2_000, "each once, in order");
    let doubled: u64 = on_plain
        .join()
        .unwrap()
        .values()
        .map(|v| v.len() as u64)
        .sum();
    assert_eq!(
        doubled, 4_000,
        "without seq_pointer both copies are relayed"
    );
    wait_nats(&arbitrated, "import_duplicates", |n| n == 2_000);
}

#[test]
fn a_bad_nats_section_is_refused_naming_the_field() {
    let dir = common::TempDir::new("nats-config");
    let path = dir.0.join("bad.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:0\"\n[nats]\nurls = [\"nats://127.0.0.1:4222\"]\nexport = true\nimport = [\"a.>.b\"]\n",
    )
    .unwrap();
    let (code, out) = common::run_with_config(&path);
    assert_ne!(code, Some(0));
    assert!(out.contains("nats.import"), "{out}");
    std::fs::write(&path, "listen = \"127.0.0.1:0\"\n[nats]\nurls = [\"nats://127.0.0.1:4222\"]\nexport = true\nca_file = \"missing.pem\"\n").unwrap();
    let (code, out) = common::run_with_config(&path);
    assert_ne!(code, Some(0));
    assert!(
        out.contains("ca_file") && out.contains("missing.pem"),
        "{out}"
    );
    std::fs::write(&path, "listen = \"127.0.0.1:0\"\n[nats]\nurls = [\"nats://127.0.0.1:4222\"]\nexport = true\ncore = 4096\n").unwrap();
    let (code, out) = common::run_with_config(&path);
    assert_ne!(code, Some(0));
    assert!(
        out.contains("core 4096 is not one this process may run on"),
        "{out}"
    );
    let creds = dir.0.join("relay.creds");
    std::fs::write(&creds, "not a creds file\n").unwrap();
    std::fs::write(&path, "listen = \"127.0.0.1:0\"\n[nats]\nurls = [\"nats://127.0.0.1:4222\"]\nexport = true\ncreds_file = \"relay.creds\"\n").unwrap();
    let (code, out) = common::run_with_config(&path);
    assert_ne!(code, Some(0));
    assert!(
        out.contains("creds_file") && out.contains("relay.creds"),
        "{out}"
    );
}

/// Imports cannot be forged into silence: a message claiming a genuine origin with
/// `Feedrelay-Seq` and a payload `seq` of 2^64-1 is relayed and counted as
/// implausible, and the genuine messages after it are relayed in order, none taken for
/// late copies (before, every later genuine message was dropped as late).
#[test]
fn a_forged_sequence_number_does_not_silence_the_genuine_stream() {
    let nats = NatsServer::start(0);
    let r = relay(
        &[nats.url()],
        "import = [\"desk.in.>\"]\nsubject_prefix = \"desk\"\nseq_pointer = \"/seq\"",
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut sub = Raw::subscribe(r.addr, "X");
    rt.block_on(async {
        let client = async_nats::connect(nats.url()).await.unwrap();
        let send = |seq: u64| {
            let mut h = async_nats::HeaderMap::new();
            h.insert("Feedrelay-Origin", "box-a");
            h.insert("Feedrelay-Seq", seq.to_string().as_str());
            let body = format!(r#"{{"topic":"X","seq":{seq}}}"#);
            client.publish_with_headers("desk.in.X", h, body.into())
        };
        for seq in (1..=5).chain([u64::MAX]).chain(6..=10) {
            send(seq).await.unwrap();
        }
        client.flush().await.unwrap();
    });
    let mut got = Vec::new();
    while got.len() < 11 {
        let (_, m) = sub.recv().expect("a message");
        got.push(String::from_utf8(m).unwrap());
    }
    let seqs: Vec<String> = got
        .iter()
        .map(|m| {
            m.trim_end_matches('}')
                .rsplit(':')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    let want: Vec<String> = (1..=5u64)
        .chain([u64::MAX])
        .chain(6..=10)
        .map(|n| n.to_string())
        .collect();
    assert_eq!(seqs, want);
    wait_nats(&r, "import_implausible", |n| n == 1);
    assert_eq!(nats_metric(&r, "import_late"), 0);
}
