//! A subscriber connection: a reader that runs the connection (control ops in,
//! replies and the connection's own pongs and close queued behind the data), and a
//! writer that drains the subscriber's queue into one vectored write at a time.
//!
//! Ordering: everything a subscriber receives goes through its one queue, so a reply,
//! a pong or the close frame never overtakes a message queued before it. Closing: when
//! the close handshake has started (either side) and the queue is empty, the writer
//! sends FIN and ends; the reader waits for the peer to close too (bounded by the close
//! timeout and the linger period), then the connection is closed and the subscriber
//! removed. A subscriber that stops reading with a full socket is cut after the linger
//! period, so its memory and descriptor come back.

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;

use super::refresh::{self, GrantCell, MAX_REFRESHES_PER_SECOND};
use super::sub_writer::{close_when_expired, SubWriter};
use super::writer::write_loop;
use crate::io::driver::server::{serve as serve_driver, Ended, ServeOptions, Service, Transmit};
use crate::io::driver::{Driver, DriverError, Reply};
use crate::io::rt;
use crate::io::shutdown::Shutdown;
use crate::metrics::now_ns;
use crate::relay::access::jwt::SubscriberGrant;
use crate::relay::access::revocation::Held;
use crate::relay::conn::per_second::{PerSecond, Verdict};
use crate::relay::core::compression::{Demand, FrameCompressor};
use crate::relay::core::control::{self, control_frame, Control};
use crate::relay::core::routing::SubId;
use crate::relay::worker::state::WorkerCtx;
use crate::ws::{MessageKind, Role, State, WsError};

/// What a subscriber's URL asked for.
#[derive(Debug)]
pub(in crate::relay) struct Joining {
    /// `topics=` and `snapshot=1`, as a first subscribe request.
    pub(in crate::relay) first: Control,
    /// The relay's events (stale, live, gap): on unless `events=0`.
    pub(in crate::relay) events: bool,
    /// Text messages in their sequence envelope: `seq=1`.
    pub(in crate::relay) sequenced: bool,
}

/// Serves a subscriber from its first subscription to its close.
pub(in crate::relay) async fn serve(
    ctx: &Rc<WorkerCtx>,
    driver: Rc<Driver>,
    joining: Joining,
    grant: Option<SubscriberGrant>,
    held: Held,
    shutdown: Shutdown,
) -> Result<(), DriverError> {
    let Joining {
        first,
        events,
        sequenced,
    } = joining;
    let deflate = driver.deflate();
    let shared = ctx.compression.takes_shared(deflate);
    let demand = shared.then(|| Demand::enter(&ctx.deflate_demand));
    let own_compressor = deflate
        .and_then(|p| p.sending(Role::Server))
        .filter(|_| ctx.compression.per_subscriber)
        .map(|(bits, fresh)| FrameCompressor::new(&ctx.compression, bits, fresh));
    let id = ctx.shard.borrow_mut().add_subscriber(shared, events);
    // While it is connected, every worker builds envelopes for the messages it ingests.
    let enveloped = sequenced.then(|| {
        ctx.shard.borrow_mut().set_sequenced(id);
        Demand::enter(&ctx.seq_demand)
    });
    let writer = Rc::new(SubWriter::new(
        Rc::clone(&driver),
        grant.as_ref().map(|g| g.expires),
        held,
    ));
    {
        let mut writers = ctx.writers.borrow_mut();
        if writers.len() <= id {
            writers.resize(id + 1, None);
        }
        writers[id] = Some(Rc::clone(&writer));
    }
    if grant.is_some() {
        rt::spawn(close_when_expired(Rc::clone(&writer), ctx.server.linger));
    }
    let mut service = Subscriber {
        ctx: Rc::clone(ctx),
        id,
        writer: Rc::clone(&writer),
        grant: Rc::new(GrantCell::new(grant)),
        refreshes: PerSecond::default(),
        controls: PerSecond::default(),
        sequenced: enveloped,
    };
    if matches!(&first, Control::Subscribe(topics, _) if !topics.is_empty()) {
        service.control(first);
    }
    ctx.flush();
    // Deferred: it runs after the pass's input, so each write carries what came in.
    rt::spawn_deferred(write_loop(
        Rc::clone(ctx),
        id,
        Rc::clone(&writer),
        own_compressor,
    ));

    let options = ServeOptions {
        idle_timeout: None, // the keepalive sweep closes idle subscribers
        linger: ctx.server.linger,
        transmit: Transmit::Handoff,
    };
    // From here on the subscriber is retired however serve ends (a panic included).
    let retire = Retire {
        ctx: Rc::clone(ctx),
        id,
        writer: Rc::clone(&writer),
        _demand: demand,
    };
    let result = serve_driver(&driver, &mut service, &options, shutdown).await;
    if let Ok(Ended::Closed) = result {
        // Our close frame (or reply) is queued behind the data: let the writer finish
        // (FIN), then wait for the peer to close TCP too.
        let deadline = Instant::now() + ctx.server.linger;
        let finished = async {
            while !writer.finished_flag.get() {
                writer.finished.wait().await;
            }
        };
        let _ = rt::timeout_at(deadline, finished).await;
        driver.drain(deadline).await;
    }
    driver.shutdown().await;
    drop(retire);
    result.map(drop)
}

