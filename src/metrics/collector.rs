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
use super::snapshot::{Interval, Snapshot};
use super::status::RecentHops;

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
    recent: Arc<Mutex<RecentHops>>,
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
            reported: vec![None; workers],
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
        let recent = Arc::new(Mutex::new(RecentHops::default()));
        let minute = Arc::clone(&recent);
        let thread = std::thread::Builder::new()
            .name("feedrelay-metrics".into())
            .spawn(move || collect(rx, shared, text, minute, file, spare_tx))
            .map_err(|source| MetricsError::Hlog {
                path: PathBuf::from("<collector thread>"),
                source,
            })?;
        Ok(Collector {
            tx,
            spares,
            snapshot,
            rendered,
            recent,
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

    /// The last minute of per-hop figures (`/status.json`).
    pub fn recent(&self) -> Arc<Mutex<RecentHops>> {
        Arc::clone(&self.recent)
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
    recent: Arc<Mutex<RecentHops>>,
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
        if let Ok(mut r) = recent.lock() {
            r.push(Instant::now(), interval.worker, &hops);
        }
        if let Ok(mut s) = snapshot.lock() {
            if let Some((hist, counters)) = s.workers.get_mut(interval.worker) {
                hist.add(&hops);
                *counters = interval.counters;
            }
            if let Some(at) = s.reported.get_mut(interval.worker) {
                *at = Some(Instant::now());
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
