//! The relay's own events to subscribers over real sockets: an exchange feed killed
//! mid-stream makes its topics' subscribers hear `stale` (once), its return `live`
//! (once) and the trades it missed `gap`; a subscriber with `events=0` hears none.

mod common;

use std::time::{Duration, Instant};

use common::{Raw, Server};

fn json(payload: &[u8]) -> serde_json::Value {
    serde_json::from_slice(payload).unwrap_or(serde_json::Value::Null)
}

/// A relay config with one feed `name` on the mock exchange at `addr`, subscribed to
/// every stream, plus `extra` lines for the feed.
fn feed(name: &str, addr: std::net::SocketAddr, extra: &str) -> String {
    format!(
        r#"topic_pointer = "/data/s"
[[feeds]]
name = "{name}"
url = "ws://{addr}/stream"
subscribe = ['{{"method":"SUBSCRIBE","params":["*"],"id":1}}']
{extra}"#
    )
}

/// Reads until an event named `name` arrives (within 10 s); returns it and the events
/// seen on the way.
fn until_event(sub: &mut Raw, name: &str) -> (serde_json::Value, Vec<serde_json::Value>) {
    let end = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while Instant::now() < end {
        let Some((_, payload)) = sub.recv_or_timeout() else {
            continue;
        };
        let v = json(&payload);
        if let Some(event) = v["event"].as_str() {
            if event == name {
                return (v, seen);
            }
            seen.push(v);
        }
    }
    panic!("no {name} event within 10 s; saw {seen:?}");
}

#[test]
fn subscribers_hear_stale_live_and_gap_once_each_unless_they_opt_out() {
    let exchange = Server::mock_exchange(&["--rate", "1000"]);
    let addr = exchange.addr;
    let toml = feed(
        "ex",
        addr,
        "seq_pointer = \"/data/u\"\nreconnect_initial_ms = 50\nreconnect_max_ms = 200\n",
    );
    let relay = Server::relay(&["--workers", "2"], Some(&toml));
    let mut sub = Raw::subscribe(relay.addr, "*");
    let mut quiet = Raw::subscribe(relay.addr, "*&events=0");
    for s in [&mut sub, &mut quiet] {
        s.s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
    }
    // Trades flow; then the exchange dies without a close frame.
    let mut trades = 0;
    while trades < 100 {
        if let Some((_, p)) = sub.recv_or_timeout() {
            trades += json(&p)["data"]["s"].is_string() as usize;
        }
    }
    drop(exchange);
    let (stale, before) = until_event(&mut sub, "stale");
    assert!(before.is_empty(), "nothing before stale: {before:?}");
    assert_eq!(stale["feed"], "ex");
    let topics = stale["topics"].as_array().unwrap();
    assert!(
        !topics.is_empty()
            && topics
                .iter()
                .all(|t| t.as_str().is_some_and(|t| !t.is_empty()))
    );
    // Back on the same port: live once, then a gap for the trades made meanwhile.
    std::thread::sleep(Duration::from_millis(300));
    let _exchange = Server::mock_exchange(&["--listen", &addr.to_string(), "--rate", "1000"]);
    let (live, between) = until_event(&mut sub, "live");
    assert!(between.is_empty(), "stale is sent once: {between:?}");
    assert_eq!(
        (&live["feed"], &live["topics"]),
        (&stale["feed"], &stale["topics"])
    );
    let (gap, _) = until_event(&mut sub, "gap");
    let (from, to) = (gap["from"].as_u64().unwrap(), gap["to"].as_u64().unwrap());
    assert!(from <= to && topics.contains(&gap["topic"]), "{gap}");
    // The subscriber that opted out got trades and no event at all.
    let end = Instant::now() + Duration::from_secs(1);
    let mut quiet_trades = 0;
    while Instant::now() < end {
        if let Some((_, p)) = quiet.recv_or_timeout() {
            let v = json(&p);
            assert!(v["event"].is_null() || v["event"] == "subscribed", "{v}");
            quiet_trades += 1;
        }
    }
    assert!(quiet_trades > 0);
}

/// An exchange that stops trading but still answers pings: the line is kept, and its
/// subscribers hear `stale` once `stale_after_ms` passes without a message.
#[test]
fn a_feed_that_goes_quiet_but_answers_pings_is_reported_stale() {
    let exchange = Server::mock_exchange(&["--quiet-after", "50", "--ping-ms", "600000"]);
    let toml = feed("quiet", exchange.addr, "stale_after_ms = 400\n");
    let relay = Server::relay(&["--workers", "1"], Some(&toml));
    let mut sub = Raw::subscribe(relay.addr, "*");
    sub.s
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let (stale, _) = until_event(&mut sub, "stale");
    assert_eq!(stale["feed"], "quiet");
    assert!(!stale["topics"].as_array().unwrap().is_empty(), "{stale}");
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        !relay.log().contains("feed down"),
        "the line was kept: {}",
        relay.log()
    );
}
