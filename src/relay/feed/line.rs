//! Running an exchange feed line: one task per line, on the worker that owns the
//! line's group.
//!
//! A line connects (TCP, TLS for `wss://`, the opening handshake with the feed's
//! headers), sends its subscribe messages, then hands every message to the worker's
//! [`FeedSink`] in place, exactly as a `/pub` publisher's would be, after the group's
//! [`Arbiter`] has dropped copies another line already delivered. Anything that ends
//! the session (refused, TLS failure, the exchange's close, a protocol error, nothing
//! received for `stale_after_ms` although a ping was sent halfway) is logged once with its reason and retried after an
//! exponential, fully jittered backoff; a session that delivers resets the backoff.
//!
//! All lines of a group run on one worker, so the arbiter is plain single-threaded
//! state: no lock on the message path.

use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::arbiter::{Arbiter, Verdict};
use super::backoff::Backoff;
use super::health::{Change, GroupHealth};
use super::FeedConfig;
use crate::io::driver::client::{ConnectOptions, Received, WsClient};
use crate::io::driver::DriverError;
use crate::io::rt::{self, Either};
use crate::io::shutdown::Shutdown;
use crate::io::sockopt::SocketOptions;
use crate::metrics::ns_at;
use crate::relay::core::topic::{JsonPointer, TopicLookup, TopicReader};
use crate::ws::deflate::ClientOffer;
use crate::ws::{CloseCode, Limits, MessageKind};

/// Where a line's messages go: the worker's data path.
pub trait FeedSink {
    /// One message, with its topic already looked up; `read_ns` is when its read
    /// completed.
    fn ingest(&self, kind: MessageKind, payload: &[u8], lookup: TopicLookup, read_ns: u64);

    /// Every message of one read has been ingested (flush batched work).
    fn end_batch(&self);

    /// Something subscribers of the feed's topics are told about.
    fn feed_event(&self, _event: FeedEvent) {}
}

/// A group of redundant lines and their arbiter.
#[derive(Debug)]
pub struct Group {
    /// The group's name.
    pub name: String,
    /// Whether its lines carry sequence numbers (arbitration on).
    pub sequenced: bool,
    /// First copy wins; gaps counted.
    pub arbiter: RefCell<Arbiter>,
    /// Whether any of its lines delivers, and the topics they carry.
    pub health: GroupHealth,
}

/// What a feed line tells subscribers about (see [`events`](crate::relay::core::events)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// The group went stale or live again; its topics.
    Health {
        /// Which.
        change: Change,
        /// The group's name.
        feed: String,
        /// The topics it carried.
        topics: Vec<Bytes>,
    },
    /// `from..=to` of `topic` were never delivered by any line.
    Gap {
        /// The topic.
        topic: Bytes,
        /// First missing sequence number.
        from: u64,
        /// Last missing sequence number.
        to: u64,
    },
}

/// What one line has done, for metrics and the shutdown summary.
#[derive(Debug, Default)]
pub struct LineState {
    /// A session is up.
    pub connected: Cell<bool>,
    /// Sessions established.
    pub connects: Cell<u64>,
    /// Sessions (or attempts) that ended in a failure and were retried.
    pub reconnects: Cell<u64>,
    /// Messages received (before arbitration).
    pub messages: Cell<u64>,
    /// Pings sent because the line was quiet.
    pub pings: Cell<u64>,
    /// Copies this line delivered second (dropped).
    pub duplicates: Cell<u64>,
    /// Messages with no sequence number on a sequenced line (forwarded as they are).
    pub unsequenced: Cell<u64>,
    /// When the last message arrived.
    pub last_message: Cell<Option<Instant>>,
}

