//! The collector: merges the workers' interval histograms off the hot path, writes the
//! HdrHistogram interval log, keeps the snapshot, and renders it for `/metrics`.
//!
//! Rendering happens here, on the collector's thread: a worker answering `/metrics`
//! copies the latest text ([`Rendered::get`], a lock held for an `Arc` clone) and
//! never renders or holds a lock across work.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;

use super::hop::{Hop, HopHistograms};

/// Counters and gauges a worker reports with each interval (totals since start).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages published on this worker.
    pub messages_in: u64,
    /// Frames written to subscribers.
    pub messages_out: u64,
    /// Drops by reason (`queue_full`, `conflated`, `no_topic`, `channel_full`,
    /// `slow_disconnect`).
    pub dropped: Vec<(&'static str, u64)>,
    /// Open publisher connections.
    pub publishers: u64,
    /// Open subscriber connections.
    pub subscribers: u64,
    /// Bytes queued for subscribers right now.
    pub queue_bytes: u64,
    /// Connections closed at accept, by reason (process-wide: reported by worker 0
    /// alone, so sums over workers stay right).
    pub refused: Vec<(&'static str, u64)>,
    /// Connections in their opening handshake now (process-wide, worker 0 alone).
    pub handshaking: u64,
    /// How often each configured bound was hit, by the bound's name.
    pub limit_hits: Vec<(&'static str, u64)>,
    /// Handshakes refused by the access rules, by reason (`unauthorized`,
    /// `forbidden_origin`).
    pub handshake_refused: Vec<(&'static str, u64)>,
    /// The NATS client's counters by event (`exported`, `import_gap`, ...); reported
    /// by worker 0 alone, empty without `[nats]`.
    pub nats: Vec<(&'static str, u64)>,
    /// Whether the NATS client is connected (worker 0 alone; `None` without `[nats]`).
    pub nats_connected: Option<bool>,
    /// Publisher messages not relayed because their topic is outside the publisher's
    /// token, by the token's name.
    pub off_grant_messages: Vec<(String, u64)>,
    /// The exchange feed lines this worker dials.
    pub feeds: Vec<FeedCounters>,
    /// Their groups' arbitration.
    pub groups: Vec<GroupCounters>,
    /// permessage-deflate: messages (or, per subscriber, frames) compressed.
    pub deflate_messages: u64,
    /// Their payload bytes before compression.
    pub deflate_bytes_before: u64,
    /// Their payload bytes after.
    pub deflate_bytes_after: u64,
    /// Messages that qualified but went out plain: no subscriber could take them.
    pub deflate_skipped: u64,
    /// Of `deflate_messages`, relayed as their publisher compressed them.
    pub deflate_reused: u64,
    /// The worker's subscribers, each with its lag (at most
    /// [`MAX_SUBSCRIBER_ROWS`] per worker).
    pub subscribers_list: Vec<SubscriberRow>,
}

/// Subscribers a worker lists per interval for `/subscribers`; more are left out (and
/// the `subscribers` gauge still counts them).
pub const MAX_SUBSCRIBER_ROWS: usize = 10_000;

/// One subscriber as `/subscribers` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SubscriberRow {
    /// Its address.
    pub addr: String,
    /// The worker serving it.
    pub worker: usize,
    /// Its topics (`*` for every topic).
    pub topics: Vec<String>,
    /// Frames queued for it.
    pub queued: usize,
    /// Their bytes.
    pub queued_bytes: usize,
    /// How long the oldest queued message has waited, µs.
    pub oldest_us: u64,
    /// Messages dropped for it.
    pub drops: u64,
    /// The slow-consumer policy in force (per-topic overrides aside).
    pub policy: &'static str,
}

/// One feed line (totals since start).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedCounters {
    /// The feed's name.
    pub name: String,
    /// Its group.
    pub group: String,
    /// A session is up now.
    pub connected: bool,
    /// Sessions established.
    pub connects: u64,
    /// Failures retried (connect, TLS, close, stale, protocol).
    pub reconnects: u64,
    /// Messages received, before arbitration.
    pub messages: u64,
    /// Pings sent because the line was quiet for half of `stale_after_ms`.
    pub pings: u64,
    /// Copies dropped because another line delivered first.
    pub duplicates: u64,
    /// Milliseconds since its last message (`None`: none yet).
    pub last_message_age_ms: Option<u64>,
}

/// One group's arbitration (totals since start).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupCounters {
    /// The group's name.
    pub name: String,
    /// Messages forwarded (first copies).
    pub forwarded: u64,
    /// Copies dropped.
    pub duplicates: u64,
    /// Sequence jumps seen.
    pub gaps: u64,
    /// Sequence numbers no line delivered.
    pub missing: u64,
    /// Sources that restarted their sequence.
    pub resets: u64,
    /// Messages forwarded unarbitrated: their topic was past the arbiter's limit.
    pub untracked: u64,
    /// Per topic with a gap: sequence numbers missing.
    pub missing_by_topic: Vec<(String, u64)>,
}

/// One worker's second.
#[derive(Debug)]
pub struct Interval {
    /// Which worker.
    pub worker: usize,
    /// When the interval started and ended.
    pub start: SystemTime,
    /// Length of the interval.
    pub duration: Duration,
    /// Latencies recorded during it.
    pub hops: HopHistograms,
    /// Totals at its end.
    pub counters: Counters,
}

/// What the collector knows: totals per worker.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Per worker: all latencies so far, and the latest counters.
    pub workers: Vec<(HopHistograms, Counters)>,
}

