//! One relay worker: its context (shard, links, subscribers' writers, counters) and
//! what it runs: the accept loop, the inbox duty cycle, feeds, keepalive, metrics.
//!
//! Everything here is single-threaded (one worker, one ring): `Cell`s and `RefCell`s,
//! never borrowed across an `.await`. What crosses threads is the
//! [`links`](super::links) to other workers and the metrics channel.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use slab::Slab;

use crate::io::driver::server::ServerConfig;
use crate::io::driver::Driver;
use crate::io::nats::{Exporter, ImportQueue, Imported, NatsBridge, NatsCounters};
use crate::io::offload::Offload;
use crate::io::proxy::TrustedProxies;
use crate::io::IoError;
use crate::metrics::{now_ns, Hop, HopHistograms};
use crate::relay::access::admission::Admission;
use crate::relay::access::counts::AccessCounts;
use crate::relay::access::refusal_log::RefusalLog;
use crate::relay::access::revocation::Held;
use crate::relay::config::Config;
use crate::relay::conn::fanout_list::FanoutList;
use crate::relay::conn::sub_writer::SubWriter;
use crate::relay::core::arena::FrameArena;
use crate::relay::core::budget::SubscriptionBudget;
use crate::relay::core::compression::{CompressionConfig, CompressionStats, MessageCompressor};
use crate::relay::core::control::ControlLimits;
use crate::relay::core::routing::{SubId, WorkerMask};
use crate::relay::core::shard::{Handoff, Shard, ShardSettings};
use crate::relay::core::topic::{JsonPointer, TopicReader};
use crate::relay::feed::line::Line;
use crate::relay::reload::ReloadableSettings;
use crate::relay::worker::links::{SendFailed, WorkerLinks, INBOX_BATCH};
use crate::relay::worker::telemetry::{MetricsLink, WorkerSummary};
use crate::ws::Limits;

/// A connection or feed line running on this worker: counted in `running` until dropped,
/// so the worker's drain waits for it however it ends.
pub(in crate::relay) struct Tracked(pub(in crate::relay) Rc<WorkerCtx>);

impl Tracked {
    /// Counts one more.
    pub(in crate::relay) fn enter(ctx: &Rc<WorkerCtx>) -> Tracked {
        ctx.running.set(ctx.running.get() + 1);
        Tracked(Rc::clone(ctx))
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.running.set(self.0.running.get() - 1);
    }
}

/// One more in a live count (publishers, subscribers) until dropped, however the
/// connection ends (a panic included).
pub(in crate::relay) struct Counted<'a>(&'a Cell<u64>);

