//! How the mock exchange runs ([`Options`], the [`Faults`] it injects) and what it
//! counts ([`Stats`]).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// Faults to inject, on every connection.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Close TCP abruptly (no close frame) after this many trades.
    pub drop_after: Option<u64>,
    /// Stop reading and writing (keep the socket open) after this many trades.
    pub stall_after: Option<u64>,
    /// Write bytes that are not a WebSocket frame after this many trades.
    pub garbage_after: Option<u64>,
    /// Announce a 1 TiB frame after this many trades.
    pub oversized_after: Option<u64>,
    /// Wait this long before the TLS handshake.
    pub slow_tls: Duration,
    /// A quiet market: no more trades after this many (pings and pongs go on).
    pub quiet_after: Option<u64>,
}

/// How the mock exchange runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Server TLS (`None`: plain `ws://`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Symbols traded.
    pub symbols: usize,
    /// Trades per second over all symbols.
    pub rate: u64,
    /// Ping interval.
    pub ping: Duration,
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// A header every client must send (name, value), like an exchange's API key;
    /// without it the handshake is refused with 401.
    pub require_header: Option<(String, String)>,
    /// Faults.
    pub faults: Faults,
}

/// Counters, printed at exit.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Trades sent.
    pub trades: AtomicU64,
    /// Faults injected.
    pub faults: AtomicU64,
    /// Pongs received.
    pub pongs: AtomicU64,
}
