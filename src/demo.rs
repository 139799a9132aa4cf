//! `feedrelay demo`: the relay, a synthetic exchange and a set of subscribers in one
//! process, with a live table of rates, drops and latency per hop and end to end.
//!
//! The exchange publishes realistic JSON for 20 symbols (trades and best bid/ask
//! updates) at a base rate with bursts; every message carries its send time (`ts`,
//! CLOCK_REALTIME ns) so subscribers measure end-to-end latency. The relay's own hop
//! histograms come from its metrics collector.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::io::client::{Incoming, WsClient};
use crate::io::ring::Ring;
use crate::metrics::clock::realtime_ns;
use crate::metrics::collector::Snapshot;
use crate::metrics::{Hop, HopHistograms};
use crate::ws::{Limits, MessageKind};

/// The symbols the synthetic exchange trades.
pub const SYMBOLS: [&str; 20] = [
    "BTC-USD",
    "ETH-USD",
    "SOL-USD",
    "XRP-USD",
    "ADA-USD",
    "DOGE-USD",
    "AVAX-USD",
    "DOT-USD",
    "LINK-USD",
    "MATIC-USD",
    "LTC-USD",
    "BCH-USD",
    "ATOM-USD",
    "XLM-USD",
    "ETC-USD",
    "FIL-USD",
    "APT-USD",
    "ARB-USD",
    "OP-USD",
    "NEAR-USD",
];

/// What the demo's clients saw, shared with the table printer.
#[derive(Debug)]
pub struct DemoStats {
    /// Messages the exchange sent.
    pub sent: AtomicU64,
    /// Messages the subscribers received.
    pub received: AtomicU64,
    /// End-to-end latency (exchange send → subscriber receipt), ns.
    pub e2e: Mutex<Histogram<u64>>,
    /// Set to stop the clients.
    pub stop: AtomicBool,
}

impl DemoStats {
    /// Empty counters.
    pub fn new() -> Arc<DemoStats> {
        Arc::new(DemoStats {
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            e2e: Mutex::new(crate::metrics::hop::new_histogram()),
            stop: AtomicBool::new(false),
        })
    }
}

/// A small deterministic generator (xorshift) for prices, sizes and bursts.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The synthetic exchange: one publisher connection, `rate` messages/s on average, with
/// a 5x burst for 100 ms roughly every 2 s. Runs until `stats.stop`.
pub fn run_exchange(url: String, rate: u64, stats: Arc<DemoStats>) -> anyhow::Result<()> {
    Ring::new()?.block_on(async move {
        let c = WsClient::connect(&format!("{url}pub"), &[], Limits::default())
            .await
            .map_err(|e| anyhow::anyhow!("exchange: {e}"))?;
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut prices: Vec<f64> = (0..SYMBOLS.len()).map(|i| 100.0 * (i + 1) as f64).collect();
        let mut seqs = vec![0u64; SYMBOLS.len()];
        let start = Instant::now();
        let mut sent = 0u64;
        let mut msg = String::with_capacity(256);
        // Bursts: for BURST_S out of every PERIOD_S, four times the base rate on top.
        const PERIOD_S: f64 = 2.0;
        const BURST_S: f64 = 0.1;
        let extra_rate = 4.0 * rate as f64;
        while !stats.stop.load(Ordering::Relaxed) {
            let secs = start.elapsed().as_secs_f64();
            let full = (secs / PERIOD_S).floor();
            let into = secs - full * PERIOD_S;
            let extra = (full * BURST_S + into.min(BURST_S)) * extra_rate;
            let target = (secs * rate as f64 + extra) as u64;
            if sent >= target {
                tokio::time::sleep(Duration::from_micros(200)).await;
                continue;
            }
            while sent < target {
                let i = (rng.next() % SYMBOLS.len() as u64) as usize;
                let drift = (rng.next() % 2001) as f64 / 1000.0 - 1.0;
                prices[i] = (prices[i] * (1.0 + drift / 1000.0)).max(0.01);
                msg.clear();
                let (sym, seq, ts) = (SYMBOLS[i], seqs[i], realtime_ns());
                if rng.next() % 3 == 0 {
                    let qty = (rng.next() % 5000) as f64 / 1000.0 + 0.001;
                    let side = if rng.next() % 2 == 0 { "buy" } else { "sell" };
                    msg.push_str(&format!(
                        r#"{{"s":"{sym}","e":"trade","seq":{seq},"ts":{ts},"p":"{:.2}","q":"{qty:.3}","side":"{side}"}}"#,
                        prices[i]
                    ));
                } else {
                    let spread = prices[i] * 0.0002;
                    msg.push_str(&format!(
                        r#"{{"s":"{sym}","e":"bbo","seq":{seq},"ts":{ts},"b":"{:.2}","bq":"{:.3}","a":"{:.2}","aq":"{:.3}"}}"#,
                        prices[i] - spread,
                        (rng.next() % 9000) as f64 / 1000.0 + 0.1,
                        prices[i] + spread,
                        (rng.next() % 9000) as f64 / 1000.0 + 0.1
                    ));
                }
                seqs[i] += 1;
                c.send(MessageKind::Text, msg.as_bytes())
                    .await
                    .map_err(|e| anyhow::anyhow!("exchange: {e}"))?;
                sent += 1;
                stats.sent.fetch_add(1, Ordering::Relaxed);
            }
            tokio::task::yield_now().await;
        }
        Ok(())
    })
}

