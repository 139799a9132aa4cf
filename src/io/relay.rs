//! The relay's IO: per-worker context, publisher and subscriber connections, the inbox
//! that takes hops from other workers, and how an idle worker waits.
//!
//! A publisher's message is read on the worker that owns its connection, framed once
//! into a `Bytes`, and given to that worker's [`Shard`], which queues it for local
//! subscribers and names the other workers that want it; those get the same `Bytes`
//! over bounded `crossbeam-channel`s, one per worker pair. Each subscriber has a writer
//! task that drains its queue into one vectored write at a time.
//!
//! # Idle strategies
//!
//! How a worker with an empty inbox waits is chosen once at start ([`IdleMode`]):
//! - `spin`: poll the inbox in a loop (yielding to the worker's own IO tasks between
//!   polls). Lowest wake-up latency; burns its core at 100% even when idle, which
//!   starves everything else on a small box, so it is never the default.
//! - `yield`: like `spin`, but gives the CPU to other threads between polls
//!   (`sched_yield`); still 100% CPU when nothing else wants the core.
//! - `park`: sleep until woken. A producer that finds the worker parked wakes it with a
//!   `tokio::sync::Notify` (one `eventfd` write); a busy worker is never parked, so the
//!   wake costs nothing while work flows. The wake-up latency is the scheduler's: on a
//!   busy host it grows, and `tuning/` shows how isolated cores help.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use tokio::sync::Notify;

use super::signal::LocalSignal;

use super::error::IoError;
use super::feed::{run_line, FeedSink, Group, Line, LineState};
use super::ring::{self, TcpStream};
use super::server::{
    accept_handshake_or_plain, accept_until_shutdown, drain_connections, drive, linger_close, seed,
    ServerConfig, Service,
};
use super::shutdown::Shutdown;
use crate::metrics::collector::{Counters, FeedCounters, GroupCounters, Interval, Snapshot};
use crate::metrics::{now_ns, prometheus, Hop as HopKind, HopHistograms};
use crate::relay::config::{Config, IdleMode};
use crate::relay::control::{self, Control};
use crate::relay::feed::{Arbiter, FeedConfig};
use crate::relay::routing::SubId;
use crate::relay::shard::{Hop, Relayed, Shard, ShardSettings, ShardStats};
use crate::relay::topic::{JsonPointer, TopicLookup, TopicReader};
use crate::ws::handshake::Request;
use crate::ws::{
    encode_frame, CloseCode, Connection, Event, FrameHeader, MessageKind, OpCode, Role, State,
};

/// Hops a channel between two workers holds; a full channel drops (and counts) rather
/// than stall the publisher. Not yet tuned by a benchmark.
pub const CHANNEL_CAPACITY: usize = 65_536;

/// Hops taken from the inbox before the worker's other tasks get a turn.
pub const INBOX_BATCH: usize = 256;

/// Frames per vectored write to one subscriber (IOV_MAX is 1024). Not yet tuned by a
/// benchmark.
pub const MAX_WRITE_BATCH: usize = 64;

/// Read buffer of a subscriber connection: subscribers only send control messages,
/// so an idle subscriber holds a small buffer; larger control frames stream through the
/// reassembly buffer (up to `max_message_bytes`).
pub const SUBSCRIBER_READ_BYTES: usize = 1024;

/// How a parked worker is woken.
#[derive(Debug, Default)]
pub struct Wake {
    parked: AtomicBool,
    notify: Notify,
}

impl Wake {
    /// Wakes the worker if it is parked; free if it is not.
    pub fn wake(&self) {
        if self.parked.load(Ordering::Relaxed) && self.parked.swap(false, Ordering::SeqCst) {
            self.notify.notify_one();
        }
    }
}

/// One worker's ends of the channels between workers.
#[derive(Debug)]
pub struct WorkerLinks {
    incoming: Vec<Receiver<Hop>>,
    outgoing: Vec<Option<Sender<Hop>>>,
    wakes: Arc<Vec<Wake>>,
}

/// Builds the channels for `workers` workers: one bounded channel per ordered pair.
pub fn links(workers: usize) -> Vec<WorkerLinks> {
    let wakes: Arc<Vec<Wake>> = Arc::new((0..workers).map(|_| Wake::default()).collect());
    let mut incoming: Vec<Vec<Receiver<Hop>>> = (0..workers).map(|_| Vec::new()).collect();
    let mut outgoing: Vec<Vec<Option<Sender<Hop>>>> = (0..workers).map(|_| Vec::new()).collect();
    for (from, out) in outgoing.iter_mut().enumerate() {
        for (to, inc) in incoming.iter_mut().enumerate() {
            if from == to {
                out.push(None);
            } else {
                let (tx, rx) = bounded(CHANNEL_CAPACITY);
                out.push(Some(tx));
                inc.push(rx);
            }
        }
    }
    incoming
        .into_iter()
        .zip(outgoing)
        .map(|(incoming, outgoing)| WorkerLinks {
            incoming,
            outgoing,
            wakes: Arc::clone(&wakes),
        })
        .collect()
}

