//! The `feedrelay bench` command: which variants to compare (spawned relays in several
//! configurations, relays already running, the baseline relay, the no-relay floor), at
//! which rates, in rounds that alternate them; the report is in [`super::report`].

use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context};
use hdrhistogram::Histogram;

use super::load::{run as run_load, LoadResult, LoadSpec};
use super::spawn::{Link, SpawnedRelay};
use crate::io::idle::IdleMode;
use crate::relay::config::Config;

/// A switch as the command line spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    /// On.
    On,
    /// Off.
    Off,
}

/// How the spawned relays are chained (`--hops`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chain {
    /// This many relays, each downstream one dialling the one before as a feed.
    Relays(u8),
    /// Two relays across a NATS server (`--nats-url`): the first exports, the second
    /// imports.
    Nats,
}

impl std::str::FromStr for Chain {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "nats" => Ok(Chain::Nats),
            n => match n.parse::<u8>() {
                Ok(n @ 1..=8) => Ok(Chain::Relays(n)),
                _ => Err(format!("{s:?}: a relay count 1-8, or `nats`")),
            },
        }
    }
}

/// `feedrelay bench` flags.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// A relay to measure, as URL or NAME=URL (e.g. base=ws://127.0.0.1:9100/); repeat
    /// to compare several in alternating rounds. Or use --spawn.
    #[arg(long)]
    pub target: Vec<String>,
    /// Publish to this relay instead of the --target (whose subscribers are measured):
    /// a path between relays you started, e.g. two boxes across NATS.
    #[arg(long)]
    pub publish_to: Option<String>,
    /// Process id of each --target, in the same order, to read its CPU time.
    #[arg(long)]
    pub relay_pid: Vec<u32>,
    /// Also measure the floor: the same clients with no relay in between (the
    /// publisher writes straight to each subscriber socket), in the same rounds.
    #[arg(long)]
    pub floor: bool,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Also draw latency by percentile, one line per variant, into this SVG file.
    #[arg(long)]
    pub plot: Option<std::path::PathBuf>,
    /// Also write each run's end-to-end latency histogram as an HdrHistogram interval
    /// log (V2 compressed, ns, one tag per variant, one entry per round).
    #[arg(long)]
    pub hlog: Option<std::path::PathBuf>,
    /// Start a relay for the run (once per idle mode and round).
    #[arg(long)]
    pub spawn: bool,
    /// Idle modes to compare, with --spawn (e.g. park,yield,spin).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "park")]
    pub idle: Vec<IdleMode>,
    /// With --spawn: per-hop metrics in the spawned relay, `on`, `off`, or `on,off` to
    /// compare (each idle mode runs once per setting, alternating).
    #[arg(long, value_delimiter = ',', default_value = "on")]
    pub metrics: Vec<OnOff>,
    /// With --spawn: relays in a chain, `1`, `2`, or `1,2` to compare (the publisher
    /// sends to the first, subscribers take from the last; each downstream relay dials
    /// the one before as a feed); `nats`: two relays across the NATS server at
    /// --nats-url (the first exports, the second imports), e.g. `1,2,nats`.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub hops: Vec<Chain>,
    /// The NATS server a `--hops nats` variant goes through (e.g.
    /// nats://127.0.0.1:4222).
    #[arg(long)]
    pub nats_url: Option<String>,
    /// The process id of the server at --nats-url: its CPU time is counted with the
    /// relays' in a `--hops nats` variant (the hop's whole cost).
    #[arg(long)]
    pub nats_pid: Option<u32>,
    /// With --spawn: pin the workers (`on`: to --cores, or 0..workers), `off`, or
    /// `on,off` to compare. Default: as --cores says.
    #[arg(long, value_delimiter = ',')]
    pub pin: Vec<OnOff>,
    /// With --spawn: start the relays with this config, as [NAME=]FILE; repeat to
    /// compare configs (e.g. sqpoll=sqpoll.toml plain=plain.toml).
    #[arg(long)]
    pub relay_config: Vec<String>,
    /// Trust this PEM CA for `wss://` relays (a spawned relay whose config sets
    /// `tls_cert_file` listens on `wss://`; compare it with a plain config).
    #[arg(long)]
    pub ca: Option<std::path::PathBuf>,
    /// Workers of the spawned relay (default: the relay's own default).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Cores of the spawned relay's workers.
    #[arg(long, value_delimiter = ',')]
    pub cores: Option<Vec<usize>>,
    /// Messages per second published.
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// A rate sweep: messages per second, several (e.g. 5000,10000,20000); each rate
    /// runs every variant in alternating rounds, and the report adds latency against
    /// throughput (SVG with --plot, JSON with --json) and each variant's capacity per
    /// core (the highest delivery rate with p99 at most 1 ms and nothing lost).
    #[arg(long, value_delimiter = ',')]
    pub rates: Vec<u64>,
    /// Pin the relays this bench starts (feedrelay's workers, one per core, and the
    /// baseline's threads) to these cores, e.g. `0`.
    #[arg(long, value_delimiter = ',')]
    pub relay_cores: Option<Vec<usize>>,
    /// Pin this load generator (every thread) to these cores, e.g. `1`.
    #[arg(long, value_delimiter = ',')]
    pub bench_cores: Option<Vec<usize>>,
    /// Also start this baseline relay binary (benches/baseline_relay.rs, as `cargo bench
    /// --no-run` builds it) for every run, as the variant `baseline`.
    #[arg(long, value_name = "PATH")]
    pub baseline: Option<std::path::PathBuf>,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Warm-up seconds per run (not measured).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Subscribers (each takes every topic).
    #[arg(long, default_value_t = 10)]
    pub subs: usize,
    /// Publisher connections (topic k always from publisher k % pubs).
    #[arg(long, default_value_t = 1)]
    pub pubs: usize,
    /// Topics.
    #[arg(long, default_value_t = 10)]
    pub topics: usize,
    /// Message size in bytes.
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Rounds; with several variants, they alternate within each round.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Subscribers offer permessage-deflate (and inflate what comes compressed); the
    /// relay's config decides whether it is accepted. Publishers always send plain.
    #[arg(long)]
    pub deflate: bool,
    /// What pads each message to `--size`: `x` (one repeated byte: compresses to
    /// almost nothing) or `book` (price levels with varying digits, as order-book
    /// updates look; about 2.5:1 under deflate).
    #[arg(long, value_enum, default_value_t = Payload::X)]
    pub payload: Payload,
}