/// Retires a subscriber when dropped: its writer learns it is gone, its routes and
/// queue go, and the other workers hear of interest it no longer has.
struct Retire {
    ctx: Rc<WorkerCtx>,
    id: SubId,
    writer: Rc<SubWriter>,
    /// Its place in the demand for shared compressed frames, if it took them.
    _demand: Option<Demand>,
}

impl Drop for Retire {
    fn drop(&mut self) {
        let (ctx, id) = (&self.ctx, self.id);
        self.writer.gone.set(true);
        self.writer.notify.raise();
        self.writer.expiry.raise();
        if let Ok(mut writers) = ctx.writers.try_borrow_mut() {
            if let Some(slot) = writers.get_mut(id) {
                *slot = None;
            }
        }
        let Ok(mut shard) = ctx.shard.try_borrow_mut() else {
            return;
        };
        let drops = shard.subscriber(id).map_or(0, |s| s.drops);
        if drops > 0 {
            let peer = self.writer.driver.peer();
            tracing::info!(%peer, drops, "subscriber left; messages were dropped for it");
        }
        shard.remove_subscriber(id);
        drop(shard);
        ctx.flush();
        tracing::debug!(sub = id, "subscriber retired");
    }
}

/// The reader's side: control ops in; replies and the connection's transmit queued.
struct Subscriber {
    ctx: Rc<WorkerCtx>,
    id: SubId,
    writer: Rc<SubWriter>,
    /// What its token allows, and whether a refresh is being checked.
    grant: Rc<GrantCell>,
    /// `refresh` requests in the current second.
    refreshes: PerSecond,
    /// Control messages in the current second.
    controls: PerSecond,
    /// Its place in the demand for sequence envelopes, once it asked for them.
    sequenced: Option<Demand>,
}

impl Subscriber {
    /// Acts on a control request, queueing its reply (a `subscribed` reply waits until
    /// every worker routes the new topics here).
    fn control(&mut self, op: Control) {
        let error = match op {
            Control::Refresh(token) => return self.refresh(&token),
            Control::Stats => {
                let mut shard = self.ctx.shard.borrow_mut();
                if let Some(lag) = shard.lag(self.id, now_ns()) {
                    shard.reply(self.id, control_frame(&control::reply_stats(lag)));
                }
                return;
            }
            Control::Subscribe(topics, snapshot) => {
                self.outside_grant(topics.iter()).or_else(|| {
                    let ok = control_frame(&control::reply("subscribed", &topics));
                    let mut shard = self.ctx.shard.borrow_mut();
                    shard.subscribe(self.id, &topics, ok, snapshot).err()
                })
            }
            Control::Resume(topics, positions) => {
                self.outside_grant(topics.iter()).or_else(|| {
                    let ok = control_frame(&control::reply("subscribed", &topics));
                    let positions: std::collections::HashMap<_, _> = positions
                        .into_iter()
                        .map(|(t, n)| (Bytes::from(t), n))
                        .collect();
                    let mut shard = self.ctx.shard.borrow_mut();
                    // Resuming speaks in sequence envelopes.
                    shard.set_sequenced(self.id);
                    if self.sequenced.is_none() {
                        self.sequenced = Some(Demand::enter(&self.ctx.seq_demand));
                    }
                    shard
                        .resume(self.id, &topics, ok, std::sync::Arc::new(positions))
                        .err()
                })
            }
            Control::Unsubscribe(topics) => {
                let ok = control_frame(&control::reply("unsubscribed", &topics));
                self.ctx
                    .shard
                    .borrow_mut()
                    .unsubscribe(self.id, &topics, ok);
                None
            }
        };
        if let Some(reason) = error {
            self.reply_error(&reason);
        }
    }