/// Where a worker sends its metrics, and the merged view `/metrics` renders.
#[derive(Debug, Clone)]
pub struct MetricsLink {
    /// The collector's inbox.
    pub tx: crossbeam_channel::Sender<Interval>,
    /// The collector's merged snapshot.
    pub snapshot: Arc<std::sync::Mutex<Snapshot>>,
}

/// Connections open over all workers, against `max_connections`.
#[derive(Debug, Default)]
pub struct ConnectionCount(AtomicUsize);

/// What a worker reports when it stops.
#[derive(Debug, Default, Clone)]
pub struct WorkerSummary {
    /// The shard's counters.
    pub stats: ShardStats,
    /// Publisher connections accepted.
    pub publishers: u64,
    /// Subscriber connections accepted.
    pub subscribers: u64,
    /// Connections refused at the handshake (bad path, over the limit, bad request).
    pub refused: u64,
    /// The feed lines this worker dialled.
    pub feeds: Vec<FeedCounters>,
    /// Their groups' arbitration.
    pub groups: Vec<GroupCounters>,
}

/// A subscriber's writer, as the reader, the shard's flush and the keepalive sweep see it.
struct SubWriter {
    stream: Rc<TcpStream>,
    notify: LocalSignal,
    /// When the subscriber last sent anything (a pong counts).
    last_rx: Cell<Instant>,
    /// Set by the keepalive sweep: the subscriber was silent past the idle timeout.
    idle_close: Cell<bool>,
    /// A vectored write is in flight (the peer may have stopped reading).
    writing: Cell<bool>,
    /// Set by the reader when the connection is done; the writer stops touching the
    /// shard (the subscriber's id may be reused).
    gone: Cell<bool>,
    /// Write what is queued (ending with our close frame), then close TCP.
    close_after_flush: Cell<bool>,
}

/// Everything one worker's tasks share. Single-threaded: `RefCell`s, never held across
/// an `.await`.
struct WorkerCtx {
    id: usize,
    shard: RefCell<Shard>,
    links: WorkerLinks,
    writers: RefCell<Vec<Option<Rc<SubWriter>>>>,
    outbox: RefCell<Vec<(usize, Hop)>>,
    dirty: RefCell<Vec<SubId>>,
    server: ServerConfig,
    pointer: JsonPointer,
    default_topic: Option<Bytes>,
    keepalive: Duration,
    idle_timeout: Duration,
    grace: Duration,
    max_connections: usize,
    connections: Arc<ConnectionCount>,
    live: Cell<usize>,
    publishers_live: Cell<u64>,
    subscribers_live: Cell<u64>,
    /// This worker's hop latencies since the last metrics tick.
    hops: RefCell<HopHistograms>,
    /// When the current metrics interval started.
    interval_start: Cell<std::time::SystemTime>,
    metrics: Option<MetricsLink>,
    /// Set when the worker has stopped accepting and its connections are gone.
    done: Cell<bool>,
    summary: RefCell<WorkerSummary>,
    /// The exchange feed lines this worker dials.
    feeds: RefCell<Vec<Rc<Line>>>,
}

impl FeedSink for WorkerCtx {
    fn ingest(&self, kind: MessageKind, payload: &[u8], lookup: TopicLookup, read_ns: u64) {
        // Frame once, exactly sized, so the Vec becomes the shared Bytes without a copy.
        let header_len = FrameHeader {
            fin: true,
            rsv: 0,
            opcode: kind.opcode(),
            mask: None,
            payload_len: payload.len() as u64,
        }
        .encoded_len();
        let topic = match lookup {
            TopicLookup::InPayload(r) => Ok(header_len + r.start..header_len + r.end),
            TopicLookup::Unescaped(t) => Err(Bytes::from(t)),
            TopicLookup::Missing | TopicLookup::NotJson => match &self.default_topic {
                Some(t) => Err(t.clone()),
                None => {
                    self.shard.borrow_mut().drop_no_topic();
                    return;
                }
            },
        };
        let mut frame = Vec::with_capacity(header_len + payload.len());
        encode_frame(&mut frame, kind.opcode(), true, payload, None);
        let frame = Bytes::from(frame);
        let topic = match topic {
            Ok(range) => frame.slice(range),
            Err(t) => t,
        };
        let now = now_ns();
        if self.metrics.is_some() {
            self.hops
                .borrow_mut()
                .record(HopKind::Ingress, now.saturating_sub(read_ns));
        }
        self.shard.borrow_mut().publish(
            Relayed {
                topic,
                frame,
                routed_ns: now,
            },
            now,
        );
    }

