//! The connection driver: the one place that runs a [`Connection`] over a socket.
//!
//! A [`Driver`] owns a connection's [`Transport`], its protocol state, a read buffer
//! allocated once (never zero-filled, never reallocated on the steady path) and an
//! outgoing buffer. Every kind of connection goes through it: the relay's publishers and
//! subscribers and the echo service ([`server`]), exchange feeds and load generators
//! ([`client`]), and the mock exchange; a connection written by a task that writes
//! many ([`port_write`]). Nothing else in `io` knows WebSocket rules, and
//! nothing outside `io` touches a socket.
//!
//! The driver's cycle, as the protocol core wants it (see [`Connection`]):
//! 1. [`read`](Driver::read) appends what the socket has to the read buffer;
//! 2. [`handle_buffered`](Driver::handle_buffered) hands every whole frame to the
//!    caller in place (single-frame messages are never copied), collecting what the
//!    connection must send (pongs, the close reply) and the caller's replies;
//! 3. [`flush`](Driver::flush) writes all of it in one submission, or
//!    [`take_transmit`](Driver::take_transmit) hands it to a caller that queues its own
//!    writes (a subscriber's pongs must go out behind the frames queued before them).
//!
//! Methods take `&self` so one task can write (a ping, a subscriber's frames) while
//! another's read is in flight. A read is never cancelled: the ring owns its buffer
//! until it completes, and dropping it would lose what it read, so callers race it
//! pinned ([`rt::race`]) instead of dropping it.

pub mod client;
pub mod port_write;
pub mod server;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::ws::{
    CloseCode, Connection, DeflateParams, Event, Limits, MessageKind, OpCode, Role, State, WsError,
};

use crate::io::local::WakeFlag;
use crate::io::ring::WriteBatch;
use crate::io::rt;
use crate::io::transport::{TlsSetupError, Transport};

