//! Listening sockets: one per worker on the same address, with `SO_REUSEPORT`, so the
//! kernel spreads new connections over the workers with no shared accept lock; and the
//! accept loop each worker runs on its own.

use std::cell::Cell;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::error::IoError;
use super::ring::{self, TcpStream};
use super::rt::{self, Either};
use super::shutdown::Shutdown;
use super::sockopt::SocketOptions;

/// Pending connections per listener before the kernel refuses more.
pub const BACKLOG: i32 = 1024;

/// Binds `count` listeners to `addr` with `SO_REUSEPORT`. With port 0 the first bind
/// picks the port and the others join it.
pub fn bind_reuseport(addr: SocketAddr, count: usize) -> Result<Vec<TcpListener>, IoError> {
    bind_reuseport_with(addr, count, &SocketOptions::default())
}

/// [`bind_reuseport`] with socket options, which every accepted socket inherits.
pub fn bind_reuseport_with(
    addr: SocketAddr,
    count: usize,
    options: &SocketOptions,
) -> Result<Vec<TcpListener>, IoError> {
    let mut listeners = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count.max(1) {
        let listener = bind_one(addr, options).map_err(|e| IoError::op("listen on", addr, e))?;
        addr = listener
            .local_addr()
            .map_err(|e| IoError::op("listen on", addr, e))?;
        listeners.push(listener);
    }
    Ok(listeners)
}

fn bind_one(addr: SocketAddr, options: &SocketOptions) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    options.apply(socket2::SockRef::from(&socket))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Whether an accept loop may take another connection now. While it may not, the loop
/// does not accept: new connections wait in the kernel's backlog (up to [`BACKLOG`])
/// instead of being let in only to be refused.
pub trait AcceptGate {
    /// Room for another connection now.
    fn has_room(&self) -> bool;

    /// Resolves when there is room (at once if there is).
    fn room(&self) -> impl Future<Output = ()> + '_;
}

/// A gate that is always open.
#[derive(Debug, Default, Clone, Copy)]
pub struct Open;

impl AcceptGate for Open {
    fn has_room(&self) -> bool {
        true
    }

    fn room(&self) -> impl Future<Output = ()> + '_ {
        std::future::ready(())
    }
}

/// Accepts on `listener` until `shutdown`, handing each connection (with the socket
/// options it inherited from the listener) to `on_accept`, while `gate` has room. A
/// failed accept (EMFILE, ENFILE, ...) is logged and retried after a pause, so the
/// connections already open keep being served.
pub async fn accept_until_shutdown(
    listener: TcpListener,
    shutdown: &mut Shutdown,
    gate: &impl AcceptGate,
    mut on_accept: impl FnMut(TcpStream, SocketAddr),
) -> Result<(), IoError> {
    /// Pause after a failed accept before trying again.
    const ACCEPT_RETRY: Duration = Duration::from_millis(10);
    let local = listener
        .local_addr()
        .map_err(|e| IoError::op("listen on", "socket", e))?;
    let listener = ring::listener(listener);
    loop {
        if !gate.has_room() {
            // Full: leave new connections in the backlog until a slot frees.
            if let Either::Right(()) = rt::race(gate.room(), shutdown.wait()).await {
                return Ok(());
            }
            continue;
        }
        // An accept dropped by shutdown is harmless: the process is stopping.
        let accepted = match rt::race(listener.accept(), shutdown.wait()).await {
            Either::Left(r) => r,
            Either::Right(()) => return Ok(()),
        };
        match accepted {
            Ok((stream, peer)) => on_accept(stream, peer),
            Err(e) => {
                tracing::warn!(%local, error = %e, "accept failed");
                rt::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}

/// A shutdown's drain taking this long is logged: restarts wait on it.
const SLOW_DRAIN: Duration = Duration::from_secs(1);

/// Waits until no connection is `live`, or `grace` has passed. Says what it cost: the
/// connections still open at `grace` (cut when the caller returns) as a warning, a
/// drain over `SLOW_DRAIN` at info.
pub async fn drain_connections(live: &Cell<usize>, grace: Duration) {
    let start = Instant::now();
    let deadline = start + grace;
    while live.get() > 0 && Instant::now() < deadline {
        rt::sleep(Duration::from_millis(5)).await;
    }
    let took = start.elapsed();
    if live.get() > 0 {
        tracing::warn!(
            left = live.get(),
            "shutdown: connections still open after {grace:?} are cut"
        );
    } else if took >= SLOW_DRAIN {
        tracing::info!(
            "shutdown: the last connection closed after {} ms (a client reading its queue, or slow to answer the close)",
            took.as_millis()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Runs `drain_connections` on a ring with `live` connections that close after
    /// `close_after` (never, if `None`), bound `grace`; returns how long it took and
    /// what it logged.
    fn drain(live: usize, close_after: Option<Duration>, grace: Duration) -> (Duration, String) {
        #[derive(Clone, Default)]
        struct Log(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Log {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let log = Log::default();
        let sink = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        let took = tracing::subscriber::with_default(subscriber, || {
            crate::io::ring::Ring::new().unwrap().block_on(async {
                let live = std::rc::Rc::new(Cell::new(live));
                if let Some(after) = close_after {
                    let l = std::rc::Rc::clone(&live);
                    rt::spawn(async move {
                        rt::sleep(after).await;
                        l.set(0);
                    });
                }
                let start = Instant::now();
                drain_connections(&live, grace).await;
                start.elapsed()
            })
        });
        let text = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
        (took, text)
    }

    #[test]
    fn connections_open_at_the_bound_are_cut_and_counted_in_a_warning() {
        let (took, log) = drain(3, None, Duration::from_millis(60));
        assert!(
            took >= Duration::from_millis(60),
            "returned before the bound: {took:?}"
        );
        assert!(
            took < Duration::from_secs(2),
            "held past the bound: {took:?}"
        );
        assert!(log.contains("WARN"), "{log}");
        assert!(log.contains("left=3"), "{log}");
        assert!(
            log.contains("connections still open after 60ms are cut"),
            "{log}"
        );
    }

    #[test]
    fn a_drain_that_ends_in_time_returns_at_once_and_says_nothing() {
        let (took, log) = drain(2, Some(Duration::from_millis(20)), Duration::from_secs(5));
        assert!(
            took < Duration::from_secs(1),
            "waited for the bound: {took:?}"
        );
        assert!(log.is_empty(), "{log}");
        let (_, log) = drain(0, None, Duration::from_secs(5));
        assert!(log.is_empty(), "{log}");
    }

    #[test]
    fn port_zero_shares_one_port() {
        let ls = bind_reuseport("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let port = ls[0].local_addr().unwrap().port();
        assert!(ls.iter().all(|l| l.local_addr().unwrap().port() == port));
    }

    #[test]
    fn port_in_use_without_reuseport_is_an_error() {
        let plain = TcpListener::bind("127.0.0.1:0").unwrap();
        let err = bind_reuseport(plain.local_addr().unwrap(), 1).unwrap_err();
        assert!(err.to_string().contains("Address already in use"), "{err}");
    }
}
