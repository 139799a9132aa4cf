//! The load generator: open-loop publishing, latency measured
//! from the scheduled send time, and loss, duplicate and order checks per topic.
//!
//! Coordinated omission: a closed-loop generator that waits for each reply before the
//! next send stops sending exactly when the system under test stalls, so the stall never
//! shows up in its histogram. Here the publisher follows a fixed schedule (message `k`
//! is due at `start + k / rate`) and stamps each message with its *due* time; if the
//! publisher or the relay falls behind, every message sent late carries the delay.
//!
//! Messages look like `{"s":"SYM7","seq":123,"ts":<ns>,"pad":".."}`: `seq` counts per
//! topic, `ts` is the due time in CLOCK_REALTIME nanoseconds. Subscribers subscribe to
//! `*` and record `now - ts` into one HdrHistogram per subscriber thread.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::metrics::clock::realtime_ns;

use hdrhistogram::Histogram;

use super::procfs::{CpuTimes, HostCounters};
use super::relay_cpu::{CpuSplit, RelayCpu};
use crate::io::driver::client::{ConnectOptions, Incoming, WsClient};
use crate::io::ring::Ring;
use crate::io::rt;
use crate::io::sockopt::tcp_counts;
use crate::ws::MessageKind;
use std::os::fd::RawFd;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Relay base URL, e.g. `ws://127.0.0.1:9001/` (subscribers, and publishers unless
    /// `publish_to` is set).
    pub target: String,
    /// Publish to this relay instead of `target` (a chain: publish upstream, subscribe
    /// downstream).
    pub publish_to: Option<String>,
    /// Messages per second published (all topics together).
    pub rate: u64,
    /// Measured time.
    pub duration: Duration,
    /// Time before measuring starts (not recorded).
    pub warmup: Duration,
    /// Subscribers (each subscribes to `*`).
    pub subs: usize,
    /// Publisher connections; topic `k` is always sent by publisher `k % pubs`, so each
    /// topic's order is defined.
    pub pubs: usize,
    /// Topics the messages cycle through.
    pub topics: usize,
    /// Message size in bytes.
    pub size: usize,
    /// Subscribers offer permessage-deflate.
    pub deflate: bool,
    /// Subscribers take sequence envelopes (`seq=1`).
    pub seq: bool,
    /// Pad messages with order-book-like text instead of one repeated byte.
    pub book_payload: bool,
    /// The relays' process ids, to read their CPU time from /proc (summed).
    pub relay_pids: Vec<u32>,
    /// Split that CPU time into user and kernel by samples of the relays' threads
    /// (`false`: /proc's split, the scheduler tick's).
    pub sample_cpu_modes: bool,
    /// Measure the floor instead: no relay, the publisher writes straight to each
    /// subscriber socket (`target` is ignored).
    pub floor: bool,
    /// Trust for `wss://` targets (`None`: the webpki roots).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// How the generator's clients connect.
fn client_options(spec: &LoadSpec) -> ConnectOptions {
    ConnectOptions {
        tls: spec.tls.clone(),
        ..ConnectOptions::default()
    }
}

/// How subscribers connect: as clients do, offering deflate if asked.
fn subscriber_options(spec: &LoadSpec) -> ConnectOptions {
    ConnectOptions {
        deflate: spec.deflate.then(Default::default),
        ..client_options(spec)
    }
}

/// What a run measured.
#[derive(Debug)]
pub struct LoadResult {
    /// End-to-end latency (ns) from due time to receipt, measured messages only.
    pub latency: Histogram<u64>,
    /// Messages published in the measured window.
    pub sent: u64,
    /// Deliveries expected (`sent * subs`) and received.
    pub expected: u64,
    /// Deliveries received in the measured window.
    pub received: u64,
    /// Sequence gaps seen (messages never received).
    pub lost: u64,
    /// Messages received twice.
    pub duplicated: u64,
    /// Messages received out of order.
    pub reordered: u64,
    /// How late the publisher's sends completed after their due time (measured
    /// messages only): a relay that reads its publisher late makes this grow.
    pub publisher_lag: Histogram<u64>,
    /// Relay CPU time (user and system apart) during the measured window, if known.
    pub relay_cpu: Option<CpuTimes>,
    /// Where the user/system split of `relay_cpu` came from.
    pub cpu_split: CpuSplit,
    /// TCP segments the relay sent to the subscribers during the measured window,
    /// counted exactly by the subscribers' sockets (`TCP_INFO`), whatever the relay.
    pub relay_segments: Option<u64>,
    /// What the host's own counters gained during the measured window (TCP segments,
    /// IP bytes, inter-processor interrupts; every socket, not the relay's alone).
    pub host: HostCounters,
    /// Wall time of the measured window.
    pub elapsed: Duration,
}

/// The digits after the first `name` at or after `from` in a message we generated,
/// and where they end.
fn field_from(msg: &[u8], from: usize, name: &[u8]) -> Option<(u64, usize)> {
    let rest = msg.get(from..)?;
    let at = from + rest.windows(name.len()).position(|w| w == name)? + name.len();
    let digits = msg[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in &msg[at..at + digits] {
        v = v.checked_mul(10)?.checked_add((b - b'0') as u64)?;
    }
    Some((v, at + digits))
}

/// The topic number, sequence and due time of a message we generated. They are its
/// first three fields, in that order (`{"s":"SYM7","seq":..,"ts":..,`), so each is
/// looked for where the one before ended, not from the start of the message.
fn generated_fields(msg: &[u8]) -> Option<(usize, u64, u64)> {
    let (topic, at) = field_from(msg, 0, b"\"s\":\"SYM")?;
    let (seq, at) = field_from(msg, at, b"\"seq\":")?;
    let (ts, _) = field_from(msg, at, b"\"ts\":")?;
    Some((topic as usize, seq, ts))
}

/// Per-subscriber order tracking.
struct SeqCheck {
    next: Vec<Option<u64>>,
    lost: u64,
    duplicated: u64,
    reordered: u64,
}

impl SeqCheck {
    fn see(&mut self, topic: usize, seq: u64) {
        if topic >= self.next.len() {
            self.next.resize(topic + 1, None);
        }
        match self.next[topic] {
            None => self.next[topic] = Some(seq + 1),
            Some(n) if seq == n => self.next[topic] = Some(n + 1),
            Some(n) if seq > n => {
                self.lost += seq - n;
                self.next[topic] = Some(seq + 1);
            }
            Some(n) if seq + 1 == n => self.duplicated += 1,
            Some(_) => self.reordered += 1,
        }
    }
}

struct Shared {
    latency: Histogram<u64>,
    received: u64,
    lost: u64,
    duplicated: u64,
    reordered: u64,
}

/// Runs the load: subscribers on one thread, the publisher on another, each with its
/// own ring. Blocks until done.
pub fn run(spec: &LoadSpec) -> anyhow::Result<LoadResult> {
    let total = ((spec.warmup + spec.duration).as_secs_f64() * spec.rate as f64) as u64;
    let warm_msgs = (spec.warmup.as_secs_f64() * spec.rate as f64) as u64;
    let mut spec = spec.clone();
    // The floor: the publisher's thread listens, and subscribers connect to it directly.
    let floor_listener = if spec.floor {
        let l = crate::io::listener::bind_reuseport("127.0.0.1:0".parse()?, 1)?
            .pop()
            .ok_or_else(|| anyhow::anyhow!("floor: no listener"))?;
        spec.target = format!("ws://{}/", l.local_addr()?);
        Some(l)
    } else {
        None
    };
    let spec = &spec;
    let (sink_tx, sink_rx) = std::sync::mpsc::channel::<u64>();

    let publisher = start_publisher(spec.clone(), floor_listener, sink_rx, total)?;

    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<Vec<RawFd>>>();
    let (window_tx, window_rx) = std::sync::mpsc::channel::<Window>();
    let sub_spec = spec.clone();
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sub_progress = std::sync::Arc::clone(&progress);
    let subscribers = std::thread::Builder::new()
        .name("bench-subs".into())
        .spawn(move || -> anyhow::Result<Shared> {
            let ring = Ring::new()?;
            ring.block_on(subscribe_all(sub_spec, ready_tx, window_rx, sub_progress))
        })?;
    // Each subscriber's socket: what the relay sent it, counted by its own TCP.
    let sub_fds = ready_rx.recv()??;
    // Every subscriber is in: fix the schedule, in both clocks.
    let start_at = Instant::now() + Duration::from_millis(200);
    let start_ns = realtime_ns() + 200_000_000;
    let measure_from = start_at + spec.warmup;
    let end_at = measure_from + spec.duration;
    let window = Window {
        measure_from_ns: start_ns + spec.warmup.as_nanos() as u64,
        end_ns: start_ns + (spec.warmup + spec.duration).as_nanos() as u64,
        drain_until: end_at + Duration::from_secs(2),
    };
    let _ = window_tx.send(window);
    let _ = sink_tx.send(start_ns);

    std::thread::sleep(measure_from.saturating_duration_since(Instant::now()));
    // Segments the subscribers' sockets received: the relay's segments to them (and
    // its pure ACKs of what they sent: the handshake and pongs, next to nothing).
    let segs_to_subscribers = || -> Option<u64> {
        sub_fds
            .iter()
            .map(|&fd| tcp_counts(fd).map(|c| c.segs_in))
            .sum()
    };
    let mut relay_cpu = RelayCpu::start(&spec.relay_pids, spec.sample_cpu_modes);
    let sub_segs_before = segs_to_subscribers();
    let host_before = HostCounters::read();
    let t0 = Instant::now();
    // Progress, once a second, on stderr: deliveries so far against the schedule.
    while Instant::now() < end_at {
        std::thread::sleep(
            end_at
                .saturating_duration_since(Instant::now())
                .min(Duration::from_secs(1)),
        );
        relay_cpu.drain();
        let t = t0.elapsed().as_secs_f64();
        eprint!(
            "\r  {t:>5.1} s / {:.0} s: {} deliveries received    ",
            spec.duration.as_secs_f64(),
            progress.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    eprintln!();
    let (relay_cpu, cpu_split) = relay_cpu.finish();
    let sub_segs_after = segs_to_subscribers();
    let host = HostCounters::read().since(host_before);
    let elapsed = t0.elapsed();
    let publisher_lag = publisher
        .join()
        .map_err(|_| anyhow::anyhow!("publisher thread panicked"))??;
    let shared = subscribers
        .join()
        .map_err(|_| anyhow::anyhow!("subscriber thread panicked"))??;
    let sent = total - warm_msgs;
    Ok(LoadResult {
        latency: shared.latency,
        sent,
        expected: sent * spec.subs as u64,
        received: shared.received,
        lost: shared.lost,
        duplicated: shared.duplicated,
        reordered: shared.reordered,
        publisher_lag,
        relay_cpu,
        cpu_split,
        relay_segments: match (sub_segs_before, sub_segs_after) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        },
        host,
        elapsed,
    })
}

/// The publisher's thread: connects (or, for the floor, accepts the subscribers), waits
/// for the start time, then publishes `total` messages on schedule.
fn start_publisher(
    spec: LoadSpec,
    floor_listener: Option<std::net::TcpListener>,
    start: std::sync::mpsc::Receiver<u64>,
    total: u64,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<Histogram<u64>>>> {
    let thread = std::thread::Builder::new().name("bench-pub".into()).spawn(
        move || -> anyhow::Result<Histogram<u64>> {
            // Due times are met by sleeping to just before them: no timer slack.
            crate::io::worker::set_timer_slack_ns(1);
            let ring = Ring::new()?;
            ring.block_on(async move {
                let sink = match floor_listener {
                    Some(l) => floor_sink(l, spec.subs).await?,
                    None => {
                        let url =
                            format!("{}pub", spec.publish_to.as_ref().unwrap_or(&spec.target));
                        let mut pubs = Vec::with_capacity(spec.pubs.max(1));
                        for _ in 0..spec.pubs.max(1) {
                            pubs.push(
                                WsClient::connect_with(&url, &client_options(&spec))
                                    .await
                                    .map_err(|e| anyhow::anyhow!("publisher: {e}"))?,
                            );
                        }
                        Sink::Relay(pubs)
                    }
                };
                let start_ns = start.recv()?;
                publish(sink, spec, start_ns, total).await
            })
        },
    )?;
    Ok(thread)
}

/// The measured window, as the subscribers see it.
struct Window {
    measure_from_ns: u64,
    end_ns: u64,
    drain_until: Instant,
}

async fn subscribe_all(
    spec: LoadSpec,
    ready: std::sync::mpsc::Sender<anyhow::Result<Vec<RawFd>>>,
    window: std::sync::mpsc::Receiver<Window>,
    progress: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> anyhow::Result<Shared> {
    let shared = Rc::new(RefCell::new(Shared {
        latency: Histogram::new_with_bounds(1, 60_000_000_000, 3)?,
        received: 0,
        lost: 0,
        duplicated: 0,
        reordered: 0,
    }));
    let mut clients = Vec::with_capacity(spec.subs);
    for _ in 0..spec.subs {
        let url = format!(
            "{}ws?topics=*{}",
            spec.target,
            ["", "&seq=1"][usize::from(spec.seq)]
        );
        match WsClient::connect_with(&url, &subscriber_options(&spec)).await {
            Ok(mut c) => {
                if !spec.floor {
                    let _subscribed = c.recv().await;
                }
                clients.push(c);
            }
            Err(e) => {
                let _ = ready.send(Err(anyhow::anyhow!("subscriber: {e}")));
                anyhow::bail!("subscriber: {e}");
            }
        }
    }
    let _ = ready.send(Ok(clients.iter().map(WsClient::raw_fd).collect()));
    let Window {
        measure_from_ns,
        end_ns,
        drain_until,
    } = window.recv()?;
    // Stragglers may arrive up to 2 s after the last message is due.
    let deadline = drain_until;
    let enveloped = spec.seq;
    let mut tasks = Vec::new();
    for mut c in clients {
        let shared = Rc::clone(&shared);
        let progress = std::sync::Arc::clone(&progress);
        tasks.push(rt::spawn(async move {
            let mut check = SeqCheck {
                next: Vec::new(),
                lost: 0,
                duplicated: 0,
                reordered: 0,
            };
            loop {
                // Dropping a recv loses the connection's framing; at the end of the
                // run that no longer matters.
                let msg = match rt::timeout_at(deadline, c.recv()).await {
                    Ok(Ok(Incoming::Message(MessageKind::Text, m))) => m,
                    Ok(Ok(_)) => continue,
                    _ => break,
                };
                let now = realtime_ns();
                // In an envelope (`seq=1` only), the message is what follows `"msg":`.
                // Not searched for otherwise: that scan of the whole message was about
                // a quarter of the generator's user time at 5k x 100.
                let msg: &[u8] = match enveloped
                    .then(|| msg.windows(6).position(|w| w == b"\"msg\":"))
                    .flatten()
                {
                    Some(at) => &msg[at..],
                    None => &msg,
                };
                let Some((topic, seq, ts)) = generated_fields(msg) else {
                    continue;
                };
                check.see(topic, seq);
                if ts >= measure_from_ns && ts < end_ns {
                    let mut s = shared.borrow_mut();
                    s.received += 1;
                    progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let _ = s.latency.record(now.saturating_sub(ts).max(1));
                }
            }
            let mut s = shared.borrow_mut();
            s.lost += check.lost;
            s.duplicated += check.duplicated;
            s.reordered += check.reordered;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let s = Rc::try_unwrap(shared)
        .map_err(|_| anyhow::anyhow!("subscriber tasks still running"))?
        .into_inner();
    Ok(s)
}

/// Where the publisher's messages go: the relay under test, or (the floor) straight to
/// every subscriber socket with no relay in between.
enum Sink {
    Relay(Vec<WsClient>),
    Floor(Vec<Rc<FloorSub>>),
}

/// A subscriber connection the floor publisher writes to directly.
struct FloorSub {
    driver: crate::io::driver::Driver,
    queue: RefCell<Vec<bytes::Bytes>>,
    signal: crate::io::local::WakeFlag,
    /// A write is in flight.
    writing: std::cell::Cell<bool>,
}

impl Sink {
    /// Waits until everything sent has been written (the floor's writers are idle).
    async fn finish(&self) {
        if let Sink::Floor(subs) = self {
            while subs
                .iter()
                .any(|s| !s.queue.borrow().is_empty() || s.writing.get())
            {
                rt::sleep(Duration::from_millis(1)).await;
            }
        }
    }

    async fn send(&mut self, topic: usize, msg: &[u8]) -> anyhow::Result<()> {
        match self {
            Sink::Relay(pubs) => {
                let n = pubs.len();
                pubs[topic % n]
                    .send(MessageKind::Text, msg)
                    .await
                    .map_err(|e| anyhow::anyhow!("publisher: {e}"))
            }
            Sink::Floor(subs) => {
                // Framed once, as a relay would; each subscriber's writer sends it.
                let frame =
                    bytes::Bytes::from(crate::ws::server_frame(crate::ws::OpCode::Text, msg));
                for s in subs.iter() {
                    s.queue.borrow_mut().push(frame.clone());
                    s.signal.raise();
                }
                Ok(())
            }
        }
    }
}

/// Accepts `subs` subscriber connections on `listener` and starts a writer per
/// subscriber (the floor: no relay, the publisher's thread writes to them directly).
async fn floor_sink(listener: std::net::TcpListener, subs: usize) -> anyhow::Result<Sink> {
    use crate::io::driver::server::{accept_handshake, ServerConfig};
    use crate::io::transport::Transport;
    let listener = crate::io::ring::listener(listener);
    let config = ServerConfig::default();
    let mut out = Vec::with_capacity(subs);
    for _ in 0..subs {
        let (stream, peer) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let limits = config.limits;
        let (_, driver) = accept_handshake(
            Transport::plain(stream),
            peer,
            &config,
            |_| Ok(limits),
            |_| None,
        )
        .await?
        .ok_or_else(|| anyhow::anyhow!("floor: a subscriber's handshake failed"))?;
        let sub = Rc::new(FloorSub {
            driver,
            queue: RefCell::new(Vec::new()),
            signal: crate::io::local::WakeFlag::new(),
            writing: std::cell::Cell::new(false),
        });
        let writer = Rc::clone(&sub);
        rt::spawn(async move {
            let mut batch = crate::io::ring::WriteBatch::with_capacity(64);
            loop {
                std::mem::swap(&mut batch.frames, &mut *writer.queue.borrow_mut());
                if batch.frames.is_empty() {
                    writer.signal.wait().await;
                    continue;
                }
                writer.writing.set(true);
                let (res, back) = writer.driver.write_frames(batch).await;
                writer.writing.set(false);
                batch = back;
                if res.is_err() {
                    break;
                }
            }
        });
        out.push(sub);
    }
    Ok(Sink::Floor(out))
}

/// Sends `total` messages on schedule; returns how late each send completed after its
/// due time (publisher lag: a relay that reads its publisher late shows here).
async fn publish(
    mut sink: Sink,
    spec: LoadSpec,
    start_ns: u64,
    total: u64,
) -> anyhow::Result<Histogram<u64>> {
    /// Closer than this to a due time, the publisher sends at once.
    const EARLY_NS: u64 = 2_000;
    let interval_ns = 1_000_000_000f64 / spec.rate as f64;
    let measure_from = start_ns + spec.warmup.as_nanos() as u64;
    let mut lag = Histogram::new_with_bounds(1, 60_000_000_000, 3)?;
    let mut seqs = vec![0u64; spec.topics.max(1)];
    let mut msg = Vec::with_capacity(spec.size + 64);
    for k in 0..total {
        let due_ns = start_ns + (k as f64 * interval_ns) as u64;
        // Sleep until the due time: the ring's timers have ns resolution and this
        // thread's timer slack is 1 ns. (Busy-waiting instead would take the core
        // from the subscribers' thread beside it.)
        let now = realtime_ns();
        if due_ns > now + EARLY_NS {
            rt::sleep(Duration::from_nanos(due_ns - now)).await;
        }
        let topic = (k as usize) % seqs.len();
        msg.clear();
        use std::io::Write;
        write!(
            msg,
            r#"{{"s":"SYM{topic}","seq":{},"ts":{due_ns},"pad":""#,
            seqs[topic]
        )?;
        seqs[topic] += 1;
        let pad = spec.size.saturating_sub(msg.len() + 2);
        if spec.book_payload {
            book_levels(&mut msg, pad, k);
        } else {
            msg.resize(msg.len() + pad, b'x');
        }
        msg.extend_from_slice(b"\"}");
        sink.send(topic, &msg).await?;
        if due_ns >= measure_from {
            let _ = lag.record(realtime_ns().saturating_sub(due_ns).max(1));
        }
        if k % 64 == 0 {
            // Let the floor's writers (and the relay client's reads) run.
            rt::yield_now().await;
        }
    }
    sink.finish().await;
    Ok(lag)
}

/// Appends `n` bytes of order-book price levels (`101.25:3.50,`...) whose digits vary
/// with `k`, as market-data updates do: deflate finds the structure, not the values.
/// (`benches/deflate.rs` measures compression on the same payloads.)
pub fn book_levels(msg: &mut Vec<u8>, n: usize, k: u64) {
    let end = msg.len() + n;
    let mut x = k.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut level = 0u64;
    while msg.len() < end {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let (px, qty) = (10_125 - level * 5, x % 100_000);
        use std::io::Write;
        let _ = write!(
            msg,
            "{}.{:02}:{}.{:03},",
            px / 100,
            px % 100,
            qty / 1000,
            qty % 1000
        );
        level = (level + 1) % 20;
    }
    msg.truncate(end);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_generated_fields() {
        let m = br#"{"s":"SYM7","seq":123,"ts":1732456789123456789,"pad":"xx"}"#;
        assert_eq!(generated_fields(m), Some((7, 123, 1732456789123456789)));
        // Inside the relay's envelope, from where the message starts.
        let e = br#"{"seq":9,"msg":{"s":"SYM2","seq":5,"ts":77,"pad":""}}"#;
        let at = e.windows(6).position(|w| w == b"\"msg\":").unwrap();
        assert_eq!(generated_fields(&e[at..]), Some((2, 5, 77)));
        assert_eq!(generated_fields(b"{}"), None);
        assert_eq!(
            generated_fields(br#"{"s":"SYM1","seq":,"ts":3}"#),
            None,
            "no digits"
        );
        assert_eq!(
            generated_fields(br#"{"s":"SYM1","ts":3,"seq":4}"#),
            None,
            "out of the generator's order"
        );
        let huge = br#"{"s":"SYM1","seq":99999999999999999999,"ts":3}"#;
        assert_eq!(generated_fields(huge), None, "past u64");
    }

    #[test]
    fn seq_check_counts_gaps_duplicates_and_reorders() {
        let mut c = SeqCheck {
            next: Vec::new(),
            lost: 0,
            duplicated: 0,
            reordered: 0,
        };
        for s in [0, 1, 2, 2, 5, 3, 6] {
            c.see(0, s);
        }
        assert_eq!((c.lost, c.duplicated, c.reordered), (2, 1, 1));
    }
}
