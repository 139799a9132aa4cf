//! The NATS backbone's client: one thread of its own runs the NATS client (async-nats
//! on a tokio current-thread runtime), so nothing of it touches a worker's ring.
//!
//! - **Export.** A worker offers each message it ingests to the [`Exporter`]: one
//!   array-slot write into a bounded channel ([`NatsOptions::export_queue`]), never a
//!   wait. A full channel, or a client that is not connected, drops the message and
//!   counts it (`export_dropped_full`, `export_dropped_disconnected`): while NATS is
//!   away nothing piles up to arrive stale later. The worker wakes the thread once
//!   per batch ([`Exporter::wake`]). The thread publishes each message to
//!   `<subject_prefix>.<topic>` ([`subject`]) with three headers: the relay's origin,
//!   the message's number on its subject ([`sequence`]), and its kind when binary.
//! - **Import.** The thread subscribes to the configured patterns; a message whose
//!   origin header is this relay's is skipped (`import_skipped_own`), any other is
//!   handed to one worker, chosen by its subject so one subject's order is kept, over
//!   a bounded channel ([`NatsOptions::import_queue`]; full: dropped and counted), and
//!   that worker is unparked. Numbers from other feedrelays are checked: what never
//!   came is counted (`import_gap`); what came late or twice is counted
//!   (`import_late`) and not relayed.
//! - **Connection.** Every URL is tried in turn, then the servers the cluster
//!   announces; a relay that cannot reach any at start serves locally and says so, and
//!   keeps trying, as it does after losing a server: the first attempt at once, then
//!   [`NatsOptions::reconnect_initial`] doubling per attempt up to
//!   [`NatsOptions::reconnect_max`] ([`backoff`]), reset by a success.
//!
//! It knows subjects, payloads and headers, nothing of WebSocket or of the relay's
//! routing.

mod bridge;
pub mod sequence;
pub mod subject;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};

pub use bridge::{start, NatsBridge};

/// Header naming the relay that exported a message.
pub const ORIGIN_HEADER: &str = "Feedrelay-Origin";
/// Header holding a message's number on its subject from its origin.
pub const SEQ_HEADER: &str = "Feedrelay-Seq";
/// Header present (`binary`) when the message was a binary WebSocket message.
pub const KIND_HEADER: &str = "Feedrelay-Kind";

/// How the relay proves who it is to the NATS servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsAuth {
    /// Nothing (a server without authorization).
    None,
    /// A token (`authorization { token: ... }` on the server).
    Token(String),
    /// A user and password.
    UserPassword(String, String),
    /// A `.creds` file (a user JWT and its NKey seed, decentralized auth).
    CredsFile(PathBuf),
}

/// What the NATS client is started with.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// Servers, tried in turn (`nats://host:port`, `tls://host:port`).
    pub urls: Vec<String>,
    /// Credentials.
    pub auth: NatsAuth,
    /// CA certificates (PEM) to verify the servers by; also requires TLS.
    pub ca_file: Option<PathBuf>,
    /// Subjects are `<subject_prefix>.<topic>`.
    pub subject_prefix: String,
    /// Publish what the workers offer.
    pub export: bool,
    /// Subject patterns to subscribe to.
    pub import: Vec<String>,
    /// This relay's name in [`ORIGIN_HEADER`] (unique per running relay).
    pub origin: String,
    /// Messages the export channel holds.
    pub export_queue: usize,
    /// Messages each worker's import channel holds.
    pub import_queue: usize,
    /// One connection attempt's limit.
    pub connect_timeout: Duration,
    /// The wait before the second attempt; doubles each attempt after.
    pub reconnect_initial: Duration,
    /// The longest wait before an attempt.
    pub reconnect_max: Duration,
    /// Pin the NATS thread to this core (`None`: wherever the process may run).
    pub core: Option<usize>,
}

/// What went wrong starting the client.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// A file named in the options cannot be used.
    #[error("nats: {what} {path}: {reason}")]
    File {
        /// Which option.
        what: &'static str,
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The client could not be set up (a bad URL, a runtime that would not start).
    #[error("nats: {0}")]
    Setup(String),
}

/// A message a worker offers for export.
#[derive(Debug)]
struct Outgoing {
    topic: Bytes,
    payload: Bytes,
    binary: bool,
}

/// A message imported from NATS, for a worker to ingest.
#[derive(Debug)]
pub struct Imported {
    /// Its payload, as published.
    pub payload: Bytes,
    /// It was a binary message (its publisher said so), else text.
    pub binary: bool,
    /// When the NATS thread received it.
    pub received: Instant,
    /// Which exporting relay sent it, as an index in the order origins were first seen
    /// (below [`MAX_ORIGINS`]); `None` without an origin header, or past the bound.
    pub origin: Option<usize>,
}

