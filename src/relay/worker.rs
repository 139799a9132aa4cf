//! One relay worker: its context (shard, links, subscribers' writers, counters) and
//! what it runs: the accept loop, the inbox duty cycle, feeds, keepalive, metrics.
//!
//! Everything here is single-threaded (one worker, one ring): `Cell`s and `RefCell`s,
//! never borrowed across an `.await`. What crosses threads is the [`links`] to other
//! workers and the metrics channel.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::arena::FrameArena;
use super::config::Config;
use super::feed::line::{run_line, Line};
use super::feed::plan::{start_group, FeedPlan};
use super::links::{SendFailed, WorkerLinks, INBOX_BATCH};
use super::report::{MetricsLink, WorkerSummary};
use super::routing::{SubId, WorkerMask};
use super::shard::{Hop, Shard, ShardSettings};
use super::subscriber::SubWriter;
use super::topic::JsonPointer;
use crate::io::driver::server::ServerConfig;
use crate::io::listener::{accept_until_shutdown, drain_connections};
use crate::io::rt;
use crate::io::shutdown::Shutdown;
use crate::io::{idle, IoError};
use crate::metrics::{now_ns, Hop as HopKind, HopHistograms};

/// Connections open over all workers, against `max_connections`.
#[derive(Debug, Default)]
pub struct ConnectionCount(pub(super) AtomicUsize);

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
    pub(super) pointer: JsonPointer,
    pub(super) default_topic: Option<Bytes>,
    pub(super) keepalive: Duration,
    pub(super) idle_timeout: Duration,
    grace: Duration,
    pub(super) max_connections: usize,
    pub(super) connections: Arc<ConnectionCount>,
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
    /// Connections open over all workers.
    pub connections: Arc<ConnectionCount>,
    /// Where to send metrics (`None`: metrics off).
    pub metrics: Option<MetricsLink>,
    /// The feed groups this worker dials.
    pub feeds: Vec<FeedPlan>,
    /// When to stop.
    pub shutdown: Shutdown,
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
        connections,
        metrics,
        feeds,
        mut shutdown,
    } = setup;
    let ctx = Rc::new(new_ctx(id, workers, links, &config, connections, metrics)?);
    for plan in feeds {
        for line in start_group(plan, &ctx.pointer, ctx.server.limits, &config)? {
            ctx.feeds.borrow_mut().push(Rc::clone(&line));
            let (ctx, shutdown) = (Rc::clone(&ctx), shutdown.clone());
            ctx.live.set(ctx.live.get() + 1);
            rt::spawn(async move {
                run_line(Rc::clone(&ctx), line, shutdown).await;
                ctx.live.set(ctx.live.get() - 1);
            });
        }
    }
    rt::spawn(super::keepalive::sweep(Rc::clone(&ctx)));
    if ctx.metrics.is_some() {
        rt::spawn(super::report::metrics_tick(Rc::clone(&ctx)));
    }
    let inbox = {
        let ctx = Rc::clone(&ctx);
        async move {
            idle::run_with_mode(
                config.idle,
                ctx.links.parker(ctx.id),
                || ctx.drain_inbox(),
                || !ctx.links.inbox_empty() || ctx.done.get(),
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
    (summary.feeds, summary.groups) = super::report::feed_counters(&ctx);
    Ok(summary)
}

fn new_ctx(
    id: usize,
    workers: usize,
    links: WorkerLinks,
    config: &Config,
    connections: Arc<ConnectionCount>,
    metrics: Option<MetricsLink>,
) -> Result<WorkerCtx, IoError> {
    let settings = ShardSettings {
        queue: config.queue_limits(),
        policy: config.slow_consumer,
        topic_policies: config
            .topic_policies
            .iter()
            .map(|(t, p)| (Bytes::copy_from_slice(t.as_bytes()), *p))
            .collect::<HashMap<_, _>>(),
        max_subscriptions: config.max_subscriptions,
    };
    let pointer = JsonPointer::parse(&config.topic_pointer)
        .map_err(|e| IoError::Config(format!("topic_pointer: {e}")))?;
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
            ..ServerConfig::default()
        },
        pointer,
        default_topic: config
            .default_topic
            .as_ref()
            .map(|t| Bytes::copy_from_slice(t.as_bytes())),
        keepalive: config.keepalive(),
        idle_timeout: config.idle_timeout(),
        grace: Duration::from_millis(config.shutdown_grace_ms),
        max_connections: config.max_connections,
        connections,
        live: Cell::new(0),
        publishers_live: Cell::new(0),
        subscribers_live: Cell::new(0),
        hops: RefCell::new(HopHistograms::default()),
        interval_start: Cell::new(std::time::SystemTime::now()),
        metrics,
        done: Cell::new(false),
        summary: RefCell::new(WorkerSummary::default()),
        feeds: RefCell::new(Vec::new()),
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
    let result = accept_until_shutdown(listener, shutdown, |stream, peer: SocketAddr| {
        let (ctx, shutdown) = (Rc::clone(&ctx), for_each.clone());
        ctx.live.set(ctx.live.get() + 1);
        ctx.connections.0.fetch_add(1, Ordering::Relaxed);
        rt::spawn(async move {
            if let Err(e) = super::session::serve(&ctx, stream, peer, shutdown).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            ctx.connections.0.fetch_sub(1, Ordering::Relaxed);
            ctx.live.set(ctx.live.get() - 1);
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
