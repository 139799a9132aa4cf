//! The server side of the driver: the opening handshake, then [`serve`], the loop that
//! runs a [`Service`] over a connection until it closes.
//!
//! One read, then every whole frame in the buffer is handled in place, then everything
//! those frames produced (replies, pongs, the close frame) goes out in one write, or is
//! handed to the service to queue behind its own frames ([`Transmit::Handoff`]).

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::ws::deflate::{negotiate_server, DeflateServerConfig};
use crate::ws::handshake::{self, Request};
use crate::ws::{CloseCode, Event, Limits, MessageKind, Role, State, WsError};

use super::{Driver, DriverError, Reply};
use crate::io::http;
use crate::io::listener::{accept_until_shutdown, drain_connections, Open};
use crate::io::rt::{self, Either};
use crate::io::shutdown::Shutdown;
use crate::io::transport::Transport;
use crate::io::IoError;

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
    /// Subprotocols served: a client gets the first of its offers found here; one
    /// that offers only others is refused (400).
    pub subprotocols: Vec<String>,
    /// permessage-deflate offered to clients (`None`: never accepted).
    pub deflate: Option<DeflateServerConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            limits: Limits::default(),
            handshake_timeout: Duration::from_secs(10),
            linger: Duration::from_secs(2),
            idle_timeout: None,
            subprotocols: Vec::new(),
            deflate: None,
        }
    }
}

/// What a server does with its connections' messages.
pub trait Service {
    /// A whole message arrived (`compressed`: as it came, if permessage-deflate
    /// compressed it; `payload` is inflated); a reply may be left in `reply`.
    fn on_message(
        &mut self,
        kind: MessageKind,
        payload: &[u8],
        compressed: Option<&[u8]>,
        reply: &mut Reply,
    );

    /// A control frame arrived (a ping is already answered, a close already echoed).
    fn on_control(&mut self, _event: &Event<'_>) {}

    /// A read completed (before its frames are handled): a place to take a timestamp.
    fn on_read(&mut self) {}

    /// Every whole frame of one read has been handled (a place to flush batched work).
    fn on_batch_end(&mut self) {}

    /// The peer broke the protocol or a limit; the connection is being failed with
    /// the error's close code (a place to count it).
    fn on_protocol_error(&mut self, _error: &WsError) {}

    /// With [`Transmit::Handoff`]: frames the connection must send (pongs, close), to be
    /// queued behind what the service already queued.
    fn on_transmit(&mut self, _frames: Vec<u8>) {}

    /// The server is shutting down: the close (1001) follows at once, behind whatever
    /// the service queues here (a last word to the peer).
    fn on_shutdown(&mut self) {}
}

/// Who writes what the connection transmits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transmit {
    /// [`serve`] writes it, and closes TCP when the close handshake ends.
    Write,
    /// The service queues it ([`Service::on_transmit`]) and writes it with its own
    /// frames; when the close handshake ends, `serve` returns and the caller closes TCP
    /// once its writes are done.
    Handoff,
}

/// How a served connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The close handshake finished, or failed, or timed out.
    Closed,
    /// The peer closed TCP (or reset it) without finishing the close handshake.
    PeerGone,
}

/// Reads and answers the opening handshake within `config.handshake_timeout`; see
/// [`accept_handshake_by`].
pub async fn accept_handshake(
    stream: Transport,
    peer: SocketAddr,
    config: &ServerConfig,
    decide: impl FnOnce(&Request) -> Result<Limits, (u16, String)>,
    plain: impl FnOnce(&http::PlainGet) -> Option<http::Reply>,
) -> Result<Option<(Request, Driver)>, DriverError> {
    let deadline = Instant::now() + config.handshake_timeout;
    let decide = |req: &Request| std::future::ready(decide(req));
    accept_handshake_by(stream, peer, config, deadline, decide, plain).await
}

