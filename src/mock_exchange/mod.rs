//! `feedrelay mock-exchange`: a local stand-in for an exchange's market-data
//! WebSocket, for the tests and the demo (there is no internet here).
//!
//! It speaks a Binance-style protocol: the client sends
//! `{"method":"SUBSCRIBE","params":["btcusdt@trade",..],"id":1}` (`"*"` for every
//! stream), gets `{"result":null,"id":1}`, then receives the trades of what it
//! subscribed to, from a [`market::Market`] that is deterministic in wall-clock time
//! (two processes are redundant A/B lines). It pings every `ping` interval and drops a
//! client that leaves three pings unanswered. Faults are chosen by flags and hit every
//! connection: drop it, stall it, send garbage or an oversized frame after N trades,
//! delay the TLS handshake, go quiet.
//!
//! It runs on one ring of its own with a task per connection, through the same
//! connection driver as the relay: it is a test peer, not part of the relay's data
//! path.

pub mod cli;
pub mod market;
mod session;

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use crate::io::listener::{accept_until_shutdown, drain_connections, Open};
use crate::io::ring::Ring;
use crate::io::rt;
use crate::io::shutdown::Shutdown;
use crate::io::IoError;

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

/// How long connections get to close once the exchange stops.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Serves `listener` on a ring of this thread until `shutdown`, a task per connection.
pub fn serve(
    listener: std::net::TcpListener,
    options: Arc<Options>,
    stats: Arc<Stats>,
    shutdown: Shutdown,
) -> Result<(), IoError> {
    Ring::new()?.block_on(async move {
        let live = Rc::new(Cell::new(0usize));
        let for_each = shutdown.clone();
        let mut shutdown = shutdown;
        accept_until_shutdown(listener, &mut shutdown, &Open, |stream, peer: SocketAddr| {
            if live.get() >= options.max_connections {
                tracing::warn!(%peer, max = options.max_connections, "over max_connections; closed");
                drop(stream);
                return;
            }
            stats.connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            live.set(live.get() + 1);
            let (options, stats, shutdown, live) = (
                Arc::clone(&options),
                Arc::clone(&stats),
                for_each.clone(),
                Rc::clone(&live),
            );
            rt::spawn(async move {
                match session::run(stream, peer, &options, &stats, shutdown).await {
                    Ok(why) => tracing::info!(%peer, %why, "connection ended"),
                    Err(e) => tracing::info!(%peer, error = %e, "connection failed"),
                }
                live.set(live.get() - 1);
            });
        })
        .await?;
        drain_connections(&live, STOP_GRACE).await;
        Ok(())
    })
}

/// `addr` as a URL for clients.
pub fn url(addr: SocketAddr, tls: bool) -> String {
    format!("{}://{addr}/stream", if tls { "wss" } else { "ws" })
}
