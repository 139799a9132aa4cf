//! One accepted connection, from handshake to close: routed by its path to the
//! publisher side (`/pub`) or the subscriber side (`/ws?topics=...`), or answered as a
//! plain `GET /metrics`, or refused with an HTTP status and a one-line reason.

use std::net::SocketAddr;
use std::rc::Rc;

use crate::io::driver::server::{
    accept_handshake_by, serve as serve_driver, ServeOptions, Transmit,
};
use crate::io::driver::{Driver, DriverError};
use crate::io::http::Reply;
use crate::io::ring::TcpStream;
use crate::io::rt::{self, Either};
use crate::io::shutdown::Shutdown;
use crate::io::transport::Transport;
use crate::metrics::now_ns;
use crate::relay::access::admission::Admitted;
use crate::relay::conn::publisher::Publisher;
use crate::relay::conn::route::{route, verify, Routed, Side};
use crate::relay::conn::subscriber;
use crate::relay::core::topic::TopicReader;
use crate::relay::worker::revoke::HeldPublisher;
use crate::relay::worker::state::{Counted, WorkerCtx};

/// Serves one accepted connection until it ends.
///
/// Until its upgrade a connection has nothing to flush, so shutdown closes it at once:
/// a client slow to send its request (or one that never does) cannot hold a restart
/// for the handshake timeout.
pub(in crate::relay) async fn serve(
    ctx: &Rc<WorkerCtx>,
    stream: TcpStream,
    peer: SocketAddr,
    mut admitted: Admitted,
    shutdown: Shutdown,
) -> Result<(), DriverError> {
    let upgrading = upgrade(ctx, stream, peer, &mut admitted);
    let Some(upgraded) = shutdown.unless(upgrading).await else {
        tracing::debug!(%peer, "closed mid-handshake: shutting down");
        return Ok(());
    };
    match upgraded? {
        Some((driver, side)) => serve_side(ctx, driver, side, shutdown).await,
        None => Ok(()),
    }
}

/// Waits for a handshake slot if the connection is held, then upgrades it: the driver
/// and the side it asked for, or `None` when it was closed before (refused, held too
/// long, evicted). `admitted` keeps the connection's place in the counts for as long
/// as the connection lives, so it is only borrowed here.
async fn upgrade(
    ctx: &Rc<WorkerCtx>,
    stream: TcpStream,
    peer: SocketAddr,
    admitted: &mut Admitted,
) -> Result<Option<(Driver, Side)>, DriverError> {
    if admitted.is_held() {
        // Every slot taken (or its address's): wait, holding only the socket, for one,
        // within the handshake timeout.
        if rt::timeout(ctx.server.handshake_timeout, admitted.slot())
            .await
            .is_err()
        {
            ctx.admission.count_held_too_long();
            tracing::debug!(%peer, "closed: held for a handshake slot past the timeout");
            return Ok(None);
        }
    }
    // The handshake gives its slot up if a source holding fewer needs it.
    let handshake = std::pin::pin!(handshake(ctx, stream, peer));
    let upgraded = match rt::race(handshake, admitted.evicted()).await {
        Either::Left(Ok(Some(done))) => done,
        Either::Left(Ok(None)) => return Ok(None),
        Either::Left(Err(e)) => return Err(e),
        Either::Right(()) => {
            admitted.count_evicted();
            tracing::debug!(%peer, "closed mid-handshake: its slot went to a source holding fewer");
            return Ok(None);
        }
    };
    admitted.handshake_done();
    Ok(Some(upgraded))
}

