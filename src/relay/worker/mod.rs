//! One relay worker: its state (`state::WorkerCtx`), its start-up and tasks
//! ([`start`]), how a message enters ([`ingest`]), the channels to the other workers
//! ([`links`]), its metrics intervals and exit summary ([`telemetry`],
//! [`intervals`]), and what it closes when a reload's access rules no longer allow a
//! connection ([`revoke`]).
//!
//! Everything here is single-threaded (one worker, one ring): `Cell`s and `RefCell`s,
//! never borrowed across an `.await`. What crosses threads is the links to other
//! workers and the metrics channel.

pub mod ingest;
pub mod intervals;
pub mod links;
pub mod revoke;
pub mod start;
pub mod state;
pub mod telemetry;
