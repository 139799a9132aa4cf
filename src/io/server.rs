//! The server side: accept connections, run the handshake, drive a
//! [`Connection`] over the socket, and hand whole messages to a [`Service`].
//!
//! One read, then every whole frame in the buffer is handled in place, then everything
//! those frames produced (replies, pongs, the close frame) goes out in one write. The
//! read buffer is allocated once per connection and reused; a partial frame left at the
//! end of a read is moved to the front before the next read (usually zero bytes).

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::time::{timeout_at, Instant as TokioInstant};

use super::error::IoError;
use super::ring::{self, TcpListener, TcpStream};
use super::shutdown::Shutdown;
use crate::ws::handshake::{self, Request};
use crate::ws::{CloseCode, Connection, Event, Limits, MessageKind, Role, State};

/// What a server does with its connections' messages.
pub trait Service {
    /// Decides at the handshake: `Err((status, reason))` refuses with that HTTP status.
    fn accept(&mut self, _req: &Request) -> Result<(), (u16, String)> {
        Ok(())
    }

    /// A whole message arrived; frames to send back go into `out`.
    fn on_message(&mut self, kind: MessageKind, payload: &[u8], out: &mut Vec<u8>);

    /// A read completed (before its frames are handled): a place to take a timestamp.
    fn on_read(&mut self) {}

    /// Every whole frame of one read has been handled (a place to flush batched work).
    fn on_batch_end(&mut self) {}
}

/// Sizes and times of the server side.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Protocol limits for every connection.
    pub limits: Limits,
    /// A client must finish its handshake within this time.
    pub handshake_timeout: Duration,
    /// After the close frame went out, how long to wait for the peer to close TCP.
    pub linger: Duration,
    /// Close a connection (1001) that sent nothing for this long; `None`: never.
    pub idle_timeout: Option<Duration>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            limits: Limits::default(),
            handshake_timeout: Duration::from_secs(10),
            linger: Duration::from_secs(2),
            idle_timeout: None,
        }
    }
}

impl ServerConfig {
    /// Bytes of read buffer per connection: enough for an inline frame or a handshake.
    pub fn read_buffer_bytes(&self) -> usize {
        self.limits
            .inline_frame_bytes
            .max(self.limits.max_header_bytes)
    }
}

/// Accepts connections on this worker's listener until shutdown, serving each with a
/// service from `make_service`; then waits for open connections to finish closing.
pub async fn accept_loop<S, F>(
    listener: std::net::TcpListener,
    make_service: F,
    config: Rc<ServerConfig>,
    mut shutdown: Shutdown,
) -> Result<(), IoError>
where
    S: Service + 'static,
    F: Fn() -> S,
{
    let live = Rc::new(Cell::new(0usize));
    let for_each = shutdown.clone();
    accept_until_shutdown(listener, &mut shutdown, |stream, peer| {
        let service = make_service();
        let (config, shutdown, live) = (Rc::clone(&config), for_each.clone(), Rc::clone(&live));
        live.set(live.get() + 1);
        ring::spawn(async move {
            if let Err(e) = serve(stream, peer, service, &config, shutdown).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            live.set(live.get() - 1);
        });
    })
    .await?;
    drain_connections(&live, config.limits.close_timeout + config.linger).await;
    Ok(())
}

