//! The load generator behind `feedrelay bench`: open-loop publishing, latency measured
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
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use crate::io::client::{Incoming, WsClient};
use crate::io::procfs::process_cpu;
use crate::io::ring::Ring;
use crate::ws::{Limits, MessageKind};

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Relay base URL, e.g. `ws://127.0.0.1:9001/`.
    pub target: String,
    /// Messages per second published (all topics together).
    pub rate: u64,
    /// Measured time.
    pub duration: Duration,
    /// Time before measuring starts (not recorded).
    pub warmup: Duration,
    /// Subscribers (each subscribes to `*`).
    pub subs: usize,
    /// Topics the messages cycle through.
    pub topics: usize,
    /// Message size in bytes.
    pub size: usize,
    /// The relay's process id, to read its CPU time from /proc.
    pub relay_pid: Option<u32>,
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
    /// Relay CPU time (user + system) during the measured window, if known.
    pub relay_cpu: Option<Duration>,
    /// Wall time of the measured window.
    pub elapsed: Duration,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The value of `"name":` in a message we generated (digits only).
fn field_u64(msg: &[u8], name: &[u8]) -> Option<u64> {
    let at = msg.windows(name.len()).position(|w| w == name)? + name.len();
    let mut v: u64 = 0;
    let mut any = false;
    for &b in &msg[at..] {
        if !b.is_ascii_digit() {
            break;
        }
        v = v.checked_mul(10)?.checked_add((b - b'0') as u64)?;
        any = true;
    }
    any.then_some(v)
}

fn topic_of(msg: &[u8]) -> Option<usize> {
    field_u64(msg, b"\"s\":\"SYM").map(|v| v as usize)
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

    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
    let (window_tx, window_rx) = std::sync::mpsc::channel::<Window>();
    let sub_spec = spec.clone();
    let subscribers = std::thread::Builder::new()
        .name("bench-subs".into())
        .spawn(move || -> anyhow::Result<Shared> {
            let ring = Ring::new()?;
            ring.block_on(subscribe_all(sub_spec, ready_tx, window_rx))
        })?;
    ready_rx.recv()??;
    // Every subscriber is in: fix the schedule, in both clocks.
    let start_at = Instant::now() + Duration::from_millis(200);
    let start_ns = now_ns() + 200_000_000;
    let measure_from = start_at + spec.warmup;
    let end_at = measure_from + spec.duration;
    let window = Window {
        measure_from_ns: start_ns + spec.warmup.as_nanos() as u64,
        end_ns: start_ns + (spec.warmup + spec.duration).as_nanos() as u64,
        drain_until: end_at + Duration::from_secs(2),
    };
    let _ = window_tx.send(window);

    let pub_spec = spec.clone();
    let publisher = std::thread::Builder::new().name("bench-pub".into()).spawn(
        move || -> anyhow::Result<()> {
            let ring = Ring::new()?;
            ring.block_on(publish(pub_spec, start_ns, total))
        },
    )?;

    std::thread::sleep(measure_from.saturating_duration_since(Instant::now()));
    let cpu_before = spec.relay_pid.and_then(process_cpu);
    let t0 = Instant::now();
    std::thread::sleep(end_at.saturating_duration_since(Instant::now()));
    let cpu_after = spec.relay_pid.and_then(process_cpu);
    let elapsed = t0.elapsed();
    publisher
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
        relay_cpu: match (cpu_before, cpu_after) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        },
        elapsed,
    })
}

/// The measured window, as the subscribers see it.
struct Window {
    measure_from_ns: u64,
    end_ns: u64,
    drain_until: Instant,
}

async fn subscribe_all(
    spec: LoadSpec,
    ready: std::sync::mpsc::Sender<anyhow::Result<()>>,
    window: std::sync::mpsc::Receiver<Window>,
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
        let url = format!("{}ws?topics=*", spec.target);
        match WsClient::connect(&url, &[], Limits::default()).await {
            Ok(mut c) => {
                let _subscribed = c.recv().await;
                clients.push(c);
            }
            Err(e) => {
                let _ = ready.send(Err(anyhow::anyhow!("subscriber: {e}")));
                anyhow::bail!("subscriber: {e}");
            }
        }
    }
    let _ = ready.send(Ok(()));
    let Window {
        measure_from_ns,
        end_ns,
        drain_until,
    } = window.recv()?;
    // Stragglers may arrive up to 2 s after the last message is due.
    let deadline = tokio::time::Instant::from_std(drain_until);
    let mut tasks = Vec::new();
    for mut c in clients {
        let shared = Rc::clone(&shared);
        tasks.push(tokio_uring::spawn(async move {
            let mut check = SeqCheck {
                next: Vec::new(),
                lost: 0,
                duplicated: 0,
                reordered: 0,
            };
            loop {
                let msg = match tokio::time::timeout_at(deadline, c.recv()).await {
                    Ok(Ok(Incoming::Message(MessageKind::Text, m))) => m,
                    Ok(Ok(_)) => continue,
                    _ => break,
                };
                let now = now_ns();
                let (Some(ts), Some(seq), Some(topic)) = (
                    field_u64(&msg, b"\"ts\":"),
                    field_u64(&msg, b"\"seq\":"),
                    topic_of(&msg),
                ) else {
                    continue;
                };
                check.see(topic, seq);
                if ts >= measure_from_ns && ts < end_ns {
                    let mut s = shared.borrow_mut();
                    s.received += 1;
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

async fn publish(spec: LoadSpec, start_ns: u64, total: u64) -> anyhow::Result<()> {
    let url = format!("{}pub", spec.target);
    let mut c = WsClient::connect(&url, &[], Limits::default())
        .await
        .map_err(|e| anyhow::anyhow!("publisher: {e}"))?;
    let interval_ns = 1_000_000_000f64 / spec.rate as f64;
    let mut seqs = vec![0u64; spec.topics.max(1)];
    let mut msg = Vec::with_capacity(spec.size + 64);
    for k in 0..total {
        let due_ns = start_ns + (k as f64 * interval_ns) as u64;
        // Wait for the due time: sleep when far, yield when close (timer granularity is
        // a millisecond).
        loop {
            let now = now_ns();
            if now >= due_ns {
                break;
            }
            if due_ns - now > 2_000_000 {
                tokio::time::sleep(Duration::from_nanos(due_ns - now - 1_000_000)).await;
            } else {
                tokio::task::yield_now().await;
                std::thread::yield_now();
            }
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
        msg.resize(msg.len() + pad, b'x');
        msg.extend_from_slice(b"\"}");
        c.send(MessageKind::Text, &msg)
            .await
            .map_err(|e| anyhow::anyhow!("publisher: {e}"))?;
    }
    Ok(())
}

/// p50, p90, p99, p99.9, p99.99 and max of `h`, in microseconds.
pub fn percentiles_us(h: &Histogram<u64>) -> [f64; 6] {
    let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
    [
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        q(0.9999),
        h.max() as f64 / 1000.0,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_generated_fields() {
        let m = br#"{"s":"SYM7","seq":123,"ts":1732456789123456789,"pad":"xx"}"#;
        assert_eq!(field_u64(m, b"\"seq\":"), Some(123));
        assert_eq!(field_u64(m, b"\"ts\":"), Some(1732456789123456789));
        assert_eq!(topic_of(m), Some(7));
        assert_eq!(field_u64(b"{}", b"\"seq\":"), None);
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