/// Reads and answers the opening handshake by `deadline` (a TLS handshake before it
/// shares the same one, so the whole of it is bounded by one timeout).
/// `decide` accepts with the limits the connection runs under (its read buffer is sized
/// by them: a subscriber that only sends control messages needs a small one) or refuses
/// with an HTTP status and reason; it returns a future, so a decision that needs work
/// off this thread (a signature check) can wait for it, within the same deadline. A
/// plain `GET` (no upgrade) is
/// answered with what `plain(request)` gives, if it gives anything (`/metrics`).
/// Returns the request and the connection's driver (whose buffer may already hold the
/// first frames), or `None` if the connection was refused or went away (it has then
/// been closed).
pub async fn accept_handshake_by<D>(
    stream: Transport,
    peer: SocketAddr,
    config: &ServerConfig,
    deadline: Instant,
    decide: impl FnOnce(&Request) -> D,
    plain: impl FnOnce(&http::PlainGet) -> Option<http::Reply>,
) -> Result<Option<(Request, Driver)>, DriverError>
where
    D: std::future::Future<Output = Result<Limits, (u16, String)>>,
{
    let io = |op, source| DriverError::Io {
        op,
        target: peer.to_string(),
        source,
    };
    // One byte past the limit, so an oversized header block is seen as such (400).
    let mut buf = Vec::with_capacity(config.limits.max_header_bytes + 1);
    let mut out = Vec::with_capacity(512);
    let request = loop {
        match handshake::parse_request(&buf, config.limits.max_header_bytes) {
            Ok(Some((req, n))) => {
                buf.drain(..n);
                break req;
            }
            Ok(None) => {}
            Err(e) => {
                match http::plain_get(&buf).and_then(|g| plain(&g)) {
                    Some(r) => http::write_response(
                        r.status,
                        r.phrase(),
                        r.content_type,
                        &r.body,
                        &mut out,
                    ),
                    None => {
                        tracing::debug!(%peer, error = %e, "handshake refused");
                        handshake::write_reject(&e, &mut out);
                    }
                }
                refuse(stream, out, config.linger).await;
                return Ok(None);
            }
        }
        let mut read = std::pin::pin!(stream.read_append(buf));
        let (res, b) = match rt::race(read.as_mut(), rt::sleep_until(deadline)).await {
            Either::Left(r) => r,
            Either::Right(()) => {
                tracing::debug!(%peer, "handshake timed out");
                stream.shutdown_both_now();
                let _ = read.await;
                return Ok(None);
            }
        };
        buf = b;
        match res {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(io("read from", e)),
        }
    };
    let decision = match rt::race(decide(&request), rt::sleep_until(deadline)).await {
        Either::Left(d) => d,
        Either::Right(()) => {
            tracing::debug!(%peer, "handshake timed out while deciding");
            stream.shutdown_both_now();
            return Ok(None);
        }
    };
    let limits = match decision {
        Ok(limits) => limits,
        Err((status, reason)) => {
            handshake::write_status(status, "", &reason, &mut out);
            refuse(stream, out, config.linger).await;
            return Ok(None);
        }
    };
    let protocol = match request.select_protocol(&config.subprotocols) {
        Ok(p) => p,
        Err(reason) => {
            handshake::write_status(400, "", &reason, &mut out);
            refuse(stream, out, config.linger).await;
            return Ok(None);
        }
    };
    let deflate = config.deflate.and_then(|c| {
        Some((
            negotiate_server(&request.offered_extensions(), &c)?,
            c.level,
        ))
    });
    let answer = deflate.as_ref().map(|((_, a), _)| a.as_str());
    handshake::write_accept(&request, protocol, answer, &mut out);
    let (res, _) = stream.write_all(out).await;
    res.map_err(|e| io("write to", e))?;
    let mut driver = Driver::new(stream, peer, Role::Server, limits, buf);
    if let Some(((params, _), level)) = deflate {
        driver = driver.with_deflate(params, level);
    }
    Ok(Some((request, driver)))
}

