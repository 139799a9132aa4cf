//! The bounded hand-offs between the workers and the NATS thread: what a worker offers
//! for export ([`Exporter`]), what it takes in ([`Imported`] on its [`ImportQueue`]),
//! and what the client counts ([`NatsCounters`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::options::{KIND_HEADER, POSITION_HEADER};

/// A message a worker offers for export.
#[derive(Debug)]
pub(super) struct Outgoing {
    pub(super) topic: Bytes,
    pub(super) payload: Bytes,
    pub(super) binary: bool,
    pub(super) position: Option<Position>,
}

/// A text message's place in its topic's count at the relay that first ingested it
/// (the relay's own numbering: an epoch naming the count, a number from 1), carried in
/// [`POSITION_HEADER`] as `<16 hex digits>:<number>` so that
/// importing relays, and a stream's history, number the topic as its origin did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Names the count.
    pub epoch: u64,
    /// From 1.
    pub seq: u64,
}

impl Position {
    /// The header's value.
    pub fn to_header(self) -> String {
        format!("{:016x}:{}", self.epoch, self.seq)
    }

    /// A header's value, if it is one this relay writes.
    pub fn parse(value: &str) -> Option<Position> {
        let (epoch, seq) = value.split_once(':')?;
        if epoch.len() != 16 {
            return None;
        }
        Some(Position {
            epoch: u64::from_str_radix(epoch, 16).ok()?,
            seq: seq.parse().ok()?,
        })
    }
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
    /// ([`ImportLedger::origin_index`](super::ImportLedger::origin_index)); `None`
    /// without an origin header, or past the ledger's bound.
    pub origin: Option<usize>,
    /// Its place in its topic's count at its origin, when it carried one.
    pub position: Option<Position>,
}

impl Imported {
    /// A message as NATS delivered it, received at `received` from exporting relay
    /// `origin`: binary when its publisher said so ([`KIND_HEADER`]) or, without that
    /// header, when it is not UTF-8; at its origin's place when it carries one.
    pub(super) fn from_nats(
        payload: Bytes,
        headers: Option<&async_nats::HeaderMap>,
        received: Instant,
        origin: Option<usize>,
    ) -> Imported {
        let header = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
        let kind = header(KIND_HEADER);
        let binary = kind == Some("binary")
            || (kind.is_none() && simdutf8::basic::from_utf8(&payload).is_err());
        Imported {
            position: header(POSITION_HEADER).and_then(Position::parse),
            payload,
            binary,
            received,
            origin,
        }
    }
}

/// One worker's end of the import hand-off.
pub type ImportQueue = Receiver<Imported>;

/// What the client counts; read by the metrics.
#[derive(Debug, Default)]
pub struct NatsCounters {
    pub(super) connected: AtomicBool,
    pub(super) exported: AtomicU64,
    pub(super) export_dropped_full: AtomicU64,
    pub(super) export_dropped_disconnected: AtomicU64,
    pub(super) export_errors: AtomicU64,
    pub(super) imported: AtomicU64,
    pub(super) import_dropped_full: AtomicU64,
    pub(super) import_skipped_own: AtomicU64,
    pub(super) import_gap: AtomicU64,
    pub(super) import_late: AtomicU64,
    pub(super) import_implausible: AtomicU64,
    pub(super) connects: AtomicU64,
    pub(super) disconnects: AtomicU64,
    pub(super) untracked: AtomicU64,
    /// Connection attempts failed since the last success (for the log).
    pub(super) failed_attempts: AtomicU64,
    /// Times the client dropped a message for a subscription that fell behind (for the
    /// log; the loss itself is `import_gap`).
    pub(super) slow_consumer: AtomicU64,
    /// Imported copies dropped by arbitration across exporting relays (counted by the
    /// workers).
    pub(super) import_duplicates: AtomicU64,
    /// Messages read back from the stream's history at start.
    pub(super) history_read: AtomicU64,
}

pub(super) fn bump(c: &AtomicU64, n: u64) {
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
            ("import_implausible", get(&self.import_implausible)),
            ("import_duplicates", get(&self.import_duplicates)),
            ("untracked", get(&self.untracked)),
            ("history_read", get(&self.history_read)),
        ]
    }

    /// A worker dropped an imported message it already had at its place (the stream's
    /// history and the live import overlap at start): counted as late.
    pub fn count_import_late(&self) {
        bump(&self.import_late, 1);
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
    pub(super) tx: Sender<Outgoing>,
    pub(super) notify: Arc<tokio::sync::Notify>,
    pub(super) counters: Arc<NatsCounters>,
}

impl Exporter {
    /// Offers a message for export without waiting; `false` if it was dropped (and
    /// counted): the client is not connected, or the channel is full.
    pub fn offer(
        &self,
        topic: Bytes,
        payload: Bytes,
        binary: bool,
        position: Option<Position>,
    ) -> bool {
        if !self.counters.connected() {
            bump(&self.counters.export_dropped_disconnected, 1);
            return false;
        }
        match self.tx.try_send(Outgoing {
            topic,
            payload,
            binary,
            position,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_reads_back_as_written_and_nothing_else_reads() {
        let p = Position {
            epoch: 0x5f1c_0a9e_3b7d_2c41,
            seq: 1042,
        };
        assert_eq!(p.to_header(), "5f1c0a9e3b7d2c41:1042");
        assert_eq!(Position::parse(&p.to_header()), Some(p));
        let max = Position {
            epoch: u64::MAX,
            seq: u64::MAX,
        };
        assert_eq!(Position::parse(&max.to_header()), Some(max));
        for bad in [
            "",
            "1042",
            "5f1c0a9e3b7d2c4:1",
            "5f1c0a9e3b7d2c41:",
            "5f1c0a9e3b7d2c41:-1",
            "zzzzzzzzzzzzzzzz:1",
            "5f1c0a9e3b7d2c41:1:2",
        ] {
            assert_eq!(Position::parse(bad), None, "{bad:?}");
        }
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
        let offer = || {
            let (t, p) = (Bytes::from_static(b"t"), Bytes::from_static(b"{}"));
            e.offer(t, p, false, None)
        };
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