    /// Answers a control request with `{"event":"error"}` (the connection stays).
    fn reply_error(&self, reason: &str) {
        refresh::reply_error(&self.ctx, self.id, reason);
    }

    /// The reason to refuse subscribing to `topics`, if the token does not allow one.
    fn outside_grant<'t>(&self, topics: impl Iterator<Item = &'t String>) -> Option<String> {
        let grant = self.grant.grant.borrow();
        grant
            .as_ref()?
            .first_refused(topics.map(String::as_str))
            .map(|t| format!("topic {t:?} is outside your token's topics"))
    }

    /// `{"op":"refresh","token":".."}`: verified off the worker ([`refresh`]).
    fn refresh(&mut self, token: &str) {
        if self
            .refreshes
            .count(Instant::now(), MAX_REFRESHES_PER_SECOND)
            != Verdict::Allowed
        {
            self.ctx.shard.borrow_mut().stats.refreshes_refused += 1;
            return self.reply_error(&format!(
                "refresh: at most {MAX_REFRESHES_PER_SECOND} a second"
            ));
        }
        refresh::start(&self.ctx, self.id, &self.writer, &self.grant, token);
    }
}

impl Service for Subscriber {
    fn on_message(
        &mut self,
        kind: MessageKind,
        payload: &[u8],
        _compressed: Option<&[u8]>,
        _reply: &mut Reply,
    ) {
        // Counted before any parsing: a flood costs the worker as little as possible.
        let max = self.ctx.control.max_per_second;
        match self.controls.count(Instant::now(), max) {
            Verdict::Allowed => {}
            verdict => {
                self.ctx.shard.borrow_mut().stats.controls_refused += 1;
                if verdict == Verdict::FirstRefused {
                    self.reply_error(&format!(
                        "at most {max} control messages a second; more are ignored"
                    ));
                }
                return;
            }
        }
        let parsed = match kind {
            MessageKind::Binary => Err("control messages are JSON text".to_owned()),
            MessageKind::Text => control::parse(payload, self.ctx.control),
        };
        match parsed {
            Ok(op) => self.control(op),
            Err(reason) => self.reply_error(&reason),
        }
    }

    fn on_read(&mut self) {
        self.writer.last_rx.set(Instant::now());
    }

    fn on_batch_end(&mut self) {
        self.ctx.flush();
    }

    fn on_protocol_error(&mut self, error: &WsError) {
        self.ctx.shard.borrow_mut().stats.count_limit(error);
    }

    fn on_shutdown(&mut self) {
        let mut shard = self.ctx.shard.borrow_mut();
        if shard.subscriber(self.id).is_some_and(|s| s.events()) {
            let spread = crate::relay::core::events::RECONNECT_SPREAD_MS;
            let hint = rt::random_u64() % spread;
            let event = crate::relay::core::events::shutdown(hint);
            shard.stats.events += 1;
            shard.reply(self.id, control_frame(&event));
        }
    }

    fn on_transmit(&mut self, frames: Vec<u8>) {
        let mut shard = self.ctx.shard.borrow_mut();
        if self.writer.driver.state() == State::Open {
            shard.reply(self.id, Bytes::from(frames));
        } else {
            // The close frame is among these: nothing may follow it.
            shard.reply_closing(self.id, Bytes::from(frames));
        }
        drop(shard);
        self.ctx.flush();
    }
}
