//! One relay worker: its context (shard, links, subscribers' writers, counters) and
//! what it runs: the accept loop, the inbox duty cycle, feeds, keepalive, metrics.
//!
//! Everything here is single-threaded (one worker, one ring): `Cell`s and `RefCell`s,
//! never borrowed across an `.await`. What crosses threads is the [`links`] to other
//! workers and the metrics channel.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::access::AccessCounts;
use super::admission::Admission;
use super::arena::FrameArena;
use super::compression::{CompressionConfig, CompressionStats, MessageCompressor};
use super::config::Config;
use super::control::ControlLimits;
use super::feed::line::{run_line_supervised, Line};
use super::feed::plan::{start_group, FeedPlan};
use super::links::{SendFailed, WorkerLinks, INBOX_BATCH};
use super::live::LiveSettings;
use super::report::{MetricsLink, WorkerSummary};
use super::routing::{SubId, WorkerMask};
use super::session::SUBSCRIBER_READ_BYTES;
use super::shard::{Hop, Shard, ShardSettings};
use super::subscriber::SubWriter;
use super::topic::{JsonPointer, TopicReader};
use crate::io::driver::server::ServerConfig;
use crate::io::listener::{accept_until_shutdown, drain_connections};
use crate::io::nats::{Exporter, ImportQueue, NatsBridge, NatsCounters};
use crate::io::rt;
use crate::io::shutdown::Shutdown;
use crate::io::{idle, IoError};
use crate::metrics::{now_ns, Hop as HopKind, HopHistograms};
use crate::ws::Limits;

/// A connection or feed line running on this worker: counted in `live` until dropped,
/// so the worker's drain waits for it however it ends.
pub(super) struct Live(pub(super) Rc<WorkerCtx>);

impl Live {
    /// Counts one more.
    pub(super) fn enter(ctx: &Rc<WorkerCtx>) -> Live {
        ctx.live.set(ctx.live.get() + 1);
        Live(Rc::clone(ctx))
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.live.set(self.0.live.get() - 1);
    }
}

/// One more in a live count (publishers, subscribers) until dropped, however the
/// connection ends (a panic included).
pub(super) struct Counted<'a>(&'a Cell<u64>);