    fn end_batch(&self) {
        self.flush();
    }
}

/// Topics reported per group with their missing counts, at most (the worst first):
/// a line with gaps on every topic must not turn `/metrics` into megabytes.
pub const MAX_GAP_TOPICS_REPORTED: usize = 100;

impl WorkerCtx {
    /// The feeds' and groups' counters now.
    fn feed_counters(&self) -> (Vec<FeedCounters>, Vec<GroupCounters>) {
        let now = Instant::now();
        let lines = self.feeds.borrow();
        let feeds = lines
            .iter()
            .map(|l| {
                let st = &l.state;
                FeedCounters {
                    name: l.config.name.clone(),
                    group: l.group.name.clone(),
                    connected: st.connected.get(),
                    connects: st.connects.get(),
                    reconnects: st.reconnects.get(),
                    messages: st.messages.get(),
                    pings: st.pings.get(),
                    duplicates: st.duplicates.get(),
                    last_message_age_ms: st
                        .last_message
                        .get()
                        .map(|t| now.duration_since(t).as_millis() as u64),
                }
            })
            .collect();
        let mut groups: Vec<GroupCounters> = Vec::new();
        for l in lines.iter() {
            if groups.iter().any(|g| g.name == l.group.name) || !l.group.sequenced {
                continue;
            }
            let arbiter = l.group.arbiter.borrow();
            let t = arbiter.totals();
            groups.push(GroupCounters {
                name: l.group.name.clone(),
                forwarded: t.forwarded,
                duplicates: t.duplicates,
                gaps: t.gaps,
                missing: t.missing,
                resets: t.resets,
                untracked: arbiter.untracked(),
                missing_by_topic: arbiter.worst_gaps(MAX_GAP_TOPICS_REPORTED),
            });
        }
        (feeds, groups)
    }
}