/// What pads the generated messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Payload {
    /// One repeated byte.
    X,
    /// Order-book price levels with varying digits.
    Book,
}

/// What one column of a comparison measures.
#[derive(Debug, Clone)]
pub enum Variant {
    /// A relay `bench` starts itself; with `hops` 2, two relays chained (the second
    /// dials the first's `/ws?topics=*` as a feed).
    Spawn {
        /// Idle strategy.
        idle: IdleMode,
        /// Per-hop metrics on.
        metrics: bool,
        /// How many relays, chained how.
        hops: Chain,
        /// `Some(true)`: workers on `--cores` (or 0..workers); `Some(false)`: unpinned;
        /// `None`: as `--cores` says.
        pinned: Option<bool>,
        /// A named relay config the spawned relays start with.
        config: Option<RelayConfig>,
    },
    /// A relay already running.
    Target {
        /// Its label.
        name: String,
        /// Its base URL.
        url: String,
        /// Its process, for CPU time.
        pid: Option<u32>,
    },
    /// The baseline relay binary, started for each run.
    Baseline {
        /// Its path.
        path: std::path::PathBuf,
    },
    /// No relay: the publisher writes straight to each subscriber socket.
    Floor,
}

/// A `--relay-config`: its name, its text, and the directory its relative paths
/// (certificates, token files) are relative to.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The variant's name.
    pub name: String,
    /// The TOML.
    pub text: String,
    /// Where the spawned relay's copy is written, so relative paths still resolve.
    pub dir: std::path::PathBuf,
}

impl Variant {
    /// `park`, `park-nometrics-2hops-pinned-NAME`, the target's name, or `floor`.
    pub fn label(&self) -> String {
        match self {
            Variant::Spawn {
                idle,
                metrics,
                hops,
                pinned,
                config,
            } => {
                let mut l = idle.name().to_owned();
                if !metrics {
                    l.push_str("-nometrics");
                }
                match hops {
                    Chain::Relays(n) if *n > 1 => l.push_str(&format!("-{n}hops")),
                    Chain::Relays(_) => {}
                    Chain::Nats => l.push_str("-nats"),
                }
                match pinned {
                    Some(true) => l.push_str("-pinned"),
                    Some(false) => l.push_str("-unpinned"),
                    None => {}
                }
                if let Some(c) = config {
                    l.push('-');
                    l.push_str(&c.name);
                }
                l
            }
            Variant::Target { name, .. } => name.clone(),
            Variant::Baseline { .. } => "baseline".to_owned(),
            Variant::Floor => "floor".to_owned(),
        }
    }
}

