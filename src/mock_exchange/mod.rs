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

pub mod certs;
pub mod cli;
pub mod market;
pub mod options;
mod session;

pub use options::{Faults, Options, Stats};

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::io::listener::{accept_until_shutdown, drain_connections, Open};
use crate::io::ring::Ring;
use crate::io::rt;
use crate::io::shutdown::Shutdown;
use crate::io::IoError;

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