impl<'a> Counted<'a> {
    /// Counts one more in `gauge`.
    pub(super) fn enter(gauge: &'a Cell<u64>) -> Counted<'a> {
        gauge.set(gauge.get() + 1);
        Counted(gauge)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// Everything one worker's tasks share.
pub(super) struct WorkerCtx {
    pub(super) id: usize,
    pub(super) shard: RefCell<Shard>,
    /// Where relayed frames are encoded.
    pub(super) frames: RefCell<FrameArena>,
    pub(super) links: WorkerLinks,
    /// Each local subscriber's writer, by id.
    pub(super) writers: RefCell<Vec<Option<Rc<SubWriter>>>>,
    outbox: RefCell<Vec<(usize, Hop)>>,
    dirty: RefCell<Vec<SubId>>,
    pub(super) server: ServerConfig,
    /// Protocol limits of subscribers (who send only control messages).
    pub(super) subscriber_limits: Limits,
    /// What a control message may hold.
    pub(super) control: ControlLimits,
    /// Every write to a client or feed must finish within this.
    pub(super) write_timeout: Duration,
    pub(super) pointer: JsonPointer,
    pub(super) default_topic: Option<Bytes>,
    pub(super) keepalive: Duration,
    pub(super) idle_timeout: Duration,
    grace: Duration,
    /// Who may start a handshake (shared by the workers).
    pub(super) admission: Arc<Admission>,
    /// What may be replaced while running: the listener's TLS, the access rules.
    pub(super) settings: Arc<LiveSettings>,
    /// What `access` refused.
    pub(super) access_counts: RefCell<AccessCounts>,
    /// Whether `GET /metrics` is answered on the data port.
    pub(super) metrics_on_data_port: bool,
    /// Connections and feed lines still running on this worker.
    pub(super) live: Cell<usize>,
    pub(super) publishers_live: Cell<u64>,
    pub(super) subscribers_live: Cell<u64>,
    /// This worker's hop latencies since the last metrics tick.
    pub(super) hops: RefCell<HopHistograms>,
    /// When the current metrics interval started.
    pub(super) interval_start: Cell<std::time::SystemTime>,
    pub(super) metrics: Option<MetricsLink>,
    /// Set when the worker has stopped accepting and its connections are gone.
    pub(super) done: Cell<bool>,
    pub(super) summary: RefCell<WorkerSummary>,
    /// The exchange feed lines this worker dials.
    pub(super) feeds: RefCell<Vec<Rc<Line>>>,
    /// `[compression]` as configured.
    pub(super) compression: CompressionConfig,
    /// Compresses relayed messages once each (compression on, shared mode).
    pub(super) compressor: Option<RefCell<MessageCompressor>>,
    /// Subscribers, over all workers, that take shared compressed frames.
    pub(super) deflate_demand: Arc<AtomicUsize>,
    /// What this worker compressed, once per message or per subscriber.
    pub(super) deflate_stats: RefCell<CompressionStats>,
    /// A subscriber this far behind is logged (once per episode).
    pub(super) slow_subscriber_log: Duration,
    /// `/subscribers` is served (`metrics_listen`): each interval lists them.
    pub(super) list_subscribers: bool,
    /// Where ingested messages go to NATS (`[nats] export`).
    pub(super) nats_export: Option<Exporter>,
    /// A message was offered since the last flush: the NATS thread is woken then.
    pub(super) nats_offered: Cell<bool>,
    /// Messages imported from NATS for this worker to ingest (`[nats] import`).
    pub(super) nats_imports: Option<ImportQueue>,
    /// Reads imported messages' topics (and numbers, with `[nats] seq_pointer`).
    pub(super) import_topics: RefCell<TopicReader>,
    /// Drops imported copies another exporting relay delivered first.
    pub(super) import_arbiter: Option<RefCell<super::feed::arbiter::Arbiter>>,
    /// The NATS client's counters (worker 0 reports them).
    pub(super) nats_counters: Option<Arc<NatsCounters>>,
}

impl WorkerCtx {
    /// Records a hop latency, if metrics are on.
    pub(super) fn record(&self, hop: HopKind, ns: u64) {
        if self.metrics.is_some() {
            self.hops.borrow_mut().record(hop, ns);
        }
    }

    /// Sends the shard's outgoing hops, wakes the workers that got some, and wakes the
    /// writers of subscribers whose queues changed.
    pub(super) fn flush(&self) {
        if self.nats_offered.replace(false) {
            if let Some(e) = &self.nats_export {
                e.wake();
            }
        }
        let mut outbox = self.outbox.borrow_mut();
        let mut dirty = self.dirty.borrow_mut();
        {
            let mut shard = self.shard.borrow_mut();
            shard.take_outbox(&mut outbox);
            shard.take_dirty(&mut dirty);
        }
        // Workers that got hops, woken once each after all sends (the worker count is
        // bounded by the routing mask's width, checked at start).
        let mut woken: WorkerMask = 0;
        for (to, hop) in outbox.drain(..) {
            match self.links.send(to, hop) {
                Ok(()) => woken |= 1 << to,
                Err(SendFailed::Full(hop)) => self.shard.borrow_mut().count_channel_full(&hop),
                Err(SendFailed::Gone) => {}
            }
        }
        while woken != 0 {
            let to = woken.trailing_zeros() as usize;
            woken &= woken - 1;
            self.links.wake(to);
        }
        let writers = self.writers.borrow();
        for id in dirty.drain(..) {
            if let Some(Some(w)) = writers.get(id) {
                let closing = self
                    .shard
                    .borrow_mut()
                    .subscriber(id)
                    .is_some_and(|s| s.close.is_some());
                w.wake(closing, self.server.linger);
            }
        }
    }

    /// Moves up to [`INBOX_BATCH`] hops from other workers into the shard; returns how
    /// many (the duty cycle's work count).
    fn drain_inbox(&self) -> usize {
        let n = {
            let mut shard = self.shard.borrow_mut();
            self.links.drain(INBOX_BATCH, |hop| {
                let now = now_ns();
                if let Hop::Message(m) = &hop {
                    self.record(HopKind::Queue, now.saturating_sub(m.routed_ns));
                }
                shard.handle_hop(hop, now);
            })
        };
        if n > 0 {
            self.flush();
        }
        n
    }
}

/// What one relay worker starts with.
pub struct WorkerSetup {
    /// Its index.
    pub id: usize,
    /// How many workers there are.
    pub workers: usize,
    /// Its `SO_REUSEPORT` listener.
    pub listener: std::net::TcpListener,
    /// Its ends of the channels between workers.
    pub links: WorkerLinks,
    /// The relay's configuration.
    pub config: Arc<Config>,
    /// Who may start a handshake (shared by the workers).
    pub admission: Arc<Admission>,
    /// Where to send metrics (`None`: metrics off).
    pub metrics: Option<MetricsLink>,
    /// The feed groups this worker dials.
    pub feeds: Vec<FeedPlan>,
    /// When to stop.
    pub shutdown: Shutdown,
    /// The TLS and access rules in force (shared by the workers, replaced on SIGHUP).
    pub settings: Arc<LiveSettings>,
    /// Subscribers, over all workers, that take shared compressed frames.
    pub deflate_demand: Arc<AtomicUsize>,
    /// Its ends of the NATS hand-offs (`[nats]`).
    pub nats: WorkerNats,
}

/// A worker's ends of the NATS client's hand-offs; all `None` without `[nats]`.
#[derive(Debug, Default)]
pub struct WorkerNats {
    /// Where it offers what it ingests (exporting).
    pub export: Option<Exporter>,
    /// What it ingests from NATS (importing).
    pub imports: Option<ImportQueue>,
    /// The client's counters.
    pub counters: Option<Arc<NatsCounters>>,
}

impl WorkerNats {
    /// Worker `id`'s ends of the running client's hand-offs (none without one).
    pub fn of(bridge: Option<&mut NatsBridge>, id: usize) -> WorkerNats {
        match bridge {
            Some(b) => WorkerNats {
                export: b.exporter(),
                imports: b.take_imports(id),
                counters: Some(b.counters()),
            },
            None => WorkerNats::default(),
        }
    }
}

/// Runs one relay worker: accepts on its listener until shutdown, then lets
/// connections close within the grace period, and reports its counters.
pub async fn run_worker(setup: WorkerSetup) -> Result<WorkerSummary, IoError> {
    let WorkerSetup {
        id,
        workers,
        listener,
        links,
        config,
        admission,
        metrics,
        feeds,
        mut shutdown,
        settings,
        deflate_demand,
        nats,
    } = setup;
    let shared = Shared {
        admission,
        settings,
        deflate_demand,
        nats,
    };
    let ctx = Rc::new(new_ctx(id, workers, links, &config, shared, metrics)?);
    for plan in feeds {
        for line in start_group(plan, &ctx.pointer, ctx.server.limits, &config)? {
            ctx.feeds.borrow_mut().push(Rc::clone(&line));
            let (live, shutdown) = (Live::enter(&ctx), shutdown.clone());
            rt::spawn(async move {
                run_line_supervised(Rc::clone(&live.0), line, shutdown).await;
                drop(live);
            });
        }
    }
    rt::spawn(super::keepalive::sweep(Rc::clone(&ctx)));
    rt::spawn(follow_reloads(Rc::clone(&ctx)));
    if ctx.metrics.is_some() {
        rt::spawn(super::report::metrics_tick(Rc::clone(&ctx)));
    }
    let inbox = {
        let ctx = Rc::clone(&ctx);
        async move {
            idle::run_with_mode(
                config.idle,
                ctx.links.parker(ctx.id),
                || ctx.drain_inbox() + ctx.drain_imports(),
                || !ctx.links.inbox_empty() || ctx.imports_waiting() || ctx.done.get(),
                || ctx.done.get(),
            )
            .await
        }
    };
    let accept = accept_until_done(Rc::clone(&ctx), listener, &mut shutdown);
    let ((), result) = rt::join(inbox, accept).await;
    super::report::send_interval(&ctx);
    result?;
    let mut summary = ctx.summary.borrow().clone();
    summary.stats = ctx.shard.borrow().stats.clone();
    if id == 0 {
        summary.refused_at_accept = ctx.admission.refused().map(|(r, n)| (r.name(), n)).to_vec();
    }
    (summary.feeds, summary.groups) = super::report::feed_counters(&ctx);
    summary.access = ctx.access_counts.borrow().clone();
    summary.deflate = *ctx.deflate_stats.borrow();
    if let (0, Some(n)) = (id, &ctx.nats_counters) {
        summary.nats = n.snapshot();
    }
    Ok(summary)
}

/// How often a worker looks for a SIGHUP reload to apply to its own state.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Applies reloaded topic policies to this worker's shard (within [`RELOAD_CHECK`]).
async fn follow_reloads(ctx: Rc<WorkerCtx>) {
    let mut seen = ctx.settings.generation();
    let mut ticker = rt::Interval::new(RELOAD_CHECK);
    while !ctx.done.get() {
        ticker.tick().await;
        let now = ctx.settings.generation();
        if now != seen {
            seen = now;
            let policies = (*ctx.settings.topic_policies()).clone();
            ctx.shard.borrow_mut().set_topic_policies(policies);
        }
    }
}

/// What every worker holds a reference to.
struct Shared {
    admission: Arc<Admission>,
    settings: Arc<LiveSettings>,
    deflate_demand: Arc<AtomicUsize>,
    nats: WorkerNats,
}

fn new_ctx(
    id: usize,
    workers: usize,
    links: WorkerLinks,
    config: &Config,
    shared: Shared,
    metrics: Option<MetricsLink>,
) -> Result<WorkerCtx, IoError> {
    let Shared {
        admission,
        settings: live_settings,
        deflate_demand,
        nats,
    } = shared;
    let compression = config.compression.clone();
    let compressor = (compression.enabled && !compression.per_subscriber).then(|| {
        RefCell::new(MessageCompressor::new(
            &compression,
            Arc::clone(&deflate_demand),
        ))
    });
    let settings = ShardSettings {
        queue: config.queue_limits(),
        policy: config.slow_consumer,
        topic_policies: (*live_settings.topic_policies()).clone(),
        max_subscriptions: config.max_subscriptions,
        max_drop_topics: config.max_drop_topics,
        last_value_max_topics: config.last_value_max_topics,
        last_value_max_bytes: config.last_value_max_bytes,
    };
    let pointer = JsonPointer::parse(&config.topic_pointer)
        .map_err(|e| IoError::Config(format!("topic_pointer: {e}")))?;
    let seq_pointer = match config.nats.as_ref().and_then(|n| n.seq_pointer.as_deref()) {
        Some(p) => Some(
            JsonPointer::parse(p).map_err(|e| IoError::Config(format!("nats.seq_pointer: {e}")))?,
        ),
        None => None,
    };
    let import_topics = RefCell::new(
        TopicReader::with_seq(pointer.clone(), seq_pointer).max_name_bytes(config.max_topic_bytes),
    );
    Ok(WorkerCtx {
        id,
        shard: RefCell::new(Shard::new(id, workers, settings)),
        frames: RefCell::new(FrameArena::new()),
        links,
        writers: RefCell::new(Vec::new()),
        outbox: RefCell::new(Vec::new()),
        dirty: RefCell::new(Vec::new()),
        server: ServerConfig {
            limits: config.ws_limits(),
            handshake_timeout: Duration::from_millis(config.handshake_timeout_ms),
            idle_timeout: Some(config.idle_timeout()),
            subprotocols: config.subprotocols.clone(),
            deflate: config.compression.server(),
            ..ServerConfig::default()
        },
        subscriber_limits: Limits {
            inline_frame_bytes: SUBSCRIBER_READ_BYTES,
            ..config.subscriber_limits()
        },
        control: config.control_limits(),
        write_timeout: config.write_timeout(),
        pointer,
        default_topic: config
            .default_topic
            .as_ref()
            .map(|t| Bytes::copy_from_slice(t.as_bytes())),
        keepalive: config.keepalive(),
        idle_timeout: config.idle_timeout(),
        grace: Duration::from_millis(config.shutdown_grace_ms),
        admission,
        settings: live_settings,
        access_counts: RefCell::new(AccessCounts::default()),
        metrics_on_data_port: config.metrics_on_data_port,
        live: Cell::new(0),
        publishers_live: Cell::new(0),
        subscribers_live: Cell::new(0),
        hops: RefCell::new(HopHistograms::default()),
        interval_start: Cell::new(std::time::SystemTime::now()),
        metrics,
        done: Cell::new(false),
        summary: RefCell::new(WorkerSummary::default()),
        feeds: RefCell::new(Vec::new()),
        compression,
        compressor,
        deflate_demand,
        deflate_stats: RefCell::new(CompressionStats::default()),
        slow_subscriber_log: Duration::from_millis(config.slow_subscriber_log_ms),
        list_subscribers: config.metrics_listen.is_some(),
        nats_export: nats.export,
        nats_offered: Cell::new(false),
        nats_imports: nats.imports,
        import_topics,
        import_arbiter: super::nats::import_arbiter(config.nats.as_ref()),
        nats_counters: nats.counters,
    })
}

/// Accepts until shutdown, then waits (bounded by the grace period) for connections to
/// finish, then marks the worker done.
async fn accept_until_done(
    ctx: Rc<WorkerCtx>,
    listener: std::net::TcpListener,
    shutdown: &mut Shutdown,
) -> Result<(), IoError> {
    let for_each = shutdown.clone();
    let gate = Arc::clone(&ctx.admission);
    let result = accept_until_shutdown(listener, shutdown, &gate, |stream, peer: SocketAddr| {
        let admitted = match ctx.admission.admit(peer) {
            Ok(a) => a,
            Err(refusal) => {
                // Closed before any handshake: the socket is all it cost.
                tracing::debug!(%peer, reason = refusal.name(), "connection refused at accept");
                return;
            }
        };
        let (live, shutdown) = (Live::enter(&ctx), for_each.clone());
        rt::spawn(async move {
            let ctx = Rc::clone(&live.0);
            if let Err(e) = super::session::serve(&ctx, stream, peer, admitted, shutdown).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(live);
        });
    })
    .await;
    drain_connections(
        &ctx.live,
        ctx.grace + ctx.server.limits.close_timeout + ctx.server.linger,
    )
    .await;
    ctx.done.set(true);
    ctx.links.parker(ctx.id).release();
    result
}
