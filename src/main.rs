//! The `feedrelay` command line: the edge where typed errors become one-line reports.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::anyhow;
use clap::{Parser, Subcommand};

use feedrelay::bench::args::BenchArgs;
use feedrelay::demo::DemoArgs;
use feedrelay::io::{ring, IoError};
use feedrelay::mock_exchange::cli::MockExchangeArgs;
use feedrelay::relay::config::{Config, IdleMode};
use feedrelay::relay::run::RelayError;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `feedrelay --version`: the crate's version and the commit it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("FEEDRELAY_COMMIT"),
    ")"
);

/// WebSocket feed relay for low-latency trading desks.
#[derive(Parser)]
#[command(version = VERSION, about)]
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
        /// Relay workers (default: half the CPUs, at least one).
        #[arg(long)]
        workers: Option<usize>,
        /// Where to write the per-hop HdrHistogram interval log.
        #[arg(long, default_value = "feedrelay-demo.hlog")]
        hlog: std::path::PathBuf,
        /// Feed the relay from two mock exchanges (A/B lines the relay dials and
        /// arbitrates, `--rate` trades/s each, steady) instead of the bursty publisher.
        #[arg(long)]
        feed: bool,
        /// With --feed: at 5 s line A is killed, at 6 s line B too (the feed goes
        /// stale), at 9 s both come back (live, and the trades missed as gaps); the
        /// relay's events are printed as a subscriber receives them.
        #[arg(long, requires = "feed")]
        outage: bool,
        /// Across NATS: the exchange publishes to a second relay that exports to NATS,
        /// and the demo's relay imports from it (the table gains the `import` hop).
        /// `--nats` starts `nats-server` from the PATH; `--nats URL` uses that server.
        #[arg(long, num_args = 0..=1, conflicts_with = "feed")]
        nats: Option<Option<String>>,
    },
    /// Open-loop load through a relay: latency from the scheduled send time (p50 to max),
    /// loss and order checks, relay CPU per delivered message.
    Bench(Box<BenchArgs>),
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
        /// Number of workers (default: one per --cores entry, or half the CPUs).
        #[arg(long)]
        workers: Option<usize>,
        /// Cores to pin the workers to, one worker per core (e.g. 0,1).
        #[arg(long, value_delimiter = ',')]
        cores: Option<Vec<usize>>,
        /// Largest message accepted, in bytes (larger: close 1009).
        #[arg(long, default_value_t = 16 << 20)]
        max_message_bytes: usize,
        /// Decline permessage-deflate (by default an offer is accepted and every
        /// message is echoed compressed).
        #[arg(long)]
        no_deflate: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FEEDRELAY_LOG")
                // The NATS client's own lines repeat ours (`nats: connected`, ...).
                .unwrap_or_else(|_| "info,async_nats=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // A panic is logged once, as one line with its cause and place, in the same log as
    // everything else (a task's panic is then contained by its worker's ring; a
    // worker's ends the process).
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        tracing::error!(
            thread = thread.name().unwrap_or("?"),
            cause = feedrelay::io::rt::panic_cause(info.payload()),
            at = %info.location().map_or("?".into(), |l| l.to_string()),
            "panic"
        );
    }));
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { config, root } => return check(config.as_deref(), &root),
        Command::Topology { config, root, json } => topology(config.as_deref(), &root, json),
        Command::Demo {
            duration,
            rate,
            subs,
            workers,
            hlog,
            feed,
            outage,
            nats,
        } => {
            let args = DemoArgs {
                duration,
                rate,
                subs,
                workers,
                hlog,
                feed,
                outage,
                nats,
            };
            feedrelay::demo::command(args, &say)
        }
        Command::Bench(args) => feedrelay::bench::cli::command(*args, &say),
        Command::MockExchange(args) => feedrelay::mock_exchange::cli::command(args, &say),
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
        } => load_config(
            config.as_deref(),
            Flags {
                listen,
                workers,
                cores,
                idle,
                metrics,
                no_metrics,
            },
        )
        .and_then(|c| {
            if print_config {
                say(c.to_toml().trim_end());
                return Ok(());
            }
            feedrelay::relay::run::run(c, config.as_deref(), hlog.as_deref(), &say).map_err(|e| {
                match e {
                    RelayError::Io(e) => explain(e),
                    other => anyhow!(other),
                }
            })
        }),
        Command::Echo {
            listen,
            workers,
            cores,
            max_message_bytes,
            no_deflate,
        } => feedrelay::echo::run(listen, workers, cores, max_message_bytes, !no_deflate, &say)
            .map_err(explain),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("feedrelay: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Prints a status line to stdout; a closed stdout (the reader went away) is not an
/// error worth dying for, unlike what `println!` does.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
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

/// `feedrelay run`'s flags that override the config file.
struct Flags {
    listen: Option<SocketAddr>,
    workers: Option<usize>,
    cores: Option<Vec<usize>>,
    idle: Option<IdleMode>,
    metrics: Option<SocketAddr>,
    no_metrics: bool,
}

/// The config file (or defaults) with the flags on top, checked (the access check
/// included: it must see the addresses the relay will really listen on).
fn load_config(path: Option<&std::path::Path>, flags: Flags) -> anyhow::Result<Config> {
    let Flags {
        listen,
        workers,
        cores,
        idle,
        metrics,
        no_metrics,
    } = flags;
    let mut config = match path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if no_metrics {
        config.metrics = false;
    }
    if metrics.is_some() {
        config.metrics_listen = metrics;
    }
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
    let measured = check::Measured {
        ring: fs
            .is_live()
            .then(|| ring::probe().map_err(|e| e.to_string())),
        nofile: feedrelay::io::limits::fd_limits(),
        max_connections: config.max_connections as u64,
        memlock: feedrelay::io::limits::memlock_limit(),
        ring_bytes: config.workers.unwrap_or(config.cores.as_ref().map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            Vec::len,
        )) as u64
            * u64::from(config.ring_entries)
            * check::RING_BYTES_PER_ENTRY,
    };
    let findings = check::run(&fs, &measured);
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