/// What driving a connection can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The URL cannot be dialled.
    #[error("bad URL {0}")]
    Url(String),
    /// The TLS trust configuration could not be built.
    #[error("TLS set-up: {0}")]
    TlsSetup(#[from] TlsSetupError),
    /// The TLS handshake failed (unknown CA, wrong host name, alert, ...).
    #[error("TLS with {target}: {source}")]
    Tls {
        /// The peer.
        target: String,
        /// rustls' reason.
        #[source]
        source: std::io::Error,
    },
    /// Connect, TLS and the opening handshake took longer than allowed.
    #[error("connecting to {0} timed out")]
    Timeout(String),
    /// Name resolution, connect, read or write failed.
    #[error("{op} {target}: {source}")]
    Io {
        /// What we were doing.
        op: &'static str,
        /// On what.
        target: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The peer refused or botched the opening handshake.
    #[error("handshake with {0}: {1}")]
    Handshake(String, #[source] crate::ws::HandshakeError),
    /// The peer broke the protocol; the connection was failed.
    #[error("protocol error: {0}")]
    Protocol(#[from] WsError),
    /// The connection is closed (or closing); nothing more can be sent or received.
    #[error("connection closed")]
    Closed,
}

/// A reply a handler wants sent after the event it is handling (the event borrows the
/// connection, so the reply is framed once the handler returns).
#[derive(Debug, Default)]
pub struct Reply {
    kind: Option<MessageKind>,
    payload: Vec<u8>,
}

impl Reply {
    /// Sends `payload` as one message of `kind` after this event.
    pub fn send(&mut self, kind: MessageKind, payload: &[u8]) {
        self.kind = Some(kind);
        self.payload.clear();
        self.payload.extend_from_slice(payload);
    }
}

/// What [`Driver::handle_buffered`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Handled {
    /// Frames handled (messages, control frames, fragments).
    pub frames: usize,
    /// The peer's close frame arrived (answered already).
    pub peer_closed: bool,
}

/// One WebSocket connection over a [`Transport`]; see the module docs.
pub struct Driver {
    stream: Transport,
    peer: SocketAddr,
    conn: RefCell<Connection>,
    /// Read so far and not yet consumed (a partial frame stays at the front).
    buf: RefCell<Vec<u8>>,
    /// Frames to write: the connection's transmit and the caller's messages.
    out: RefCell<Vec<u8>>,
    reply: RefCell<Reply>,
    /// Raised when the close handshake starts from this side, so a task waiting on a
    /// read learns the new deadline.
    changed: WakeFlag,
    /// Bytes read since the last [`take_activity`](Driver::take_activity).
    activity: Cell<bool>,
}

impl Driver {
    /// A driver for a connection whose opening handshake is done; `buf` holds what was
    /// read after the handshake (possibly the first frames). The read buffer holds
    /// `limits.inline_frame_bytes` (larger frames stream through the reassembly buffer),
    /// so a connection that only sends small control messages keeps a small one.
    pub fn new(
        stream: Transport,
        peer: SocketAddr,
        role: Role,
        limits: Limits,
        buf: Vec<u8>,
    ) -> Self {
        let mut buf = buf;
        let want = limits.inline_frame_bytes.max(buf.len() + 1);
        if buf.capacity() < want {
            buf.reserve_exact(want - buf.len());
        } else if buf.capacity() > 2 * want {
            buf.shrink_to(want);
        }
        Driver {
            stream,
            peer,
            conn: RefCell::new(Connection::new(role, limits, rt::random_u64())),
            buf: RefCell::new(buf),
            out: RefCell::new(Vec::new()),
            reply: RefCell::new(Reply::default()),
            changed: WakeFlag::new(),
            activity: Cell::new(false),
        }
    }

    /// Runs the connection with permessage-deflate as negotiated; see
    /// [`Connection::with_deflate`].
    pub fn with_deflate(self, params: DeflateParams, level: u32) -> Self {
        let conn = self.conn.into_inner().with_deflate(params, level);
        Driver {
            conn: RefCell::new(conn),
            ..self
        }
    }

    /// The permessage-deflate parameters in force, if negotiated.
    pub fn deflate(&self) -> Option<DeflateParams> {
        self.conn.borrow().deflate()
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Where the close handshake stands.
    pub fn state(&self) -> State {
        self.conn.borrow().state()
    }

    /// The protocol limits in force.
    pub fn limits(&self) -> Limits {
        *self.conn.borrow().limits()
    }

    /// The transport underneath.
    pub fn transport(&self) -> &Transport {
        &self.stream
    }

    /// Whether anything was read since the last call (a pong counts), clearing it.
    pub fn take_activity(&self) -> bool {
        self.activity.replace(false)
    }

    fn io_error(&self, op: &'static str, source: std::io::Error) -> DriverError {
        DriverError::Io {
            op,
            target: self.peer.to_string(),
            source,
        }
    }

    /// Reads once, appending to the read buffer. End of stream is [`DriverError::Closed`].
    /// Not cancel-safe (see the module docs): race it pinned, never drop it.
    pub async fn read(&self) -> Result<usize, DriverError> {
        let buf = std::mem::take(&mut *self.buf.borrow_mut());
        let (res, buf) = self.stream.read_append(buf).await;
        *self.buf.borrow_mut() = buf;
        match res {
            Ok(0) => Err(DriverError::Closed),
            Ok(n) => {
                self.activity.set(true);
                Ok(n)
            }
            Err(e) => Err(self.io_error("read from", e)),
        }
    }

    /// Handles every whole frame in the read buffer, in place: `on_event` sees each
    /// event and may leave a [`Reply`]; pongs, the close reply and replies are framed
    /// into the outgoing buffer. An `Err` has failed the connection (its close frame is
    /// queued too).
    pub fn handle_buffered(
        &self,
        mut on_event: impl FnMut(Event<'_>, &mut Reply),
    ) -> Result<Handled, WsError> {
        let mut conn = self.conn.borrow_mut();
        let mut buf = self.buf.borrow_mut();
        let mut out = self.out.borrow_mut();
        let mut reply = self.reply.borrow_mut();
        let mut handled = Handled::default();
        let mut start = 0;
        let result = loop {
            let used = match conn.handle_input(&mut buf[start..]) {
                Ok(Some((event, used))) => {
                    handled.frames += 1;
                    handled.peer_closed |= matches!(event, Event::Close(_));
                    on_event(event, &mut reply);
                    used
                }
                Ok(None) => break Ok(handled),
                Err(e) => break Err(e),
            };
            start += used;
            if let Some(kind) = reply.kind.take() {
                // Only a closing connection refuses; the reply is moot then.
                let _ = conn.send(kind, &reply.payload, &mut out);
            }
            conn.poll_transmit(&mut out);
        };
        conn.poll_transmit(&mut out);
        buf.drain(..start);
        result
    }

    /// Writes everything queued for this connection (one submission unless the socket
    /// takes it in parts). Writers are serialised by the transport.
    pub async fn flush(&self) -> Result<(), DriverError> {
        let mut out = std::mem::take(&mut *self.out.borrow_mut());
        self.conn.borrow_mut().poll_transmit(&mut out);
        if out.is_empty() {
            *self.out.borrow_mut() = out;
            return Ok(());
        }
        let (res, out) = self.stream.write_all(out).await;
        // Another writer may have queued more meanwhile: keep the larger buffer only if
        // the slot is empty.
        let mut slot = self.out.borrow_mut();
        if slot.is_empty() && slot.capacity() < out.capacity() {
            *slot = out;
        }
        res.map_err(|e| self.io_error("write to", e))
    }

    /// Moves what is queued for this connection into `into` instead of writing it, for
    /// a caller that orders its own writes; false if there was nothing.
    pub fn take_transmit(&self, into: &mut Vec<u8>) -> bool {
        let mut out = self.out.borrow_mut();
        self.conn.borrow_mut().poll_transmit(&mut out);
        if out.is_empty() {
            return false;
        }
        into.append(&mut out);
        true
    }

    /// Queues one frame of a message (masked in the client role); see
    /// [`Connection::send_frame`]. Nothing is written until [`flush`](Self::flush).
    pub fn queue_frame(
        &self,
        opcode: OpCode,
        fin: bool,
        payload: &[u8],
    ) -> Result<(), DriverError> {
        self.conn
            .borrow_mut()
            .send_frame(opcode, fin, payload, &mut self.out.borrow_mut())
            .map_err(|_| DriverError::Closed)
    }

    /// Queues a whole message; see [`queue_frame`](Self::queue_frame).
    pub fn queue(&self, kind: MessageKind, payload: &[u8]) -> Result<(), DriverError> {
        self.queue_frame(kind.opcode(), true, payload)
    }

    /// Sends a whole message now.
    pub async fn send(&self, kind: MessageKind, payload: &[u8]) -> Result<(), DriverError> {
        self.queue(kind, payload)?;
        self.flush().await
    }

    /// Sends a ping now (may run while a read is in flight).
    pub async fn ping(&self, payload: &[u8]) -> Result<(), DriverError> {
        self.conn
            .borrow_mut()
            .send_ping(payload, &mut self.out.borrow_mut())
            .map_err(|_| DriverError::Closed)?;
        self.flush().await
    }

    /// Starts the close handshake: the close frame is queued (for `flush` or
    /// `take_transmit`) and the peer's is awaited until the close timeout. Does nothing
    /// if the handshake already started.
    pub fn close(&self, code: CloseCode, reason: &str) {
        self.conn.borrow_mut().close(code, reason, Instant::now());
        self.changed.raise();
    }

    /// When the close handshake gives up waiting for the peer, if it has started.
    pub fn close_deadline(&self) -> Option<Instant> {
        self.conn.borrow().poll_timeout()
    }

    /// Lets the connection act on its deadline (the close handshake gives up).
    pub fn handle_timeout(&self) {
        self.conn.borrow_mut().handle_timeout(Instant::now());
    }

    /// Resolves when this side started the close handshake since the last call.
    pub async fn changed(&self) {
        self.changed.wait().await
    }

    /// Writes frames encoded elsewhere (the relay's shared, encode-once frames) in one
    /// vectored write, behind anything written before; hands the batch back, empty.
    pub async fn write_frames(&self, batch: WriteBatch) -> (Result<(), DriverError>, WriteBatch) {
        let (res, batch) = self.stream.write_frames(batch).await;
        (res.map_err(|e| self.io_error("write to", e)), batch)
    }

    /// Writes bytes as they are, outside the protocol (the mock exchange's faults).
    pub async fn write_raw(&self, bytes: Vec<u8>) -> Result<(), DriverError> {
        let (res, _) = self.stream.write_all(bytes).await;
        res.map_err(|e| self.io_error("write to", e))
    }

    /// Sends FIN: nothing more will be written; reading goes on.
    pub fn finish_writing(&self) {
        self.stream.shutdown_write();
    }

    /// Closes TCP now, both ways (TLS close_notify first).
    pub async fn shutdown(&self) {
        self.stream.shutdown().await;
    }

    /// After our last bytes: FIN, then read and discard until the peer closes too or
    /// `linger` passes, then close. Draining keeps the kernel from answering unread data
    /// with a reset that could destroy our close frame in flight (RFC 6455 §7.1.1).
    pub async fn linger_close(&self, linger: Duration) {
        self.finish_writing();
        self.drain(Instant::now() + linger).await;
        self.shutdown().await;
    }

    /// Drops what has been read and not handled (a peer whose bytes are ignored).
    pub fn discard_buffered(&self) {
        self.buf.borrow_mut().clear();
    }

    /// Reads and discards until end of stream or `deadline`.
    pub async fn drain(&self, deadline: Instant) {
        while Instant::now() < deadline {
            self.buf.borrow_mut().clear();
            let mut read = std::pin::pin!(self.read());
            match rt::race(read.as_mut(), rt::sleep_until(deadline)).await {
                rt::Either::Left(Ok(_)) => {}
                rt::Either::Left(Err(_)) => return,
                rt::Either::Right(()) => {
                    // The read stays in the ring; closing the socket ends it.
                    self.stream.shutdown_both_now();
                    let _ = read.await;
                    return;
                }
            }
        }
    }
}
