//! The client side of the driver: dial (TCP, TLS for `wss://`, the opening handshake),
//! then receive and send over a [`Driver`].
//!
//! Used to dial exchange feeds and by the load generator; the tests use it against
//! `feedrelay echo` and against independent servers. It answers pings by itself and
//! masks what it sends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ws::deflate::ClientOffer;
use crate::ws::handshake::ClientHandshake;
use crate::ws::{CloseCode, Event, HandshakeError, Limits, MessageKind, OpCode, Role, State};

use super::{Driver, DriverError};
use crate::io::resolve;
use crate::io::rt::{self, Either};
use crate::io::sockopt::SocketOptions;
use crate::io::transport::{self, Transport};
use crate::io::url::WsUrl;

/// The client's errors are the driver's.
pub type ClientError = DriverError;

/// What [`WsClient::recv`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A whole message.
    Message(MessageKind, Vec<u8>),
    /// A ping (already answered).
    Ping(Vec<u8>),
    /// A pong.
    Pong(Vec<u8>),
    /// The server's close frame (already answered).
    Close(Option<(CloseCode, String)>),
}

/// How to dial: headers, limits, TLS trust, time allowed.
#[derive(Clone)]
pub struct ConnectOptions {
    /// Extra request headers (e.g. an API key).
    pub headers: Vec<(String, String)>,
    /// Subprotocols to offer, in order of preference (the server picks one or none).
    pub protocols: Vec<String>,
    /// Offer permessage-deflate (`None`: no extension is offered).
    pub deflate: Option<ClientOffer>,
    /// Frame and message limits for the connection.
    pub limits: Limits,
    /// Trust for `wss://` (`None`: the webpki roots).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Connect + TLS + opening handshake must finish within this.
    pub timeout: Duration,
    /// Socket options.
    pub socket: SocketOptions,
    /// Every write must finish within this, or the connection is cut (`None`: no
    /// limit).
    pub write_timeout: Option<Duration>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            headers: Vec::new(),
            protocols: Vec::new(),
            deflate: None,
            limits: Limits::default(),
            tls: None,
            timeout: Duration::from_secs(10),
            socket: SocketOptions::default(),
            write_timeout: None,
        }
    }
}

/// What [`WsClient::recv_each`] handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// This many frames (messages, control frames, fragments).
    Frames(usize),
    /// The server's close frame (already answered).
    Close(Option<(CloseCode, String)>),
}

/// A client connection.
pub struct WsClient {
    driver: Driver,
    /// Events handled but not yet returned by [`recv`](WsClient::recv).
    pending: std::collections::VecDeque<Incoming>,
    /// The subprotocol the server chose, if any.
    protocol: Option<String>,
}

