//! The collector: merges the workers' interval histograms off the hot path, writes the
//! HdrHistogram interval log, keeps the snapshot, and renders it for `/metrics`.
//!
//! Rendering happens here, on the collector's thread: a worker answering `/metrics`
//! copies the latest text ([`Rendered::get`], a lock held for an `Arc` clone) and
//! never renders or holds a lock across work.
//!
//! The interval log is an output beside the metrics, not a condition of them: when
//! writing it fails (a full disk, a file removed under it), the collector logs why
//! once, stops the log there and goes on merging, so `/metrics`, `/readyz` and the
//! status page stay current and the workers keep getting their histograms back.
//! [`Collector::finish`] hands the failure back with the totals.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use hdrhistogram::serialization::interval_log::{
    IntervalLogWriterBuilder, IntervalLogWriterError, Tag,
};
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

/// Where the interval log goes: the file (a test's failing writer).
type HlogFile = Box<dyn Write + Send>;

/// What a collector ends with.
#[derive(Debug)]
pub struct Finished {
    /// The totals, whole whatever became of the interval log.
    pub snapshot: Snapshot,
    /// Why the interval log stopped before the end, if it did.
    pub hlog: Result<(), MetricsError>,
}

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
        let file = match hlog {
            Some(p) => {
                let f = File::create(p).map_err(|source| MetricsError::Hlog {
                    path: p.to_owned(),
                    source,
                })?;
                Some((p.to_owned(), Box::new(f) as HlogFile))
            }
            None => None,
        };
        Collector::start_with(workers, file)
    }

    /// [`start`](Self::start), writing the interval log to `file` (named by its path).
    fn start_with(
        workers: usize,
        file: Option<(PathBuf, HlogFile)>,
    ) -> Result<Collector, MetricsError> {
        let (tx, rx) = unbounded();
        let (spare_tx, spares) = crossbeam_channel::bounded(workers.max(1) * 2);
        let snapshot = Arc::new(Mutex::new(Snapshot {
            workers: (0..workers).map(|_| Default::default()).collect(),
            reported: vec![None; workers],
        }));
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

    /// Waits until every worker's sender is gone, then returns the final totals and
    /// how the interval log fared. `Err` only if the collector's thread panicked.
    pub fn finish(self) -> Result<Finished, MetricsError> {
        drop(self.tx);
        let hlog = self.thread.join().map_err(|_| MetricsError::Encode {
            path: PathBuf::new(),
            reason: "collector thread panicked".into(),
        })?;
        Ok(Finished {
            snapshot: lock_or_default(&self.snapshot),
            hlog,
        })
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
    file: Option<(PathBuf, HlogFile)>,
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
    // Why the interval log stopped early: it stops at the first failure, the rest goes on.
    let mut failed: Result<(), MetricsError> = Ok(());
    // One writer for the whole run: the header (start time, base time, legend) is
    // written once; values are ns, shown in seconds by tools (max value divisor 1e9).
    let mut writer = match file.as_mut() {
        Some(f) => IntervalLogWriterBuilder::new()
            .add_comment("feedrelay per-hop latency in nanoseconds; tags: ingress, queue, egress")
            .add_comment(
                "one entry per worker per interval: sum the entries of a tag for the relay",
            )
            .with_start_time(start)
            .with_base_time(start)
            .with_max_value_divisor(1e9)
            .begin_log_with(f, &mut serializer)
            .map_err(|source| stop_hlog(&mut failed, io(source)))
            .ok(),
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
            let written = Hop::ALL.iter().try_for_each(|&hop| {
                let h = interval.hops.get(hop);
                match h.is_empty() {
                    true => Ok(()),
                    false => w.write_histogram(h, offset, interval.duration, Tag::new(hop.name())),
                }
            });
            if let Err(e) = written {
                let error = match e {
                    IntervalLogWriterError::IoError(source) => io(source),
                    other => MetricsError::Encode {
                        path: path.clone(),
                        reason: format!("{other:?}"),
                    },
                };
                stop_hlog(&mut failed, error);
                writer = None;
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
    failed
}

/// Records why the interval log stops (the first failure) and says so once.
fn stop_hlog(failed: &mut Result<(), MetricsError>, error: MetricsError) {
    tracing::error!(
        %error,
        "the per-hop interval log stops here; metrics, /readyz and the status page go on"
    );
    if failed.is_ok() {
        *failed = Err(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::snapshot::Counters;

    /// An interval of worker 0 with one ingress latency and `messages_in`.
    fn interval(messages_in: u64) -> Interval {
        let mut hops = HopHistograms::default();
        hops.record(Hop::Ingress, 1_000);
        Interval {
            worker: 0,
            start: SystemTime::now(),
            duration: Duration::from_secs(1),
            hops,
            counters: Counters {
                messages_in,
                ..Counters::default()
            },
        }
    }

    /// Waits (bounded) until the snapshot holds `messages_in` for worker 0.
    fn wait_for(c: &Collector, messages_in: u64) {
        let end = Instant::now() + Duration::from_secs(10);
        while lock_or_default(&c.snapshot).workers[0].1.messages_in != messages_in {
            assert!(
                Instant::now() < end,
                "the collector never took {messages_in}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_log_that_cannot_be_written_stops_alone() {
        // Every write to /dev/full fails with ENOSPC: a full disk.
        let c = Collector::start(1, Some(Path::new("/dev/full"))).expect("/dev/full opens");
        let tx = c.sender();
        let spares = c.spares();
        for n in [5, 9] {
            tx.send(interval(n)).expect("the collector takes intervals");
            wait_for(&c, n);
            // The histograms still come back cleared, for the worker to reuse.
            let back = spares
                .recv_timeout(Duration::from_secs(10))
                .expect("a spare set after each interval");
            assert!(back.get(Hop::Ingress).is_empty());
        }
        let end = Instant::now() + Duration::from_secs(10);
        while !c.rendered().get().contains("feedrelay_messages_in_total 9") {
            assert!(
                Instant::now() < end,
                "/metrics never showed the second interval"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(tx);
        let finished = c.finish().expect("the thread ends cleanly");
        assert_eq!(finished.snapshot.workers[0].1.messages_in, 9);
        assert_eq!(finished.snapshot.merged().get(Hop::Ingress).len(), 2);
        match finished.hlog {
            Err(MetricsError::Hlog { path, source }) => {
                assert_eq!(path, Path::new("/dev/full"));
                assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{source}");
            }
            other => panic!("the log's failure is not reported: {other:?}"),
        }
    }

    /// A log file whose disk fills once `full` is set.
    struct Filling {
        full: Arc<std::sync::atomic::AtomicBool>,
        written: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Write for Filling {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            use std::sync::atomic::Ordering::SeqCst;
            if self.full.load(SeqCst) {
                return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
            }
            self.written.fetch_add(buf.len(), SeqCst);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_disk_that_fills_mid_run_stops_the_log_alone() {
        use std::sync::atomic::Ordering::SeqCst;
        let full = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let file = Filling {
            full: Arc::clone(&full),
            written: Arc::clone(&written),
        };
        let path = PathBuf::from("filling.hlog");
        let c = Collector::start_with(1, Some((path.clone(), Box::new(file)))).expect("starts");
        let tx = c.sender();
        tx.send(interval(5)).expect("the collector takes intervals");
        wait_for(&c, 5);
        let logged = written.load(SeqCst);
        assert!(logged > 0, "the header and the first interval were written");
        full.store(true, SeqCst);
        for n in [9, 12] {
            tx.send(interval(n)).expect("the collector takes intervals");
            wait_for(&c, n);
        }
        drop(tx);
        let finished = c.finish().expect("the thread ends cleanly");
        assert_eq!(finished.snapshot.merged().get(Hop::Ingress).len(), 3);
        assert_eq!(written.load(SeqCst), logged, "nothing written once full");
        match finished.hlog {
            Err(MetricsError::Hlog { path: p, source }) => {
                assert_eq!(p, path);
                assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{source}");
            }
            other => panic!("the log's failure is not reported: {other:?}"),
        }
    }

    #[test]
    fn a_log_that_is_written_ends_well() {
        let path =
            std::env::temp_dir().join(format!("feedrelay-collector-{}.hlog", std::process::id()));
        let c = Collector::start(1, Some(&path)).expect("a temp file opens");
        let tx = c.sender();
        tx.send(interval(3)).expect("the collector takes intervals");
        wait_for(&c, 3);
        drop(tx);
        let finished = c.finish().expect("the thread ends cleanly");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        assert!(finished.hlog.is_ok(), "{:?}", finished.hlog);
        assert!(text.contains("Tag=ingress"), "{text}");
    }
}