/// One variant's results at one rate, summed over rounds.
pub(super) struct Totals {
    pub(super) latency: Histogram<u64>,
    pub(super) sent: u64,
    pub(super) expected: u64,
    pub(super) received: u64,
    pub(super) lost: u64,
    pub(super) duplicated: u64,
    pub(super) reordered: u64,
    pub(super) cpu: Duration,
    pub(super) wall: Duration,
    pub(super) segments: Option<u64>,
    pub(super) ip_bytes: Option<u64>,
    pub(super) publisher_lag: Histogram<u64>,
}

impl Totals {
    fn new(r: LoadResult) -> Self {
        Totals {
            latency: r.latency,
            sent: r.sent,
            expected: r.expected,
            received: r.received,
            lost: r.lost,
            duplicated: r.duplicated,
            reordered: r.reordered,
            cpu: r.relay_cpu.unwrap_or_default(),
            wall: r.elapsed,
            segments: r.tcp_segments,
            ip_bytes: r.ip_bytes,
            publisher_lag: r.publisher_lag,
        }
    }

    fn add(&mut self, r: &LoadResult) -> anyhow::Result<()> {
        self.latency.add(&r.latency).map_err(|e| anyhow!("{e}"))?;
        self.sent += r.sent;
        self.expected += r.expected;
        self.received += r.received;
        self.lost += r.lost;
        self.duplicated += r.duplicated;
        self.reordered += r.reordered;
        self.cpu += r.relay_cpu.unwrap_or_default();
        self.wall += r.elapsed;
        self.segments = self.segments.zip(r.tcp_segments).map(|(a, b)| a + b);
        self.ip_bytes = self.ip_bytes.zip(r.ip_bytes).map(|(a, b)| a + b);
        self.publisher_lag
            .add(&r.publisher_lag)
            .map_err(|e| anyhow!("{e}"))?;
        Ok(())
    }
}

/// One measured run, for the hlog: variant, latency, when it started, how long.
type BenchRun = (String, Histogram<u64>, SystemTime, Duration);

/// Runs `feedrelay bench`, printing through `say`.
pub fn command(a: BenchArgs, say: &dyn Fn(&str)) -> anyhow::Result<()> {
    if !a.spawn && a.target.is_empty() && a.baseline.is_none() && !a.floor {
        anyhow::bail!("give --spawn, --target URL (one or more), --baseline PATH or --floor");
    }
    if let Some(cores) = &a.bench_cores {
        crate::io::worker::pin_current_thread(cores)?;
    }
    let mut modes = if a.spawn {
        spawn_variants(&a)?
    } else {
        Vec::new()
    };
    modes.extend(target_variants(&a));
    if let Some(path) = &a.baseline {
        modes.push(Variant::Baseline { path: path.clone() });
    }
    if a.floor {
        modes.push(Variant::Floor);
    }
    let rates = if a.rates.is_empty() {
        vec![a.rate]
    } else {
        a.rates.clone()
    };
    // totals[rate][variant]
    let mut totals: Vec<Vec<Option<Totals>>> = rates
        .iter()
        .map(|_| (0..modes.len()).map(|_| None).collect())
        .collect();
    let started = SystemTime::now();
    let mut runs: Vec<BenchRun> = Vec::new();
    for (ri, &rate) in rates.iter().enumerate() {
        for round in 0..a.rounds.max(1) {
            for (m, mode) in modes.iter().enumerate() {
                let label = mode.label();
                eprintln!(
                    "{rate} msg/s, round {} / {}: {label}: {} s warm-up + {} s measured ...",
                    round + 1,
                    a.rounds.max(1),
                    a.warmup,
                    a.duration
                );
                let run_started = SystemTime::now();
                let r = run_variant(&a, mode, rate)?;
                if a.hlog.is_some() {
                    runs.push((label, r.latency.clone(), run_started, r.elapsed));
                }
                match &mut totals[ri][m] {
                    Some(t) => t.add(&r)?,
                    slot => *slot = Some(Totals::new(r)),
                }
            }
        }
    }
    super::report::report(&a, &modes, &rates, &totals, say)?;
    if let Some(path) = &a.hlog {
        write_hlog(path, started, &runs)?;
    }
    Ok(())
}