/// Writes an HTTP answer and closes the connection after it.
async fn refuse(stream: Transport, out: Vec<u8>, linger: Duration) {
    let _ = stream.write_all(out).await;
    stream.shutdown_write();
    let deadline = Instant::now() + linger;
    let mut scratch = Vec::with_capacity(512);
    loop {
        let mut read = std::pin::pin!(stream.read_append(scratch));
        match rt::race(read.as_mut(), rt::sleep_until(deadline)).await {
            Either::Left((Ok(n), b)) if n > 0 => {
                scratch = b;
                scratch.clear();
            }
            Either::Left(_) => break,
            Either::Right(()) => {
                stream.shutdown_both_now();
                let _ = read.await;
                break;
            }
        }
    }
    stream.shutdown().await;
}

/// How [`serve`] runs a connection.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Close (1001) after this long without a read; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// With [`Transmit::Write`]: after our close frame, how long to wait for the peer to
    /// close TCP.
    pub linger: Duration,
    /// Who writes the connection's transmit.
    pub transmit: Transmit,
}

/// What woke a connection waiting for its next read.
enum Wake {
    Read(Result<usize, DriverError>),
    Deadline,
    Shutdown,
    CloseStarted,
}

/// Runs `service` over `driver` until the connection ends: read, handle every whole
/// frame in place, write (or hand off) what they produced, repeat. Closes with 1001 on
/// `shutdown` or after `idle_timeout` without a read; gives up on a close handshake the
/// peer does not finish within the close timeout.
///
/// Its timers are made once per connection, not per read: the idle timer is re-armed
/// only when it fires (at the last read plus the timeout), so a busy connection costs
/// no timer work per message.
pub async fn serve<S: Service>(
    driver: &Driver,
    service: &mut S,
    options: &ServeOptions,
    mut shutdown: Shutdown,
) -> Result<Ended, DriverError> {
    let peer = driver.peer();
    let mut timers = Timers {
        idle: options.idle_timeout.map(rt::sleep),
        last_read: Instant::now(),
        stop: Some(shutdown.wait()),
    };
    loop {
        let handled = driver.handle_buffered(|event, reply| match event {
            Event::Message {
                kind,
                payload,
                compressed,
            } => service.on_message(kind, payload, compressed, reply),
            other => service.on_control(&other),
        });
        if let Err(e) = &handled {
            tracing::debug!(%peer, error = %e, "protocol error; failing the connection");
            service.on_protocol_error(e);
        }
        service.on_batch_end();
        transmit(driver, service, options).await?;
        if driver.state() == State::Closed {
            if options.transmit == Transmit::Write {
                driver.linger_close(options.linger).await;
            }
            return Ok(Ended::Closed);
        }
        // Let the tasks this batch woke (subscribers' writers) queue their writes first:
        // the next read then goes to the ring behind them and, when the worker is
        // behind, takes everything that arrived while they were written.
        if handled.is_ok_and(|h| h.frames > 0) {
            rt::yield_now().await;
        }
        if let Some(ended) = wait_for_read(driver, service, options, &mut timers).await? {
            return Ok(ended);
        }
    }
}

/// A served connection's timers and shutdown wait, kept across reads.
struct Timers<'a> {
    /// Fires at the last read plus the idle timeout (re-armed when it fires early).
    idle: Option<rt::Sleep>,
    last_read: Instant,
    /// `None` once shutdown has been acted on.
    stop: Option<crate::io::shutdown::Wait<'a>>,
}

