//! `feedrelay demo`: the relay, a synthetic exchange and a set of subscribers in one
//! process, with a live table of rates, drops and latency per hop and end to end.
//!
//! The relay's own hop histograms come from its metrics collector; end to end is what
//! the subscribers measure from each message's send time.
//!
//! - [`exchange`]: the synthetic `/pub` exchange and the mock A/B feed lines.
//! - [`backbone`]: `--nats`, the exchange's messages reaching the relay across NATS.
//! - [`subscribers`]: the subscribers and what they measure.

pub mod backbone;
pub mod exchange;
pub mod subscribers;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use hdrhistogram::Histogram;

use backbone::Backbone;
use exchange::{run_exchange, MockLines, SYMBOLS};
use subscribers::{run_subscribers, DemoStats};

use crate::io::listener::bind_reuseport;
use crate::io::worker::CoreMap;
use crate::io::{ring, shutdown};
use crate::metrics::collector::{Collector, Finished};
use crate::metrics::percentiles::PercentileTable;
use crate::metrics::snapshot::Snapshot;
use crate::metrics::{Hop, HopHistograms};
use crate::relay::config::Config;
use crate::relay::feed::plan::plan_feeds;
use crate::relay::run::{run_relay, RelayStart};
use crate::relay::worker::telemetry::{summary, MetricsLink};

/// What `feedrelay demo` was asked for.
#[derive(Debug, Clone)]
pub struct DemoArgs {
    /// Stop after this many seconds (`None`: at Ctrl-C).
    pub duration: Option<f64>,
    /// Messages (or trades per line) per second.
    pub rate: u64,
    /// Subscribers.
    pub subs: usize,
    /// Relay workers (`None`: half the CPUs, at least one).
    pub workers: Option<usize>,
    /// The per-hop interval log; the plot goes beside it (`.svg`).
    pub hlog: std::path::PathBuf,
    /// Two mock exchanges as A/B feed lines instead of the bursty publisher.
    pub feed: bool,
    /// With `feed`: both lines go down (A at 5 s, B at 6 s) and come back at 9 s.
    pub outage: bool,
    /// Across NATS: `Some(None)` starts a `nats-server` from the PATH, `Some(Some(url))`
    /// uses that one.
    pub nats: Option<Option<String>>,
}

/// Runs the demo until `duration` or Ctrl-C, printing through `say`.
pub fn command(a: DemoArgs, say: &dyn Fn(&str)) -> anyhow::Result<()> {
    let mut lines = a.feed.then(|| MockLines::start(a.rate)).transpose()?;
    let mut config = match &lines {
        Some(l) => Config::parse(&l.feeds_toml(), "demo feeds")?,
        None => Config::default(),
    };
    let backbone = a
        .nats
        .as_ref()
        .map(|url| Backbone::start(url.as_deref()))
        .transpose()?;
    config.nats = backbone.as_ref().map(Backbone::import_config);
    config.listen = "127.0.0.1:0".parse()?;
    config.workers = a.workers;
    let map = CoreMap::limited(
        config.workers,
        None,
        crate::relay::core::routing::MAX_WORKERS,
    )?;
    ring::probe()?;
    let listeners = bind_reuseport(config.listen, map.workers())?;
    let local = listeners[0].local_addr()?;
    let n = map.workers();
    let collector = Collector::start(n, Some(&a.hlog))?;
    let link = MetricsLink::new(&collector);
    let (trigger, stop_relay) = shutdown::channel();
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&interrupted))?;
    }
    let feeds = plan_feeds(&config, n)?;
    let settings = crate::relay::reload::ReloadableSettings::new(&config)?;
    let config = Arc::new(config);
    let start = RelayStart {
        feeds,
        metrics: Some(link),
        ..RelayStart::new(listeners, config, stop_relay, settings)
    };
    let relay = std::thread::spawn(move || run_relay(&map, start));
    let url = format!("ws://{local}/");
    let source = describe_source(&a, lines.is_some(), backbone.as_ref());
    say(&format!(
        "feedrelay demo: relay on {url} ({n} workers), {source}, {} subscribers; Ctrl-C to stop",
        a.subs
    ));
    let stats = DemoStats::new();
    let symbols: Vec<String> = match &lines {
        Some(l) => l.symbols.clone(),
        None => SYMBOLS.iter().map(|s| s.to_string()).collect(),
    };
    let subscribers = {
        let (url, stats, subs) = (url.clone(), Arc::clone(&stats), a.subs);
        std::thread::spawn(move || run_subscribers(url, subs, symbols, stats))
    };
    std::thread::sleep(Duration::from_millis(300));
    let exchange = lines.is_none().then(|| {
        let url = backbone.as_ref().map_or(&url, |b| &b.upstream).clone();
        let (stats, rate) = (Arc::clone(&stats), a.rate);
        std::thread::spawn(move || run_exchange(url, rate, stats))
    });
    let mut live = LiveTable::new(&stats, lines.as_ref(), collector.snapshot());
    let started = Instant::now();
    // Three seconds in, a late subscriber asks for a snapshot; its report is printed.
    let late = {
        let url = url.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(3));
            subscribers::late_snapshot(&url)
        })
    };
    let mut late = Some(late);
    loop {
        std::thread::sleep(Duration::from_secs(1));
        if late.as_ref().is_some_and(|l| l.is_finished()) {
            match late.take().map(|l| l.join()) {
                Some(Ok(Ok(line))) => say(&line),
                Some(Ok(Err(e))) => say(&format!("late subscriber: {e:#}")),
                _ => say("late subscriber: its thread panicked"),
            }
        }
        for e in stats
            .events
            .lock()
            .map(|mut e| std::mem::take(&mut *e))
            .unwrap_or_default()
        {
            say(&format!("event: {e}"));
        }
        if let (true, Some(l)) = (a.outage, lines.as_mut()) {
            outage_step(l, started.elapsed(), say);
        }
        let done = interrupted.load(Ordering::Relaxed)
            || a.duration
                .is_some_and(|d| started.elapsed().as_secs_f64() >= d);
        if done {
            break;
        }
        say(&live.render(started.elapsed()));
    }
    stats.stop.store(true, Ordering::Relaxed);
    if let Some(e) = exchange {
        let _ = e.join();
    }
    // The relay's shutdown closes the subscribers (1001), which ends their thread.
    std::thread::sleep(Duration::from_millis(200));
    trigger.fire();
    let _ = subscribers.join();
    let summaries = relay
        .join()
        .map_err(|_| anyhow!("relay thread panicked"))??;
    if let Some(l) = lines {
        // After the relay, so its feeds do not see the exchanges go.
        l.stop();
        say(&summary(&summaries));
    }
    let finished = collector.finish()?;
    say(&format!("final:\n{}", live.render(started.elapsed())));
    finish(&a.hlog, finished, &stats, say)
}