/// Accepts on `listener` until `shutdown`, handing each connection (with the socket
/// options it inherited from the listener) to `on_accept`. A failed accept (EMFILE, ENFILE, ...) is logged and retried
/// after a pause, so the connections already open keep being served.
pub async fn accept_until_shutdown(
    listener: std::net::TcpListener,
    shutdown: &mut Shutdown,
    mut on_accept: impl FnMut(TcpStream, SocketAddr),
) -> Result<(), IoError> {
    /// Pause after a failed accept before trying again.
    const ACCEPT_RETRY: Duration = Duration::from_millis(10);
    let local = listener
        .local_addr()
        .map_err(|e| IoError::op("listen on", "socket", e))?;
    let listener: TcpListener = ring::listener(listener);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.wait() => return Ok(()),
        };
        match accepted {
            Ok((stream, peer)) => on_accept(stream, peer),
            Err(e) => {
                tracing::warn!(%local, error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}

/// Waits until no connection is `live`, or `grace` has passed.
pub async fn drain_connections(live: &Cell<usize>, grace: Duration) {
    let deadline = Instant::now() + grace;
    while live.get() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Serves one connection from handshake to close.
pub async fn serve<S: Service>(
    stream: TcpStream,
    peer: SocketAddr,
    mut service: S,
    config: &ServerConfig,
    shutdown: Shutdown,
) -> Result<(), IoError> {
    let Some((_request, buf)) =
        accept_handshake(&stream, peer, config, |req| service.accept(req)).await?
    else {
        return Ok(());
    };
    drive(&stream, peer, service, config, shutdown, buf).await
}

/// Reads and answers the opening handshake within the handshake timeout. `decide`
/// may refuse with an HTTP status and reason. Returns the request and the read buffer
/// (which may already hold the first frames), or `None` if the connection was refused
/// or went away (it has then been closed).
pub async fn accept_handshake(
    stream: &TcpStream,
    peer: SocketAddr,
    config: &ServerConfig,
    decide: impl FnOnce(&Request) -> Result<(), (u16, String)>,
) -> Result<Option<(Request, Vec<u8>)>, IoError> {
    accept_handshake_or_plain(stream, peer, config, decide, |_| None).await
}

/// [`accept_handshake`], and a plain-HTTP `GET` (no upgrade) is answered `200` with the
/// body `plain(path)` returns, if it returns one (e.g. `/metrics`).
pub async fn accept_handshake_or_plain(
    stream: &TcpStream,
    peer: SocketAddr,
    config: &ServerConfig,
    decide: impl FnOnce(&Request) -> Result<(), (u16, String)>,
    plain: impl FnOnce(&str) -> Option<String>,
) -> Result<Option<(Request, Vec<u8>)>, IoError> {
    let mut buf = Vec::with_capacity(config.read_buffer_bytes());
    let mut out = Vec::with_capacity(512);
    let deadline = TokioInstant::now() + config.handshake_timeout;
    let request = loop {
        match handshake::parse_request(&buf, config.limits.max_header_bytes) {
            Ok(Some((req, n))) => {
                buf.drain(..n);
                break req;
            }
            Ok(None) => {}
            Err(e) => {
                if let Some(body) = handshake::plain_get_path(&buf).and_then(|p| plain(&p)) {
                    handshake::write_plain_ok("text/plain; version=0.0.4", &body, &mut out);
                    let _ = ring::write_all(stream, out).await;
                    linger_close(stream, config.linger).await;
                    return Ok(None);
                }
                tracing::debug!(%peer, error = %e, "handshake refused");
                handshake::write_reject(&e, &mut out);
                let _ = ring::write_all(stream, out).await;
                linger_close(stream, config.linger).await;
                return Ok(None);
            }
        }
        let (res, b) = match timeout_at(deadline, ring::read_append(stream, buf)).await {
            Ok(r) => r,
            Err(_) => {
                tracing::debug!(%peer, "handshake timed out");
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return Ok(None);
            }
        };
        buf = b;
        match res {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(IoError::op("read from", peer, e)),
        }
    };
    if let Err((status, reason)) = decide(&request) {
        handshake::write_status(status, "", &reason, &mut out);
        let _ = ring::write_all(stream, out).await;
        linger_close(stream, config.linger).await;
        return Ok(None);
    }
    handshake::write_accept(&request, &mut out);
    let (res, _) = ring::write_all(stream, out).await;
    res.map_err(|e| IoError::op("write to", peer, e))?;
    Ok(Some((request, buf)))
}

/// Runs an accepted connection: read, handle every whole frame in place, write what
/// they produced in one submission, until the close handshake ends or shutdown.
pub async fn drive<S: Service>(
    stream: &TcpStream,
    peer: SocketAddr,
    mut service: S,
    config: &ServerConfig,
    mut shutdown: Shutdown,
    mut buf: Vec<u8>,
) -> Result<(), IoError> {
    let mut out = Vec::with_capacity(4096);
    let mut conn = Connection::new(Role::Server, config.limits, seed());
    let mut closing = shutdown.is_triggered();
    if closing {
        conn.close(
            CloseCode::GOING_AWAY,
            "server shutting down",
            Instant::now(),
        );
    }
    loop {
        // Handle every whole frame in the buffer, in place.
        let mut start = 0;
        loop {
            match conn.handle_input(&mut buf[start..]) {
                Ok(Some((event, used))) => {
                    if let Event::Message { kind, payload } = event {
                        service.on_message(kind, payload, &mut out);
                    }
                    start += used;
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "protocol error; failing the connection");
                    break;
                }
            }
            conn.poll_transmit(&mut out);
        }
        conn.poll_transmit(&mut out);
        service.on_batch_end();
        buf.drain(..start);

        let (res, o) = ring::write_all(stream, out).await;
        out = o;
        res.map_err(|e| IoError::op("write to", peer, e))?;
        if conn.state() == State::Closed {
            break;
        }

        // Read more: until data, shutdown, or the close handshake's deadline. The read
        // stays pinned while shutdown writes our close frame: dropping a read in flight
        // would leave it in the ring, where it would swallow the peer's next bytes.
        let read = ring::read_append(stream, buf);
        tokio::pin!(read);
        let idle_deadline = config.idle_timeout.map(|d| TokioInstant::now() + d);
        let (res, b) = loop {
            let deadline = conn.poll_timeout().map(TokioInstant::from_std);
            let reason = tokio::select! {
                r = &mut read => break r,
                _ = sleep_until_opt(idle_deadline), if !closing => "idle timeout",
                _ = shutdown.wait(), if !closing => "server shutting down",
                _ = sleep_until_opt(deadline) => {
                    // The peer never finished the close handshake: give up on it.
                    conn.handle_timeout(Instant::now());
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                    return Ok(());
                }
            };
            closing = true;
            conn.close(CloseCode::GOING_AWAY, reason, Instant::now());
            conn.poll_transmit(&mut out);
            let (res, o) = ring::write_all(stream, out).await;
            out = o;
            res.map_err(|e| IoError::op("write to", peer, e))?;
        };
        buf = b;
        match res {
            Ok(0) => {
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return Ok(());
            }
            Ok(_) => service.on_read(),
            Err(e) => return Err(IoError::op("read from", peer, e)),
        }
    }
    linger_close(stream, config.linger).await;
    Ok(())
}

/// Sleeps until `deadline`, or forever if there is none.
async fn sleep_until_opt(deadline: Option<TokioInstant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Closes TCP after our last bytes: FIN first, then drain what the peer still sends
/// until it closes too (or `linger` passes), so the kernel does not answer unread data
/// with a reset that could destroy our close frame in flight (RFC 6455 §7.1.1).
pub async fn linger_close(stream: &TcpStream, linger: Duration) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let deadline = TokioInstant::now() + linger;
    let mut scratch = Vec::with_capacity(512);
    loop {
        match timeout_at(deadline, ring::read_append(stream, scratch)).await {
            Ok((Ok(n), b)) if n > 0 => {
                scratch = b;
                scratch.clear();
            }
            _ => break,
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// A seed for the connection's masking-key generator (unused by a server, which does
/// not mask, but every connection gets a fresh one).
pub(crate) fn seed() -> u64 {
    let mut b = [0u8; 8];
    // If the OS has no randomness to give, a clock-derived seed still varies per call.
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9);
        return t;
    }
    u64::from_ne_bytes(b)
}