/// Waits for the next read, acting on deadlines, shutdown and a close started by
/// another task meanwhile. `Some(ended)`: the connection is over. The read stays pinned
/// throughout: dropping it would lose what it reads.
async fn wait_for_read<S: Service>(
    driver: &Driver,
    service: &mut S,
    options: &ServeOptions,
    timers: &mut Timers<'_>,
) -> Result<Option<Ended>, DriverError> {
    let mut read = std::pin::pin!(driver.read());
    loop {
        let open = driver.state() == State::Open;
        let mut close_timer = driver.close_deadline().map(rt::sleep_until);
        let deadline = async {
            match (&mut close_timer, &mut timers.idle) {
                (Some(close), _) => close.await,
                (None, Some(idle)) if open => idle.await,
                _ => std::future::pending().await,
            }
        };
        let stop = async {
            match &mut timers.stop {
                Some(stop) if open => stop.await,
                _ => std::future::pending().await,
            }
        };
        let woke = rt::race(
            read.as_mut(),
            rt::race(deadline, rt::race(stop, driver.changed())),
        )
        .await;
        let woke = match woke {
            Either::Left(r) => Wake::Read(r),
            Either::Right(Either::Left(())) => Wake::Deadline,
            Either::Right(Either::Right(Either::Left(()))) => Wake::Shutdown,
            Either::Right(Either::Right(Either::Right(()))) => Wake::CloseStarted,
        };
        match woke {
            Wake::Read(Ok(_)) => {
                // The ring's time of the read's completion (the idle timeout is in
                // seconds; a clock read per read would buy nothing).
                timers.last_read = rt::recent_now();
                service.on_read();
                return Ok(None);
            }
            Wake::Read(Err(DriverError::Closed)) => {
                driver.shutdown().await;
                return Ok(Some(Ended::PeerGone));
            }
            Wake::Read(Err(e)) => {
                driver.shutdown().await;
                return Err(e);
            }
            Wake::Deadline if close_timer.is_some() => {
                // The peer never finished the close handshake: give up on it.
                driver.handle_timeout();
                driver.shutdown().await;
                let _ = read.await;
                return Ok(Some(Ended::Closed));
            }
            Wake::Deadline => {
                let idle = options.idle_timeout.unwrap_or_default();
                let due = timers.last_read + idle;
                if due > Instant::now() {
                    // Reads came since it was armed: not idle yet.
                    timers.idle = Some(rt::sleep_until(due));
                    continue;
                }
                driver.close(CloseCode::GOING_AWAY, "idle timeout");
                transmit(driver, service, options).await?;
            }
            Wake::Shutdown => {
                timers.stop = None;
                service.on_shutdown();
                driver.close(CloseCode::GOING_AWAY, "server shutting down");
                transmit(driver, service, options).await?;
            }
            Wake::CloseStarted => transmit(driver, service, options).await?,
        }
    }
}

/// Writes, or hands to the service, what the connection has to send.
async fn transmit<S: Service>(
    driver: &Driver,
    service: &mut S,
    options: &ServeOptions,
) -> Result<(), DriverError> {
    match options.transmit {
        Transmit::Write => driver.flush().await,
        Transmit::Handoff => {
            let mut frames = Vec::new();
            if driver.take_transmit(&mut frames) {
                service.on_transmit(frames);
            }
            Ok(())
        }
    }
}

/// Accepts connections on this worker's listener until shutdown, serving each with a
/// service from `make_service` (handshake, then [`serve`]); then waits for open
/// connections to finish closing.
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
    let live = Rc::new(std::cell::Cell::new(0usize));
    let for_each = shutdown.clone();
    accept_until_shutdown(listener, &mut shutdown, &Open, |stream, peer| {
        let mut service = make_service();
        let (config, shutdown, live) = (Rc::clone(&config), for_each.clone(), Rc::clone(&live));
        live.set(live.get() + 1);
        rt::spawn(async move {
            let stream = Transport::plain(stream);
            let limits = config.limits;
            let handshake = accept_handshake(stream, peer, &config, |_| Ok(limits), |_| None);
            // Not upgraded yet, nothing to flush: shutdown closes it at once.
            if let Some(Ok(Some((_, driver)))) = shutdown.unless(handshake).await {
                let options = ServeOptions {
                    idle_timeout: config.idle_timeout,
                    linger: config.linger,
                    transmit: Transmit::Write,
                };
                if let Err(e) = serve(&driver, &mut service, &options, shutdown).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            }
            live.set(live.get() - 1);
        });
    })
    .await?;
    drain_connections(&live, config.limits.close_timeout + config.linger).await;
    Ok(())
}
