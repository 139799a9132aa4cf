//! How long after an exchange comes back does the first message reach a subscriber?
//!
//! Starts `feedrelay mock-exchange` and `feedrelay run` with one feed to it, subscribes,
//! then kills and restarts the exchange (same port) `ROUNDS` times, each time measuring
//! from the exchange's "listening" line to the first relayed trade. Run once per
//! backoff setting: a fixed 10 ms retry (what the relay itself costs: connect, opening
//! handshake, subscribe, first trade) and the defaults (100 ms doubling to 10 s, full
//! jitter: what an operator sees).
//!
//! `cargo bench --bench feed_reconnect` (uses the release binary cargo builds).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use feedrelay::io::driver::client::{Incoming, WsClient};
use feedrelay::io::ring::Ring;
use feedrelay::ws::Limits;

const ROUNDS: usize = 20;
const DOWN: Duration = Duration::from_millis(300);

struct Proc {
    child: Child,
    first_line: String,
}

impl Proc {
    fn start(args: &[&str]) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_feedrelay"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn feedrelay");
        let mut first_line = String::new();
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        out.read_line(&mut first_line).expect("first line");
        std::thread::spawn(move || {
            let mut sink = String::new();
            while out.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        Proc { child, first_line }
    }

    fn addr(&self) -> String {
        self.first_line
            .split("://")
            .nth(1)
            .and_then(|s| s.split(['/', ' ']).next())
            .expect("address")
            .to_owned()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn measure(label: &str, backoff: &str) {
    let mut exchange = Proc::start(&["mock-exchange", "--listen", "127.0.0.1:0", "--rate", "1000"]);
    let addr = exchange.addr();
    let config =
        std::env::temp_dir().join(format!("feedrelay-reconnect-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        format!(
            "topic_pointer = \"/data/s\"\n[[feeds]]\nname = \"x\"\nurl = \"ws://{addr}/stream\"\n\
             subscribe = ['{{\"method\":\"SUBSCRIBE\",\"params\":[\"*\"],\"id\":1}}']\n\
             seq_pointer = \"/data/u\"\n{backoff}\n"
        ),
    )
    .expect("config");
    let relay = Proc::start(&[
        "run",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--config",
        config.to_str().expect("utf-8 path"),
    ]);
    let relay_url = format!("ws://{}/ws?topics=*", relay.addr());
    let (tx, rx) = mpsc::channel::<Instant>();
    std::thread::spawn(move || {
        let ring = Ring::new().expect("io_uring");
        ring.block_on(async move {
            let mut c = WsClient::connect(&relay_url, &[], Limits::default())
                .await
                .expect("subscribe");
            while let Ok(m) = c.recv().await {
                if let Incoming::Message(..) = m {
                    if tx.send(Instant::now()).is_err() {
                        break;
                    }
                }
            }
        });
    });
    let mut times = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        // Flowing: wait for a message, then kill the exchange.
        rx.recv_timeout(Duration::from_secs(10)).expect("flowing");
        drop(exchange);
        std::thread::sleep(DOWN);
        while rx.try_recv().is_ok() {}
        exchange = Proc::start(&["mock-exchange", "--listen", &addr, "--rate", "1000"]);
        let back = Instant::now();
        // Skip anything that was in flight before the kill.
        let first = loop {
            let t = rx.recv_timeout(Duration::from_secs(30)).expect("resumed");
            if t > back {
                break t;
            }
        };
        times.push(first.duration_since(back));
    }
    let _ = std::fs::remove_file(&config);
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{label:<40} rounds {ROUNDS}  min {:>7.1} ms  p50 {:>7.1} ms  p90 {:>7.1} ms  max {:>7.1} ms",
        ms(times[0]),
        ms(times[ROUNDS / 2]),
        ms(times[ROUNDS * 9 / 10]),
        ms(times[ROUNDS - 1])
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it with no args as a
    // smoke test, which would take a minute: measure only when benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        println!("feed_reconnect: run with `cargo bench --bench feed_reconnect`");
        return;
    }
    println!(
        "exchange down {} ms, then back on the same port; time to the first relayed trade",
        DOWN.as_millis()
    );
    measure(
        "fixed 10 ms retry (no jitter)",
        "reconnect_initial_ms = 10\nreconnect_max_ms = 10\nreconnect_jitter = false",
    );
    measure("defaults (100 ms .. 10 s, full jitter)", "");
}