/// Every combination of the `--spawn` dimensions.
fn spawn_variants(a: &BenchArgs) -> anyhow::Result<Vec<Variant>> {
    let configs: Vec<Option<RelayConfig>> = if a.relay_config.is_empty() {
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
                Config::load(std::path::Path::new(&path))?;
                let dir = std::path::Path::new(&path)
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .map_or_else(|| std::path::PathBuf::from("."), std::path::Path::to_owned);
                Ok(Some(RelayConfig { name, text, dir }))
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
                            hops,
                            pinned,
                            config: config.clone(),
                        });
                    }
                }
            }
        }
    }
    Ok(v)
}

/// The `--target` relays, named.
fn target_variants(a: &BenchArgs) -> Vec<Variant> {
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
}

/// The cores the spawned relays run on, if pinned.
fn relay_cores(a: &BenchArgs) -> Option<&[usize]> {
    a.relay_cores.as_deref()
}

/// One round of one variant at `rate`: start its relays (if it has any), run the load,
/// stop them.
fn run_variant(a: &BenchArgs, mode: &Variant, rate: u64) -> anyhow::Result<LoadResult> {
    let pin = relay_cores(a);
    let relays = match mode {
        Variant::Spawn {
            idle,
            metrics,
            hops,
            pinned,
            config,
        } => {
            let all: Vec<usize> = (0..a.workers.unwrap_or(1)).collect();
            let cores = match (pin, pinned) {
                (Some(c), _) => Some(c),
                (None, Some(true)) => Some(a.cores.as_deref().unwrap_or(&all)),
                (None, Some(false)) => None,
                (None, None) => a.cores.as_deref(),
            };
            let workers = cores.map(<[usize]>::len).or(a.workers);
            let config = config.as_ref().map(|c| (c.text.as_str(), c.dir.as_path()));
            let link = match hops {
                Chain::Relays(n) => Link::Feeds(*n),
                Chain::Nats => Link::Nats(
                    a.nats_url
                        .as_deref()
                        .context("--hops nats needs --nats-url")?,
                ),
            };
            SpawnedRelay::chain(link, *idle, *metrics, workers, cores, pin, config)?
        }
        Variant::Baseline { path } => vec![SpawnedRelay::baseline(path, pin)?],
        Variant::Target { .. } | Variant::Floor => Vec::new(),
    };
    let (url, publish_to, pids) = match (mode, relays.first(), relays.last()) {
        (_, Some(first), Some(last)) => (
            last.url.clone(),
            (relays.len() > 1).then(|| first.url.clone()),
            relays
                .iter()
                .map(SpawnedRelay::pid)
                .chain(a.nats_pid.filter(|_| is_nats(mode)))
                .collect(),
        ),
        (Variant::Target { url, pid, .. }, _, _) => (
            url.clone(),
            a.publish_to.as_ref().map(|u| match u.ends_with('/') {
                true => u.clone(),
                false => format!("{u}/"),
            }),
            pid.iter().copied().collect(),
        ),
        _ => (String::new(), None, Vec::new()),
    };
    let spec = LoadSpec {
        target: url,
        publish_to,
        rate,
        duration: Duration::from_secs_f64(a.duration),
        warmup: Duration::from_secs_f64(a.warmup),
        subs: a.subs,
        pubs: a.pubs,
        topics: a.topics,
        size: a.size,
        deflate: a.deflate,
        book_payload: a.payload == Payload::Book,
        relay_pids: pids,
        floor: matches!(mode, Variant::Floor),
        tls: match &a.ca {
            Some(ca) => Some(
                crate::io::transport::client_config(Some(ca))
                    .with_context(|| format!("--ca {}", ca.display()))?,
            ),
            None => None,
        },
    };
    let r = run_load(&spec);
    drop(relays);
    r
}

/// A variant whose relays are linked by NATS.
fn is_nats(mode: &Variant) -> bool {
    matches!(
        mode,
        Variant::Spawn {
            hops: Chain::Nats,
            ..
        }
    )
}

/// Writes each run's end-to-end histogram as an interval of an HdrHistogram log.
fn write_hlog(path: &std::path::Path, start: SystemTime, runs: &[BenchRun]) -> anyhow::Result<()> {
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
