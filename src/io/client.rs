//! A WebSocket client over the ring, built on the same [`Connection`] core.
//!
//! Used to dial exchange feeds and by the load generator; the tests use it against
//! `feedrelay echo` and against independent servers. It answers pings by itself and
//! masks what it sends. `wss://` goes through [`Transport`] (rustls, verification on).

use std::cell::RefCell;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use std::time::Instant;

use tokio::time::{timeout_at, Instant as TokioInstant};

use super::ring;
use super::server::seed;
use super::transport::Transport;
use crate::ws::handshake::ClientHandshake;
use crate::ws::{
    CloseCode, Connection, Event, HandshakeError, Limits, MessageKind, OpCode, Role, State, WsError,
};

/// A `ws://` or `wss://` URL, split into what dialling needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// `wss://`.
    pub tls: bool,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port (default 80 or 443).
    pub port: u16,
    /// Path and query, at least `/`.
    pub path_and_query: String,
}

impl WsUrl {
    /// The `Host` header value: the port only when not the scheme's default.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match (self.tls, self.port) {
            (false, 80) | (true, 443) => host,
            (_, p) => format!("{host}:{p}"),
        }
    }
}

impl FromStr for WsUrl {
    type Err = ClientError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| ClientError::Url(format!("{url}: {why}"));
        let (tls, rest) = if let Some(r) = url.strip_prefix("ws://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("wss://") {
            (true, r)
        } else {
            return Err(bad("the scheme must be ws:// or wss://"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_owned()),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            (h, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad("bad port"))?,
            None if tls => 443,
            None => 80,
        };
        Ok(WsUrl {
            tls,
            host: host.to_owned(),
            port,
            path_and_query: path,
        })
    }
}

