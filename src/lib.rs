//! feedrelay: a WebSocket feed relay for low-latency trading desks.
//!
//! Market-data feeds come in (exchange streams it dials, publishers that connect to
//! `/pub`); every message goes out to many subscribers through pinned per-core io_uring
//! workers, framed once, with a latency histogram for every hop.
//!
//! - [`ws`]: RFC 6455 as a state machine with no IO (bytes in, events and bytes out).
//! - [`io`]: io_uring workers pinned to cores, listeners, connection drivers, the client.
//! - [`echo`]: the echo service (`feedrelay echo`).
//! - [`host`]: what `/sys` and `/proc` say about the host (`feedrelay check`).
//!
//! `unsafe` is denied here and allowed in exactly two places: `ws::mask` (SIMD
//! intrinsics) and `io` (the ring and the OS).
#![deny(unsafe_code)]
#![warn(
    missing_docs,
    unreachable_pub,
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks
)]

pub mod bench;
pub mod demo;
pub mod echo;
pub mod host;
pub mod io;
pub mod metrics;
pub mod mock_exchange;
pub mod relay;
pub mod ws;
