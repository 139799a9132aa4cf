//! `feedrelay run`: starting a whole relay and stopping it.
//!
//! Before anything listens, every worker's ring is set up as configured and every
//! feed's TLS trust is built, so a bad SQPOLL CPU or `ca_file` is a one-line refusal.
//! Then one listener per worker, the metrics collector, the workers themselves; on
//! SIGINT/SIGTERM they drain and the summary and percentile table are printed.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::io::http::Reply;
use crate::io::limits::raise_fd_limit;
use crate::io::listener::bind_reuseport_with;
use crate::io::offload::Offload;
use crate::io::shutdown::{self, Shutdown};
use crate::io::sockopt::SocketOptions;
use crate::io::worker::{run_workers_with, CoreMap};
use crate::io::{http, ring, IoError};
use crate::metrics::admin::subscribers_json;
use crate::metrics::collector::{Collector, MetricsError};
use crate::metrics::percentiles::PercentileTable;
use crate::metrics::Hop;
use crate::metrics::{health, status};
use crate::relay::access::admission::Admission;
use crate::relay::config::Config;
use crate::relay::core::budget::SubscriptionBudget;
use crate::relay::core::routing::MAX_WORKERS;
use crate::relay::feed::plan::{plan_feeds, FeedPlan};
use crate::relay::reload::{reload_on_sighup, ReloadError, ReloadableSettings};
use crate::relay::worker::links::links;
use crate::relay::worker::start::{run_worker, WorkerSetup};
use crate::relay::worker::state::WorkerNats;
use crate::relay::worker::telemetry::{summary, MetricsLink, WorkerSummary};
use crate::ws::mask::MaskKernel;

/// Helper threads that check subscribers' JWT signatures off the workers.
const VERIFY_THREADS: usize = 2;

/// Signature checks waiting at most; past it, a login is answered 503.
const VERIFY_QUEUE: usize = 1024;

