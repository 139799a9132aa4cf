//! `feedrelay run` over loopback with real sockets and two workers: topic filters and
//! `*`, run-time subscribe/unsubscribe, per-topic order with zero loss, bad publisher
//! input, vanished subscribers, and a thousand subscribers at once.

mod common;

use common::client::{next_text, send_text};
use std::collections::HashMap;

use common::{Raw, Server};
use feedrelay::io::driver::client::{ClientError, Incoming, WsClient};
use feedrelay::io::ring::Ring;
use feedrelay::ws::{CloseCode, Limits, MessageKind};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    Ring::new().expect("io_uring").block_on(f)
}

async fn subscribe(url: &str, topics: &str) -> WsClient {
    let mut c = WsClient::connect(&format!("{url}ws?topics={topics}"), &[], Limits::default())
        .await
        .unwrap();
    let reply = next_text(&mut c).await;
    assert!(reply.starts_with(r#"{"event":"subscribed""#), "{reply}");
    c
}

async fn publisher(url: &str) -> WsClient {
    WsClient::connect(&format!("{url}pub"), &[], Limits::default())
        .await
        .unwrap()
}

fn field<'a>(msg: &'a str, name: &str) -> &'a str {
    let key = format!("\"{name}\":");
    let at = msg.find(&key).unwrap_or_else(|| panic!("{name} in {msg}")) + key.len();
    let rest = &msg[at..];
    let end = rest.find([',', '}']).unwrap();
    rest[..end].trim_matches('"')
}