/// The TLS handshake (if any) and the WebSocket one, within one handshake timeout:
/// the driver and the side the client asked for, or `None` when refused (counted).
async fn handshake(
    ctx: &Rc<WorkerCtx>,
    stream: TcpStream,
    peer: SocketAddr,
) -> Result<Option<(Driver, Side)>, DriverError> {
    let mut side = None;
    // One deadline for the TLS handshake and the WebSocket one after it.
    let deadline = std::time::Instant::now() + ctx.server.handshake_timeout;
    let transport = match ctx.settings.tls() {
        None => Transport::plain(stream),
        Some(tls) => match Transport::tls_server_by(stream, tls, deadline).await {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                ctx.summary.borrow_mut().refused += 1;
                return Ok(None);
            }
        },
    };
    transport.set_write_timeout(Some(ctx.write_timeout));
    let accepted = accept_handshake_by(
        transport,
        peer,
        &ctx.server,
        deadline,
        |req| {
            let routed = route(req, ctx);
            let side = &mut side;
            async move {
                let decided = match routed {
                    Ok(Routed::Ready(s)) => Ok(s),
                    Ok(Routed::Verify(pending)) => verify(ctx, pending).await,
                    Err(refusal) => Err(refusal),
                };
                let decided = decided.inspect_err(|(status, reason)| {
                    log_refusal(ctx, peer, *status, reason);
                })?;
                let limits = match decided {
                    Side::Publisher(..) => ctx.server.limits,
                    Side::Subscriber(..) => ctx.subscriber_limits,
                };
                *side = Some(decided);
                Ok(limits)
            }
        },
        |get| match (get.path.as_str(), &ctx.metrics) {
            ("/metrics", Some(m)) if ctx.metrics_on_data_port => Some(
                match ctx.settings.access().metrics_allowed(get.token.as_deref()) {
                    true => Reply::ok("text/plain; version=0.0.4", m.rendered.get().to_string()),
                    false => Reply::unauthorized(),
                },
            ),
            _ => None,
        },
    )
    .await?;
    // The request itself is not kept: an idle subscriber holds only what it needs.
    let (Some((_, driver)), Some(side)) = (accepted, side) else {
        ctx.summary.borrow_mut().refused += 1;
        return Ok(None);
    };
    Ok(Some((driver, side)))
}

/// Logs a refused handshake at info, at most ten a second per worker (then one line
/// saying how many were left out), never with the token.
fn log_refusal(ctx: &WorkerCtx, peer: SocketAddr, status: u16, reason: &str) {
    let verdict = ctx.refusal_log.refused(std::time::Instant::now());
    if verdict.left_out > 0 {
        tracing::info!(
            left_out = verdict.left_out,
            "more handshakes were refused in the last second than are logged"
        );
    }
    if verdict.log {
        tracing::info!(%peer, status, reason, "handshake refused");
    } else {
        tracing::debug!(%peer, status, reason, "handshake refused");
    }
}

/// Serves an upgraded connection as the side it asked for.
async fn serve_side(
    ctx: &Rc<WorkerCtx>,
    driver: Driver,
    side: Side,
    shutdown: Shutdown,
) -> Result<(), DriverError> {
    match side {
        Side::Publisher(grant, held) => {
            ctx.summary.borrow_mut().publishers += 1;
            let _live = Counted::enter(&ctx.publishers_open);
            let driver = Rc::new(driver);
            let _held = HeldPublisher::enter(ctx, held, Rc::clone(&driver));
            let mut publisher = Publisher {
                ctx: Rc::clone(ctx),
                topics: TopicReader::new(ctx.pointer.clone())
                    .max_name_bytes(ctx.control.max_topic_bytes),
                read_ns: now_ns(),
                rules_seen: ctx.settings.generation(),
                grant,
                reuse_compressed: ctx.compression.reuses(driver.deflate()),
            };
            let options = ServeOptions {
                idle_timeout: ctx.server.idle_timeout,
                linger: ctx.server.linger,
                transmit: Transmit::Write,
            };
            serve_driver(&driver, &mut publisher, &options, shutdown)
                .await
                .map(drop)
        }
        Side::Subscriber(joining, grant, held) => {
            ctx.summary.borrow_mut().subscribers += 1;
            let _live = Counted::enter(&ctx.subscribers_open);
            subscriber::serve(ctx, Rc::new(driver), joining, grant, held, shutdown).await
        }
    }
}