/// What the client can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL cannot be dialled.
    #[error("bad URL {0}")]
    Url(String),
    /// The TLS trust configuration could not be built.
    #[error("TLS set-up: {0}")]
    TlsSetup(#[from] super::transport::TlsSetupError),
    /// The TLS handshake failed (unknown CA, wrong host name, alert, ...).
    #[error("TLS with {target}: {source}")]
    Tls {
        /// The server.
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
    /// The server refused or botched the opening handshake.
    #[error("handshake with {0}: {1}")]
    Handshake(String, #[source] HandshakeError),
    /// The server broke the protocol; the connection was failed.
    #[error("protocol error: {0}")]
    Protocol(#[from] WsError),
    /// The connection is closed (or closing); nothing more can be sent or received.
    #[error("connection closed")]
    Closed,
}

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
    /// Frame and message limits for the connection.
    pub limits: Limits,
    /// Trust for `wss://` (`None`: the webpki roots).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Connect + TLS + opening handshake must finish within this.
    pub timeout: std::time::Duration,
    /// Socket options.
    pub socket: super::sockopt::SocketOptions,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            headers: Vec::new(),
            limits: Limits::default(),
            tls: None,
            timeout: std::time::Duration::from_secs(10),
            socket: super::sockopt::SocketOptions::default(),
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
    stream: Transport,
    peer: SocketAddr,
    /// Interior mutability so a ping can be sent while a read waits (single-threaded:
    /// never borrowed across an `.await`).
    conn: RefCell<Connection>,
    buf: RefCell<Vec<u8>>,
    out: RefCell<Vec<u8>>,
}

impl WsClient {
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
        let url: WsUrl = url.parse()?;
        let target = format!("{}:{}", url.host, url.port);
        let deadline = TokioInstant::now() + options.timeout;
        match timeout_at(deadline, WsClient::dial(&url, &target, options)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout(target)),
        }
    }

    async fn dial(
        url: &WsUrl,
        target: &str,
        options: &ConnectOptions,
    ) -> Result<WsClient, ClientError> {
        let io = |op, source| ClientError::Io {
            op,
            target: target.to_owned(),
            source,
        };
        let peer = (url.host.as_str(), url.port)
            .to_socket_addrs()
            .map_err(|e| io("resolve", e))?
            .next()
            .ok_or_else(|| io("resolve", std::io::ErrorKind::NotFound.into()))?;
        let tcp = ring::connect_with(peer, &options.socket)
            .await
            .map_err(|e| io("connect to", e))?;
        let stream = if url.tls {
            let config = match &options.tls {
                Some(c) => std::sync::Arc::clone(c),
                None => super::transport::client_config(None)?,
            };
            Transport::tls_client(tcp, config, &url.host)
                .await
                .map_err(|source| ClientError::Tls {
                    target: target.to_owned(),
                    source,
                })?
        } else {
            Transport::plain(tcp)
        };
        let limits = options.limits;
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(&seed().to_ne_bytes());
        nonce[8..].copy_from_slice(&seed().to_ne_bytes());
        let handshake = ClientHandshake::new(nonce);
        let mut out = Vec::with_capacity(4096);
        handshake.write_request(
            &url.host_header(),
            &url.path_and_query,
            &options.headers,
            &mut out,
        );
        let (res, mut out) = stream.write_all(out).await;
        res.map_err(|e| io("write to", e))?;
        let capacity = limits.inline_frame_bytes.max(limits.max_header_bytes);
        let mut buf = Vec::with_capacity(capacity);
        loop {
            match handshake.parse_response(&buf, limits.max_header_bytes) {
                Ok(Some((_, n))) => {
                    buf.drain(..n);
                    break;
                }
                Ok(None) => {}
                Err(e) => return Err(ClientError::Handshake(target.to_owned(), e)),
            }
            let (res, b) = stream.read_append(buf).await;
            buf = b;
            match res {
                Ok(0) => {
                    let e = HandshakeError::MalformedHttp("connection closed during handshake");
                    return Err(ClientError::Handshake(target.to_owned(), e));
                }
                Ok(_) => {}
                Err(e) => return Err(io("read from", e)),
            }
        }
        out.clear();
        Ok(WsClient {
            stream,
            peer,
            conn: RefCell::new(Connection::new(Role::Client, limits, seed())),
            buf: RefCell::new(buf),
            out: RefCell::new(out),
        })
    }

    /// The server's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Sends a whole message.
    pub async fn send(&self, kind: MessageKind, payload: &[u8]) -> Result<(), ClientError> {
        self.send_frame(kind.opcode(), true, payload).await
    }

    /// Sends one frame (for fragmented messages: the message's opcode first, then
    /// [`OpCode::Continuation`], `fin` on the last).
    pub async fn send_frame(
        &self,
        opcode: OpCode,
        fin: bool,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        self.conn
            .borrow_mut()
            .send_frame(opcode, fin, payload, &mut self.out.borrow_mut())
            .map_err(|_| ClientError::Closed)?;
        self.flush().await
    }

    /// Sends a ping. May be called while a [`recv_each`](Self::recv_each) is waiting
    /// (writes are serialised; the read is not disturbed).
    pub async fn ping(&self, payload: &[u8]) -> Result<(), ClientError> {
        self.conn
            .borrow_mut()
            .send_ping(payload, &mut self.out.borrow_mut())
            .map_err(|_| ClientError::Closed)?;
        self.flush().await
    }

    async fn flush(&self) -> Result<(), ClientError> {
        let mut out = std::mem::take(&mut *self.out.borrow_mut());
        self.conn.borrow_mut().poll_transmit(&mut out);
        if out.is_empty() {
            *self.out.borrow_mut() = out;
            return Ok(());
        }
        let (res, out) = self.stream.write_all(out).await;
        // A concurrent writer may have put a buffer back meanwhile: keep the larger.
        let mut slot = self.out.borrow_mut();
        if slot.capacity() < out.capacity() && slot.is_empty() {
            *slot = out;
        }
        res.map_err(|e| ClientError::Io {
            op: "write to",
            target: self.peer.to_string(),
            source: e,
        })
    }

    /// Waits for the next message, ping, pong or close. Pings and the server's close
    /// are answered before this returns. After a close, returns [`ClientError::Closed`].
    ///
    /// Not cancel-safe: the read buffer belongs to the ring while a read is in flight,
    /// so dropping this future (a `timeout`, a `select!` branch) loses the connection's
    /// framing. Stop a client by closing it, or let the server close it.
    pub async fn recv(&mut self) -> Result<Incoming, ClientError> {
        loop {
            if let Some(incoming) = self.next_buffered()? {
                self.flush().await?;
                return Ok(incoming);
            }
            if self.conn.get_mut().state() == State::Closed {
                return Err(ClientError::Closed);
            }
            let deadline = self
                .conn
                .get_mut()
                .poll_timeout()
                .map(TokioInstant::from_std);
            let buf = std::mem::take(self.buf.get_mut());
            let read = self.stream.read_append(buf);
            let (res, buf) = match deadline {
                Some(d) => match timeout_at(d, read).await {
                    Ok(r) => r,
                    Err(_) => {
                        self.conn.get_mut().handle_timeout(Instant::now());
                        return Err(ClientError::Closed);
                    }
                },
                None => read.await,
            };
            *self.buf.get_mut() = buf;
            self.read_result(res)?;
        }
    }

    /// A read's outcome: end of stream is [`ClientError::Closed`].
    fn read_result(&self, res: std::io::Result<usize>) -> Result<(), ClientError> {
        match res {
            Ok(0) => Err(ClientError::Closed),
            Ok(_) => Ok(()),
            Err(e) => Err(ClientError::Io {
                op: "read from",
                target: self.peer.to_string(),
                source: e,
            }),
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
            let mut buf = std::mem::take(&mut *self.buf.borrow_mut());
            let (mut used_total, mut frames, mut close) = (0, 0, None);
            let failed = {
                let mut conn = self.conn.borrow_mut();
                loop {
                    match conn.handle_input(&mut buf[used_total..]) {
                        Ok(Some((event, used))) => {
                            used_total += used;
                            frames += 1;
                            match event {
                                Event::Message { kind, payload } => on_message(kind, payload),
                                Event::Close(c) => {
                                    close = Some(c.map(|(code, r)| (code, r.to_owned())));
                                    break None;
                                }
                                Event::Ping(_) | Event::Pong(_) | Event::Progress => {}
                            }
                        }
                        Ok(None) => break None,
                        Err(e) => break Some(e),
                    }
                }
            };
            buf.drain(..used_total);
            if let Some(e) = failed {
                *self.buf.borrow_mut() = buf;
                let _ = self.flush().await;
                return Err(e.into());
            }
            if frames > 0 {
                *self.buf.borrow_mut() = buf;
                self.flush().await?;
                return Ok(match close {
                    Some(c) => Received::Close(c),
                    None => Received::Frames(frames),
                });
            }
            if self.conn.borrow().state() == State::Closed {
                *self.buf.borrow_mut() = buf;
                return Err(ClientError::Closed);
            }
            let (res, buf) = self.stream.read_append(buf).await;
            *self.buf.borrow_mut() = buf;
            self.read_result(res)?;
        }
    }

    /// The next event already in the buffer, if any, as an owned value.
    fn next_buffered(&mut self) -> Result<Option<Incoming>, ClientError> {
        let (conn, buf) = (self.conn.get_mut(), self.buf.get_mut());
        loop {
            let (incoming, used) = match conn.handle_input(buf) {
                Ok(Some((event, used))) => {
                    let incoming = match event {
                        Event::Message { kind, payload } => {
                            Some(Incoming::Message(kind, payload.to_vec()))
                        }
                        Event::Ping(p) => Some(Incoming::Ping(p.to_vec())),
                        Event::Pong(p) => Some(Incoming::Pong(p.to_vec())),
                        Event::Close(c) => {
                            Some(Incoming::Close(c.map(|(code, r)| (code, r.to_owned()))))
                        }
                        Event::Progress => None,
                    };
                    (incoming, used)
                }
                Ok(None) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            buf.drain(..used);
            if incoming.is_some() {
                return Ok(incoming);
            }
        }
    }

    /// Starts the close handshake and waits for the server's close frame and for it to
    /// close TCP (§7.1.1: the server closes first). Returns the server's close, if any.
    pub async fn close(
        mut self,
        code: CloseCode,
        reason: &str,
    ) -> Result<Option<(CloseCode, String)>, ClientError> {
        self.conn.get_mut().close(code, reason, Instant::now());
        self.flush().await?;
        loop {
            match self.recv().await {
                Ok(Incoming::Close(c)) => {
                    self.wait_for_server_close().await;
                    return Ok(c);
                }
                Ok(_) => {}
                Err(ClientError::Closed) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// After the close handshake: the server closes TCP first; give it a moment.
    async fn wait_for_server_close(&mut self) {
        let deadline = TokioInstant::now() + self.conn.get_mut().limits().close_timeout;
        let buf = std::mem::take(self.buf.get_mut());
        let _ = timeout_at(deadline, self.stream.read_append(buf)).await;
        self.stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u: WsUrl = "ws://127.0.0.1:9001/ws?topics=A,B".parse().unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path_and_query.as_str()),
            (false, "127.0.0.1", 9001, "/ws?topics=A,B")
        );
        assert_eq!(u.host_header(), "127.0.0.1:9001");
        let u: WsUrl = "wss://example.com".parse().unwrap();
        assert_eq!(
            (u.port, u.path_and_query.as_str(), u.host_header().as_str()),
            (443, "/", "example.com")
        );
        let u: WsUrl = "ws://[::1]:8080?x=1".parse().unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path_and_query.as_str()),
            ("::1", 8080, "/?x=1")
        );
        assert_eq!(u.host_header(), "[::1]:8080");
        for bad in ["http://x", "ws://", "ws://h:notaport/", "ws://[::1"] {
            assert!(bad.parse::<WsUrl>().is_err(), "{bad}");
        }
    }
}
