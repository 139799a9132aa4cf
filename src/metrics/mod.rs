//! Per-hop latency histograms: recorded on each worker without locks, merged off the
//! hot path, exported as Prometheus text, HdrHistogram interval logs and a table.
//!
//! A relayed message is timed at each hop, on the worker that handles it:
//! - `ingress`: read completion → message parsed and routed;
//! - `queue`: handed to another worker's channel → taken off it (cross-worker only);
//! - `egress`: queued for a subscriber (taken off the channel, or routed locally) →
//!   the write to that subscriber completed.
//!
//! Each worker owns a [`HopHistograms`] and records into it directly (no atomics). Once
//! a second it swaps the histograms for empty ones and sends the interval to the
//! [`collector`], which keeps the totals, writes the `.hlog`, and holds the snapshot
//! that `/metrics` renders. This module measures; it does no socket IO.

pub mod admin;
pub mod clock;
pub mod collector;
pub mod health;
pub mod hop;
pub mod percentiles;
pub mod prometheus;
pub mod snapshot;
pub mod status;

pub use clock::{now_ns, ns_at};
pub use hop::{Hop, HopHistograms};
