//! The demo's market: a synthetic exchange publishing to `/pub` (20 symbols, trades
//! and best bid/ask as realistic JSON, a base rate with bursts), or two mock exchanges
//! as A/B feed lines the relay dials. Every message carries its send time (`ts`,
//! CLOCK_REALTIME ns) so subscribers measure end-to-end latency.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::subscribers::DemoStats;
use crate::io::driver::client::WsClient;
use crate::io::ring::Ring;
use crate::io::rt;
use crate::io::shutdown::{self, Trigger};
use crate::metrics::clock::realtime_ns;
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
                rt::sleep(Duration::from_micros(200)).await;
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
            rt::yield_now().await;
        }
        Ok(())
    })
}

/// A line that is up: its stop trigger and thread.
type Running = (Trigger, std::thread::JoinHandle<()>);

/// Two `mock-exchange` servers in this process, carrying the same market as A/B lines,
/// for `demo --feed`: the relay dials both as one group and arbitrates. Each line can
/// be killed and started again on its port (`demo --outage`).
pub struct MockLines {
    options: Arc<crate::mock_exchange::Options>,
    /// Line A's counters (trades sent).
    pub stats: Arc<crate::mock_exchange::Stats>,
    /// Per line: its address, and while it runs, its stop trigger and thread.
    lines: Vec<(std::net::SocketAddr, Option<Running>)>,
    urls: Vec<String>,
    /// The topics (symbols) the lines carry.
    pub symbols: Vec<String>,
}

impl MockLines {
    /// Starts two lines of `rate` trades/s over 20 symbols on loopback ports the OS picks.
    pub fn start(rate: u64) -> anyhow::Result<MockLines> {
        use crate::mock_exchange::{url, Faults, Options, Stats};
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
            options,
            stats: Arc::new(Stats::default()),
            lines: Vec::new(),
            urls: Vec::new(),
            symbols: crate::mock_exchange::market::Market::new(20, rate)
                .symbol_names()
                .to_vec(),
        };
        for _ in 0..2 {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            let addr = listener.local_addr()?;
            lines.urls.push(url(addr, false));
            lines.lines.push((addr, None));
            lines.run(lines.lines.len() - 1, listener);
        }
        Ok(lines)
    }

    /// Serves line `i` on `listener` on a thread of its own.
    fn run(&mut self, i: usize, listener: std::net::TcpListener) {
        let stats = if i == 0 {
            Arc::clone(&self.stats)
        } else {
            Arc::new(crate::mock_exchange::Stats::default())
        };
        let (trigger, stop) = shutdown::channel();
        let options = Arc::clone(&self.options);
        let thread = std::thread::spawn(move || {
            if let Err(e) = crate::mock_exchange::serve(listener, options, stats, stop) {
                tracing::warn!(error = %e, "mock exchange stopped");
            }
        });
        self.lines[i].1 = Some((trigger, thread));
    }

    /// Stops line `i` (its connections are closed); `restore` starts it again.
    pub fn kill(&mut self, i: usize) {
        if let Some((trigger, thread)) = self.lines.get_mut(i).and_then(|l| l.1.take()) {
            trigger.fire();
            let _ = thread.join();
        }
    }

    /// Starts line `i` again on its port.
    pub fn restore(&mut self, i: usize) -> anyhow::Result<()> {
        let addr = self.lines[i].0;
        let listener = std::net::TcpListener::bind(addr)?;
        self.run(i, listener);
        Ok(())
    }

    /// The `[[feeds]]` tables for the relay: both lines in group `mock`, redialling
    /// within half a second (so `--outage` shows the return at once).
    pub fn feeds_toml(&self) -> String {
        let mut t = String::from("topic_pointer = \"/data/s\"\n");
        for (i, url) in self.urls.iter().enumerate() {
            let line = ["a", "b"][i.min(1)];
            t.push_str(&format!(
                "[[feeds]]\nname = \"mock-{line}\"\nurl = \"{url}\"\ngroup = \"mock\"\n\
                 subscribe = ['{{\"method\":\"SUBSCRIBE\",\"params\":[\"*\"],\"id\":1}}']\n\
                 seq_pointer = \"/data/u\"\nreconnect_initial_ms = 50\nreconnect_max_ms = 500\n"
            ));
        }
        t
    }

    /// Stops both lines and waits for them.
    pub fn stop(mut self) {
        for i in 0..self.lines.len() {
            self.kill(i);
        }
    }
}