impl WsClient {
    /// The socket's descriptor (to read its `TCP_INFO` counters, say); owned by the
    /// client, valid while it lives.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.driver.transport().raw_fd()
    }

    /// The subprotocol the server chose (one of `ConnectOptions::protocols`), if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// permessage-deflate as the server accepted it, if it did.
    pub fn deflate(&self) -> Option<crate::ws::DeflateParams> {
        self.driver.deflate()
    }

    /// Dials `url`, sends the handshake with `headers`, and checks the answer.
    pub async fn connect(
        url: &str,
        headers: &[(String, String)],
        limits: Limits,
    ) -> Result<WsClient, ClientError> {
        let options = ConnectOptions {
            headers: headers.to_vec(),
            limits,
            ..ConnectOptions::default()
        };
        WsClient::connect_with(url, &options).await
    }

    /// Dials `url` (TCP, TLS for `wss://`, opening handshake) within `options.timeout`.
    pub async fn connect_with(
        url: &str,
        options: &ConnectOptions,
    ) -> Result<WsClient, ClientError> {
        let url: WsUrl = url
            .parse()
            .map_err(|e: crate::io::url::UrlError| DriverError::Url(e.0))?;
        let target = format!("{}:{}", url.host, url.port);
        // The dial owns no ring read across the deadline that could lose data: a
        // half-made connection is dropped whole.
        match rt::timeout(options.timeout, dial(&url, &target, options)).await {
            Ok(r) => r,
            Err(rt::Elapsed) => Err(DriverError::Timeout(target)),
        }
    }

    /// The server's address.
    pub fn peer(&self) -> SocketAddr {
        self.driver.peer()
    }

    /// The driver underneath.
    pub fn driver(&self) -> &Driver {
        &self.driver
    }

    /// Sends a whole message.
    pub async fn send(&self, kind: MessageKind, payload: &[u8]) -> Result<(), ClientError> {
        self.driver.send(kind, payload).await
    }

    /// Sends one frame (for fragmented messages: the message's opcode first, then
    /// [`OpCode::Continuation`], `fin` on the last).
    pub async fn send_frame(
        &self,
        opcode: OpCode,
        fin: bool,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        self.driver.queue_frame(opcode, fin, payload)?;
        self.driver.flush().await
    }

    /// Sends a ping. May be called while a [`recv_each`](Self::recv_each) is waiting
    /// (writes are serialised; the read is not disturbed).
    pub async fn ping(&self, payload: &[u8]) -> Result<(), ClientError> {
        self.driver.ping(payload).await
    }

    /// Waits for the next message, ping, pong or close. Pings and the server's close
    /// are answered before this returns. After a close, returns [`ClientError::Closed`].
    ///
    /// Not cancel-safe: the read buffer belongs to the ring while a read is in flight,
    /// so dropping this future (a `timeout`, a lost race) loses the connection's
    /// framing. Stop a client by closing it, or let the server close it.
    pub async fn recv(&mut self) -> Result<Incoming, ClientError> {
        loop {
            if let Some(incoming) = self.pending.pop_front() {
                return Ok(incoming);
            }
            let pending = &mut self.pending;
            let handled = self.driver.handle_buffered(|event, _| {
                let incoming = match event {
                    Event::Message { kind, payload, .. } => {
                        Incoming::Message(kind, payload.to_vec())
                    }
                    Event::Ping(p) => Incoming::Ping(p.to_vec()),
                    Event::Pong(p) => Incoming::Pong(p.to_vec()),
                    Event::Close(c) => Incoming::Close(c.map(|(code, r)| (code, r.to_owned()))),
                    Event::Progress => return,
                };
                pending.push_back(incoming);
            });
            if let Err(e) = handled {
                let _ = self.driver.flush().await;
                return Err(DriverError::Protocol(e));
            }
            if !self.pending.is_empty() {
                // Pongs and the close reply go out before the caller sees the event.
                self.driver.flush().await?;
                continue;
            }
            self.read_or_time_out().await?;
        }
    }

    /// Reads once, or gives up at the close handshake's deadline.
    async fn read_or_time_out(&self) -> Result<(), ClientError> {
        if self.driver.state() == State::Closed {
            return Err(DriverError::Closed);
        }
        let mut read = std::pin::pin!(self.driver.read());
        match self.driver.close_deadline() {
            None => read.await.map(drop),
            Some(deadline) => match rt::race(read.as_mut(), rt::sleep_until(deadline)).await {
                Either::Left(r) => r.map(drop),
                Either::Right(()) => {
                    self.driver.handle_timeout();
                    self.driver.shutdown().await;
                    let _ = read.await;
                    Err(DriverError::Closed)
                }
            },
        }
    }

    /// Handles every whole frame now buffered, reading once first if there is none:
    /// each message goes to `on_message` in place (no copy), pings are answered, the
    /// server's close is answered and returned. The feed's hot path.
    ///
    /// Not cancel-safe, like [`recv`](Self::recv); one at a time. [`ping`](Self::ping)
    /// and [`send`](Self::send) may run while it waits.
    pub async fn recv_each(
        &self,
        mut on_message: impl FnMut(MessageKind, &[u8]),
    ) -> Result<Received, ClientError> {
        loop {
            let mut close = None;
            let handled = self.driver.handle_buffered(|event, _| match event {
                Event::Message { kind, payload, .. } => on_message(kind, payload),
                Event::Close(c) => close = Some(c.map(|(code, r)| (code, r.to_owned()))),
                Event::Ping(_) | Event::Pong(_) | Event::Progress => {}
            });
            let handled = match handled {
                Ok(h) => h,
                Err(e) => {
                    let _ = self.driver.flush().await;
                    return Err(DriverError::Protocol(e));
                }
            };
            if handled.frames > 0 {
                self.driver.flush().await?;
                return Ok(match close {
                    Some(c) => Received::Close(c),
                    None => Received::Frames(handled.frames),
                });
            }
            self.read_or_time_out().await?;
        }
    }

    /// Starts the close handshake and waits for the server's close frame and for it to
    /// close TCP (§7.1.1: the server closes first). Returns the server's close, if any.
    pub async fn close(
        mut self,
        code: CloseCode,
        reason: &str,
    ) -> Result<Option<(CloseCode, String)>, ClientError> {
        self.driver.close(code, reason);
        self.driver.flush().await?;
        loop {
            match self.recv().await {
                Ok(Incoming::Close(c)) => {
                    let deadline = Instant::now() + self.driver.limits().close_timeout;
                    self.driver.drain(deadline).await;
                    self.driver.shutdown().await;
                    return Ok(c);
                }
                Ok(_) => {}
                Err(DriverError::Closed) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }
}

/// Resolves, connects, runs TLS for `wss://`, and the opening handshake.
async fn dial(
    url: &WsUrl,
    target: &str,
    options: &ConnectOptions,
) -> Result<WsClient, ClientError> {
    let io = |op, source| DriverError::Io {
        op,
        target: target.to_owned(),
        source,
    };
    // Off the worker, every address; each tried in turn within the dial's time.
    let addrs = resolve::resolve(&url.host, url.port)
        .await
        .map_err(|e| io("resolve", e))?;
    let (tcp, peer) = resolve::connect_any(&addrs, &options.socket, options.timeout)
        .await
        .map_err(|e| io("connect to", e))?;
    let stream = if url.tls {
        let config = match &options.tls {
            Some(c) => Arc::clone(c),
            None => transport::client_config(None)?,
        };
        Transport::tls_client(tcp, config, &url.host)
            .await
            .map_err(|source| DriverError::Tls {
                target: target.to_owned(),
                source,
            })?
    } else {
        Transport::plain(tcp)
    };
    stream.set_write_timeout(options.write_timeout);
    let limits = options.limits;
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&rt::random_u64().to_ne_bytes());
    nonce[8..].copy_from_slice(&rt::random_u64().to_ne_bytes());
    let handshake = ClientHandshake::new(nonce)
        .with_protocols(&options.protocols)
        .with_deflate(options.deflate);
    let mut out = Vec::with_capacity(4096);
    handshake.write_request(
        &url.host_header(),
        &url.path_and_query,
        &options.headers,
        &mut out,
    );
    let (res, _) = stream.write_all(out).await;
    res.map_err(|e| io("write to", e))?;
    let mut buf = Vec::with_capacity(limits.inline_frame_bytes.max(limits.max_header_bytes));
    let response = loop {
        match handshake.parse_response(&buf, limits.max_header_bytes) {
            Ok(Some((response, n))) => {
                buf.drain(..n);
                break response;
            }
            Ok(None) => {}
            Err(e) => return Err(DriverError::Handshake(target.to_owned(), e)),
        }
        let (res, b) = stream.read_append(buf).await;
        buf = b;
        match res {
            Ok(0) => {
                let e = HandshakeError::MalformedHttp("connection closed during handshake");
                return Err(DriverError::Handshake(target.to_owned(), e));
            }
            Ok(_) => {}
            Err(e) => return Err(io("read from", e)),
        }
    };
    let mut driver = Driver::new(stream, peer, Role::Client, limits, buf);
    if let (Some(params), Some(offer)) = (response.deflate, options.deflate) {
        driver = driver.with_deflate(params, offer.level);
    }
    Ok(WsClient {
        driver,
        pending: std::collections::VecDeque::new(),
        protocol: response.protocol,
    })
}
