//! What `feedrelay bench` is asked to do: its flags ([`BenchArgs`]) and the variants a
//! comparison runs side by side ([`Variant`]).

use crate::io::idle::IdleMode;

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
    /// Split the relays' CPU time into user and kernel by samples of their threads
    /// (perf events, about 4,000 per second of each thread's CPU time) instead of
    /// /proc's split, which the scheduler tick makes and a load in step with the tick
    /// biases. The total is exact either way. The sampling costs the relay about 2% of
    /// its CPU and raised its p99.99 in most paired runs, so latency runs leave it off.
    #[arg(long)]
    pub cpu_samples: bool,
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
    /// Also start this baseline relay binary for every run, as PATH (the variant
    /// `baseline`) or NAME=PATH; repeat to compare several. It is started with
    /// `--listen 127.0.0.1:0` (and `--threads N` when pinned to N cores) and must print
    /// `listening on ws://ADDR`: benches/baseline_relay.rs (as `cargo bench --no-run`
    /// builds it) and tuning/uws/uws_relay.cpp do.
    #[arg(long, value_name = "[NAME=]PATH")]
    pub baseline: Vec<String>,
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
    /// Subscribers ask for the relay's sequence (`seq=1`): each message arrives in its
    /// envelope (what this costs the relay, beside a run without).
    #[arg(long)]
    pub seq: bool,
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
    /// A baseline relay binary, started for each run.
    Baseline {
        /// Its label.
        name: String,
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
            Variant::Baseline { name, .. } => name.clone(),
            Variant::Floor => "floor".to_owned(),
        }
    }
}
