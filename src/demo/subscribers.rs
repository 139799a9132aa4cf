//! The demo's subscribers: half take every symbol, half four symbols each; each records
//! end-to-end latency from the message's send time.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::io::driver::client::{Incoming, WsClient};
use crate::io::ring::Ring;
use crate::io::rt;
use crate::metrics::clock::realtime_ns;
use crate::ws::Limits;

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
    /// The relay's events (stale, live, gap) as a subscriber received them, not yet
    /// printed.
    pub events: Mutex<Vec<String>>,
}

impl DemoStats {
    /// Empty counters.
    pub fn new() -> Arc<DemoStats> {
        Arc::new(DemoStats {
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            e2e: Mutex::new(crate::metrics::hop::new_histogram()),
            stop: AtomicBool::new(false),
            events: Mutex::new(Vec::new()),
        })
    }

    /// A copy of the end-to-end histogram so far.
    pub fn e2e_snapshot(&self) -> Histogram<u64> {
        self.e2e
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|_| crate::metrics::hop::new_histogram())
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
            tasks.push(rt::spawn(async move {
                // Until the relay closes us at the end (recv is not cancel-safe: no timeout).
                loop {
                    let m = match c.recv().await {
                        Ok(Incoming::Message(_, m)) => m,
                        Ok(_) => continue,
                        Err(_) => break,
                    };
                    // The first subscriber shows the relay's own events.
                    if n == 0
                        && m.starts_with(b"{\"event\":\"")
                        && !m.starts_with(b"{\"event\":\"subscribed")
                    {
                        if let Ok(mut e) = stats.events.lock() {
                            e.push(String::from_utf8_lossy(&m).into_owned());
                        }
                        continue;
                    }
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
            rt::sleep(Duration::from_millis(200)).await;
            merge(&local);
        }
        merge(&local);
        Ok(())
    })
}

/// A subscriber that joins late with `snapshot=1` for every topic: what it got before
/// the live stream, as one line for the demo to print.
pub fn late_snapshot(url: &str) -> anyhow::Result<String> {
    Ring::new()?.block_on(async move {
        let started = std::time::Instant::now();
        let mut c = WsClient::connect(
            &format!("{url}ws?topics=*&snapshot=1"),
            &[],
            Limits::default(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("late subscriber: {e}"))?;
        let first = match c.recv().await {
            Ok(Incoming::Message(_, m)) => String::from_utf8_lossy(&m).into_owned(),
            other => anyhow::bail!("late subscriber: expected the reply, got {other:?}"),
        };
        // The snapshot is one message per topic right after the reply: count topics
        // until one repeats (the live stream).
        let mut topics = std::collections::HashSet::new();
        let mut example = String::new();
        loop {
            let m = match rt::timeout(Duration::from_secs(2), c.recv()).await {
                Ok(Ok(Incoming::Message(_, m))) => m,
                Ok(Ok(_)) => continue,
                _ => break,
            };
            let topic = m
                .windows(5)
                .position(|w| w == b"\"s\":\"")
                .map(|at| m[at + 5..].iter().take_while(|&&b| b != b'"').copied().collect::<Vec<u8>>());
            match topic {
                Some(t) if topics.insert(t.clone()) => {
                    if example.is_empty() {
                        example = String::from_utf8_lossy(&m).chars().take(100).collect();
                    }
                }
                _ => break,
            }
        }
        Ok(format!(
            "late subscriber (snapshot=1, every topic): {first}, then the last message of {} topics in {:.1} ms, then the live stream; e.g. {example}",
            topics.len(),
            started.elapsed().as_secs_f64() * 1e3
        ))
    })
}