impl<'a> Counted<'a> {
    /// Counts one more in `gauge`.
    pub(in crate::relay) fn enter(gauge: &'a Cell<u64>) -> Counted<'a> {
        gauge.set(gauge.get() + 1);
        Counted(gauge)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// Bytes a subscriber's reader buffers (control messages are small; a larger message
/// is assembled within the subscriber limits).
pub const SUBSCRIBER_READ_BYTES: usize = 1024;

/// Everything one worker's tasks share.
pub(in crate::relay) struct WorkerCtx {
    pub(in crate::relay) id: usize,
    pub(in crate::relay) shard: RefCell<Shard>,
    /// Where relayed frames are encoded.
    pub(in crate::relay) frames: RefCell<FrameArena>,
    pub(in crate::relay) links: WorkerLinks,
    /// Each local subscriber's writer, by id.
    pub(in crate::relay) writers: RefCell<Vec<Option<Rc<SubWriter>>>>,
    /// Open publishers: what each was admitted with, and its connection (see
    /// [`revoke`](super::revoke)).
    pub(in crate::relay) held_publishers: RefCell<Slab<(Held, Rc<Driver>)>>,
    outbox: RefCell<Vec<(usize, Handoff)>>,
    dirty: RefCell<Vec<SubId>>,
    /// Writes parked subscribers' queues ([`fanout`](crate::relay::conn::fanout)).
    pub(in crate::relay) fanout: FanoutList,
    pub(in crate::relay) server: ServerConfig,
    /// Protocol limits of subscribers (who send only control messages).
    pub(in crate::relay) subscriber_limits: Limits,
    /// What a control message may hold.
    pub(in crate::relay) control: ControlLimits,
    /// Every write to a client or feed must finish within this.
    pub(in crate::relay) write_timeout: Duration,
    pub(in crate::relay) pointer: JsonPointer,
    pub(in crate::relay) default_topic: Option<Bytes>,
    pub(in crate::relay) keepalive: Duration,
    pub(in crate::relay) idle_timeout: Duration,
    pub(super) grace: Duration,
    /// Who may start a handshake (shared by the workers).
    pub(in crate::relay) admission: Arc<Admission>,
    /// Load balancers whose connections start with a PROXY header (v1 or v2).
    pub(in crate::relay) trusted_proxies: TrustedProxies,
    /// Helper threads for signature checks (shared by the workers).
    pub(in crate::relay) offload: Offload,
    /// What may be replaced while running: the listener's TLS, the access rules.
    pub(in crate::relay) settings: Arc<ReloadableSettings>,
    /// What `access` refused.
    pub(in crate::relay) access_counts: RefCell<AccessCounts>,
    /// How many refused handshakes this second were logged (see
    /// [`refusal_log`](crate::relay::access::refusal_log)).
    pub(in crate::relay) refusal_log: RefusalLog,
    /// Whether `GET /metrics` is answered on the data port.
    pub(in crate::relay) metrics_on_data_port: bool,
    /// Connections and feed lines still running on this worker.
    pub(in crate::relay) running: Cell<usize>,
    pub(in crate::relay) publishers_open: Cell<u64>,
    pub(in crate::relay) subscribers_open: Cell<u64>,
    /// This worker's hop latencies since the last metrics tick.
    pub(in crate::relay) hops: RefCell<HopHistograms>,
    /// When the current metrics interval started.
    pub(in crate::relay) interval_start: Cell<std::time::SystemTime>,
    pub(in crate::relay) metrics: Option<MetricsLink>,
    /// Set when the worker has stopped accepting and its connections are gone.
    pub(in crate::relay) done: Cell<bool>,
    pub(in crate::relay) summary: RefCell<WorkerSummary>,
    /// The exchange feed lines this worker dials.
    pub(in crate::relay) feeds: RefCell<Vec<Rc<Line>>>,
    /// `[compression]` as configured.
    pub(in crate::relay) compression: CompressionConfig,
    /// Compresses relayed messages once each (compression on, shared mode).
    pub(in crate::relay) compressor: Option<RefCell<MessageCompressor>>,
    /// Subscribers, over all workers, that take shared compressed frames.
    pub(in crate::relay) deflate_demand: Arc<AtomicUsize>,
    /// Subscribers, over all workers, that take sequence envelopes: envelopes are built
    /// only while there is one.
    pub(in crate::relay) seq_demand: Arc<AtomicUsize>,
    /// Where an envelope's head is written (kept, so no allocation per message).
    pub(in crate::relay) seq_scratch: RefCell<Vec<u8>>,
    /// The ring's last completion time and the same on the metrics clock (see
    /// [`ring_ns`](Self::ring_ns)).
    ring_clock: Cell<(Instant, u64)>,
    /// What this worker compressed, once per message or per subscriber.
    pub(in crate::relay) deflate_stats: RefCell<CompressionStats>,
    /// A subscriber this far behind is logged (once per episode).
    pub(in crate::relay) slow_subscriber_log: Duration,
    /// `/subscribers` is served (`metrics_listen`): each interval lists them.
    pub(in crate::relay) list_subscribers: bool,
    /// Where ingested messages go to NATS (`[nats] export`).
    pub(in crate::relay) nats_export: Option<Exporter>,
    /// A message was offered since the last flush: the NATS thread is woken then.
    pub(in crate::relay) nats_offered: Cell<bool>,
    /// Messages imported from NATS for this worker to ingest (`[nats] import`).
    pub(in crate::relay) nats_imports: Option<ImportQueue>,
    /// Reads imported messages' topics (and numbers, with `[nats] seq_pointer`).
    pub(in crate::relay) import_topics: RefCell<TopicReader>,
    /// Drops imported copies another exporting relay delivered first.
    pub(in crate::relay) import_arbiter: Option<RefCell<crate::relay::feed::arbiter::Arbiter>>,
    /// The NATS client's counters (worker 0 reports them).
    pub(in crate::relay) nats_counters: Option<Arc<NatsCounters>>,
}

impl WorkerCtx {
    /// `t` (the ring's time of its last completions) on the metrics clock, converted
    /// once for every writer those completions woke.
    pub(in crate::relay) fn ring_ns(&self, t: Instant) -> u64 {
        let (at, ns) = self.ring_clock.get();
        if at == t && ns > 0 {
            return ns;
        }
        let ns = crate::metrics::ns_at(t);
        self.ring_clock.set((t, ns));
        ns
    }

    /// Records a hop latency, if metrics are on.
    pub(in crate::relay) fn record(&self, hop: Hop, ns: u64) {
        if self.metrics.is_some() {
            self.hops.borrow_mut().record(hop, ns);
        }
    }

    /// Sends the shard's outgoing hops, wakes the workers that got some, and wakes the
    /// writers of subscribers whose queues changed.
    pub(in crate::relay) fn flush(&self) {
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
                if closing || !self.fanout.offer(id, w) {
                    w.wake(closing, self.server.linger);
                }
            }
        }
    }

    /// Moves up to [`INBOX_BATCH`] hand-offs from other workers into the shard; returns how
    /// many (the duty cycle's work count).
    pub(super) fn drain_inbox(&self) -> usize {
        let n = {
            let mut shard = self.shard.borrow_mut();
            self.links.drain(INBOX_BATCH, |handoff| {
                let now = now_ns();
                if let Handoff::Message(m) = &handoff {
                    self.record(Hop::Queue, now.saturating_sub(m.routed_ns));
                }
                shard.handle_handoff(handoff, now);
            })
        };
        if n > 0 {
            self.flush();
        }
        n
    }
}

/// A worker's ends of the NATS client's hand-offs; all `None` without `[nats]`.
#[derive(Debug, Default)]
pub(in crate::relay) struct WorkerNats {
    /// Where it offers what it ingests (exporting).
    pub export: Option<Exporter>,
    /// What it ingests from NATS (importing).
    pub imports: Option<ImportQueue>,
    /// The client's counters.
    pub counters: Option<Arc<NatsCounters>>,
    /// What the stream's history held for this worker, to take before serving.
    pub history: Vec<Imported>,
}

impl WorkerNats {
    /// Worker `id`'s ends of the running client's hand-offs (none without one).
    pub(in crate::relay) fn of(bridge: Option<&mut NatsBridge>, id: usize) -> WorkerNats {
        match bridge {
            Some(b) => WorkerNats {
                export: b.exporter(),
                imports: b.take_imports(id),
                counters: Some(b.counters()),
                history: b.take_history(id),
            },
            None => WorkerNats::default(),
        }
    }
}

/// What every worker holds a reference to.
pub(super) struct Shared {
    pub(super) admission: Arc<Admission>,
    pub(super) offload: Offload,
    pub(super) settings: Arc<ReloadableSettings>,
    pub(super) deflate_demand: Arc<AtomicUsize>,
    pub(super) seq_demand: Arc<AtomicUsize>,
    pub(super) subscription_budget: Arc<SubscriptionBudget>,
    pub(super) nats: WorkerNats,
}

/// A worker's state, from the configuration and what the workers share.
pub(super) fn new_ctx(
    id: usize,
    workers: usize,
    links: WorkerLinks,
    config: &Config,
    shared: Shared,
    metrics: Option<MetricsLink>,
) -> Result<WorkerCtx, IoError> {
    let Shared {
        admission,
        offload,
        settings: live_settings,
        deflate_demand,
        seq_demand,
        subscription_budget,
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
        subscription_budget,
        max_drop_topics: config.max_drop_topics,
        last_value_max_topics: config.last_value_max_topics,
        last_value_max_bytes: config.last_value_max_bytes,
        epoch_base: crate::io::rt::random_u64(),
        history_per_topic: config.history_messages_per_topic,
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
        held_publishers: RefCell::new(Slab::new()),
        outbox: RefCell::new(Vec::new()),
        dirty: RefCell::new(Vec::new()),
        fanout: FanoutList::default(),
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
        trusted_proxies: config.trusted_proxies().unwrap_or_default(),
        admission,
        offload,
        settings: live_settings,
        access_counts: RefCell::new(AccessCounts::default()),
        refusal_log: RefusalLog::default(),
        metrics_on_data_port: config.metrics_on_data_port,
        running: Cell::new(0),
        publishers_open: Cell::new(0),
        subscribers_open: Cell::new(0),
        hops: RefCell::new(HopHistograms::default()),
        interval_start: Cell::new(std::time::SystemTime::now()),
        metrics,
        done: Cell::new(false),
        summary: RefCell::new(WorkerSummary::default()),
        feeds: RefCell::new(Vec::new()),
        compression,
        compressor,
        deflate_demand,
        seq_demand,
        seq_scratch: RefCell::new(Vec::with_capacity(256)),
        ring_clock: Cell::new((Instant::now(), 0)),
        deflate_stats: RefCell::new(CompressionStats::default()),
        slow_subscriber_log: Duration::from_millis(config.slow_subscriber_log_ms),
        list_subscribers: config.metrics_listen.is_some(),
        nats_export: nats.export,
        nats_offered: Cell::new(false),
        nats_imports: nats.imports,
        import_topics,
        import_arbiter: crate::relay::nats::config::import_arbiter(config.nats.as_ref()),
        nats_counters: nats.counters,
    })
}
