//! The `feedrelay` command line: the edge where typed errors become one-line reports.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context};
use clap::{Parser, Subcommand};

use feedrelay::echo::Echo;
use feedrelay::io::listener::{bind_reuseport, bind_reuseport_with};
use feedrelay::io::relay::{run_relay, MetricsLink, WorkerSummary};
use feedrelay::io::server::{accept_loop, ServerConfig};
use feedrelay::io::worker::raise_fd_limit;
use feedrelay::io::worker::{run_workers, CoreMap};
use feedrelay::io::{ring, shutdown, IoError};
use feedrelay::metrics::collector::Collector;
use feedrelay::relay::config::{Config, IdleMode};
use feedrelay::ws::mask::MaskKernel;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// WebSocket feed relay for low-latency trading desks.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The host's CPUs (SMT siblings, NUMA nodes, shared caches, isolated and nohz_full
    /// CPUs, NIC interrupts) and, with a config, which worker is pinned where and what
    /// conflicts with it.
    Topology {
        /// The relay's config (its `cores` are the worker map).
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// Read /sys and /proc under this directory instead of / (captured trees).
        #[arg(long, default_value = "/")]
        root: std::path::PathBuf,
        /// JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Is this host ready? io_uring, CPU governor, huge pages, clocksource, SMT, isolated
    /// cores, socket buffers, open-file limit: pass / warn / fail with the fix for each.
    /// Exits 0 (all pass), 1 (warnings) or 2 (a failure).
    Check {
        /// The relay's config (for max_connections).
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// Read /sys and /proc under this directory instead of / (captured trees).
        #[arg(long, default_value = "/")]
        root: std::path::PathBuf,
    },
    /// A local stand-in for an exchange's market-data WebSocket (Binance-style subscribe
    /// protocol, deterministic trades, pings), with fault injection, for tests and demos.
    MockExchange(MockExchangeArgs),
    /// The relay, a synthetic exchange (20 symbols, trades and best bid/ask, bursty) and
    /// subscribers, with a live table of rates, drops and latency per hop and end to end.
    Demo {
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        duration: Option<f64>,
        /// Average messages per second from the exchange (bursts go 5x for 100 ms every 2 s).
        #[arg(long, default_value_t = 5_000)]
        rate: u64,
        /// Subscribers (half take every symbol, half four symbols each).
        #[arg(long, default_value_t = 8)]
        subs: usize,
        /// Relay workers (default: one per online CPU).
        #[arg(long)]
        workers: Option<usize>,
        /// Where to write the per-hop HdrHistogram interval log.
        #[arg(long, default_value = "feedrelay-demo.hlog")]
        hlog: std::path::PathBuf,
        /// Feed the relay from two mock exchanges (A/B lines the relay dials and
        /// arbitrates, `--rate` trades/s each, steady) instead of the bursty publisher.
        #[arg(long)]
        feed: bool,
    },
    /// Open-loop load through a relay: latency from the scheduled send time (p50 to max),
    /// loss and order checks, relay CPU per delivered message.
    Bench(BenchArgs),
    /// Run the relay: publishers connect to /pub, subscribers to /ws?topics=A,B.
    Run {
        /// TOML configuration file (flags below override it).
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// Address to listen on.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Number of workers.
        #[arg(long)]
        workers: Option<usize>,
        /// Cores to pin the workers to, one worker per core (e.g. 0,1).
        #[arg(long, value_delimiter = ',')]
        cores: Option<Vec<usize>>,
        /// How an idle worker waits for work from other workers.
        #[arg(long, value_enum)]
        idle: Option<IdleMode>,
        /// Print the effective configuration as TOML and exit.
        #[arg(long)]
        print_config: bool,
        /// Write per-hop HdrHistogram interval logs (V2 compressed, one tag per hop) here.
        #[arg(long)]
        hlog: Option<std::path::PathBuf>,
        /// Do not record per-hop latencies (and serve no /metrics), whatever the config says.
        #[arg(long)]
        no_metrics: bool,
        /// Also serve GET /metrics on this separate address.
        #[arg(long)]
        metrics: Option<SocketAddr>,
    },
    /// Echo every message back (text as text, binary as binary); answers pings and closes
    /// cleanly. SIGINT/SIGTERM close every connection with 1001 and exit 0.
    Echo {
        /// Address to listen on (port 0: the OS picks one; the chosen address is printed).
        #[arg(long, default_value = "127.0.0.1:9001")]
        listen: SocketAddr,
        /// Number of workers (default: one per --cores entry, or one per online CPU).
        #[arg(long)]
        workers: Option<usize>,
        /// Cores to pin the workers to, one worker per core (e.g. 0,1).
        #[arg(long, value_delimiter = ',')]
        cores: Option<Vec<usize>>,
        /// Largest message accepted, in bytes (larger: close 1009).
        #[arg(long, default_value_t = 16 << 20)]
        max_message_bytes: usize,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FEEDRELAY_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    if let Command::Check { config, root } = &cli.command {
        return check(config.as_deref(), root);
    }
    let result = match cli.command {
        Command::Check { .. } => Ok(()),
        Command::Topology { config, root, json } => topology(config.as_deref(), &root, json),
        Command::Demo {
            duration,
            rate,
            subs,
            workers,
            hlog,
            feed,
        } => demo(duration, rate, subs, workers, &hlog, feed),
        Command::Bench(args) => bench(args),
        Command::MockExchange(args) => mock_exchange(args),
        Command::Run {
            config,
            listen,
            workers,
            cores,
            idle,
            print_config,
            hlog,
            no_metrics,
            metrics,
        } => load_config(config.as_deref(), listen, workers, cores, idle).and_then(|mut c| {
            if no_metrics {
                c.metrics = false;
            }
            if metrics.is_some() {
                c.metrics_listen = metrics;
            }
            if print_config {
                say(c.to_toml().trim_end());
                Ok(())
            } else {
                run(c, hlog.as_deref())
            }
        }),
        Command::Echo {
            listen,
            workers,
            cores,
            max_message_bytes,
        } => echo(listen, workers, cores, max_message_bytes),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("feedrelay: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[derive(clap::Args)]
struct MockExchangeArgs {
    /// Address to listen on (port 0: the OS picks; the URL is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Serve wss:// with certificates in DIR (ca.pem, cert.pem, key.pem): reused if
    /// present, else made with rcgen (a fresh CA and a server certificate it signed).
    #[arg(long, value_name = "DIR")]
    tls_self_signed: Option<std::path::PathBuf>,
    /// Names the new server certificate is valid for (DNS names or IPs).
    #[arg(long = "tls-name", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()])]
    tls_names: Vec<String>,
    /// Symbols traded.
    #[arg(long, default_value_t = 20)]
    symbols: usize,
    /// Trades per second over all symbols.
    #[arg(long, default_value_t = 1_000)]
    rate: u64,
    /// Ping interval, ms (three unanswered pings close the connection).
    #[arg(long, default_value_t = 1_000)]
    ping_ms: u64,
    /// Connections served at once.
    #[arg(long, default_value_t = 64)]
    max_connections: usize,
    /// Refuse (401) a handshake without this header, given as NAME=VALUE (an API key).
    #[arg(long, value_name = "NAME=VALUE")]
    require_header: Option<String>,
    /// Fault: close TCP abruptly after N trades on each connection.
    #[arg(long, value_name = "N")]
    drop_after: Option<u64>,
    /// Fault: stop reading and writing after N trades (the socket stays open).
    #[arg(long, value_name = "N")]
    stall_after: Option<u64>,
    /// Fault: write bytes that are not a WebSocket frame after N trades.
    #[arg(long, value_name = "N")]
    garbage_after: Option<u64>,
    /// Fault: announce a 1 TiB frame after N trades.
    #[arg(long, value_name = "N")]
    oversized_after: Option<u64>,
    /// Fault: wait this long (ms) before each TLS handshake.
    #[arg(long, default_value_t = 0)]
    slow_tls_ms: u64,
    /// A quiet market: no trades after N on each connection (pings and pongs go on).
    #[arg(long, value_name = "N")]
    quiet_after: Option<u64>,
}

fn mock_exchange(a: MockExchangeArgs) -> anyhow::Result<()> {
    use feedrelay::mock_exchange::{self as mock, certs, Faults, Options, Stats};
    use std::sync::atomic::{AtomicBool, Ordering};
    let tls = match &a.tls_self_signed {
        None => None,
        Some(dir) => {
            let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
            if !(cert.exists() && key.exists() && dir.join("ca.pem").exists()) {
                certs::write_self_signed(dir, &a.tls_names)?;
            }
            Some(feedrelay::io::transport::server_config(&cert, &key)?)
        }
    };
    let listener = std::net::TcpListener::bind(a.listen)
        .map_err(|e| explain(IoError::op("listen on", a.listen, e)))?;
    let addr = listener.local_addr()?;
    let options = Arc::new(Options {
        tls,
        symbols: a.symbols.max(1),
        rate: a.rate.max(1),
        ping: std::time::Duration::from_millis(a.ping_ms.max(1)),
        max_connections: a.max_connections.max(1),
        require_header: match &a.require_header {
            None => None,
            Some(h) => {
                let (n, v) = h
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--require-header wants NAME=VALUE, got {h:?}"))?;
                Some((n.to_owned(), v.to_owned()))
            }
        },
        faults: Faults {
            drop_after: a.drop_after,
            stall_after: a.stall_after,
            garbage_after: a.garbage_after,
            oversized_after: a.oversized_after,
            slow_tls: std::time::Duration::from_millis(a.slow_tls_ms),
            quiet_after: a.quiet_after,
        },
    });
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    say(&format!(
        "mock-exchange on {} ({} symbols, {} trades/s)",
        mock::url(addr, options.tls.is_some()),
        options.symbols,
        options.rate
    ));
    let stats = Arc::new(Stats::default());
    mock::serve(listener, options, Arc::clone(&stats), stop)?;
    say(&format!(
        "mock-exchange stopped: connections {}, trades sent {}, faults {}, pongs {}",
        stats.connections.load(Ordering::Relaxed),
        stats.trades.load(Ordering::Relaxed),
        stats.faults.load(Ordering::Relaxed),
        stats.pongs.load(Ordering::Relaxed)
    ));
    Ok(())
}

/// Prints a status line to stdout; a closed stdout (the reader went away) is not an
/// error worth dying for, unlike what `println!` does.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// What `echo` and `run` share at start: check the ring, bind one listener per worker,
/// arm SIGINT/SIGTERM, and print the listening line (which tests and scripts parse).
fn start(
    map: &CoreMap,
    listen: SocketAddr,
    socket: &feedrelay::io::sockopt::SocketOptions,
    what: &str,
    extra: &str,
) -> anyhow::Result<(Vec<std::net::TcpListener>, shutdown::Shutdown)> {
    ring::probe().map_err(explain)?;
    let listeners = bind_reuseport_with(listen, map.workers(), socket).map_err(explain)?;
    let local = listeners[0].local_addr().context("listener address")?;
    let (trigger, shutdown) = shutdown::channel();
    trigger
        .fire_on_signals()
        .context("installing SIGINT/SIGTERM handlers")?;
    let pins: Vec<String> = (0..map.workers())
        .map(|i| map.core(i).map_or("-".to_owned(), |c| c.to_string()))
        .collect();
    say(&format!(
        "feedrelay {what} listening on ws://{local} ({} workers, cores [{}]{extra}, unmask {})",
        map.workers(),
        pins.join(","),
        MaskKernel::detected().name()
    ));
    Ok((listeners, shutdown))
}

/// Adds what the operator can do to the errors they can fix.
fn explain(e: IoError) -> anyhow::Error {
    let hint = match &e {
        IoError::Op { source, .. } if source.kind() == std::io::ErrorKind::AddrInUse => {
            Some("another process holds this port: pick another with --listen, or stop it")
        }
        IoError::Op { source, .. } if source.kind() == std::io::ErrorKind::AddrNotAvailable => {
            Some("that address is not on this host: use one of its addresses, or 0.0.0.0")
        }
        IoError::Op { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            Some("ports below 1024 need privileges: use a higher port")
        }
        _ => None,
    };
    match hint {
        Some(h) => anyhow!("{e}; {h}"),
        None => anyhow!(e),
    }
}

fn echo(
    listen: SocketAddr,
    workers: Option<usize>,
    cores: Option<Vec<usize>>,
    max_message_bytes: usize,
) -> anyhow::Result<()> {
    let map = CoreMap::new(workers, cores.as_deref()).map_err(explain)?;
    let (listeners, shutdown) = start(&map, listen, &Default::default(), "echo", "")?;
    let mut config = ServerConfig::default();
    config.limits.max_message_bytes = max_message_bytes;
    config.limits.max_frame_bytes = max_message_bytes;
    let listeners: Arc<Mutex<Vec<Option<std::net::TcpListener>>>> =
        Arc::new(Mutex::new(listeners.into_iter().map(Some).collect()));
    run_workers(&map, move |i| {
        let listener = listeners.lock().ok().and_then(|mut l| l.get_mut(i)?.take());
        let config = std::rc::Rc::new(config.clone());
        let shutdown = shutdown.clone();
        async move {
            let listener =
                listener.ok_or_else(|| IoError::Config(format!("no listener for worker {i}")))?;
            accept_loop(listener, || Echo, config, shutdown).await
        }
    })
    .map_err(explain)?;
    say("feedrelay echo stopped");
    Ok(())
}

/// The config file (or defaults) with the flags on top, checked.
fn load_config(
    path: Option<&std::path::Path>,
    listen: Option<SocketAddr>,
    workers: Option<usize>,
    cores: Option<Vec<usize>>,
    idle: Option<IdleMode>,
) -> anyhow::Result<Config> {
    let mut config = match path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(l) = listen {
        config.listen = l;
    }
    // --workers/--cores describe the worker layout together: given either, they
    // replace both fields of the file.
    if workers.is_some() || cores.is_some() {
        config.workers = workers;
        config.cores = cores;
    }
    if let Some(i) = idle {
        config.idle = i;
    }
    config.validate("flags")?;
    Ok(config)
}

fn run(config: Config, hlog: Option<&std::path::Path>) -> anyhow::Result<()> {
    let map = CoreMap::new(config.workers, config.cores.as_deref()).map_err(explain)?;
    // Each worker's ring as configured (SQPOLL, its CPU), and each feed's TLS trust
    // (a bad ca_file), before anything listens.
    for i in 0..map.workers() {
        ring::Ring::with_options(&config.ring_options(i)).map_err(explain)?;
    }
    let feeds = feedrelay::io::relay::plan_feeds(&config, map.workers()).map_err(explain)?;
    let want = config.max_connections as u64 + 64;
    let fds = raise_fd_limit(want);
    if fds < want {
        tracing::warn!(
            limit = fds,
            max_connections = config.max_connections,
            "the open-file limit is below max_connections; raise `ulimit -n`"
        );
    }
    let idle = format!(", idle {:?}", config.idle).to_lowercase();
    let (listeners, shutdown) = start(&map, config.listen, &config.socket_options(), "run", &idle)?;
    let workers = map.workers();
    let collector = if config.metrics {
        Some(Collector::start(workers, hlog)?)
    } else {
        None
    };
    let link = collector.as_ref().map(|c| MetricsLink {
        tx: c.sender(),
        snapshot: c.snapshot(),
    });
    if let (Some(addr), Some(c)) = (config.metrics_listen, collector.as_ref()) {
        serve_metrics(addr, c.snapshot())?;
    }
    let summaries =
        run_relay(&map, listeners, feeds, Arc::new(config), link, shutdown).map_err(explain)?;
    say(&summary(&summaries));
    if let Some(c) = collector {
        let snapshot = c.finish()?;
        say(&percentile_table(&snapshot.merged()));
        if let Some(p) = hlog {
            say(&format!("per-hop interval log: {}", p.display()));
        }
    }
    Ok(())
}

/// p50, p90, p99, p99.9, p99.99 and max per hop, in µs.
fn percentile_table(h: &feedrelay::metrics::HopHistograms) -> String {
    use feedrelay::metrics::Hop;
    let mut t = String::from(
        "hop          count     p50 us     p90 us     p99 us   p99.9 us  p99.99 us     max us",
    );
    for hop in Hop::ALL {
        let x = h.get(hop);
        let q = |p: f64| {
            if x.is_empty() {
                0.0
            } else {
                x.value_at_quantile(p) as f64 / 1e3
            }
        };
        t.push_str(&format!(
            "\n{:<8} {:>9} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            hop.name(),
            x.len(),
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            q(0.9999),
            x.max() as f64 / 1e3
        ));
    }
    t
}

/// The shutdown summary: messages in and out, drops by reason, connections.
fn summary(workers: &[WorkerSummary]) -> String {
    let mut total = WorkerSummary::default();
    for w in workers {
        total.stats.merge(&w.stats);
        total.publishers += w.publishers;
        total.subscribers += w.subscribers;
        total.refused += w.refused;
    }
    let s = &total.stats;
    let mut text = format!(
        "feedrelay run stopped: messages in {} out {} (queued {}); dropped: queue full {}, conflated {}, no topic {}, channel full {}; slow consumers disconnected {}; connections: publishers {}, subscribers {}, refused {}",
        s.messages_in, s.messages_out, s.messages_queued, s.dropped_queue_full, s.dropped_conflated,
        s.dropped_no_topic, s.dropped_channel_full, s.slow_disconnects, total.publishers, total.subscribers, total.refused
    );
    let mut by_topic: Vec<_> = s.drops_by_topic.iter().collect();
    by_topic.sort_by(|a, b| b.1.cmp(a.1));
    for (topic, n) in by_topic.iter().take(10) {
        text.push_str(&format!(
            "\n  dropped on topic {}: {n}",
            String::from_utf8_lossy(topic)
        ));
    }
    for f in workers.iter().flat_map(|w| &w.feeds) {
        text.push_str(&format!(
            "\n  feed {} (group {}): sessions {}, reconnects {}, messages {}, copies dropped {}, pings {}",
            f.name, f.group, f.connects, f.reconnects, f.messages, f.duplicates, f.pings
        ));
    }
    for g in workers.iter().flat_map(|w| &w.groups) {
        text.push_str(&format!(
            "\n  group {}: forwarded {}, copies dropped {}, gaps {} ({} missing), source resets {}, unarbitrated {}",
            g.name, g.forwarded, g.duplicates, g.gaps, g.missing, g.resets, g.untracked
        ));
        for (topic, n) in g.missing_by_topic.iter().take(10) {
            text.push_str(&format!("\n    missing on topic {topic}: {n}"));
        }
    }
    text
}

/// What one column of a comparison measures.
enum Variant {
    /// A relay `bench` starts itself; with `hops` 2, two relays chained (the second
    /// dials the first's `/ws?topics=*` as a feed).
    Spawn {
        idle: IdleMode,
        metrics: bool,
        hops: u8,
        /// `Some(true)`: workers on `--cores` (or 0..workers); `Some(false)`: unpinned;
        /// `None`: as `--cores` says.
        pinned: Option<bool>,
        /// A named relay config (TOML text) the spawned relays start with.
        config: Option<(String, String)>,
    },
    /// A relay already running.
    Target {
        name: String,
        url: String,
        pid: Option<u32>,
    },
    /// No relay: the publisher writes straight to each subscriber socket.
    Floor,
}

impl Variant {
    /// `park`, `park-nometrics`, or the target's name.
    fn label(&self) -> String {
        match self {
            Variant::Spawn {
                idle,
                metrics,
                hops,
                pinned,
                config,
            } => {
                let mut l = format!("{idle:?}").to_lowercase();
                if !metrics {
                    l.push_str("-nometrics");
                }
                if *hops > 1 {
                    l.push_str(&format!("-{hops}hops"));
                }
                match pinned {
                    Some(true) => l.push_str("-pinned"),
                    Some(false) => l.push_str("-unpinned"),
                    None => {}
                }
                if let Some((name, _)) = config {
                    l.push('-');
                    l.push_str(name);
                }
                l
            }
            Variant::Target { name, .. } => name.clone(),
            Variant::Floor => "floor".to_owned(),
        }
    }
}

/// A switch as the command line spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

/// One idle mode's results, summed over rounds.
struct ModeTotals {
    latency: hdrhistogram::Histogram<u64>,
    /// sent, expected, received, lost, duplicated, reordered.
    counts: [u64; 6],
    cpu: std::time::Duration,
    wall: std::time::Duration,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// A relay to measure, as URL or NAME=URL (e.g. base=ws://127.0.0.1:9100/); repeat
    /// to compare several in alternating rounds. Or use --spawn.
    #[arg(long)]
    target: Vec<String>,
    /// Process id of each --target, in the same order, to read its CPU time.
    #[arg(long)]
    relay_pid: Vec<u32>,
    /// Also measure the floor: the same clients with no relay in between (the
    /// publisher writes straight to each subscriber socket), in the same rounds.
    #[arg(long)]
    floor: bool,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Also draw latency by percentile, one line per variant, into this SVG file.
    #[arg(long)]
    plot: Option<std::path::PathBuf>,
    /// Also write each run's end-to-end latency histogram as an HdrHistogram interval
    /// log (V2 compressed, ns, one tag per variant, one entry per round).
    #[arg(long)]
    hlog: Option<std::path::PathBuf>,
    /// Start a relay for the run (once per idle mode and round).
    #[arg(long)]
    spawn: bool,
    /// Idle modes to compare, with --spawn (e.g. park,yield,spin).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "park")]
    idle: Vec<IdleMode>,
    /// With --spawn: per-hop metrics in the spawned relay, `on`, `off`, or `on,off` to
    /// compare (each idle mode runs once per setting, alternating).
    #[arg(long, value_delimiter = ',', default_value = "on")]
    metrics: Vec<OnOff>,
    /// With --spawn: relays in a chain, `1`, `2`, or `1,2` to compare (the publisher
    /// sends to the first, subscribers take from the last; each downstream relay dials
    /// the one before as a feed).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    hops: Vec<u8>,
    /// With --spawn: pin the workers (`on`: to --cores, or 0..workers), `off`, or
    /// `on,off` to compare. Default: as --cores says.
    #[arg(long, value_delimiter = ',')]
    pin: Vec<OnOff>,
    /// With --spawn: start the relays with this config, as [NAME=]FILE; repeat to
    /// compare configs (e.g. sqpoll=sqpoll.toml plain=plain.toml).
    #[arg(long)]
    relay_config: Vec<String>,
    /// Workers of the spawned relay.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Cores of the spawned relay's workers.
    #[arg(long, value_delimiter = ',')]
    cores: Option<Vec<usize>>,
    /// Messages per second published.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up seconds per run (not measured).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Subscribers (each takes every topic).
    #[arg(long, default_value_t = 10)]
    subs: usize,
    /// Publisher connections (topic k always from publisher k % pubs).
    #[arg(long, default_value_t = 1)]
    pubs: usize,
    /// Topics.
    #[arg(long, default_value_t = 10)]
    topics: usize,
    /// Message size in bytes.
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Rounds; with several idle modes, they alternate within each round.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
}

/// A relay started for one benchmark run; killed when dropped.
struct SpawnedRelay {
    child: std::process::Child,
    url: String,
}

impl SpawnedRelay {
    fn start(
        idle: IdleMode,
        metrics: bool,
        workers: usize,
        cores: Option<&[usize]>,
        config: Option<&str>,
    ) -> anyhow::Result<Self> {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(std::env::current_exe()?);
        cmd.args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            &workers.to_string(),
        ]);
        let config_file = match config {
            Some(text) => {
                let path = std::env::temp_dir().join(format!(
                    "feedrelay-bench-{}-{}.toml",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos())
                        .unwrap_or(0)
                ));
                std::fs::write(&path, text).context("writing the chained relay's config")?;
                cmd.arg("--config").arg(&path);
                Some(path)
            }
            None => None,
        };
        cmd.arg("--idle").arg(format!("{idle:?}").to_lowercase());
        if !metrics {
            cmd.arg("--no-metrics");
        }
        if let Some(c) = cores {
            let list: Vec<String> = c.iter().map(|c| c.to_string()).collect();
            cmd.arg("--cores").arg(list.join(","));
        }
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting the relay")?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().context("relay stdout")?)
            .read_line(&mut line)?;
        if let Some(p) = config_file {
            let _ = std::fs::remove_file(p);
        }
        let addr = line
            .split("ws://")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .ok_or_else(|| anyhow!("relay did not start: {line:?}"))?;
        Ok(SpawnedRelay {
            url: format!("ws://{addr}/"),
            child,
        })
    }
}

impl Drop for SpawnedRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bench(a: BenchArgs) -> anyhow::Result<()> {
    use feedrelay::bench::{percentiles_us, run as run_load, LoadSpec};
    if a.spawn != a.target.is_empty() {
        anyhow::bail!("give either --target URL (one or more) or --spawn");
    }
    let modes: Vec<Variant> = if a.spawn {
        let configs: Vec<Option<(String, String)>> = if a.relay_config.is_empty() {
            vec![None]
        } else {
            a.relay_config
                .iter()
                .map(|c| {
                    let (name, path) = match c.split_once('=') {
                        Some((n, p)) => (n.to_owned(), p.to_owned()),
                        None => (
                            std::path::Path::new(c)
                                .file_stem()
                                .map_or("config".into(), |s| s.to_string_lossy().into_owned()),
                            c.clone(),
                        ),
                    };
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("--relay-config {path}"))?;
                    Config::parse(&text, &path)?;
                    Ok(Some((name, text)))
                })
                .collect::<anyhow::Result<_>>()?
        };
        let pins: Vec<Option<bool>> = if a.pin.is_empty() {
            vec![None]
        } else {
            a.pin.iter().map(|p| Some(*p == OnOff::On)).collect()
        };
        let mut v = Vec::new();
        for &idle in &a.idle {
            for &m in &a.metrics {
                for &hops in &a.hops {
                    for &pinned in &pins {
                        for config in &configs {
                            v.push(Variant::Spawn {
                                idle,
                                metrics: m == OnOff::On,
                                hops: hops.max(1),
                                pinned,
                                config: config.clone(),
                            });
                        }
                    }
                }
            }
        }
        v
    } else {
        a.target
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let (name, url) = match t.split_once('=') {
                    Some((n, u)) if !n.contains('/') => (n.to_owned(), u.to_owned()),
                    _ => (format!("target{i}"), t.clone()),
                };
                let url = if url.ends_with('/') {
                    url
                } else {
                    format!("{url}/")
                };
                Variant::Target {
                    name,
                    url,
                    pid: a.relay_pid.get(i).copied(),
                }
            })
            .collect()
    };
    let mut modes = modes;
    if a.floor {
        modes.push(Variant::Floor);
    }
    let mut merged: Vec<Option<ModeTotals>> = (0..modes.len()).map(|_| None).collect();
    let bench_started = std::time::SystemTime::now();
    let mut hlog_runs: Option<Vec<BenchRun>> = a.hlog.as_ref().map(|_| Vec::new());
    for round in 0..a.rounds.max(1) {
        for (m, mode) in modes.iter().enumerate() {
            // Spawned relays, upstream first.
            let mut relays: Vec<SpawnedRelay> = Vec::new();
            if let Variant::Spawn {
                idle,
                metrics,
                hops,
                pinned,
                config,
            } = mode
            {
                let all: Vec<usize> = (0..a.workers).collect();
                let cores = match pinned {
                    Some(true) => Some(a.cores.as_deref().unwrap_or(&all)),
                    Some(false) => None,
                    None => a.cores.as_deref(),
                };
                for _ in 0..*hops {
                    let mut text = config.as_ref().map_or(String::new(), |(_, t)| t.clone());
                    if let Some(up) = relays.last() {
                        text.push_str(&format!(
                            "\n[[feeds]]\nname = \"upstream\"\nurl = \"{}ws?topics=*\"\nseq_pointer = \"/seq\"\n",
                            up.url
                        ));
                    }
                    relays.push(SpawnedRelay::start(
                        *idle,
                        *metrics,
                        a.workers,
                        cores,
                        (!text.is_empty()).then_some(text.as_str()),
                    )?);
                }
                // Let each downstream relay's feed connect and be routed upstream.
                if relays.len() > 1 {
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
            }
            let (url, publish_to, pids) = match (mode, relays.first(), relays.last()) {
                (_, Some(first), Some(last)) => (
                    last.url.clone(),
                    (relays.len() > 1).then(|| first.url.clone()),
                    relays.iter().map(|r| r.child.id()).collect(),
                ),
                (Variant::Target { url, pid, .. }, _, _) => {
                    (url.clone(), None, pid.iter().copied().collect())
                }
                (Variant::Floor | Variant::Spawn { .. }, _, _) => (String::new(), None, Vec::new()),
            };
            let spec = LoadSpec {
                target: url,
                publish_to,
                rate: a.rate,
                duration: std::time::Duration::from_secs_f64(a.duration),
                warmup: std::time::Duration::from_secs_f64(a.warmup),
                subs: a.subs,
                pubs: a.pubs,
                topics: a.topics,
                size: a.size,
                relay_pids: pids,
                floor: matches!(mode, Variant::Floor),
            };
            let label = mode.label();
            eprintln!(
                "round {} / {}: {label}: {} s warm-up + {} s measured ...",
                round + 1,
                a.rounds.max(1),
                a.warmup,
                a.duration
            );
            let run_started = std::time::SystemTime::now();
            let r = run_load(&spec)?;
            if let Some(log) = hlog_runs.as_mut() {
                log.push((label.clone(), r.latency.clone(), run_started, r.elapsed));
            }
            drop(relays);
            let counts = [
                r.sent,
                r.expected,
                r.received,
                r.lost,
                r.duplicated,
                r.reordered,
            ];
            let cpu = r.relay_cpu.unwrap_or_default();
            match &mut merged[m] {
                Some(t) => {
                    t.latency.add(&r.latency).map_err(|e| anyhow!("{e}"))?;
                    for (acc, v) in t.counts.iter_mut().zip(counts) {
                        *acc += v;
                    }
                    t.cpu += cpu;
                    t.wall += r.elapsed;
                }
                slot => {
                    *slot = Some(ModeTotals {
                        latency: r.latency,
                        counts,
                        cpu,
                        wall: r.elapsed,
                    })
                }
            }
        }
    }
    say(&format!(
        "setup: {} msg/s in, {} B, {} topics, {} subscribers ({} deliveries/s), {} workers, cores {}, {} s x {} rounds, {} CPUs",
        a.rate,
        a.size,
        a.topics,
        a.subs,
        a.rate * a.subs as u64,
        a.workers,
        a.cores.as_ref().map_or("unpinned".to_owned(), |c| format!("{c:?}")),
        a.duration,
        a.rounds.max(1),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    ));
    let mut json_rows = Vec::new();
    let mut plotted: Vec<(String, hdrhistogram::Histogram<u64>)> = Vec::new();
    say("variant          p50 us   p90 us   p99 us  p99.9 us  p99.99 us    max us       sent   expected   received  lost  dup  reord  recv msg/s  relay CPU%  CPU ns/delivery");
    for (mode, m) in modes.iter().zip(merged) {
        let Some(ModeTotals {
            latency: h,
            counts: c,
            cpu,
            wall,
        }) = m
        else {
            continue;
        };
        let p = percentiles_us(&h);
        let label = mode.label();
        let cpu_pct = 100.0 * cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9);
        let per = cpu.as_nanos() as f64 / (c[2].max(1)) as f64;
        let rate = c[2] as f64 / wall.as_secs_f64().max(1e-9);
        plotted.push((label.clone(), h.clone()));
        json_rows.push(format!(
            r#"{{"variant":"{label}","p50_us":{:.1},"p90_us":{:.1},"p99_us":{:.1},"p999_us":{:.1},"p9999_us":{:.1},"max_us":{:.1},"sent":{},"expected":{},"received":{},"lost":{},"duplicated":{},"reordered":{},"received_per_s":{:.0},"relay_cpu_percent":{:.1},"cpu_ns_per_delivery":{:.0}}}"#,
            p[0], p[1], p[2], p[3], p[4], p[5], c[0], c[1], c[2], c[3], c[4], c[5], rate, cpu_pct, per
        ));
        say(&format!(
            "{label:<15} {:>8.1} {:>8.1} {:>8.1} {:>9.1} {:>10.1} {:>9.1} {:>10} {:>10} {:>10} {:>5} {:>4} {:>6} {:>11.0} {:>10.1} {:>16.0}",
            p[0], p[1], p[2], p[3], p[4], p[5], c[0], c[1], c[2], c[3], c[4], c[5], rate, cpu_pct, per
        ));
    }
    if let Some(path) = &a.plot {
        let series: Vec<(String, &hdrhistogram::Histogram<u64>)> =
            plotted.iter().map(|(l, h)| (l.clone(), h)).collect();
        feedrelay::bench::plot::write_svg(
            path,
            &format!(
                "end-to-end latency, {} msg/s to {} subscribers",
                a.rate, a.subs
            ),
            &series,
        )?;
        say(&format!("plot: {}", path.display()));
    }
    if let (Some(path), Some(runs)) = (&a.hlog, &hlog_runs) {
        write_bench_hlog(path, bench_started, runs)?;
    }
    if let Some(path) = &a.json {
        let text = format!("[\n  {}\n]\n", json_rows.join(",\n  "));
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn demo(
    duration: Option<f64>,
    rate: u64,
    subs: usize,
    workers: Option<usize>,
    hlog: &std::path::Path,
    feed: bool,
) -> anyhow::Result<()> {
    use feedrelay::demo::{run_exchange, run_subscribers, table, DemoStats, MockLines};
    use std::sync::atomic::{AtomicBool, Ordering};

    let lines = feed.then(|| MockLines::start(rate)).transpose()?;
    let mut config = match &lines {
        Some(l) => Config::parse(&l.feeds_toml(), "demo feeds")?,
        None => Config::default(),
    };
    config.listen = "127.0.0.1:0".parse()?;
    config.workers = workers;
    let map = CoreMap::new(config.workers, None).map_err(explain)?;
    ring::probe().map_err(explain)?;
    let listeners = bind_reuseport(config.listen, map.workers()).map_err(explain)?;
    let local = listeners[0].local_addr().context("listener address")?;
    let n = map.workers();
    let collector = Collector::start(n, Some(hlog))?;
    let link = MetricsLink {
        tx: collector.sender(),
        snapshot: collector.snapshot(),
    };
    let snapshot = collector.snapshot();
    let (trigger, shutdown) = shutdown::channel();
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&interrupted))
            .context("installing signal handlers")?;
    }
    let feeds = feedrelay::io::relay::plan_feeds(&config, n).map_err(explain)?;
    let config = Arc::new(config);
    let relay =
        std::thread::spawn(move || run_relay(&map, listeners, feeds, config, Some(link), shutdown));
    let url = format!("ws://{local}/");
    let source = if lines.is_some() {
        format!("two mock exchanges as A/B feed lines at {rate} trades/s each")
    } else {
        format!("exchange publishing at {rate} msg/s (bursty)")
    };
    say(&format!(
        "feedrelay demo: relay on {url} ({n} workers), {source}, {subs} subscribers; Ctrl-C to stop"
    ));
    let stats = DemoStats::new();
    let symbols: Vec<String> = match &lines {
        Some(l) => l.symbols.clone(),
        None => feedrelay::demo::SYMBOLS
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let subscribers = {
        let (url, stats) = (url.clone(), Arc::clone(&stats));
        std::thread::spawn(move || run_subscribers(url, subs, symbols, stats))
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let exchange = lines.is_none().then(|| {
        let (url, stats) = (url.clone(), Arc::clone(&stats));
        std::thread::spawn(move || run_exchange(url, rate, stats))
    });
    let line_stats = lines.as_ref().map(|l| Arc::clone(&l.stats));
    let sent = |stats: &DemoStats| match &line_stats {
        Some(l) => l.trades.load(Ordering::Relaxed),
        None => stats.sent.load(Ordering::Relaxed),
    };
    let started = std::time::Instant::now();
    let (mut last_in, mut last_out, mut last_t) = (0u64, 0u64, started);
    let mut render = |final_table: bool| {
        let now = std::time::Instant::now();
        let dt = now.duration_since(last_t).as_secs_f64().max(1e-3);
        let (i, o) = (sent(&stats), stats.received.load(Ordering::Relaxed));
        let snap = snapshot.lock().map(|s| s.clone()).unwrap_or_default();
        let e2e = stats
            .e2e
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|_| feedrelay::metrics::hop::new_histogram());
        let text = table(
            started.elapsed(),
            (i - last_in) as f64 / dt,
            (o - last_out) as f64 / dt,
            &snap,
            &e2e,
        );
        (last_in, last_out, last_t) = (i, o, now);
        say(&if final_table {
            format!("final:\n{text}")
        } else {
            text
        });
    };
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let done = interrupted.load(Ordering::Relaxed)
            || duration.is_some_and(|d| started.elapsed().as_secs_f64() >= d);
        if done {
            break;
        }
        render(false);
    }
    stats.stop.store(true, Ordering::Relaxed);
    if let Some(e) = exchange {
        let _ = e.join();
    }
    // The relay's shutdown closes the subscribers (1001), which ends their thread.
    std::thread::sleep(std::time::Duration::from_millis(200));
    trigger.fire();
    let _ = subscribers.join();
    let summaries = relay
        .join()
        .map_err(|_| anyhow!("relay thread panicked"))?
        .map_err(explain)?;
    if let Some(l) = lines {
        // After the relay, so its feeds do not see the exchanges go.
        l.stop();
        say(&summary(&summaries));
    }
    let totals = collector.finish()?.merged();
    render(true);
    let plot = hlog.with_extension("svg");
    let e2e = stats
        .e2e
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| feedrelay::metrics::hop::new_histogram());
    let mut series: Vec<(String, &hdrhistogram::Histogram<u64>)> = feedrelay::metrics::Hop::ALL
        .iter()
        .map(|&h| (h.name().to_owned(), totals.get(h)))
        .collect();
    series.push(("end2end".to_owned(), &e2e));
    feedrelay::bench::plot::write_svg(&plot, "feedrelay demo: latency by hop", &series)?;
    say(&format!(
        "per-hop interval log (HdrHistogram V2): {}",
        hlog.display()
    ));
    say(&format!("latency plot (SVG): {}", plot.display()));
    Ok(())
}