#[test]
fn publishers_and_subscribers_across_two_workers_in_order_without_loss() {
    let server = Server::relay(&["--workers", "2"], None);
    let url = format!("ws://{}/", server.addr);
    const PER_TOPIC: usize = 400;
    let topics = ["AAA", "BBB", "CCC"];
    block_on(async {
        // Several subscribers per filter, so both workers hold some of each kind.
        let filters = ["AAA", "BBB", "AAA,CCC", "*", "AAA", "*"];
        let mut subs = Vec::new();
        for f in filters {
            subs.push((f, subscribe(&url, f).await));
        }
        let mut pubs = Vec::new();
        for _ in 0..3 {
            pubs.push(publisher(&url).await);
        }
        let readers: Vec<_> = subs
            .into_iter()
            .map(|(filter, mut c)| {
                let wanted: Vec<&str> = if filter == "*" {
                    topics.to_vec()
                } else {
                    filter.split(',').collect()
                };
                let expected = wanted.len() * PER_TOPIC * 3;
                feedrelay::io::rt::spawn(async move {
                    let mut seen: HashMap<(String, String), i64> = HashMap::new();
                    for _ in 0..expected {
                        let m = next_text(&mut c).await;
                        let topic = field(&m, "s").to_owned();
                        assert!(wanted.contains(&topic.as_str()), "{filter} got {m}");
                        let key = (field(&m, "p").to_owned(), topic);
                        let seq: i64 = field(&m, "seq").parse().unwrap();
                        let last = seen.entry(key).or_insert(-1);
                        assert_eq!(seq, *last + 1, "{filter}: gap or reorder at {m}");
                        *last = seq;
                    }
                    (
                        filter,
                        seen.values().map(|&v| v as usize + 1).sum::<usize>(),
                    )
                })
            })
            .collect();
        for seq in 0..PER_TOPIC {
            for (p, publisher) in pubs.iter_mut().enumerate() {
                for t in topics {
                    let m =
                        format!(r#"{{"s":"{t}","p":{p},"seq":{seq},"pad":"xxxxxxxxxxxxxxxx"}}"#);
                    publisher
                        .send(MessageKind::Text, m.as_bytes())
                        .await
                        .unwrap();
                }
            }
            if seq % 50 == 0 {
                feedrelay::io::rt::yield_now().await;
            }
        }
        for r in readers {
            let (filter, n) = r.await.unwrap();
            let wanted = if filter == "*" {
                3
            } else {
                filter.split(',').count()
            };
            assert_eq!(n, wanted * PER_TOPIC * 3, "{filter}");
        }
    });
}

#[test]
fn subscribe_and_unsubscribe_at_run_time() {
    let server = Server::relay(&["--workers", "2"], None);
    let url = format!("ws://{}/", server.addr);
    block_on(async {
        let mut sub = WsClient::connect(&format!("{url}ws"), &[], Limits::default())
            .await
            .unwrap();
        let publ = publisher(&url).await;
        sub.send(
            MessageKind::Text,
            br#"{"op":"subscribe","topics":["X","Y"]}"#,
        )
        .await
        .unwrap();
        assert_eq!(
            next_text(&mut sub).await,
            r#"{"event":"subscribed","topics":["X","Y"]}"#
        );
        send_text(&publ, r#"{"s":"X","n":1}"#).await;
        send_text(&publ, r#"{"s":"Z","n":2}"#).await;
        send_text(&publ, r#"{"s":"Y","n":3}"#).await;
        assert_eq!(next_text(&mut sub).await, r#"{"s":"X","n":1}"#);
        assert_eq!(next_text(&mut sub).await, r#"{"s":"Y","n":3}"#);
        send_text(&sub, r#"{"op":"unsubscribe","topics":["X"]}"#).await;
        assert_eq!(
            next_text(&mut sub).await,
            r#"{"event":"unsubscribed","topics":["X"]}"#
        );
        send_text(&publ, r#"{"s":"X","n":4}"#).await;
        send_text(&publ, r#"{"s":"Y","n":5}"#).await;
        assert_eq!(next_text(&mut sub).await, r#"{"s":"Y","n":5}"#);
        // A bad control message gets an error and the connection stays.
        send_text(&sub, "{\"op\":\"dance\",\"topics\":[]}").await;
        assert!(next_text(&mut sub).await.contains(r#""event":"error""#));
        sub.send(MessageKind::Binary, b"\x01\x02").await.unwrap();
        assert!(next_text(&mut sub).await.contains("JSON text"));
        send_text(&publ, r#"{"s":"Y","n":6}"#).await;
        assert_eq!(next_text(&mut sub).await, r#"{"s":"Y","n":6}"#);
    });
}

#[test]
fn bad_publisher_input_never_disturbs_the_relay() {
    let server = Server::relay(
        &["--workers", "2"],
        Some("max_message_bytes = 4096\nmax_frame_bytes = 4096\n"),
    );
    let url = format!("ws://{}/", server.addr);
    block_on(async {
        let mut sub = subscribe(&url, "*").await;
        let good = publisher(&url).await;
        let mut bad = publisher(&url).await;
        send_text(&bad, "{not json").await;
        send_text(&bad, r#"{"no_topic":1}"#).await;
        send_text(&bad, r#"{"s":17}"#).await;
        // One reading of a message: its topic key twice is refused, not routed.
        send_text(&bad, r#"{"s":"T","s":"BIN","px":1}"#).await;
        // A lone surrogate has no UTF-8 form: not JSON, so no topic.
        send_text(&bad, r#"{"s":"A","note":"\ud800"}"#).await;
        // A number of any length is JSON: routed.
        let big = r#"{"s":"ID","id":123456789012345678901234567890,"f":1e400}"#;
        send_text(&bad, big).await;
        assert_eq!(next_text(&mut sub).await, big);
        // Binary messages are relayed as binary, routed by their JSON topic.
        bad.send(MessageKind::Binary, br#"{"s":"BIN"}"#)
            .await
            .unwrap();
        match sub.recv().await.unwrap() {
            Incoming::Message(MessageKind::Binary, p) => assert_eq!(p, br#"{"s":"BIN"}"#),
            other => panic!("{other:?}"),
        }
        // Oversized: the publisher is closed with 1009; everyone else carries on.
        bad.send(
            MessageKind::Text,
            format!(r#"{{"s":"BIG","pad":"{}"}}"#, "x".repeat(5000)).as_bytes(),
        )
        .await
        .unwrap();
        let closed = loop {
            match bad.recv().await {
                Ok(Incoming::Close(c)) => break c,
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(closed.map(|(c, _)| c), Some(CloseCode::MESSAGE_TOO_BIG));
        send_text(&good, r#"{"s":"OK","n":1}"#).await;
        assert_eq!(next_text(&mut sub).await, r#"{"s":"OK","n":1}"#);
    });
    let mut server = server;
    assert_eq!(server.terminate().code(), Some(0));
    let out = server.output();
    // Not JSON (twice) and no topic key: no topic; a topic that is not a string or
    // whose key appears twice: a bad topic (never routed by one reading of it).
    assert!(out.contains("no topic 3, bad topic 2"), "{out}");
}

#[test]
fn a_subscriber_that_vanishes_mid_stream_is_cleaned_up() {
    let server = Server::relay(&["--workers", "2"], None);
    let url = format!("ws://{}/", server.addr);
    block_on(async {
        let mut stays = subscribe(&url, "T").await;
        let publ = publisher(&url).await;
        for round in 0..5 {
            // A raw subscriber that reads nothing and then disappears (RST or FIN).
            let gone = Raw::subscribe(server.addr, "T");
            for i in 0..50 {
                publ.send(
                    MessageKind::Text,
                    format!(r#"{{"s":"T","r":{round},"i":{i}}}"#).as_bytes(),
                )
                .await
                .unwrap();
            }
            drop(gone);
            for i in 0..50 {
                assert_eq!(
                    next_text(&mut stays).await,
                    format!(r#"{{"s":"T","r":{round},"i":{i}}}"#)
                );
            }
        }
    });
}

#[test]
fn unknown_paths_and_bad_topics_are_refused_at_the_handshake() {
    let server = Server::relay(&[], None);
    block_on(async {
        for (path, code) in [("nope", 404u16), ("ws?topics=%zz", 400)] {
            match WsClient::connect(
                &format!("ws://{}/{path}", server.addr),
                &[],
                Limits::default(),
            )
            .await
            {
                Err(ClientError::Handshake(_, e)) => {
                    assert!(e.to_string().contains(&code.to_string()), "{e}")
                }
                Err(e) => panic!("{e}"),
                Ok(_) => panic!("{path} accepted"),
            }
        }
    });
}

#[test]
fn a_thousand_subscribers_on_one_relay() {
    let server = Server::relay(&["--workers", "2"], None);
    let url = format!("ws://{}/", server.addr);
    block_on(async {
        let mut subs = Vec::with_capacity(1000);
        for i in 0..1000 {
            subs.push(subscribe(&url, if i % 2 == 0 { "EVEN" } else { "*" }).await);
        }
        let publ = publisher(&url).await;
        for n in 0..5 {
            publ.send(
                MessageKind::Text,
                format!(r#"{{"s":"EVEN","n":{n}}}"#).as_bytes(),
            )
            .await
            .unwrap();
        }
        for sub in &mut subs {
            for n in 0..5 {
                assert_eq!(next_text(sub).await, format!(r#"{{"s":"EVEN","n":{n}}}"#));
            }
        }
    });
}

/// A plain subscriber with nothing else to send is written by the worker's fan-out,
/// not by its own writer task (which writes the `subscribed` reply); in order, with
/// nothing lost. Counted in `feedrelay_subscriber_writes_total` by path.
#[test]
fn a_plain_subscribers_messages_go_out_through_the_fan_out() {
    let server = Server::relay(&["--workers", "1"], Some("metrics_on_data_port = true\n"));
    let url = format!("ws://{}/", server.addr);
    const N: usize = 40;
    block_on(async {
        let mut sub = subscribe(&url, "AAA").await;
        let publisher = publisher(&url).await;
        for seq in 0..N {
            let m = format!(r#"{{"s":"AAA","seq":{seq}}}"#);
            publisher
                .send(MessageKind::Text, m.as_bytes())
                .await
                .unwrap();
            // Apart, so each goes out in a write of its own.
            feedrelay::io::rt::sleep(std::time::Duration::from_millis(3)).await;
        }
        for seq in 0..N {
            let m = next_text(&mut sub).await;
            assert_eq!(field(&m, "seq"), seq.to_string(), "{m}");
        }
    });
    let fanout = "feedrelay_subscriber_writes_total{path=\"fanout\"}";
    common::wait_metric(server.addr, None, fanout, |n| n >= N as u64 / 2);
    let text = common::http_get(server.addr, "/metrics");
    let writer = common::metric(&text, "feedrelay_subscriber_writes_total{path=\"writer\"}");
    assert!(writer.is_some_and(|n| n >= 1 && n < N as u64 / 2), "{text}");
}