/// Why the relay could not start or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The host, a socket or a worker failed (or the worker layout is impossible).
    #[error(transparent)]
    Io(#[from] IoError),
    /// The metrics collector or its interval log failed.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The listener's certificate or key does not load.
    #[error(transparent)]
    Settings(#[from] ReloadError),
}

/// What the relay prints as it goes (the CLI's stdout).
pub type Say<'a> = &'a dyn Fn(&str);

/// Bound listeners, the shutdown they stop on, and the address they share.
pub struct Listening {
    /// One listener per worker, on the same address.
    pub listeners: Vec<TcpListener>,
    /// The address (the port the OS chose, for port 0).
    pub local: SocketAddr,
    /// Fired by SIGINT/SIGTERM.
    pub shutdown: Shutdown,
}

/// What `echo` and `run` share at start: check the ring, bind one listener per worker,
/// arm SIGINT/SIGTERM, and print the listening line (which tests and scripts parse):
/// `feedrelay WHAT listening on SCHEME://ADDR (N workers, cores [..]EXTRA, unmask
/// KERNEL)`, SCHEME being `ws` or `wss`.
pub fn listen(
    map: &CoreMap,
    addr: SocketAddr,
    socket: &SocketOptions,
    scheme: &str,
    what: &str,
    extra: &str,
    say: Say<'_>,
) -> Result<Listening, IoError> {
    ring::probe()?;
    let listeners = bind_reuseport_with(addr, map.workers(), socket)?;
    let local = listeners[0]
        .local_addr()
        .map_err(|e| IoError::op("listen on", addr, e))?;
    let (trigger, shutdown) = shutdown::channel();
    trigger
        .fire_on_signals()
        .map_err(|e| IoError::op("install signal handlers for", "SIGINT/SIGTERM", e))?;
    let pins: Vec<String> = (0..map.workers())
        .map(|i| map.core(i).map_or("-".to_owned(), |c| c.to_string()))
        .collect();
    say(&format!(
        "feedrelay {what} listening on {scheme}://{local} ({} workers, cores [{}]{extra}, unmask {})",
        map.workers(),
        pins.join(","),
        MaskKernel::detected().name()
    ));
    Ok(Listening {
        listeners,
        local,
        shutdown,
    })
}

/// Runs the relay as `config` says until SIGINT/SIGTERM, printing through `say`;
/// `hlog` receives the per-hop interval log. With `config_file`, SIGHUP re-reads it
/// for the listener's certificate and the access rules.
pub fn run(
    config: Config,
    config_file: Option<&Path>,
    hlog: Option<&Path>,
    say: Say<'_>,
) -> Result<(), RelayError> {
    let settings = ReloadableSettings::new(&config)?;
    if let Some(path) = config_file {
        reload_on_sighup(path.to_owned(), config.clone(), Arc::clone(&settings))
            .map_err(|e| IoError::op("install a signal handler for", "SIGHUP", e))?;
    }
    let map = CoreMap::limited(config.workers, config.cores.as_deref(), MAX_WORKERS)?;
    for i in 0..map.workers() {
        ring::Ring::with_options(&config.ring_options(i))?;
    }
    let feeds = plan_feeds(&config, map.workers())?;
    let want = config.max_connections as u64 + 64;
    let fds = raise_fd_limit(want);
    if fds < want {
        tracing::warn!(
            limit = fds,
            max_connections = config.max_connections,
            "the open-file limit is below max_connections; raise `ulimit -n`"
        );
    }
    let idle = format!(", idle {}", config.idle.name());
    let scheme = if settings.tls().is_some() {
        "wss"
    } else {
        "ws"
    };
    let started = listen(
        &map,
        config.listen,
        &config.socket_options(),
        scheme,
        "run",
        &idle,
        say,
    )?;
    let collector = if config.metrics {
        Some(Collector::start(map.workers(), hlog)?)
    } else {
        None
    };
    let link = collector.as_ref().map(MetricsLink::new);
    if let (Some(addr), Some(c)) = (config.metrics_listen, collector.as_ref()) {
        let local = serve_metrics_http(addr, c, Arc::clone(&settings))?;
        say(&format!(
            "metrics on http://{local}/metrics, subscribers on http://{local}/subscribers, health on http://{local}/healthz and /readyz, status page on http://{local}/status"
        ));
    }
    if let Some(n) = &config.nats {
        let export = match n.export {
            true => format!("exporting to {}.<topic>", n.subject_prefix),
            false => "not exporting".to_owned(),
        };
        let import = match n.import.is_empty() {
            true => "not importing".to_owned(),
            false => format!("importing {}", n.import.join(", ")),
        };
        say(&format!("nats: {} ({export}; {import})", n.urls.join(", ")));
    }
    let summaries = run_relay(
        &map,
        RelayStart {
            feeds,
            metrics: link,
            ..RelayStart::new(
                started.listeners,
                Arc::new(config),
                started.shutdown,
                settings,
            )
        },
    )?;
    say(&summary(&summaries));
    if let Some(c) = collector {
        let finished = c.finish()?;
        let totals = finished.snapshot.merged();
        let mut table = PercentileTable::new("hop");
        for hop in Hop::ALL {
            if !(hop.optional() && totals.get(hop).is_empty()) {
                table.row(hop.name(), totals.get(hop), &[]);
            }
        }
        say(&table.render());
        if let Some(p) = hlog {
            match &finished.hlog {
                Ok(()) => say(&format!("per-hop interval log: {}", p.display())),
                Err(e) => say(&format!(
                    "per-hop interval log: {} (incomplete: {e})",
                    p.display()
                )),
            }
        }
        // Everything else is reported; the run ends in error when the log it was asked
        // to write is not whole.
        finished.hlog?;
    }
    Ok(())
}

/// What [`run_relay`] starts a relay with.
pub struct RelayStart {
    /// One listener per worker, as [`bind_reuseport_with`] returns them.
    pub listeners: Vec<TcpListener>,
    /// Each worker's feed groups, as [`plan_feeds`] made them (before anything
    /// listened).
    pub feeds: Vec<Vec<FeedPlan>>,
    /// The configuration.
    pub config: Arc<Config>,
    /// Where the workers send their metrics intervals (`None`: metrics off).
    pub metrics: Option<MetricsLink>,
    /// When to stop.
    pub shutdown: Shutdown,
    /// What SIGHUP may replace (shared with the reload thread).
    pub settings: Arc<ReloadableSettings>,
    /// Called on each worker's thread, with its index, before the worker starts: for
    /// what must run there (a test counting the workers' allocations).
    pub on_worker_start: Option<fn(usize)>,
}

impl RelayStart {
    /// A relay on `listeners` with `config`, no feeds planned beyond an empty plan per
    /// listener, metrics off, no hook.
    pub fn new(
        listeners: Vec<TcpListener>,
        config: Arc<Config>,
        shutdown: Shutdown,
        settings: Arc<ReloadableSettings>,
    ) -> RelayStart {
        let feeds = listeners.iter().map(|_| Vec::new()).collect();
        RelayStart {
            listeners,
            feeds,
            config,
            metrics: None,
            shutdown,
            settings,
            on_worker_start: None,
        }
    }
}

/// Runs a whole relay: one worker per entry of `map`, each on its listener and with
/// its feed groups, until `start.shutdown`; returns every worker's summary.
pub fn run_relay(map: &CoreMap, start: RelayStart) -> Result<Vec<WorkerSummary>, IoError> {
    let RelayStart {
        listeners,
        feeds,
        config,
        metrics,
        shutdown,
        settings,
        on_worker_start,
    } = start;
    let workers = map.workers();
    if workers > MAX_WORKERS {
        return Err(IoError::Config(format!(
            "{workers} workers; at most {MAX_WORKERS} (the width of the routing mask)"
        )));
    }
    if listeners.len() != workers || feeds.len() != workers {
        return Err(IoError::Config(format!(
            "{} listeners and {} feed plans for {workers} workers",
            listeners.len(),
            feeds.len()
        )));
    }
    let links = links(workers);
    // Stopped (after a bounded flush) when the workers have returned.
    let mut nats = match &config.nats {
        Some(n) => {
            let parkers = links.first().map(|l| l.parkers()).unwrap_or_default();
            let ledgers = crate::relay::nats::ledger::relay_ledgers(&n.subject_prefix);
            Some(crate::io::nats::start(
                n.options(config.history_messages_per_topic),
                parkers,
                ledgers,
            )?)
        }
        None => None,
    };
    let worker_nats: Vec<WorkerNats> = (0..workers)
        .map(|id| WorkerNats::of(nats.as_mut(), id))
        .collect();
    // Each worker takes its own listener, channel ends and feeds at start (not the hot
    // path).
    let per_worker = std::sync::Mutex::new(
        listeners
            .into_iter()
            .zip(links)
            .zip(feeds)
            .zip(worker_nats)
            .map(Some)
            .collect::<Vec<_>>(),
    );
    let admission = Admission::new(config.admission_limits());
    let deflate_demand = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seq_demand = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let subscription_budget = SubscriptionBudget::new(config.max_subscription_bytes);
    let worker_cores: Vec<usize> = (0..workers).filter_map(|i| map.core(i)).collect();
    let offload = Offload::start(
        VERIFY_THREADS,
        VERIFY_QUEUE,
        "feedrelay-verify",
        &worker_cores,
    )?;
    let rings: Vec<_> = (0..workers).map(|i| config.ring_options(i)).collect();
    let summaries = run_workers_with(
        map,
        move |i| rings[i],
        move |id| {
            let mine = per_worker
                .lock()
                .ok()
                .and_then(|mut l| l.get_mut(id)?.take());
            let setup = mine.map(|(((listener, links), feeds), nats)| WorkerSetup {
                id,
                workers,
                listener,
                links,
                config: Arc::clone(&config),
                admission: Arc::clone(&admission),
                metrics: metrics.clone(),
                feeds,
                shutdown: shutdown.clone(),
                settings: Arc::clone(&settings),
                deflate_demand: Arc::clone(&deflate_demand),
                seq_demand: Arc::clone(&seq_demand),
                subscription_budget: Arc::clone(&subscription_budget),
                offload: offload.clone(),
                nats,
            });
            if let Some(hook) = on_worker_start {
                hook(id);
            }
            async move {
                let setup =
                    setup.ok_or_else(|| IoError::Config(format!("no listener for worker {id}")))?;
                run_worker(setup).await
            }
        },
    );
    drop(nats);
    summaries
}

/// Serves the metrics listener's paths from the collector's snapshot: `/metrics`,
/// `/subscribers`, `/healthz` and `/readyz` (see [`health`]), and the status page
/// (`/status`, `/status.json`: see [`status`]). All but the two probes need the
/// `metrics_token` when one is configured (read from `settings`, so a reload
/// changes it). Returns the bound address.
fn serve_metrics_http(
    addr: SocketAddr,
    c: &Collector,
    settings: Arc<ReloadableSettings>,
) -> Result<SocketAddr, IoError> {
    let rendered = c.rendered();
    let snapshot = c.snapshot();
    let recent = c.recent();
    http::serve(
        addr,
        "feedrelay-metrics-http",
        Box::new(move |get| {
            match get.path.as_str() {
                "/healthz" | "/readyz" => None,
                _ if !settings.access().metrics_allowed(get.token.as_deref()) => {
                    Some(Reply::unauthorized())
                }
                _ => None,
            }
            .or_else(|| match get.path.as_str() {
                "/metrics" => Some(Reply::ok(
                    "text/plain; version=0.0.4",
                    rendered.get().to_string(),
                )),
                "/subscribers" => snapshot
                    .lock()
                    .ok()
                    .map(|s| Reply::ok("application/json", subscribers_json(&s))),
                "/healthz" => Some(Reply::ok("text/plain", "ok\n".to_owned())),
                "/status" => Some(Reply::ok(
                    "text/html; charset=utf-8",
                    status::STATUS_HTML.to_owned(),
                )),
                "/status.json" => {
                    let s = snapshot.lock().ok()?;
                    let r = recent.lock().ok()?;
                    Some(Reply::ok(
                        "application/json",
                        status::status_json(&s, &r, Instant::now()),
                    ))
                }
                "/readyz" => {
                    let Ok(s) = snapshot.lock() else {
                        return Some(Reply::unavailable("text/plain", "no snapshot\n".into()));
                    };
                    let r = health::readiness(&s, Instant::now());
                    drop(s);
                    let body = r.json();
                    Some(match r.ready() {
                        true => Reply::ok("application/json", body),
                        false => Reply::unavailable("application/json", body),
                    })
                }
                _ => None,
            })
        }),
    )
}