impl Snapshot {
    /// Latencies of every worker together.
    pub fn merged(&self) -> HopHistograms {
        let mut all = HopHistograms::default();
        for (h, _) in &self.workers {
            all.add(h);
        }
        all
    }
}

/// Why metrics could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// The hlog file could not be created or written.
    #[error("hlog {path}: {source}")]
    Hlog {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A histogram could not be encoded.
    #[error("hlog {path}: encoding a histogram failed: {reason}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The snapshot as `/metrics` text, as last rendered by the collector.
#[derive(Debug, Default)]
pub struct Rendered(Mutex<Arc<str>>);

impl Rendered {
    /// The latest text.
    pub fn get(&self) -> Arc<str> {
        self.0
            .lock()
            .map(|t| Arc::clone(&t))
            .unwrap_or_else(|_| Arc::from(""))
    }

    fn set(&self, text: String) {
        if let Ok(mut t) = self.0.lock() {
            *t = Arc::from(text);
        }
    }
}

/// The collector renders at most this often while intervals keep arriving (and once
/// more when they pause).
const RENDER_EVERY: Duration = Duration::from_millis(200);

/// A running collector.
pub struct Collector {
    tx: Sender<Interval>,
    /// Histograms the collector has merged and cleared, for workers to record into
    /// again: a worker never allocates or clears one itself.
    spares: Receiver<HopHistograms>,
    snapshot: Arc<Mutex<Snapshot>>,
    rendered: Arc<Rendered>,
    thread: JoinHandle<Result<(), MetricsError>>,
}

impl Collector {
    /// Starts the collector thread for `workers` workers, writing `hlog` if given (the
    /// file is created now, so a bad path fails before the relay starts).
    pub fn start(workers: usize, hlog: Option<&Path>) -> Result<Collector, MetricsError> {
        let (tx, rx) = unbounded();
        let (spare_tx, spares) = crossbeam_channel::bounded(workers.max(1) * 2);
        let snapshot = Arc::new(Mutex::new(Snapshot {
            workers: (0..workers).map(|_| Default::default()).collect(),
        }));
        let file = match hlog {
            Some(p) => Some((
                p.to_owned(),
                File::create(p).map_err(|source| MetricsError::Hlog {
                    path: p.to_owned(),
                    source,
                })?,
            )),
            None => None,
        };
        let rendered = Arc::new(Rendered::default());
        rendered.set(super::prometheus::render(&lock_or_default(&snapshot)));
        let shared = Arc::clone(&snapshot);
        let text = Arc::clone(&rendered);
        let thread = std::thread::Builder::new()
            .name("feedrelay-metrics".into())
            .spawn(move || collect(rx, shared, text, file, spare_tx))
            .map_err(|source| MetricsError::Hlog {
                path: PathBuf::from("<collector thread>"),
                source,
            })?;
        Ok(Collector {
            tx,
            spares,
            snapshot,
            rendered,
            thread,
        })
    }

    /// Where workers send their intervals.
    pub fn sender(&self) -> Sender<Interval> {
        self.tx.clone()
    }

    /// Where workers take cleared histograms for their next interval.
    pub fn spares(&self) -> Receiver<HopHistograms> {
        self.spares.clone()
    }

    /// The merged snapshot.
    pub fn snapshot(&self) -> Arc<Mutex<Snapshot>> {
        Arc::clone(&self.snapshot)
    }

    /// The snapshot as `/metrics` text, kept up to date by the collector.
    pub fn rendered(&self) -> Arc<Rendered> {
        Arc::clone(&self.rendered)
    }

    /// Waits until every worker's sender is gone, then returns the final totals.
    pub fn finish(self) -> Result<Snapshot, MetricsError> {
        drop(self.tx);
        match self.thread.join() {
            Ok(r) => r?,
            Err(_) => {
                return Err(MetricsError::Encode {
                    path: PathBuf::new(),
                    reason: "collector thread panicked".into(),
                })
            }
        }
        Ok(self.snapshot.lock().map(|s| s.clone()).unwrap_or_default())
    }
}

fn lock_or_default(snapshot: &Mutex<Snapshot>) -> Snapshot {
    snapshot.lock().map(|s| s.clone()).unwrap_or_default()
}

fn collect(
    rx: Receiver<Interval>,
    snapshot: Arc<Mutex<Snapshot>>,
    rendered: Arc<Rendered>,
    file: Option<(PathBuf, File)>,
    spares: Sender<HopHistograms>,
) -> Result<(), MetricsError> {
    let start = SystemTime::now();
    let mut serializer = V2DeflateSerializer::new();
    let (path, mut file) = match file {
        Some((p, f)) => (p, Some(f)),
        None => (PathBuf::new(), None),
    };
    let io = |source| MetricsError::Hlog {
        path: path.clone(),
        source,
    };
    // One writer for the whole run: the header (start time, base time, legend) is
    // written once; values are ns, shown in seconds by tools (max value divisor 1e9).
    let mut writer = match file.as_mut() {
        Some(f) => Some(
            IntervalLogWriterBuilder::new()
                .add_comment(
                    "feedrelay per-hop latency in nanoseconds; tags: ingress, queue, egress",
                )
                .add_comment(
                    "one entry per worker per interval: sum the entries of a tag for the relay",
                )
                .with_start_time(start)
                .with_base_time(start)
                .with_max_value_divisor(1e9)
                .begin_log_with(f, &mut serializer)
                .map_err(io)?,
        ),
        None => None,
    };
    let render = || {
        if let Ok(s) = snapshot.lock() {
            let text = super::prometheus::render(&s);
            drop(s);
            rendered.set(text);
        }
    };
    let mut last_render = Instant::now();
    let mut stale = false;
    loop {
        let interval = match rx.recv_timeout(RENDER_EVERY) {
            Ok(i) => i,
            Err(RecvTimeoutError::Timeout) => {
                if std::mem::take(&mut stale) {
                    render();
                    last_render = Instant::now();
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if let Some(w) = writer.as_mut() {
            let offset = interval.start.duration_since(start).unwrap_or_default();
            for hop in Hop::ALL {
                let h = interval.hops.get(hop);
                if h.is_empty() {
                    continue;
                }
                w.write_histogram(h, offset, interval.duration, Tag::new(hop.name()))
                    .map_err(|e| MetricsError::Encode {
                        path: path.clone(),
                        reason: format!("{e:?}"),
                    })?;
            }
        }
        let mut hops = interval.hops;
        if let Ok(mut s) = snapshot.lock() {
            if let Some((hist, counters)) = s.workers.get_mut(interval.worker) {
                hist.add(&hops);
                *counters = interval.counters;
            }
        }
        // Cleared here, off the workers, and handed back for reuse (dropped if the
        // workers already have spares enough).
        hops.reset();
        let _ = spares.try_send(hops);
        stale = true;
        if last_render.elapsed() >= RENDER_EVERY {
            render();
            last_render = Instant::now();
            stale = false;
        }
    }
    render();
    Ok(())
}