/// One line: its configuration, its group, its state.
pub struct Line {
    /// The `[[feeds]]` table.
    pub config: FeedConfig,
    /// Index among its group's lines.
    pub index: usize,
    /// Its group.
    pub group: Rc<Group>,
    /// TLS trust for `wss://` (built at start from `ca_file`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Frame and message limits.
    pub limits: Limits,
    /// Where its messages' topic is (the feed's pointer, or the relay's).
    pub topic_pointer: JsonPointer,
    /// Where their sequence number is, if the feed has one.
    pub seq_pointer: Option<JsonPointer>,
    /// Socket options for the line's connection.
    pub socket: SocketOptions,
    /// Every write must finish within this.
    pub write_timeout: Duration,
    /// Longest topic name (a message with a longer one is dropped and counted).
    pub max_topic_bytes: usize,
    /// What it has done.
    pub state: LineState,
}

/// Pause before a line whose task panicked is started again.
pub const RESTART_AFTER_PANIC: Duration = Duration::from_secs(1);

/// Runs `line` until shutdown as [`run_line`] does, and keeps it running: if its task
/// panics (a bug), the panic is contained by the ring, and the line is started again
/// after [`RESTART_AFTER_PANIC`] from a clean session (counted as a reconnect).
pub async fn run_line_supervised<S: FeedSink + 'static>(
    sink: Rc<S>,
    line: Rc<Line>,
    mut shutdown: Shutdown,
) {
    loop {
        let task = rt::spawn(run_line(
            Rc::clone(&sink),
            Rc::clone(&line),
            shutdown.clone(),
        ));
        if task.await.is_some() || shutdown.is_triggered() {
            return;
        }
        line.state.connected.set(false);
        line.state.reconnects.set(line.state.reconnects.get() + 1);
        tracing::error!(
            feed = %line.config.name,
            "the feed line's task panicked; starting it again in {RESTART_AFTER_PANIC:?}"
        );
        if let Either::Right(()) = rt::race(rt::sleep(RESTART_AFTER_PANIC), shutdown.wait()).await {
            return;
        }
    }
}

/// Runs `line` until shutdown: connect, subscribe, relay, and on any failure back off
/// and go again.
pub async fn run_line<S: FeedSink>(sink: Rc<S>, line: Rc<Line>, mut shutdown: Shutdown) {
    let cfg = &line.config;
    let options = ConnectOptions {
        headers: cfg
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        protocols: cfg.subprotocols.clone(),
        deflate: cfg.compression.then(ClientOffer::default),
        limits: line.limits,
        tls: line.tls.clone(),
        timeout: Duration::from_millis(cfg.connect_timeout_ms),
        socket: line.socket,
        write_timeout: Some(line.write_timeout),
    };
    let mut topics = TopicReader::with_seq(line.topic_pointer.clone(), line.seq_pointer.clone())
        .max_name_bytes(line.max_topic_bytes);
    let mut backoff = Backoff::new(
        cfg.reconnect_initial_ms,
        cfg.reconnect_max_ms,
        cfg.reconnect_jitter,
        rt::random_u64(),
    );
    let mut failing: Option<(String, u64)> = None;
    loop {
        let attempt =
            match rt::race(WsClient::connect_with(&cfg.url, &options), shutdown.wait()).await {
                Either::Left(r) => r,
                Either::Right(()) => return,
            };
        let reason = match attempt {
            Err(e) => {
                report_health(&*sink, &line, line.group.health.line_down(false));
                e.to_string()
            }
            Ok(client) => {
                let st = &line.state;
                st.connected.set(true);
                st.connects.set(st.connects.get() + 1);
                match failing.take() {
                    Some((_, n)) => tracing::info!(
                        feed = %cfg.name, url = %cfg.url, failed_attempts = n,
                        "feed connected again"
                    ),
                    None => tracing::info!(feed = %cfg.name, url = %cfg.url, "feed connected"),
                }
                line.group.arbiter.borrow_mut().line_reconnected(line.index);
                line.group.health.line_up();
                let reason = session(
                    &*sink,
                    &line,
                    &client,
                    &mut topics,
                    &mut backoff,
                    &mut shutdown,
                )
                .await;
                st.connected.set(false);
                if !shutdown.is_triggered() {
                    report_health(&*sink, &line, line.group.health.line_down(true));
                }
                if shutdown.is_triggered() {
                    let _ = rt::timeout(
                        Duration::from_secs(1),
                        client.close(CloseCode::GOING_AWAY, "relay shutting down"),
                    )
                    .await;
                    return;
                }
                reason
            }
        };
        if shutdown.is_triggered() {
            return;
        }
        let st = &line.state;
        st.reconnects.set(st.reconnects.get() + 1);
        let delay = backoff.next_delay_ms();
        // A state change is logged once: a line that keeps failing the same way says
        // so at the first failure and again when it recovers.
        match &mut failing {
            Some((last, n)) if *last == reason => {
                *n += 1;
                tracing::debug!(feed = %cfg.name, %reason, retry_in_ms = delay, "feed still down");
            }
            _ => {
                tracing::warn!(feed = %cfg.name, %reason, retry_in_ms = delay, "feed down");
                failing = Some((reason, 1));
            }
        }
        if let Either::Right(()) =
            rt::race(rt::sleep(Duration::from_millis(delay)), shutdown.wait()).await
        {
            return;
        }
    }
}