/// Where the demo's messages come from, in words.
fn describe_source(a: &DemoArgs, feed: bool, backbone: Option<&Backbone>) -> String {
    let source = match feed {
        true => format!(
            "two mock exchanges as A/B feed lines at {} trades/s each",
            a.rate
        ),
        false => format!("exchange publishing at {} msg/s (bursty)", a.rate),
    };
    match backbone {
        Some(b) => format!("{source} to a relay exporting to {}", b.nats_url),
        None => source,
    }
}

/// `--outage`: the step due at `t` (each second is looked at once).
fn outage_step(lines: &mut MockLines, t: Duration, say: &dyn Fn(&str)) {
    match t.as_secs() {
        5 => {
            lines.kill(0);
            say("outage: line A killed (the group stays live on line B: no event)");
        }
        6 => {
            lines.kill(1);
            say("outage: line B killed too: every line of the group is down");
        }
        9 => {
            for i in 0..2 {
                if let Err(e) = lines.restore(i) {
                    say(&format!("outage: line {i} could not start again: {e:#}"));
                }
            }
            say("outage: lines A and B restored");
        }
        _ => {}
    }
}

/// Writes the plot and says where the hlog and the plot are; an error if the hlog
/// could not be written whole.
fn finish(
    hlog: &std::path::Path,
    finished: Finished,
    stats: &DemoStats,
    say: &dyn Fn(&str),
) -> anyhow::Result<()> {
    let totals = finished.snapshot.merged();
    let plot = hlog.with_extension("svg");
    let e2e = stats.e2e_snapshot();
    let mut series: Vec<(String, &Histogram<u64>)> = Hop::ALL
        .iter()
        .filter(|&&h| !(h.optional() && totals.get(h).is_empty()))
        .map(|&h| (h.name().to_owned(), totals.get(h)))
        .collect();
    series.push(("end2end".to_owned(), &e2e));
    crate::bench::plot::write_svg(&plot, "feedrelay demo: latency by hop", &series)?;
    let whole = match &finished.hlog {
        Ok(()) => "",
        Err(_) => " (incomplete: see the error below)",
    };
    say(&format!(
        "per-hop interval log (HdrHistogram V2): {}{whole}",
        hlog.display()
    ));
    say(&format!("latency plot (SVG): {}", plot.display()));
    // The run and its plot stand; the log they name is not whole.
    finished
        .hlog
        .context("the per-hop interval log is incomplete")
}

/// The live table: rates since the last render, drops, latency per hop and end to end.
struct LiveTable<'a> {
    stats: &'a DemoStats,
    line_stats: Option<Arc<crate::mock_exchange::Stats>>,
    snapshot: Arc<std::sync::Mutex<Snapshot>>,
    last: (u64, u64, Instant),
}

impl<'a> LiveTable<'a> {
    fn new(
        stats: &'a DemoStats,
        lines: Option<&MockLines>,
        snapshot: Arc<std::sync::Mutex<Snapshot>>,
    ) -> Self {
        LiveTable {
            stats,
            line_stats: lines.map(|l| Arc::clone(&l.stats)),
            snapshot,
            last: (0, 0, Instant::now()),
        }
    }

    fn render(&mut self, elapsed: Duration) -> String {
        let now = Instant::now();
        let sent = match &self.line_stats {
            Some(l) => l.trades.load(Ordering::Relaxed),
            None => self.stats.sent.load(Ordering::Relaxed),
        };
        let received = self.stats.received.load(Ordering::Relaxed);
        let (last_in, last_out, last_t) = self.last;
        let dt = now.duration_since(last_t).as_secs_f64().max(1e-3);
        self.last = (sent, received, now);
        let snapshot = self.snapshot.lock().map(|s| s.clone()).unwrap_or_default();
        table(
            elapsed,
            (sent - last_in) as f64 / dt,
            (received - last_out) as f64 / dt,
            &snapshot,
            &self.stats.e2e_snapshot(),
        )
    }
}

/// One block of the live table: rates, drops, and latency per hop and end to end.
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
    let mut t = PercentileTable::new("  hop");
    for hop in Hop::ALL {
        if !(hop.optional() && hops.get(hop).is_empty()) {
            t.row(&format!("  {}", hop.name()), hops.get(hop), &[]);
        }
    }
    t.row("  end2end", e2e, &[]);
    format!(
        "t={:>4}s  in {in_per_s:>8.0} msg/s  out {out_per_s:>9.0} msg/s  dropped {dropped}  no topic {no_topic}\n{}",
        elapsed.as_secs(),
        t.render()
    )
}
