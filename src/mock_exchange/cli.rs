//! The `feedrelay mock-exchange` command: its flags and how they become [`Options`].

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};

use super::certs;
use super::{serve, url, Faults, Options, Stats};
use crate::io::{shutdown, transport};

/// `feedrelay mock-exchange` flags.
#[derive(Debug, clap::Args)]
pub struct MockExchangeArgs {
    /// Address to listen on (port 0: the OS picks; the URL is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Serve wss:// with certificates in DIR (ca.pem, cert.pem, key.pem): reused if
    /// present, else made with rcgen (a fresh CA and a server certificate it signed).
    #[arg(long, value_name = "DIR")]
    pub tls_self_signed: Option<std::path::PathBuf>,
    /// Names the new server certificate is valid for (DNS names or IPs).
    #[arg(long = "tls-name", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()])]
    pub tls_names: Vec<String>,
    /// Symbols traded.
    #[arg(long, default_value_t = 20)]
    pub symbols: usize,
    /// Trades per second over all symbols.
    #[arg(long, default_value_t = 1_000)]
    pub rate: u64,
    /// Ping interval, ms (three unanswered pings close the connection).
    #[arg(long, default_value_t = 1_000)]
    pub ping_ms: u64,
    /// Connections served at once.
    #[arg(long, default_value_t = 64)]
    pub max_connections: usize,
    /// Refuse (401) a handshake without this header, given as NAME=VALUE (an API key).
    #[arg(long, value_name = "NAME=VALUE")]
    pub require_header: Option<String>,
    /// Fault: close TCP abruptly after N trades on each connection.
    #[arg(long, value_name = "N")]
    pub drop_after: Option<u64>,
    /// Fault: stop reading and writing after N trades (the socket stays open).
    #[arg(long, value_name = "N")]
    pub stall_after: Option<u64>,
    /// Fault: write bytes that are not a WebSocket frame after N trades.
    #[arg(long, value_name = "N")]
    pub garbage_after: Option<u64>,
    /// Fault: announce a 1 TiB frame after N trades.
    #[arg(long, value_name = "N")]
    pub oversized_after: Option<u64>,
    /// Fault: wait this long (ms) before each TLS handshake.
    #[arg(long, default_value_t = 0)]
    pub slow_tls_ms: u64,
    /// A quiet market: no trades after N on each connection (pings and pongs go on).
    #[arg(long, value_name = "N")]
    pub quiet_after: Option<u64>,
}

/// Runs the mock exchange until SIGINT/SIGTERM, printing its URL first and its
/// counters last through `say`.
pub fn command(a: MockExchangeArgs, say: &dyn Fn(&str)) -> anyhow::Result<()> {
    let tls = match &a.tls_self_signed {
        None => None,
        Some(dir) => {
            let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
            if !(cert.exists() && key.exists() && dir.join("ca.pem").exists()) {
                certs::write_self_signed(dir, &a.tls_names)?;
            }
            Some(transport::server_config(&cert, &key)?)
        }
    };
    let listener =
        std::net::TcpListener::bind(a.listen).with_context(|| format!("listen on {}", a.listen))?;
    let addr = listener.local_addr()?;
    let require_header = match &a.require_header {
        None => None,
        Some(h) => {
            let (n, v) = h
                .split_once('=')
                .ok_or_else(|| anyhow!("--require-header wants NAME=VALUE, got {h:?}"))?;
            Some((n.to_owned(), v.to_owned()))
        }
    };
    let options = Arc::new(Options {
        tls,
        symbols: a.symbols.max(1),
        rate: a.rate.max(1),
        ping: Duration::from_millis(a.ping_ms.max(1)),
        max_connections: a.max_connections.max(1),
        require_header,
        faults: Faults {
            drop_after: a.drop_after,
            stall_after: a.stall_after,
            garbage_after: a.garbage_after,
            oversized_after: a.oversized_after,
            slow_tls: Duration::from_millis(a.slow_tls_ms),
            quiet_after: a.quiet_after,
        },
    });
    let (trigger, stop) = shutdown::channel();
    trigger
        .fire_on_signals()
        .context("installing SIGINT/SIGTERM handlers")?;
    say(&format!(
        "mock-exchange on {} ({} symbols, {} trades/s)",
        url(addr, options.tls.is_some()),
        options.symbols,
        options.rate
    ));
    let stats = Arc::new(Stats::default());
    serve(listener, Arc::clone(&options), Arc::clone(&stats), stop)?;
    say(&format!(
        "mock-exchange stopped: connections {}, trades sent {}, faults {}, pongs {}",
        stats.connections.load(Ordering::Relaxed),
        stats.trades.load(Ordering::Relaxed),
        stats.faults.load(Ordering::Relaxed),
        stats.pongs.load(Ordering::Relaxed)
    ));
    Ok(())
}