/// One connected session; returns why it ended.
async fn session<S: FeedSink>(
    sink: &S,
    line: &Line,
    client: &WsClient,
    topics: &mut TopicReader,
    backoff: &mut Backoff,
    shutdown: &mut Shutdown,
) -> String {
    let cfg = &line.config;
    for msg in &cfg.subscribe {
        if let Err(e) = client.send(MessageKind::Text, msg.as_bytes()).await {
            return format!("sending subscribe message: {e}");
        }
    }
    let stale = Duration::from_millis(cfg.stale_after_ms);
    let mut delivered = false;
    // Made once per session: the quiet timer is re-armed only when it fires, so a busy
    // line costs no timer work per read.
    let mut quiet = Quiet {
        last_rx: Instant::now(),
        pinged: false,
        timer: rt::sleep(stale / 2),
        stale,
    };
    let mut stop = shutdown.wait();
    loop {
        let messages_before = line.state.messages.get();
        let mut batch_ns = 0u64;
        let recv = client.recv_each(|kind, payload| {
            if batch_ns == 0 {
                // When the ring took the read's completion: the ingress hop's start, as
                // for a publisher (the TLS decrypt and the parse fall inside the hop),
                // and no clock read of its own.
                batch_ns = ns_at(rt::recent_now());
            }
            accept(sink, line, topics, kind, payload, batch_ns);
        });
        let outcome = wait_quietly(sink, line, client, recv, &mut quiet, &mut stop).await;
        // Whatever was ingested before the wait ended reaches the subscribers.
        sink.end_batch();
        match outcome {
            Ok(Received::Frames(_)) => {
                quiet.heard();
                if line.state.messages.get() > messages_before {
                    let now = Instant::now();
                    line.state.last_message.set(Some(now));
                    line.group.health.delivered_at(now);
                    if !delivered {
                        delivered = true;
                        backoff.reset();
                    }
                }
            }
            Ok(Received::Close(Some((code, reason)))) => {
                return format!("closed by the exchange: {} {reason:?}", code.0);
            }
            Ok(Received::Close(None)) => return "closed by the exchange".into(),
            Err(reason) => return reason,
        }
    }
}

/// A line's silence: quiet for half of `stale` → ping (a live line answers with a
/// pong, which counts as traffic); quiet for all of it → stale.
struct Quiet {
    last_rx: Instant,
    pinged: bool,
    timer: rt::Sleep,
    stale: Duration,
}

impl Quiet {
    /// Something arrived.
    fn heard(&mut self) {
        self.last_rx = Instant::now();
        self.pinged = false;
    }

    /// When the next step (ping, or stale) is due.
    fn due(&self) -> Instant {
        match self.pinged {
            false => self.last_rx + self.stale / 2,
            true => self.last_rx + self.stale,
        }
    }
}

/// Waits for `recv` to end, pinging a quiet line and giving up on a stale one or at
/// shutdown; `Err` is why the session ends. The read stays in flight throughout:
/// cancelling it would lose what it reads.
async fn wait_quietly<
    S: FeedSink,
    F: std::future::Future<Output = Result<Received, DriverError>>,