/// Exporting relays an importer tells apart (for arbitration across them).
pub const MAX_ORIGINS: usize = 64;

/// One worker's end of the import hand-off.
pub type ImportQueue = Receiver<Imported>;

/// What the client counts; read by the metrics.
#[derive(Debug, Default)]
pub struct NatsCounters {
    connected: AtomicBool,
    exported: AtomicU64,
    export_dropped_full: AtomicU64,
    export_dropped_disconnected: AtomicU64,
    export_errors: AtomicU64,
    imported: AtomicU64,
    import_dropped_full: AtomicU64,
    import_skipped_own: AtomicU64,
    import_gap: AtomicU64,
    import_late: AtomicU64,
    connects: AtomicU64,
    disconnects: AtomicU64,
    untracked: AtomicU64,
    /// Connection attempts failed since the last success (for the log).
    failed_attempts: AtomicU64,
    /// Times the client dropped a message for a subscription that fell behind (for the
    /// log; the loss itself is `import_gap`).
    slow_consumer: AtomicU64,
    /// Imported copies dropped by arbitration across exporting relays (counted by the
    /// workers).
    import_duplicates: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl NatsCounters {
    /// Whether the client is connected to a server now.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Every counter by name.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("connects", get(&self.connects)),
            ("disconnects", get(&self.disconnects)),
            ("exported", get(&self.exported)),
            ("export_dropped_full", get(&self.export_dropped_full)),
            (
                "export_dropped_disconnected",
                get(&self.export_dropped_disconnected),
            ),
            ("export_errors", get(&self.export_errors)),
            ("imported", get(&self.imported)),
            ("import_dropped_full", get(&self.import_dropped_full)),
            ("import_skipped_own", get(&self.import_skipped_own)),
            ("import_gap", get(&self.import_gap)),
            ("import_late", get(&self.import_late)),
            ("import_duplicates", get(&self.import_duplicates)),
            ("untracked", get(&self.untracked)),
        ]
    }

    /// A worker dropped an imported copy another exporting relay delivered first.
    pub fn count_import_duplicate(&self) {
        bump(&self.import_duplicates, 1);
    }

    /// One counter by the name [`snapshot`](Self::snapshot) gives it.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.snapshot()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }
}

/// A worker's way to hand messages to the NATS thread. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Exporter {
    tx: Sender<Outgoing>,
    notify: Arc<tokio::sync::Notify>,
    counters: Arc<NatsCounters>,
}

impl Exporter {
    /// Offers a message for export without waiting; `false` if it was dropped (and
    /// counted): the client is not connected, or the channel is full.
    pub fn offer(&self, topic: Bytes, payload: Bytes, binary: bool) -> bool {
        if !self.counters.connected() {
            bump(&self.counters.export_dropped_disconnected, 1);
            return false;
        }
        match self.tx.try_send(Outgoing {
            topic,
            payload,
            binary,
        }) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                bump(&self.counters.export_dropped_full, 1);
                false
            }
            // The client has stopped (the relay is stopping).
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Wakes the NATS thread to publish what was offered (once per batch).
    pub fn wake(&self) {
        self.notify.notify_one();
    }
}

/// The wait before connection attempt `attempt` (from 1, counted since the last
/// success): none for the first, then `initial` doubled per attempt, at most `max`.
pub fn backoff(attempt: usize, initial: Duration, max: Duration) -> Duration {
    if attempt <= 1 {
        return Duration::ZERO;
    }
    let doublings = u32::try_from(attempt - 2).unwrap_or(u32::MAX).min(30);
    initial.saturating_mul(1 << doublings).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap() {
        let (i, m) = (Duration::from_millis(100), Duration::from_secs(2));
        let waits: Vec<u128> = (1..=8).map(|r| backoff(r, i, m).as_millis()).collect();
        assert_eq!(waits, [0, 100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(backoff(usize::MAX, i, m), m);
    }

    #[test]
    fn an_exporter_drops_and_counts_when_disconnected_or_full() {
        let (tx, rx) = crossbeam_channel::bounded(2);
        let counters = Arc::new(NatsCounters::default());
        let e = Exporter {
            tx,
            notify: Arc::default(),
            counters: Arc::clone(&counters),
        };
        let offer = || e.offer(Bytes::from_static(b"t"), Bytes::from_static(b"{}"), false);
        assert!(!offer(), "not connected yet");
        counters.connected.store(true, Ordering::Relaxed);
        assert!(offer() && offer());
        assert!(!offer(), "full");
        assert_eq!(counters.get("export_dropped_disconnected"), Some(1));
        assert_eq!(counters.get("export_dropped_full"), Some(1));
        drop(rx);
        assert!(!offer(), "stopped");
        assert_eq!(counters.get("export_dropped_full"), Some(1));
    }
}
