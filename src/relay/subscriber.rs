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

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::compression::{Demand, FrameCompressor};
use super::control::{self, Control};
use super::jwt::SubscriberGrant;
use super::routing::SubId;
use super::worker::WorkerCtx;
use crate::io::driver::server::{serve as serve_driver, Ended, ServeOptions, Service, Transmit};
use crate::io::driver::{Driver, DriverError, Reply};
use crate::io::ring::WriteBatch;
use crate::io::rt;
use crate::io::shutdown::Shutdown;
use crate::io::signal::LocalSignal;
use crate::metrics::{now_ns, Hop};
use crate::ws::{server_frame, CloseCode, MessageKind, OpCode, Role, State, WsError};

/// Frames per vectored write to one subscriber (IOV_MAX is 1024). Not yet tuned by a
/// benchmark.
pub const MAX_WRITE_BATCH: usize = 64;

/// Frames a new subscriber's write batch has room for; it grows (once) under load, so
/// an idle subscriber does not hold room for [`MAX_WRITE_BATCH`].
const INITIAL_WRITE_BATCH: usize = 4;

/// A subscriber's writer, as the reader, the worker's flush and the keepalive sweep
/// see it.
pub(super) struct SubWriter {
    driver: Rc<Driver>,
    notify: LocalSignal,
    /// When the subscriber last sent anything (a pong counts).
    pub(super) last_rx: Cell<Instant>,
    /// Set when the relay closes the subscriber on its own account (idle past the
    /// timeout, token expired): the code and reason of the close frame.
    close_now: Cell<Option<(CloseCode, &'static str)>>,
    /// When its token expires (`None`: no token, or no expiry).
    expires: Cell<Option<SystemTime>>,
    /// Raised when `expires` changes or the subscriber is gone (wakes the expiry task).
    expiry: LocalSignal,
    /// A vectored write is in flight (the peer may have stopped reading).
    writing: Cell<bool>,
    /// It was logged as behind and has not caught up since.
    pub(super) behind: Cell<bool>,
    /// The reader is done: the writer stops touching the shard (the id may be reused).
    gone: Cell<bool>,
    /// The writer has ended (after FIN, or after a failed write).
    finished: LocalSignal,
    finished_flag: Cell<bool>,
}

impl SubWriter {
    /// Closes the subscriber with `code` and `reason`: what is queued is dropped, the
    /// close frame goes out.
    pub(super) fn close(self: &Rc<Self>, code: CloseCode, reason: &'static str, linger: Duration) {
        self.close_now.set(Some((code, reason)));
        self.wake(false, linger);
    }

    /// The subscriber's address.
    pub(super) fn peer(&self) -> std::net::SocketAddr {
        self.driver.peer()
    }

