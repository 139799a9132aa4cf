//! The `feedrelay` command line: the edge where typed errors become one-line reports.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context};
use clap::{Parser, Subcommand};

use feedrelay::echo::Echo;
use feedrelay::io::listener::bind_reuseport;
use feedrelay::io::relay::{links, run_worker, ConnectionCount, WorkerSummary};
use feedrelay::io::server::{accept_loop, ServerConfig};
use feedrelay::io::worker::raise_fd_limit;
use feedrelay::io::worker::{run_workers, CoreMap};
use feedrelay::io::{ring, shutdown, IoError};
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
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            config,
            listen,
            workers,
            cores,
            idle,
            print_config,
        } => load_config(config.as_deref(), listen, workers, cores, idle).and_then(|c| {
            if print_config {
                say(c.to_toml().trim_end());
                Ok(())
            } else {
                run(c)
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

fn echo(
    listen: SocketAddr,
    workers: Option<usize>,
    cores: Option<Vec<usize>>,
    max_message_bytes: usize,
) -> anyhow::Result<()> {
    let map = CoreMap::new(workers, cores.as_deref()).map_err(explain)?;
    ring::probe().map_err(explain)?;
    let listeners = bind_reuseport(listen, map.workers()).map_err(explain)?;
    let local = listeners[0].local_addr().context("listener address")?;
    let mut config = ServerConfig::default();
    config.limits.max_message_bytes = max_message_bytes;
    config.limits.max_frame_bytes = max_message_bytes;
    let (trigger, shutdown) = shutdown::channel();
    trigger
        .fire_on_signals()
        .context("installing SIGINT/SIGTERM handlers")?;
    let pins: Vec<String> = (0..map.workers())
        .map(|i| map.core(i).map_or("-".to_owned(), |c| c.to_string()))
        .collect();
    say(&format!(
        "feedrelay echo listening on ws://{local} ({} workers, cores [{}], unmask {})",
        map.workers(),
        pins.join(","),
        MaskKernel::detected().name()
    ));
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

fn run(config: Config) -> anyhow::Result<()> {
    let map = CoreMap::new(config.workers, config.cores.as_deref()).map_err(explain)?;
    ring::probe().map_err(explain)?;
    let want = config.max_connections as u64 + 64;
    let fds = raise_fd_limit(want);
    if fds < want {
        tracing::warn!(
            limit = fds,
            max_connections = config.max_connections,
            "the open-file limit is below max_connections; raise `ulimit -n`"
        );
    }
    let listeners = bind_reuseport(config.listen, map.workers()).map_err(explain)?;
    let local = listeners[0].local_addr().context("listener address")?;
    let (trigger, shutdown) = shutdown::channel();
    trigger
        .fire_on_signals()
        .context("installing SIGINT/SIGTERM handlers")?;
    let pins: Vec<String> = (0..map.workers())
        .map(|i| map.core(i).map_or("-".to_owned(), |c| c.to_string()))
        .collect();
    say(&format!(
        "feedrelay run listening on ws://{local} ({} workers, cores [{}], idle {:?}, unmask {})",
        map.workers(),
        pins.join(","),
        config.idle,
        MaskKernel::detected().name()
    ));
    let workers = map.workers();
    let per_worker: Arc<Mutex<Vec<Option<_>>>> = Arc::new(Mutex::new(
        listeners
            .into_iter()
            .zip(links(workers))
            .map(Some)
            .collect(),
    ));
    let config = Arc::new(config);
    let connections = Arc::new(ConnectionCount::default());
    let summaries = run_workers(&map, move |i| {
        let mine = per_worker
            .lock()
            .ok()
            .and_then(|mut l| l.get_mut(i)?.take());
        let (config, connections, shutdown) = (
            Arc::clone(&config),
            Arc::clone(&connections),
            shutdown.clone(),
        );
        async move {
            let (listener, links) =
                mine.ok_or_else(|| IoError::Config(format!("no listener for worker {i}")))?;
            run_worker(i, workers, listener, links, config, connections, shutdown).await
        }
    })
    .map_err(explain)?;
    say(&summary(&summaries));
    Ok(())
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
    text
}
