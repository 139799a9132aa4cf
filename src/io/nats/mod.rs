//! The NATS backbone's client: one thread of its own runs the NATS client (async-nats
//! on a tokio current-thread runtime), so nothing of it touches a worker's ring.
//!
//! - **Export.** A worker offers each message it ingests to the [`Exporter`]: one
//!   array-slot write into a bounded channel ([`NatsOptions::export_queue`]), never a
//!   wait. A full channel, or a client that is not connected, drops the message and
//!   counts it (`export_dropped_full`, `export_dropped_disconnected`): while NATS is
//!   away nothing piles up to arrive stale later. The worker wakes the thread once
//!   per batch ([`Exporter::wake`]). The thread publishes each message to
//!   the subject its [`ExportLedger`] names (the relay's: `<subject_prefix>.<topic>`) with
//!   three headers: the relay's origin, the message's number on its subject (the
//!   ledger's too), and its kind when binary.
//! - **Import.** The thread subscribes to the configured patterns; a message whose
//!   origin header is this relay's is skipped (`import_skipped_own`), any other is
//!   handed to one worker, chosen by its subject so one subject's order is kept, over
//!   a bounded channel ([`NatsOptions::import_queue`]; full: dropped and counted), and
//!   that worker is unparked. Numbers from other feedrelays are checked: what never
//!   came is counted (`import_gap`); what came late or twice is counted
//!   (`import_late`) and not relayed.
//! - **History** (`[nats] history = "jetstream"`, [`history`]): a text message's place
//!   in its topic's count at its origin goes with it ([`POSITION_HEADER`]); a JetStream
//!   stream keeps each subject's last messages, and a relay that starts reads them back
//!   before it takes connections ([`NatsBridge::take_history`]).
//! - **Connection.** Every URL is tried in turn, then the servers the cluster
//!   announces; a relay that cannot reach any at start serves locally and says so, and
//!   keeps trying, as it does after losing a server: the first attempt at once, then
//!   [`NatsOptions::reconnect_initial`] doubling per attempt up to
//!   [`NatsOptions::reconnect_max`] ([`backoff`]), reset by a success.
//!
//! It knows subjects, payloads and headers, nothing of WebSocket or of the relay's
//! routing.

mod backoff;
mod bridge;
pub mod error;
pub mod handoff;
pub mod history;
pub mod ledger;
pub mod options;

pub use backoff::backoff;
pub use bridge::{start, NatsBridge};
pub use error::NatsError;
pub use handoff::{Exporter, ImportQueue, Imported, NatsCounters, Position};
pub use ledger::{ExportLedger, ImportLedger, Ledgers, Seen, SubjectName};
pub use options::{
    NatsAuth, NatsOptions, StreamHistory, KIND_HEADER, ORIGIN_HEADER, POSITION_HEADER, SEQ_HEADER,
};