    /// Wakes the writer: its queue changed. If the relay is closing the subscriber and
    /// a write is stuck behind a full socket, the subscriber stopped reading and will
    /// never read our close frame: it gets the linger period, then is cut.
    pub(super) fn wake(self: &Rc<Self>, closing: bool, linger: Duration) {
        self.notify.raise();
        if closing && self.writing.get() {
            let w = Rc::clone(self);
            rt::spawn(async move {
                rt::sleep(linger).await;
                if w.writing.get() {
                    w.driver.transport().shutdown_both_now();
                }
            });
        }
    }
}

/// What a subscriber's URL asked for.
#[derive(Debug)]
pub(super) struct Joining {
    /// `topics=` and `snapshot=1`, as a first subscribe request.
    pub(super) first: Control,
    /// The relay's events (stale, live, gap): on unless `events=0`.
    pub(super) events: bool,
}

/// A server text frame on the control path (allocates; not the relay's hot path).
pub(super) fn control_frame(text: &str) -> Bytes {
    Bytes::from(server_frame(OpCode::Text, text.as_bytes()))
}

/// Serves a subscriber from its first subscription to its close.
pub(super) async fn serve(
    ctx: &Rc<WorkerCtx>,
    driver: Rc<Driver>,
    joining: Joining,
    grant: Option<SubscriberGrant>,
    shutdown: Shutdown,
) -> Result<(), DriverError> {
    let Joining { first, events } = joining;
    let deflate = driver.deflate();
    let shared = ctx.compression.takes_shared(deflate);
    let demand = shared.then(|| Demand::enter(&ctx.deflate_demand));
    let own_compressor = deflate
        .and_then(|p| p.sending(Role::Server))
        .filter(|_| ctx.compression.per_subscriber)
        .map(|(bits, fresh)| FrameCompressor::new(&ctx.compression, bits, fresh));
    let id = ctx.shard.borrow_mut().add_subscriber(shared, events);
    let writer = Rc::new(SubWriter {
        driver: Rc::clone(&driver),
        notify: LocalSignal::new(),
        last_rx: Cell::new(Instant::now()),
        close_now: Cell::new(None),
        expires: Cell::new(grant.as_ref().map(|g| g.expires)),
        expiry: LocalSignal::new(),
        writing: Cell::new(false),
        behind: Cell::new(false),
        gone: Cell::new(false),
        finished: LocalSignal::new(),
        finished_flag: Cell::new(false),
    });
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
        grant,
    };
    if matches!(&first, Control::Subscribe(topics, _) if !topics.is_empty()) {
        service.control(first);
    }
    ctx.flush();
    rt::spawn(write_loop(
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

/// Closes the subscriber with 1008 when its token expires, unless a refresh moved the
/// expiry on first; ends when the subscriber is gone.
async fn close_when_expired(writer: Rc<SubWriter>, linger: Duration) {
    loop {
        if writer.gone.get() {
            return;
        }
        let Some(at) = writer.expires.get() else {
            return;
        };
        match at.duration_since(SystemTime::now()) {
            Ok(left) if !left.is_zero() => {
                let _ = rt::timeout(left, writer.expiry.wait()).await;
            }
            _ => {
                writer.close(CloseCode::POLICY_VIOLATION, "token expired", linger);
                return;
            }
        }
    }
}

/// The reader's side: control ops in; replies and the connection's transmit queued.
struct Subscriber {
    ctx: Rc<WorkerCtx>,
    id: SubId,
    writer: Rc<SubWriter>,
    /// What its token allows (`None`: no `[jwt]`, any topic).
    grant: Option<SubscriberGrant>,
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
        let mut shard = self.ctx.shard.borrow_mut();
        shard.stats.control_errors += 1;
        shard.reply(self.id, control_frame(&control::reply_error(reason)));
    }

    /// The reason to refuse subscribing to `topics`, if the token does not allow one.
    fn outside_grant<'t>(&self, topics: impl Iterator<Item = &'t String>) -> Option<String> {
        let grant = self.grant.as_ref()?;
        grant
            .first_refused(topics.map(String::as_str))
            .map(|t| format!("topic {t:?} is outside your token's topics"))
    }

    /// `{"op":"refresh","token":".."}`: a valid token that expires later and allows
    /// every current subscription replaces the old one; otherwise an error and the
    /// old token stays in force.
    fn refresh(&mut self, token: &str) {
        let outcome = self
            .ctx
            .settings
            .access()
            .verify_subscriber_token(token)
            .and_then(|new| {
                if self
                    .grant
                    .as_ref()
                    .is_some_and(|old| new.expires <= old.expires)
                {
                    return Err("the new token does not expire later than the current one".into());
                }
                let shard = self.ctx.shard.borrow();
                let held = shard.subscriber_topics(self.id);
                match new.first_refused(held.iter().map(String::as_str)) {
                    Some(t) => Err(format!(
                        "the new token does not allow {t:?}; unsubscribe from it first"
                    )),
                    None => Ok(new),
                }
            });
        match outcome {
            Ok(new) => {
                self.writer.expires.set(Some(new.expires));
                self.writer.expiry.raise();
                let secs = new
                    .expires
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                self.grant = Some(new);
                let reply = control_frame(&control::reply_refreshed(secs));
                self.ctx.shard.borrow_mut().reply(self.id, reply);
            }
            Err(reason) => self.reply_error(&reason),
        }
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
        super::session::count_limit(&self.ctx, error);
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

/// Replaces each frame of `frames` by its compressed form where it has one.
fn compress_each(ctx: &WorkerCtx, compressor: &mut FrameCompressor, frames: &mut [Bytes]) {
    let mut stats = ctx.deflate_stats.borrow_mut();
    for f in frames {
        let start = now_ns();
        if let Some(z) = compressor.frame(f, &mut stats) {
            *f = z;
            ctx.record(Hop::Deflate, now_ns().saturating_sub(start));
        }
    }
}

/// What the writer takes next.
enum Next {
    /// Frames drained from the queue into the batch (maybe none).
    Frames,
    /// The relay closes the subscriber: what was queued is dropped, our close frame
    /// goes out.
    Close(CloseCode, String),
    /// The subscriber is gone.
    Stop,
}

/// After our close frame: FIN, then the peer gets `linger` to close too (its close
/// frame ends the reader's wait); a peer that does not is cut, so the connection never
/// outlives the linger period (RFC 6455 §7.1.1: the server closes TCP first).
async fn finish(writer: &SubWriter, linger: Duration) {
    writer.driver.finish_writing();
    writer.finished_flag.set(true);
    writer.finished.raise();
    let gone = async {
        while !writer.gone.get() {
            writer.notify.wait().await;
        }
    };
    if rt::timeout(linger, gone).await.is_err() {
        writer.driver.transport().shutdown_both_now();
    }
}

/// Writes the subscriber's queue as it fills; with `own_compressor`
/// (`per_subscriber` compression), each data frame is compressed on the way out.
async fn write_loop(
    ctx: Rc<WorkerCtx>,
    id: SubId,
    writer: Rc<SubWriter>,
    mut own_compressor: Option<FrameCompressor>,
) {
    let driver = Rc::clone(&writer.driver);
    let mut batch = WriteBatch::with_capacity(INITIAL_WRITE_BATCH);
    loop {
        let next = if writer.gone.get() {
            Next::Stop
        } else if let Some((code, reason)) = writer.close_now.take() {
            Next::Close(code, reason.into())
        } else {
            let mut shard = ctx.shard.borrow_mut();
            match shard.subscriber(id) {
                None => Next::Stop,
                Some(sub) => match sub.close.take() {
                    Some((code, reason)) => Next::Close(code, reason),
                    None => {
                        sub.queue.drain_timed(
                            &mut batch.frames,
                            Some(&mut batch.times),
                            MAX_WRITE_BATCH,
                        );
                        Next::Frames
                    }
                },
            }
        };
        match next {
            Next::Stop => break,
            Next::Close(code, reason) => {
                tracing::debug!(sub = id, %code, reason, "closing subscriber");
                if let Some(sub) = ctx.shard.borrow_mut().subscriber(id) {
                    sub.queue.clear();
                    sub.closing = true;
                }
                driver.close(code, &reason);
                let mut close = Vec::new();
                driver.take_transmit(&mut close);
                batch.frames.clear();
                batch.times.clear();
                batch.frames.push(Bytes::from(close));
                let (res, _) = driver.write_frames(batch).await;
                if res.is_ok() {
                    finish(&writer, ctx.server.linger).await;
                }
                break;
            }
            Next::Frames if batch.frames.is_empty() => {
                if driver.state() != State::Open {
                    // The close handshake started and everything before it is out.
                    finish(&writer, ctx.server.linger).await;
                    break;
                }
                writer.notify.wait().await;
                continue;
            }
            Next::Frames => {}
        }
        if let Some(c) = own_compressor.as_mut() {
            compress_each(&ctx, c, &mut batch.frames);
        }
        let frames = batch.frames.len() as u64;
        writer.writing.set(true);
        let (res, back) = driver.write_frames(batch).await;
        writer.writing.set(false);
        batch = back;
        if res.is_err() {
            break;
        }
        let now = now_ns();
        for &t in batch.times.iter().filter(|&&t| t > 0) {
            ctx.record(Hop::Egress, now.saturating_sub(t));
        }
        batch.times.clear();
        ctx.shard.borrow_mut().stats.messages_out += frames;
    }
    writer.finished_flag.set(true);
    writer.finished.raise();
    if !writer.gone.get() {
        // A failed write: make sure the reader sees the end too.
        if driver.state() == State::Open {
            driver.transport().shutdown_both_now();
        }
    }
}