/// One measured run: variant, its latency histogram, when it started, how long it took.
type BenchRun = (
    String,
    hdrhistogram::Histogram<u64>,
    std::time::SystemTime,
    std::time::Duration,
);

/// Writes each run's end-to-end histogram as an interval of an HdrHistogram log.
fn write_bench_hlog(
    path: &std::path::Path,
    start: std::time::SystemTime,
    runs: &[BenchRun],
) -> anyhow::Result<()> {
    use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
    use hdrhistogram::serialization::V2DeflateSerializer;
    let mut file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut serializer = V2DeflateSerializer::new();
    let mut writer = IntervalLogWriterBuilder::new()
        .add_comment("feedrelay bench: end-to-end latency (ns) from scheduled send to receipt; tag = variant")
        .with_start_time(start)
        .with_base_time(start)
        .with_max_value_divisor(1e9)
        .begin_log_with(&mut file, &mut serializer)?;
    for (label, h, at, took) in runs {
        let offset = at.duration_since(start).unwrap_or_default();
        writer
            .write_histogram(h, offset, *took, Tag::new(label))
            .map_err(|e| anyhow!("encoding {label}: {e:?}"))?;
    }
    Ok(())
}

/// Serves `GET /metrics` (Prometheus text) on its own address from a plain thread: off
/// the workers entirely, one short connection at a time.
fn serve_metrics(
    addr: SocketAddr,
    snapshot: Arc<Mutex<feedrelay::metrics::collector::Snapshot>>,
) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| explain(IoError::op("listen on", addr, e)))?;
    let local = listener.local_addr()?;
    say(&format!("metrics on http://{local}/metrics"));
    std::thread::Builder::new()
        .name("feedrelay-metrics-http".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                let mut buf = Vec::with_capacity(1024);
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                    match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let mut out = Vec::new();
                match feedrelay::ws::handshake::plain_get_path(&buf).as_deref() {
                    Some("/metrics") => {
                        let body = snapshot
                            .lock()
                            .map(|s| feedrelay::metrics::prometheus::render(&s))
                            .unwrap_or_default();
                        feedrelay::ws::handshake::write_plain_ok(
                            "text/plain; version=0.0.4",
                            &body,
                            &mut out,
                        );
                    }
                    _ => feedrelay::ws::handshake::write_status(
                        404,
                        "",
                        "only GET /metrics here",
                        &mut out,
                    ),
                }
                let _ = conn.write_all(&out);
            }
        })?;
    Ok(())
}

