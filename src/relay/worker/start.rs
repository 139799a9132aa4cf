//! A worker's start-up: its state built from the configuration, its tasks spawned
//! (feed lines, keepalive, reloads, metrics, the inbox duty cycle, the accept loop),
//! and its summary when it stops.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use super::links::WorkerLinks;
use super::state::{new_ctx, Shared, Tracked, WorkerCtx, WorkerNats};
use super::telemetry::{MetricsLink, WorkerSummary};
use crate::io::listener::{accept_until_shutdown, drain_connections};
use crate::io::offload::Offload;
use crate::io::ring::TcpStream;
use crate::io::rt;
use crate::io::shutdown::Shutdown;
use crate::io::{idle, IoError};
use crate::relay::access::admission::{Admission, Admitted};
use crate::relay::config::Config;
use crate::relay::core::budget::SubscriptionBudget;
use crate::relay::feed::line::run_line_supervised;
use crate::relay::feed::plan::{start_group, FeedPlan};
use crate::relay::reload::ReloadableSettings;

/// What one relay worker starts with.
pub(in crate::relay) struct WorkerSetup {
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
    pub settings: Arc<ReloadableSettings>,
    /// Subscribers, over all workers, that take shared compressed frames.
    pub deflate_demand: Arc<AtomicUsize>,
    /// Subscribers, over all workers, that take sequence envelopes (`seq=1`).
    pub seq_demand: Arc<AtomicUsize>,
    /// Subscription state over all workers.
    pub subscription_budget: Arc<SubscriptionBudget>,
    /// Helper threads for signature checks.
    pub offload: Offload,
    /// Its ends of the NATS hand-offs (`[nats]`).
    pub nats: WorkerNats,
}

/// Runs one relay worker: accepts on its listener until shutdown, then lets
/// connections close within the grace period, and reports its counters.
pub(in crate::relay) async fn run_worker(setup: WorkerSetup) -> Result<WorkerSummary, IoError> {
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
        seq_demand,
        subscription_budget,
        offload,
        mut nats,
    } = setup;
    let history = std::mem::take(&mut nats.history);
    let shared = Shared {
        admission,
        offload,
        settings,
        deflate_demand,
        seq_demand,
        subscription_budget,
        nats,
    };
    let ctx = Rc::new(new_ctx(id, workers, links, &config, shared, metrics)?);
    if !history.is_empty() {
        let (read, placed) = (history.len(), ctx.replay_history(history));
        tracing::debug!(
            "worker {id}: {read} messages of history from the stream, {placed} at their places"
        );
    }
    for plan in feeds {
        for line in start_group(plan, &ctx.pointer, ctx.server.limits, &config)? {
            ctx.feeds.borrow_mut().push(Rc::clone(&line));
            let (tracked, shutdown) = (Tracked::enter(&ctx), shutdown.clone());
            rt::spawn(async move {
                run_line_supervised(Rc::clone(&tracked.0), line, shutdown).await;
                drop(tracked);
            });
        }
    }
    // Deferred, like the writer tasks it writes for: after the pass's input.
    rt::spawn_deferred(crate::relay::conn::fanout::run(Rc::clone(&ctx)));
    rt::spawn(crate::relay::conn::keepalive::sweep(Rc::clone(&ctx)));
    rt::spawn(follow_reloads(Rc::clone(&ctx)));
    if ctx.metrics.is_some() {
        rt::spawn(super::intervals::metrics_tick(Rc::clone(&ctx)));
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
    super::intervals::send_interval(&ctx);
    result?;
    let mut summary = ctx.summary.borrow().clone();
    summary.stats = ctx.shard.borrow().stats.clone();
    if id == 0 {
        summary.refused_at_accept = ctx.admission.refused().map(|(r, n)| (r.name(), n)).to_vec();
    }
    (summary.feeds, summary.groups) = super::intervals::feed_counters(&ctx);
    summary.access = ctx.access_counts.borrow().clone();
    summary.deflate = *ctx.deflate_stats.borrow();
    if let (0, Some(n)) = (id, &ctx.nats_counters) {
        summary.nats = n.snapshot();
    }
    Ok(summary)
}

/// How often a worker looks for a SIGHUP reload to apply to its own state.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Applies a reload to this worker (within [`RELOAD_CHECK`]): the topic policies to
/// its shard, and the access rules to its open connections (those no longer allowed
/// are closed: see [`revoke`](super::revoke)).
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
            super::revoke::revoke_disallowed(&ctx).await;
        }
    }
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
        let (tracked, shutdown) = (Tracked::enter(&ctx), for_each.clone());
        if ctx.trusted_proxies.trusts(peer.ip()) {
            // Behind a load balancer: the client's address comes first, then admission.
            rt::spawn(async move {
                let ctx = Rc::clone(&tracked.0);
                let deadline = std::time::Instant::now() + ctx.server.handshake_timeout;
                // Shutdown closes it as it would a handshake in progress (`tracked`
                // goes with the task).
                let reading = crate::io::proxy::read_header(&stream, deadline);
                let Some(header) = shutdown.unless(reading).await else {
                    return;
                };
                match header {
                    Ok(client) => serve_admitted(&ctx, stream, client.unwrap_or(peer), shutdown).await,
                    Err(e) => {
                        ctx.admission.count_bad_proxy_header();
                        tracing::info!(%peer, error = %e, "closed: a trusted load balancer's connection without a valid PROXY header");
                    }
                }
                drop(tracked);
            });
            return;
        }
        let admitted = match ctx.admission.admit(peer) {
            Ok(a) => a,
            Err(refusal) => {
                // Closed before any handshake: the socket is all it cost.
                tracing::debug!(%peer, reason = refusal.name(), "connection refused at accept");
                return;
            }
        };
        rt::spawn(async move {
            let ctx = Rc::clone(&tracked.0);
            serve_with(&ctx, stream, peer, admitted, shutdown).await;
            drop(tracked);
        });
    })
    .await;
    drain_connections(
        &ctx.running,
        ctx.grace + ctx.server.limits.close_timeout + ctx.server.linger,
    )
    .await;
    ctx.done.set(true);
    ctx.links.parker(ctx.id).release();
    result
}

/// Admits a connection whose source is `peer` (the client's, for a proxied one) and
/// serves it.
async fn serve_admitted(
    ctx: &Rc<WorkerCtx>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: Shutdown,
) {
    match ctx.admission.admit(peer) {
        Ok(admitted) => serve_with(ctx, stream, peer, admitted, shutdown).await,
        Err(refusal) => {
            tracing::debug!(%peer, reason = refusal.name(), "connection refused at accept");
        }
    }
}

/// Serves an admitted connection until it ends.
async fn serve_with(
    ctx: &Rc<WorkerCtx>,
    stream: TcpStream,
    peer: SocketAddr,
    admitted: Admitted,
    shutdown: Shutdown,
) {
    if let Err(e) = crate::relay::conn::session::serve(ctx, stream, peer, admitted, shutdown).await
    {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
