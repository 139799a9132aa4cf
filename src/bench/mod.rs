//! `feedrelay bench`: open-loop load through a relay, latency from each message's
//! scheduled send time (coordinated-omission correct), loss and order checks, relay CPU
//! per delivered message; variants compared side by side in alternating rounds.
//!
//! - [`load`]: the load generator (publishers on a schedule, subscribers recording).
//! - [`args`]: the flags and the variants they ask for.
//! - [`cli`]: the command: variants, rounds, the report.
//! - [`results`]: each variant's totals; tables, capacity per core, JSON, plots.
//! - [`spawn`]: relays started for a run.
//! - [`plot`]: latency-by-percentile SVG.
//! - [`procfs`]: a process's CPU time and the host's TCP counters, from /proc.
//! - [`relay_cpu`]: the relay's CPU time over a run, user and kernel split by samples.

pub mod args;
pub mod cli;
pub mod load;
pub mod plot;
pub mod procfs;
pub mod relay_cpu;
pub mod results;
pub mod spawn;

pub use load::{run, LoadResult, LoadSpec};