/// Two `mock-exchange` servers in this process, carrying the same market as A/B lines,
/// for `demo --feed`: the relay dials both as one group and arbitrates.
pub struct MockLines {
    stop: Arc<AtomicBool>,
    /// Line A's counters (trades sent).
    pub stats: Arc<crate::mock_exchange::Stats>,
    threads: Vec<std::thread::JoinHandle<()>>,
    urls: Vec<String>,
    /// The topics (symbols) the lines carry.
    pub symbols: Vec<String>,
}

impl MockLines {
    /// Starts two lines of `rate` trades/s over 20 symbols on loopback ports the OS picks.
    pub fn start(rate: u64) -> anyhow::Result<MockLines> {
        use crate::mock_exchange::{serve, url, Faults, Options, Stats};
        let stop = Arc::new(AtomicBool::new(false));
        let options = Arc::new(Options {
            tls: None,
            symbols: 20,
            rate: rate.max(1),
            ping: Duration::from_secs(1),
            max_connections: 8,
            require_header: None,
            faults: Faults::default(),
        });
        let mut lines = MockLines {
            stop: Arc::clone(&stop),
            stats: Arc::new(Stats::default()),
            threads: Vec::new(),
            urls: Vec::new(),
            symbols: crate::mock_exchange::market::Market::new(20, rate)
                .symbol_names()
                .to_vec(),
        };
        for i in 0..2 {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            lines.urls.push(url(listener.local_addr()?, false));
            let stats = if i == 0 {
                Arc::clone(&lines.stats)
            } else {
                Arc::new(Stats::default())
            };
            let (options, stop) = (Arc::clone(&options), Arc::clone(&stop));
            lines.threads.push(std::thread::spawn(move || {
                if let Err(e) = serve(listener, options, stats, stop) {
                    tracing::warn!(error = %e, "mock exchange stopped");
                }
            }));
        }
        Ok(lines)
    }

    /// The `[[feeds]]` tables for the relay: both lines in group `mock`.
    pub fn feeds_toml(&self) -> String {
        let mut t = String::from("topic_pointer = \"/data/s\"\n");
        for (i, url) in self.urls.iter().enumerate() {
            let line = ["a", "b"][i.min(1)];
            t.push_str(&format!(
                "[[feeds]]\nname = \"mock-{line}\"\nurl = \"{url}\"\ngroup = \"mock\"\n\
                 subscribe = ['{{\"method\":\"SUBSCRIBE\",\"params\":[\"*\"],\"id\":1}}']\n\
                 seq_pointer = \"/data/u\"\n"
            ));
        }
        t
    }

