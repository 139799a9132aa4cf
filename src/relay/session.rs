//! One accepted connection, from handshake to close: routed by its path to the
//! publisher side (`/pub`) or the subscriber side (`/ws?topics=...`), or answered as a
//! plain `GET /metrics`, or refused with an HTTP status and a one-line reason.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use super::control;
use super::ingest::Publisher;
use super::subscriber;
use super::topic::TopicReader;
use super::worker::WorkerCtx;
use crate::io::driver::server::{accept_handshake, serve as serve_driver, ServeOptions, Transmit};
use crate::io::driver::DriverError;
use crate::io::ring::TcpStream;
use crate::io::shutdown::Shutdown;
use crate::io::transport::Transport;
use crate::metrics::{now_ns, prometheus};
use crate::ws::handshake::Request;
use crate::ws::Limits;

/// Which side of the relay a connection is on, decided by its path.
enum Side {
    Publisher,
    Subscriber(Vec<String>),
}

/// Read buffer of a subscriber connection: subscribers only send control messages,
/// so an idle subscriber holds a small buffer; larger control frames stream through the
/// reassembly buffer (up to `max_message_bytes`).
pub const SUBSCRIBER_READ_BYTES: usize = 1024;

/// Decides at the handshake: `Err((status, reason))` refuses.
fn route(req: &Request, ctx: &WorkerCtx) -> Result<Side, (u16, String)> {
    if ctx.connections.0.load(Ordering::Relaxed) > ctx.max_connections {
        return Err((
            503,
            format!("over max_connections ({})", ctx.max_connections),
        ));
    }
    match req.path.as_str() {
        "/pub" => Ok(Side::Publisher),
        "/ws" => control::parse_query_topics(req.query_param("topics").unwrap_or(""))
            .map(Side::Subscriber)
            .map_err(|e| (400, format!("topics: {e}"))),
        other => Err((
            404,
            format!("no such path {other:?}: publishers use /pub, subscribers /ws?topics=A,B"),
        )),
    }
}

/// Serves one accepted connection until it ends.
pub(super) async fn serve(
    ctx: &Rc<WorkerCtx>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: Shutdown,
) -> Result<(), DriverError> {
    let mut side = None;
    let accepted = accept_handshake(
        Transport::plain(stream),
        peer,
        &ctx.server,
        |req| {
            let routed = route(req, ctx)?;
            let limits = match routed {
                Side::Publisher => ctx.server.limits,
                Side::Subscriber(_) => Limits {
                    inline_frame_bytes: SUBSCRIBER_READ_BYTES,
                    ..ctx.server.limits
                },
            };
            side = Some(routed);
            Ok(limits)
        },
        |path| match (path, &ctx.metrics) {
            ("/metrics", Some(m)) => m.snapshot.lock().ok().map(|s| prometheus::render(&s)),
            _ => None,
        },
    )
    .await?;
    // The request itself is not kept: an idle subscriber holds only what it needs.
    let (Some((_, driver)), Some(side)) = (accepted, side) else {
        ctx.summary.borrow_mut().refused += 1;
        return Ok(());
    };
    match side {
        Side::Publisher => {
            ctx.summary.borrow_mut().publishers += 1;
            ctx.publishers_live.set(ctx.publishers_live.get() + 1);
            let mut publisher = Publisher {
                ctx: Rc::clone(ctx),
                topics: TopicReader::new(ctx.pointer.clone()),
                read_ns: now_ns(),
            };
            let options = ServeOptions {
                idle_timeout: ctx.server.idle_timeout,
                linger: ctx.server.linger,
                transmit: Transmit::Write,
            };
            let r = serve_driver(&driver, &mut publisher, &options, shutdown).await;
            ctx.publishers_live.set(ctx.publishers_live.get() - 1);
            r.map(drop)
        }
        Side::Subscriber(topics) => {
            ctx.summary.borrow_mut().subscribers += 1;
            ctx.subscribers_live.set(ctx.subscribers_live.get() + 1);
            let r = subscriber::serve(ctx, Rc::new(driver), topics, shutdown).await;
            ctx.subscribers_live.set(ctx.subscribers_live.get() - 1);
            r
        }
    }
}