>(
    sink: &S,
    line: &Line,
    client: &WsClient,
    recv: F,
    quiet: &mut Quiet,
    stop: &mut crate::io::shutdown::Wait<'_>,
) -> Result<Received, String> {
    let cfg = &line.config;
    let mut recv = std::pin::pin!(recv);
    loop {
        match rt::race(recv.as_mut(), rt::race(&mut quiet.timer, &mut *stop)).await {
            Either::Left(r) => return r.map_err(|e| e.to_string()),
            Either::Right(Either::Right(())) => return Err("shutdown".into()),
            Either::Right(Either::Left(())) => {
                // Pings and pongs keep a quiet line, but a group that delivers nothing
                // for `stale_after_ms` is stale to its subscribers all the same.
                let silent = line.group.health.silent(quiet.stale, Instant::now());
                report_health(sink, line, silent);
                let due = quiet.due();
                if due > Instant::now() {
                    // Traffic since the timer was armed.
                    quiet.timer = rt::sleep_until(due);
                    continue;
                }
                if quiet.pinged {
                    return Err(format!(
                        "stale: nothing received for {} ms (pinged)",
                        cfg.stale_after_ms
                    ));
                }
                quiet.pinged = true;
                let deadline = quiet.due();
                quiet.timer = rt::sleep_until(deadline);
                match rt::timeout_at(deadline, client.ping(b"")).await {
                    Ok(Ok(())) => line.state.pings.set(line.state.pings.get() + 1),
                    Ok(Err(e)) => return Err(format!("sending a ping: {e}")),
                    Err(_) => {
                        return Err(format!(
                            "stale: a ping could not be sent in {} ms",
                            cfg.stale_after_ms
                        ))
                    }
                }
            }
        }
    }
}

/// Tells the sink of a change in the line's group's health, if there was one.
fn report_health<S: FeedSink>(sink: &S, line: &Line, change: Option<Change>) {
    if let Some(change) = change {
        let group = &line.group;
        tracing::info!(feed = %group.name, event = change.name(), "feed health changed");
        sink.feed_event(FeedEvent::Health {
            change,
            feed: group.name.clone(),
            topics: group.health.topics(),
        });
    }
}

/// One message from the line: look up its topic (and sequence number), let the group's
/// arbiter drop copies, and hand the first copy to the sink.
fn accept<S: FeedSink>(
    sink: &S,
    line: &Line,
    topics: &mut TopicReader,
    kind: MessageKind,
    payload: &[u8],
    read_ns: u64,
) {
    let st = &line.state;
    st.messages.set(st.messages.get() + 1);
    let lookup = topics.lookup(payload);
    let topic = lookup.name(payload);
    let mut gap = None;
    if line.group.sequenced {
        match (topic, topics.seq()) {
            (Some(topic), Some(seq)) => {
                let verdict;
                (verdict, gap) = line
                    .group
                    .arbiter
                    .borrow_mut()
                    .check(line.index, topic, seq);
                if verdict == Verdict::Duplicate {
                    st.duplicates.set(st.duplicates.get() + 1);
                    return;
                }
            }
            (Some(_), None) => st.unsequenced.set(st.unsequenced.get() + 1),
            // No topic: the sink drops (and counts) it, or gives it the default topic.
            (None, _) => {}
        }
    }
    if let Some(topic) = topic {
        // A feed back from stale is live first; then what it missed is a gap.
        report_health(sink, line, line.group.health.delivered(topic));
        if let Some(g) = gap {
            tracing::warn!(
                group = %line.group.name,
                topic = %String::from_utf8_lossy(topic),
                missing_from = g.from,
                missing_to = g.to,
                "sequence gap: no line delivered these"
            );
            sink.feed_event(FeedEvent::Gap {
                topic: Bytes::copy_from_slice(topic),
                from: g.from,
                to: g.to,
            });
        }
    }
    sink.ingest(kind, payload, lookup, read_ns);
}