    /// Stops both lines and waits for them.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// `subs` subscribers in one thread: half take every symbol, half four of `symbols`;
/// each records end-to-end latency. Runs until the relay closes them.
pub fn run_subscribers(
    url: String,
    subs: usize,
    symbols: Vec<String>,
    stats: Arc<DemoStats>,
) -> anyhow::Result<()> {
    Ring::new()?.block_on(async move {
        let local = Rc::new(RefCell::new(crate::metrics::hop::new_histogram()));
        let mut tasks = Vec::new();
        for n in 0..subs {
            let topics = if n % 2 == 0 {
                "*".to_owned()
            } else {
                (0..4)
                    .map(|k| symbols[(n + k * 5) % symbols.len()].as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let mut c =
                WsClient::connect(&format!("{url}ws?topics={topics}"), &[], Limits::default())
                    .await
                    .map_err(|e| anyhow::anyhow!("subscriber: {e}"))?;
            let (stats, local) = (Arc::clone(&stats), Rc::clone(&local));
            tasks.push(tokio_uring::spawn(async move {
                // Until the relay closes us at the end (recv is not cancel-safe: no timeout).
                loop {
                    let m = match c.recv().await {
                        Ok(Incoming::Message(_, m)) => m,
                        Ok(_) => continue,
                        Err(_) => break,
                    };
                    let now = realtime_ns();
                    let ts = m.windows(5).position(|w| w == b"\"ts\":").and_then(|at| {
                        let digits: Vec<u8> = m[at + 5..]
                            .iter()
                            .take_while(|b| b.is_ascii_digit())
                            .copied()
                            .collect();
                        std::str::from_utf8(&digits).ok()?.parse::<u64>().ok()
                    });
                    if let Some(ts) = ts {
                        let _ = local.borrow_mut().record(now.saturating_sub(ts).max(1));
                        stats.received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        // Hand the local histogram to the shared one every 200 ms until all have ended.
        let merge = |local: &RefCell<Histogram<u64>>| {
            let mut l = local.borrow_mut();
            if let Ok(mut shared) = stats.e2e.lock() {
                let _ = shared.add(&*l);
            }
            l.reset();
        };
        while tasks.iter().any(|t| !t.is_finished()) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            merge(&local);
        }
        merge(&local);
        Ok(())
    })
}

/// One block of the live table: rates, drops, and p50/p99/p99.9/max per hop and end to end.
pub fn table(
    elapsed: Duration,
    in_per_s: f64,
    out_per_s: f64,
    snapshot: &Snapshot,
    e2e: &Histogram<u64>,
) -> String {
    let hops: HopHistograms = snapshot.merged();
    // Messages without a topic (a feed's subscription reply, say) are not market data:
    // shown apart from the drops.
    let count = |no_topic: bool| -> u64 {
        snapshot
            .workers
            .iter()
            .flat_map(|(_, c)| c.dropped.iter())
            .filter(|(reason, _)| (*reason == "no_topic") == no_topic)
            .map(|(_, n)| *n)
            .sum()
    };
    let (dropped, no_topic) = (count(false), count(true));
    let mut t = format!(
        "t={:>4}s  in {:>8.0} msg/s  out {:>9.0} msg/s  dropped {dropped}  no topic {no_topic}\n  {:<9} {:>10} {:>9} {:>9} {:>9} {:>9}",
        elapsed.as_secs(),
        in_per_s,
        out_per_s,
        "hop",
        "count",
        "p50 us",
        "p99 us",
        "p99.9 us",
        "max us"
    );
    let row = |name: &str, h: &Histogram<u64>| {
        let q = |p: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(p) as f64 / 1e3
            }
        };
        format!(
            "\n  {name:<9} {:>10} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            h.len(),
            q(0.5),
            q(0.99),
            q(0.999),
            h.max() as f64 / 1e3
        )
    };
    for hop in Hop::ALL {
        t.push_str(&row(hop.name(), hops.get(hop)));
    }
    t.push_str(&row("end2end", e2e));
    t
}
