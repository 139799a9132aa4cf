//! The relay: topics, routing and fan-out, the application on top of [`io`](crate::io)
//! and [`ws`](crate::ws).
//!
//! A feed message (from a `/pub` publisher, an exchange feed line or a NATS import) has
//! its topic read and is framed once; the same `Bytes` goes to every subscriber of its
//! topic, on this worker and, over bounded channels, on the others. A slow subscriber
//! only ever affects its own queue.
//!
//! Its rooms, by what their files may touch:
//!
//! - [`core`]: socket-free and clock-free (time is passed in): routing, queues and
//!   slow-consumer policies, the shard, snapshots and last values, the frame arena,
//!   compression, control ops, topics, events. Imports nothing of the relay outside
//!   itself and nothing of `io`; `tests/layers.rs` checks it.
//! - [`access`]: who may connect: origins, publisher tokens, JWTs, the pending
//!   handshake budget.
//! - [`conn`]: one accepted connection: routed by path, a publisher, a subscriber's
//!   reader and writer, keepalive.
//! - [`feed`]: exchange feed lines: config, plan, arbitration, backoff, health.
//! - [`nats`]: the relay's side of NATS: `[nats]` checked, imports ingested.
//! - [`worker`]: one worker: its state, its start-up, ingest, the links to the other
//!   workers, its metrics intervals.
//! - [`config`] (the TOML file), [`reload`] (what SIGHUP may replace), [`run`]
//!   (starting and stopping a relay).

pub mod access;
pub mod config;
pub mod conn;
pub mod core;
pub mod feed;
pub mod nats;
pub mod reload;
pub mod run;
pub mod worker;