fn check(config: Option<&std::path::Path>, root: &std::path::Path) -> ExitCode {
    use feedrelay::host::{check, HostFs};
    let config = match config.map(Config::load).transpose() {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => {
            eprintln!("feedrelay: error: {e}");
            return ExitCode::from(2);
        }
    };
    let fs = HostFs::new(root);
    let live = check::Live {
        ring: fs
            .is_live()
            .then(|| ring::probe().map_err(|e| e.to_string())),
        nofile: feedrelay::io::worker::fd_limits(),
        max_connections: config.max_connections as u64,
        memlock: feedrelay::io::worker::memlock_limit(),
        ring_bytes: config.workers.unwrap_or(config.cores.as_ref().map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            Vec::len,
        )) as u64
            * u64::from(config.ring_entries)
            * check::RING_BYTES_PER_ENTRY,
    };
    let findings = check::run(&fs, &live);
    let mut out = check::render(&findings);
    if out.ends_with('\n') {
        out.pop();
    }
    say(&out);
    ExitCode::from(check::exit_code(&findings))
}

fn topology(
    config: Option<&std::path::Path>,
    root: &std::path::Path,
    json: bool,
) -> anyhow::Result<()> {
    use feedrelay::host::{topology::Topology, HostFs};
    let cores = match config {
        Some(p) => Config::load(p)?.cores,
        None => None,
    };
    let t = Topology::read(&HostFs::new(root));
    if t.cpus.is_empty() {
        anyhow::bail!("no CPUs under {}/sys/devices/system/cpu", root.display());
    }
    let out = if json {
        t.to_json(cores.as_deref())
    } else {
        t.render(cores.as_deref()).trim_end().to_owned()
    };
    say(&out);
    Ok(())
}