impl WorkerCtx {
    /// Sends the shard's outgoing hops, wakes the workers that got some, and wakes the
    /// writers of subscribers whose queues changed.
    fn flush(&self) {
        let mut outbox = self.outbox.borrow_mut();
        let mut dirty = self.dirty.borrow_mut();
        {
            let mut shard = self.shard.borrow_mut();
            shard.take_outbox(&mut outbox);
            shard.take_dirty(&mut dirty);
        }
        let mut woken = 0u64;
        for (to, hop) in outbox.drain(..) {
            let Some(Some(tx)) = self.links.outgoing.get(to) else {
                continue;
            };
            match tx.try_send(hop) {
                Ok(()) => woken |= 1 << to,
                Err(TrySendError::Full(hop)) => self.shard.borrow_mut().count_channel_full(&hop),
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
        while woken != 0 {
            let w = woken.trailing_zeros() as usize;
            woken &= woken - 1;
            self.links.wakes[w].wake();
        }
        let writers = self.writers.borrow();
        for id in dirty.drain(..) {
            let Some(Some(w)) = writers.get(id) else {
                continue;
            };
            w.notify.raise();
            let closing = self
                .shard
                .borrow_mut()
                .subscriber(id)
                .is_some_and(|s| s.close.is_some());
            if closing && w.writing.get() {
                // The writer is stuck behind a full socket: a subscriber that stopped
                // reading will never read our close frame. Give it the linger period,
                // then cut the connection so its memory and descriptor come back.
                let (w, linger) = (Rc::clone(w), self.server.linger);
                ring::spawn(async move {
                    tokio::time::sleep(linger).await;
                    if w.writing.get() {
                        let _ = w.stream.shutdown(std::net::Shutdown::Both);
                    }
                });
            }
        }
    }

    /// Moves up to [`INBOX_BATCH`] hops from other workers into the shard.
    fn drain_inbox(&self) -> usize {
        let mut n = 0;
        {
            let mut shard = self.shard.borrow_mut();
            for rx in &self.links.incoming {
                while n < INBOX_BATCH {
                    match rx.try_recv() {
                        Ok(hop) => {
                            let now = now_ns();
                            if let (Some(_), Hop::Message(m)) = (&self.metrics, &hop) {
                                self.hops
                                    .borrow_mut()
                                    .record(HopKind::Queue, now.saturating_sub(m.routed_ns));
                            }
                            shard.handle_hop(hop, now);
                            n += 1;
                        }
                        Err(_) => break,
                    }
                }
            }
        }
        if n > 0 {
            self.flush();
        }
        n
    }

    fn inbox_empty(&self) -> bool {
        self.links.incoming.iter().all(|rx| rx.is_empty())
    }
}

/// Yields to the runtime once: the worker's other tasks run and the runtime polls its
/// drivers without sleeping (completions are reaped), then this resumes.
///
/// tokio's `yield_now` would do as much, but it defers through the scheduler; waking
/// our own waker keeps the loop in the root future. Neither makes the runtime *submit*
/// queued ring operations (it does that only when it parks): [`ring::submit_pending`]
/// does, after each yield.
struct YieldToRing(bool);

impl std::future::Future for YieldToRing {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// Takes hops from the other workers until the worker is done, waiting as `idle`
/// says. Runs inside the worker's root future (see [`YieldToRing`]).
async fn run_inbox(ctx: Rc<WorkerCtx>, idle: IdleMode) {
    let wake = &ctx.links.wakes[ctx.id];
    while !ctx.done.get() {
        if ctx.drain_inbox() > 0 {
            // Let the writers this batch woke run, then hand their writes to the kernel:
            // a busy worker does not park, so the runtime would not submit them.
            YieldToRing(false).await;
            ring::submit_pending();
            continue;
        }
        match idle {
            IdleMode::Spin => {
                std::hint::spin_loop();
                YieldToRing(false).await;
                ring::submit_pending();
            }
            IdleMode::Yield => {
                std::thread::yield_now();
                YieldToRing(false).await;
                ring::submit_pending();
            }
            IdleMode::Park => {
                wake.parked.store(true, Ordering::SeqCst);
                // Re-check after announcing the park: a producer that sent before it saw
                // the flag did not wake us.
                if !ctx.inbox_empty() || ctx.done.get() {
                    wake.parked.store(false, Ordering::SeqCst);
                    continue;
                }
                wake.notify.notified().await;
            }
        }
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

/// A group of feed lines with their TLS trust, as planned before the workers start.
#[derive(Clone)]
pub struct FeedPlan {
    /// The group's name.
    pub group: String,
    /// Its lines.
    pub lines: Vec<(FeedConfig, Option<Arc<rustls::ClientConfig>>)>,
}

/// Groups the configured feeds, builds each line's TLS trust (a bad `ca_file` stops the
/// start), and assigns group `i` to worker `i % workers`, so a group's lines share one
/// worker and its arbiter needs no lock.
pub fn plan_feeds(config: &Config, workers: usize) -> Result<Vec<Vec<FeedPlan>>, IoError> {
    let mut groups: Vec<FeedPlan> = Vec::new();
    for feed in &config.feeds {
        let tls = match (feed.url.starts_with("wss://"), &feed.ca_file) {
            (false, _) => None,
            (true, ca) => Some(
                super::transport::client_config(ca.as_deref())
                    .map_err(|e| IoError::Config(format!("feed {}: {e}", feed.name)))?,
            ),
        };
        let name = feed.group_name();
        match groups.iter_mut().find(|g| g.group == name) {
            Some(g) => g.lines.push((feed.clone(), tls)),
            None => groups.push(FeedPlan {
                group: name.to_owned(),
                lines: vec![(feed.clone(), tls)],
            }),
        }
    }
    let mut per_worker = vec![Vec::new(); workers.max(1)];
    for (i, g) in groups.into_iter().enumerate() {
        per_worker[i % workers.max(1)].push(g);
    }
    Ok(per_worker)
}

/// Runs one relay worker: accepts on `listener` until shutdown, then lets connections
/// close within the grace period, and reports its counters.
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
    let server = ServerConfig {
        limits: config.ws_limits(),
        handshake_timeout: Duration::from_millis(config.handshake_timeout_ms),
        idle_timeout: Some(config.idle_timeout()),
        ..ServerConfig::default()
    };
    let ctx = Rc::new(WorkerCtx {
        id,
        shard: RefCell::new(Shard::new(id, workers, settings)),
        links,
        writers: RefCell::new(Vec::new()),
        outbox: RefCell::new(Vec::new()),
        dirty: RefCell::new(Vec::new()),
        server,
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
    });
    start_feeds(&ctx, feeds, &config, &shutdown)?;
    ring::spawn(keepalive_sweep(Rc::clone(&ctx)));
    if ctx.metrics.is_some() {
        ring::spawn(metrics_tick(Rc::clone(&ctx)));
    }
    let inbox = run_inbox(Rc::clone(&ctx), config.idle);
    let accept = accept_until_done(Rc::clone(&ctx), listener, &mut shutdown);
    let ((), result) = tokio::join!(inbox, accept);
    send_interval(&ctx);
    result?;
    let mut summary = ctx.summary.borrow().clone();
    summary.stats = ctx.shard.borrow().stats.clone();
    (summary.feeds, summary.groups) = ctx.feed_counters();
    Ok(summary)
}

/// Spawns one task per feed line; each counts as a live connection, so the worker
/// finishes only after its lines have closed.
fn start_feeds(
    ctx: &Rc<WorkerCtx>,
    plans: Vec<FeedPlan>,
    config: &Config,
    shutdown: &Shutdown,
) -> Result<(), IoError> {
    // The config was checked at load: a pointer that still fails to parse is a bug
    // worth a clear error, not a panic.
    let parse = |field: &str, p: &str| {
        JsonPointer::parse(p).map_err(|e| IoError::Config(format!("{field}: {e}")))
    };
    for plan in plans {
        let group = Rc::new(Group {
            sequenced: plan.lines.iter().all(|(f, _)| f.seq_pointer.is_some()),
            arbiter: RefCell::new(Arbiter::new(plan.lines.len())),
            name: plan.group,
        });
        for (index, (feed, tls)) in plan.lines.into_iter().enumerate() {
            let topic_pointer = match &feed.topic_pointer {
                Some(p) => parse("topic_pointer", p)?,
                None => ctx.pointer.clone(),
            };
            let seq_pointer = feed
                .seq_pointer
                .as_deref()
                .map(|p| parse("seq_pointer", p))
                .transpose()?;
            let line = Rc::new(Line {
                config: feed,
                index,
                group: Rc::clone(&group),
                tls,
                limits: ctx.server.limits,
                topic_pointer,
                seq_pointer,
                socket: config.socket_options(),
                state: LineState::default(),
            });
            ctx.feeds.borrow_mut().push(Rc::clone(&line));
            let (ctx, shutdown) = (Rc::clone(ctx), shutdown.clone());
            ctx.live.set(ctx.live.get() + 1);
            ring::spawn(async move {
                run_line(Rc::clone(&ctx), line, shutdown).await;
                ctx.live.set(ctx.live.get() - 1);
            });
        }
    }
    Ok(())
}

/// Accepts until shutdown, then waits (bounded by the grace period) for connections to
/// finish, then marks the worker done.
async fn accept_until_done(
    ctx: Rc<WorkerCtx>,
    listener: std::net::TcpListener,
    shutdown: &mut Shutdown,
) -> Result<(), IoError> {
    let for_each = shutdown.clone();
    let result = accept_until_shutdown(listener, shutdown, |stream, peer| {
        let (ctx, shutdown) = (Rc::clone(&ctx), for_each.clone());
        ctx.live.set(ctx.live.get() + 1);
        ctx.connections.0.fetch_add(1, Ordering::Relaxed);
        ring::spawn(async move {
            if let Err(e) = serve(&ctx, stream, peer, shutdown).await {
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
    ctx.links.wakes[ctx.id].parked.store(true, Ordering::SeqCst);
    ctx.links.wakes[ctx.id].wake();
    result
}

/// Which side of the relay a connection is on, decided by its path.
enum Side {
    Publisher,
    Subscriber(Vec<String>),
}

fn route(req: &Request, ctx: &WorkerCtx) -> Result<Side, (u16, String)> {
    if ctx.connections.0.load(Ordering::Relaxed) > ctx.max_connections {
        return Err((
            503,
            format!("over max_connections ({})", ctx.max_connections),
        ));
    }
    match req.path.as_str() {
        "/pub" => Ok(Side::Publisher),
        "/ws" => control::parse_query_topics(req.query_param("topics").unwrap_or(""))
            .map(Side::Subscriber)
            .map_err(|e| (400, format!("topics: {e}"))),
        other => Err((
            404,
            format!("no such path {other:?}: publishers use /pub, subscribers /ws?topics=A,B"),
        )),
    }
}

async fn serve(
    ctx: &Rc<WorkerCtx>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: Shutdown,
) -> Result<(), IoError> {
    let mut side = None;
    let accepted = accept_handshake_or_plain(
        &stream,
        peer,
        &ctx.server,
        |req| {
            side = Some(route(req, ctx)?);
            Ok(())
        },
        |path| match (path, &ctx.metrics) {
            ("/metrics", Some(m)) => m.snapshot.lock().ok().map(|s| prometheus::render(&s)),
            _ => None,
        },
    )
    .await?;
    let (Some((_req, buf)), Some(side)) = (accepted, side) else {
        ctx.summary.borrow_mut().refused += 1;
        return Ok(());
    };
    match side {
        Side::Publisher => {
            ctx.summary.borrow_mut().publishers += 1;
            let publisher = Publisher {
                ctx: Rc::clone(ctx),
                topics: TopicReader::new(ctx.pointer.clone()),
                read_ns: now_ns(),
            };
            ctx.publishers_live.set(ctx.publishers_live.get() + 1);
            let r = drive(&stream, peer, publisher, &ctx.server, shutdown, buf).await;
            ctx.publishers_live.set(ctx.publishers_live.get() - 1);
            r
        }
        Side::Subscriber(topics) => {
            ctx.summary.borrow_mut().subscribers += 1;
            ctx.subscribers_live.set(ctx.subscribers_live.get() + 1);
            let r = serve_subscriber(ctx, Rc::new(stream), peer, topics, buf, shutdown).await;
            ctx.subscribers_live.set(ctx.subscribers_live.get() - 1);
            r
        }
    }
}

/// A publisher connection's messages go into the relay.
struct Publisher {
    ctx: Rc<WorkerCtx>,
    topics: TopicReader,
    /// When the read being handled completed (start of the `ingress` hop).
    read_ns: u64,
}

impl Service for Publisher {
    fn on_message(&mut self, kind: MessageKind, payload: &[u8], _out: &mut Vec<u8>) {
        let lookup = self.topics.lookup(payload);
        self.ctx.ingest(kind, payload, lookup, self.read_ns);
    }

    fn on_read(&mut self) {
        self.read_ns = now_ns();
    }

    fn on_batch_end(&mut self) {
        self.ctx.flush();
    }
}

/// A server frame built on the control path (allocates; not the relay's hot path).
fn control_frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(payload.len() + 10);
    encode_frame(&mut v, opcode, true, payload, None);
    Bytes::from(v)
}

/// An empty ping, for keepalive.
static PING: [u8; 2] = [0x89, 0x00];

async fn serve_subscriber(
    ctx: &Rc<WorkerCtx>,
    stream: Rc<TcpStream>,
    peer: SocketAddr,
    topics: Vec<String>,
    handshake_buf: Vec<u8>,
    mut shutdown: Shutdown,
) -> Result<(), IoError> {
    // Subscribers only send control messages: swap the handshake buffer for a small one.
    let mut buf = Vec::with_capacity(SUBSCRIBER_READ_BYTES.max(handshake_buf.len()));
    buf.extend_from_slice(&handshake_buf);
    drop(handshake_buf);
    let limits = crate::ws::Limits {
        inline_frame_bytes: SUBSCRIBER_READ_BYTES,
        ..ctx.server.limits
    };

    let id = ctx.shard.borrow_mut().add_subscriber();
    let writer = Rc::new(SubWriter {
        stream: Rc::clone(&stream),
        notify: LocalSignal::new(),
        last_rx: Cell::new(Instant::now()),
        idle_close: Cell::new(false),
        writing: Cell::new(false),
        gone: Cell::new(false),
        close_after_flush: Cell::new(false),
    });
    {
        let mut writers = ctx.writers.borrow_mut();
        if writers.len() <= id {
            writers.resize(id + 1, None);
        }
        writers[id] = Some(Rc::clone(&writer));
    }
    if !topics.is_empty() {
        let reply = control_frame(
            OpCode::Text,
            control::reply("subscribed", &topics).as_bytes(),
        );
        let result = ctx.shard.borrow_mut().subscribe(id, &topics, reply);
        if let Err(reason) = result {
            let frame = control_frame(OpCode::Text, control::reply_error(&reason).as_bytes());
            ctx.shard.borrow_mut().reply(id, frame);
        }
    }
    ctx.flush();
    ring::spawn(write_loop(Rc::clone(ctx), id, Rc::clone(&writer)));

    let result = read_loop(ctx, &stream, peer, id, &writer, buf, limits, &mut shutdown).await;

    // Done reading: retire the subscriber, then let the writer see it is gone.
    writer.gone.set(true);
    writer.notify.raise();
    if let Some(slot) = ctx.writers.borrow_mut().get_mut(id) {
        *slot = None;
    }
    let drops = ctx.shard.borrow_mut().subscriber(id).map_or(0, |s| s.drops);
    if drops > 0 {
        tracing::info!(%peer, drops, "subscriber left; messages were dropped for it");
    }
    ctx.shard.borrow_mut().remove_subscriber(id);
    ctx.flush();
    result
}

/// Moves the control frames `conn` wants sent (pongs, close) into the subscriber's
/// queue, behind what is already queued.
fn queue_transmit(ctx: &WorkerCtx, id: SubId, conn: &mut Connection, out: &mut Vec<u8>) {
    if conn.poll_transmit(out) {
        ctx.shard
            .borrow_mut()
            .reply(id, Bytes::copy_from_slice(out));
        out.clear();
    }
}

#[allow(clippy::too_many_arguments)]
async fn read_loop(
    ctx: &Rc<WorkerCtx>,
    stream: &TcpStream,
    peer: SocketAddr,
    id: SubId,
    writer: &SubWriter,
    mut buf: Vec<u8>,
    limits: crate::ws::Limits,
    shutdown: &mut Shutdown,
) -> Result<(), IoError> {
    let mut conn = Connection::new(Role::Server, limits, seed());
    let mut out = Vec::new();
    let mut closing = false;
    loop {
        let mut start = 0;
        loop {
            let step = conn.handle_input(&mut buf[start..]);
            let (event, used) = match step {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "subscriber broke the protocol");
                    break;
                }
            };
            if let Event::Message { kind, payload } = event {
                let reply = match kind {
                    MessageKind::Binary => control::reply_error("control messages are JSON text"),
                    MessageKind::Text => match control::parse(payload) {
                        Err(reason) => control::reply_error(&reason),
                        Ok(Control::Subscribe(topics)) => {
                            let ok = control_frame(
                                OpCode::Text,
                                control::reply("subscribed", &topics).as_bytes(),
                            );
                            match ctx.shard.borrow_mut().subscribe(id, &topics, ok) {
                                Ok(()) => String::new(),
                                Err(reason) => control::reply_error(&reason),
                            }
                        }
                        Ok(Control::Unsubscribe(topics)) => {
                            let ok = control_frame(
                                OpCode::Text,
                                control::reply("unsubscribed", &topics).as_bytes(),
                            );
                            ctx.shard.borrow_mut().unsubscribe(id, &topics, ok);
                            String::new()
                        }
                    },
                };
                if !reply.is_empty() {
                    ctx.shard
                        .borrow_mut()
                        .reply(id, control_frame(OpCode::Text, reply.as_bytes()));
                }
            }
            start += used;
            queue_transmit(ctx, id, &mut conn, &mut out);
        }
        queue_transmit(ctx, id, &mut conn, &mut out);
        buf.drain(..start);
        if conn.state() == State::Closed {
            writer.close_after_flush.set(true);
            writer.notify.raise();
        }
        ctx.flush();

        let read = ring::read_append(stream, buf);
        tokio::pin!(read);
        let (res, b) = loop {
            tokio::select! {
                r = &mut read => break r,
                _ = shutdown.wait(), if !closing => {
                    // Flush what is queued, then our close frame, then close.
                    closing = true;
                    conn.close(CloseCode::GOING_AWAY, "server shutting down", Instant::now());
                    queue_transmit(ctx, id, &mut conn, &mut out);
                    writer.close_after_flush.set(true);
                    ctx.flush();
                    writer.notify.raise();
                }
            }
        };
        buf = b;
        match res {
            Ok(0) | Err(_) => {
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return Ok(());
            }
            Ok(_) => writer.last_rx.set(Instant::now()),
        }
    }
}

async fn write_loop(ctx: Rc<WorkerCtx>, id: SubId, writer: Rc<SubWriter>) {
    let stream = Rc::clone(&writer.stream);
    let mut batch = ring::WriteBatch::with_capacity(MAX_WRITE_BATCH);
    loop {
        if writer.gone.get() {
            break;
        }
        if writer.idle_close.get() {
            close_with(
                &stream,
                CloseCode::GOING_AWAY,
                "idle timeout",
                ctx.server.linger,
            )
            .await;
            break;
        }
        let close = {
            let mut shard = ctx.shard.borrow_mut();
            let Some(sub) = shard.subscriber(id) else {
                break;
            };
            match sub.close.take() {
                Some(c) => Some(c),
                None => {
                    sub.queue.drain_timed(
                        &mut batch.frames,
                        Some(&mut batch.times),
                        MAX_WRITE_BATCH,
                    );
                    None
                }
            }
        };
        if let Some((code, reason)) = close {
            tracing::debug!(sub = id, %code, reason, "closing subscriber");
            close_with(&stream, code, &reason, ctx.server.linger).await;
            break;
        }
        if batch.frames.is_empty() {
            if writer.close_after_flush.get() {
                linger_close(&stream, ctx.server.linger).await;
                break;
            }
            writer.notify.wait().await;
            continue;
        }
        let frames = batch.frames.len() as u64;
        writer.writing.set(true);
        let (res, back) = ring::writev_all(&stream, batch).await;
        writer.writing.set(false);
        batch = back;
        if res.is_err() {
            break;
        }
        if ctx.metrics.is_some() {
            let now = now_ns();
            let mut hops = ctx.hops.borrow_mut();
            for &t in batch.times.iter().filter(|&&t| t > 0) {
                hops.record(HopKind::Egress, now.saturating_sub(t));
            }
        }
        batch.times.clear();
        ctx.shard.borrow_mut().stats.messages_out += frames;
    }
    // Make sure the reader sees the end too.
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// How often a worker hands its interval histograms to the collector.
pub const METRICS_INTERVAL: Duration = Duration::from_secs(1);

/// Once per [`METRICS_INTERVAL`]: swaps this worker's histograms for empty ones and
/// sends the interval, with the counters, to the collector (off the hot path).
async fn metrics_tick(ctx: Rc<WorkerCtx>) {
    let mut ticker = tokio::time::interval(METRICS_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    while !ctx.done.get() {
        ticker.tick().await;
        send_interval(&ctx);
    }
}

/// Sends what this worker recorded since the last interval, and its counters.
fn send_interval(ctx: &WorkerCtx) {
    let Some(link) = ctx.metrics.as_ref() else {
        return;
    };
    let mut hops = HopHistograms::default();
    ctx.hops.borrow_mut().take_into(&mut hops);
    let now = std::time::SystemTime::now();
    let started = ctx.interval_start.replace(now);
    let counters = {
        let mut shard = ctx.shard.borrow_mut();
        let queue_bytes = shard.queued_bytes() as u64;
        let st = &shard.stats;
        Counters {
            messages_in: st.messages_in,
            messages_out: st.messages_out,
            dropped: vec![
                ("queue_full", st.dropped_queue_full),
                ("conflated", st.dropped_conflated),
                ("no_topic", st.dropped_no_topic),
                ("channel_full", st.dropped_channel_full),
                ("slow_disconnect", st.slow_disconnects),
            ],
            publishers: ctx.publishers_live.get(),
            subscribers: ctx.subscribers_live.get(),
            queue_bytes,
            feeds: Vec::new(),
            groups: Vec::new(),
        }
    };
    let (feeds, groups) = ctx.feed_counters();
    let counters = Counters {
        feeds,
        groups,
        ..counters
    };
    let _ = link.tx.send(Interval {
        worker: ctx.id,
        start: started,
        duration: now.duration_since(started).unwrap_or_default(),
        hops,
        counters,
    });
}

/// Every half keepalive interval: pings subscribers, and closes those silent for longer
/// than the idle timeout. One sweep over the worker's subscribers instead of a timer per
/// subscriber (a timer per wait would cost a clock read and a timer-wheel lock per
/// subscriber per message).
async fn keepalive_sweep(ctx: Rc<WorkerCtx>) {
    let period = ctx.keepalive / 2;
    let mut ticker = tokio::time::interval(period.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_ping = Instant::now();
    loop {
        ticker.tick().await;
        if ctx.done.get() {
            break;
        }
        let now = Instant::now();
        let ping = now.duration_since(last_ping) >= ctx.keepalive;
        if ping {
            last_ping = now;
        }
        let writers: Vec<(SubId, Rc<SubWriter>)> = ctx
            .writers
            .borrow()
            .iter()
            .enumerate()
            .filter_map(|(id, w)| Some((id, Rc::clone(w.as_ref()?))))
            .collect();
        for (id, w) in writers {
            if now.duration_since(w.last_rx.get()) >= ctx.idle_timeout {
                w.idle_close.set(true);
                w.notify.raise();
            } else if ping {
                ctx.shard.borrow_mut().reply(id, Bytes::from_static(&PING));
            }
        }
        ctx.flush();
    }
}

/// Writes a close frame and closes TCP.
async fn close_with(stream: &TcpStream, code: CloseCode, reason: &str, linger: Duration) {
    let mut payload = code.0.to_be_bytes().to_vec();
    payload.extend_from_slice(&reason.as_bytes()[..reason.len().min(123)]);
    let mut out = Vec::new();
    encode_frame(&mut out, OpCode::Close, true, &payload, None);
    let _ = ring::write_all(stream, out).await;
    linger_close(stream, linger).await;
}

/// Runs a whole relay: one worker per entry of `map`, each on its listener (one per
/// worker, as [`bind_reuseport`](super::listener::bind_reuseport) returns them) and
/// with its feed groups (as [`plan_feeds`] made them, before anything listened), until
/// `shutdown`; returns every worker's summary.
pub fn run_relay(
    map: &super::worker::CoreMap,
    listeners: Vec<std::net::TcpListener>,
    feeds: Vec<Vec<FeedPlan>>,
    config: Arc<Config>,
    metrics: Option<MetricsLink>,
    shutdown: Shutdown,
) -> Result<Vec<WorkerSummary>, IoError> {
    let workers = map.workers();
    if listeners.len() != workers || feeds.len() != workers {
        return Err(IoError::Config(format!(
            "{} listeners and {} feed plans for {workers} workers",
            listeners.len(),
            feeds.len()
        )));
    }
    // Each worker takes its own listener, channel ends and feeds at start (not the hot
    // path).
    let per_worker = std::sync::Mutex::new(
        listeners
            .into_iter()
            .zip(links(workers))
            .zip(feeds)
            .map(Some)
            .collect::<Vec<_>>(),
    );
    let connections = Arc::new(ConnectionCount::default());
    let rings: Vec<_> = (0..workers).map(|i| config.ring_options(i)).collect();
    super::worker::run_workers_with(
        map,
        move |i| rings[i],
        move |id| {
            let mine = per_worker
                .lock()
                .ok()
                .and_then(|mut l| l.get_mut(id)?.take());
            let setup = mine.map(|((listener, links), feeds)| WorkerSetup {
                id,
                workers,
                listener,
                links,
                config: Arc::clone(&config),
                connections: Arc::clone(&connections),
                metrics: metrics.clone(),
                feeds,
                shutdown: shutdown.clone(),
            });
            async move {
                let setup =
                    setup.ok_or_else(|| IoError::Config(format!("no listener for worker {id}")))?;
                run_worker(setup).await
            }
        },
    )
}
