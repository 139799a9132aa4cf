//! `feedrelay mock-exchange`: a local stand-in for an exchange's market-data
//! WebSocket, for the tests and the demo (there is no internet here).
//!
//! It speaks a Binance-style protocol: the client sends
//! `{"method":"SUBSCRIBE","params":["btcusdt@trade",..],"id":1}` (`"*"` for every
//! stream), gets `{"result":null,"id":1}`, then receives the trades of what it
//! subscribed to, from a [`market::Market`] that is deterministic in wall-clock time
//! (two processes are redundant A/B lines). It pings every `ping_ms` and drops a client
//! that leaves three pings unanswered. Faults are chosen by flags and hit every
//! connection: drop it, stall it, send garbage or an oversized frame after N messages,
//! or delay the TLS handshake.
//!
//! It runs on plain threads with blocking sockets (one per connection, at most
//! `max_connections`): it is a test peer, not part of the relay's data path, and it
//! uses the same sans-IO [`Connection`] core as the relay.

pub mod certs;
pub mod market;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use market::Market;

use crate::metrics::clock::realtime_ns;

use crate::ws::handshake;
use crate::ws::{CloseCode, Connection, Event, Limits, MessageKind, Role};

/// Faults to inject, on every connection.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Close TCP abruptly (no close frame) after this many trades.
    pub drop_after: Option<u64>,
    /// Stop reading and writing (keep the socket open) after this many trades.
    pub stall_after: Option<u64>,
    /// Write bytes that are not a WebSocket frame after this many trades.
    pub garbage_after: Option<u64>,
    /// Announce a 1 TiB frame after this many trades.
    pub oversized_after: Option<u64>,
    /// Wait this long before the TLS handshake.
    pub slow_tls: Duration,
    /// A quiet market: no more trades after this many (pings and pongs go on).
    pub quiet_after: Option<u64>,
}

/// How the mock exchange runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Server TLS (`None`: plain `ws://`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Symbols traded.
    pub symbols: usize,
    /// Trades per second over all symbols.
    pub rate: u64,
    /// Ping interval.
    pub ping: Duration,
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// A header every client must send (name, value), like an exchange's API key;
    /// without it the handshake is refused with 401.
    pub require_header: Option<(String, String)>,
    /// Faults.
    pub faults: Faults,
}

/// Counters, printed at exit.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Trades sent.
    pub trades: AtomicU64,
    /// Faults injected.
    pub faults: AtomicU64,
    /// Pongs received.
    pub pongs: AtomicU64,
}

/// Accepts on `listener` until `stop`, one thread per connection.
pub fn serve(
    listener: TcpListener,
    options: Arc<Options>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let live = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        let (tcp, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Polled, so a signal can stop it; 1 ms keeps accept latency out of the
                // relay's reconnect figures.
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if live.load(Ordering::Relaxed) >= options.max_connections {
            tracing::warn!(%peer, max = options.max_connections, "over max_connections; closed");
            continue;
        }
        stats.connections.fetch_add(1, Ordering::Relaxed);
        live.fetch_add(1, Ordering::Relaxed);
        let (options, stats, stop, live) = (
            Arc::clone(&options),
            Arc::clone(&stats),
            Arc::clone(&stop),
            Arc::clone(&live),
        );
        let spawned = std::thread::Builder::new()
            .name("mock-exchange-conn".into())
            .spawn(move || {
                match session(tcp, &options, &stats, &stop) {
                    Ok(why) => tracing::info!(%peer, %why, "connection ended"),
                    Err(e) => tracing::info!(%peer, error = %e, "connection failed"),
                }
                live.fetch_sub(1, Ordering::Relaxed);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a connection thread");
        }
    }
    Ok(())
}

/// The byte stream: TCP or TLS over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Most trades sent in one burst (after a pause the stream catches up, bounded).
const MAX_BURST: u64 = 10_000;

/// One connection: handshake, subscriptions, trades, pings, faults. Returns why it
/// ended.
fn session(
    tcp: TcpStream,
    options: &Options,
    stats: &Stats,
    stop: &AtomicBool,
) -> io::Result<String> {
    tcp.set_nodelay(true)?;
    let raw = tcp.try_clone()?;
    let mut stream = match &options.tls {
        None => Stream::Plain(tcp),
        Some(config) => {
            std::thread::sleep(options.faults.slow_tls);
            let conn =
                rustls::ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
            Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
        }
    };
    // Opening handshake, within 5 s.
    raw.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::with_capacity(64 << 10);
    let mut chunk = vec![0u8; 64 << 10];
    let request = loop {
        match handshake::parse_request(&buf, 8192) {
            Ok(Some((req, n))) => {
                if let Some((name, value)) = &options.require_header {
                    if !has_header(&buf[..n], name, value) {
                        let mut out = Vec::new();
                        handshake::write_status(401, "", &format!("{name} required"), &mut out);
                        let _ = stream.write_all(&out);
                        return Ok(format!("refused: no {name} header"));
                    }
                }
                buf.drain(..n);
                break req;
            }
            Ok(None) => {}
            Err(e) => {
                let mut out = Vec::new();
                handshake::write_reject(&e, &mut out);
                let _ = stream.write_all(&out);
                return Ok(format!("bad handshake: {e}"));
            }
        }
        match stream.read(&mut chunk)? {
            0 => return Ok("closed during the handshake".into()),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let mut out = Vec::with_capacity(64 << 10);
    handshake::write_accept(&request, &mut out);
    stream.write_all(&out)?;
    out.clear();

    let market = Market::new(options.symbols, options.rate);
    let mut conn = Connection::new(Role::Server, Limits::default(), crate::io::server::seed());
    let mut subscribed = vec![false; market.symbols()];
    let mut sent = 0u64;
    let mut last_tick = market.tick_at(realtime_ns());
    let mut next_ping = Instant::now() + options.ping;
    let mut unanswered = 0u32;
    let mut text = String::with_capacity(256);
    loop {
        if stop.load(Ordering::Relaxed) {
            conn.close(
                CloseCode::GOING_AWAY,
                "exchange shutting down",
                Instant::now(),
            );
            conn.poll_transmit(&mut out);
            let _ = stream.write_all(&out);
            return Ok("shutdown".into());
        }
        // Whatever the client sent, without waiting (a socket read timeout is rounded
        // to the kernel's tick, several ms; the pacing sleep below is precise).
        raw.set_nonblocking(true)?;
        let read = stream.read(&mut chunk);
        raw.set_nonblocking(false)?;
        match read {
            Ok(0) => return Ok("client closed".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if timed_out(&e) => {}
            Err(e) => return Err(e),
        }
        let mut used = 0;
        loop {
            match conn.handle_input(&mut buf[used..]) {
                Ok(Some((event, n))) => {
                    used += n;
                    match event {
                        Event::Message {
                            kind: MessageKind::Text,
                            payload,
                        } => {
                            let reply = answer(&market, payload, &mut subscribed);
                            conn.send(MessageKind::Text, reply.as_bytes(), &mut out)
                                .map_err(|_| io::Error::other("closing"))?;
                        }
                        Event::Pong(_) => {
                            unanswered = 0;
                            stats.pongs.fetch_add(1, Ordering::Relaxed);
                        }
                        Event::Close(_) => {
                            conn.poll_transmit(&mut out);
                            let _ = stream.write_all(&out);
                            return Ok("client closed the WebSocket".into());
                        }
                        _ => {}
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    conn.poll_transmit(&mut out);
                    let _ = stream.write_all(&out);
                    return Ok(format!("client broke the protocol: {e}"));
                }
            }
        }
        buf.drain(..used);
        conn.poll_transmit(&mut out);

        // Pings.
        let now = Instant::now();
        if now >= next_ping {
            if unanswered >= 3 {
                conn.close(CloseCode::POLICY_VIOLATION, "pong timeout", now);
                conn.poll_transmit(&mut out);
                let _ = stream.write_all(&out);
                return Ok("three pings unanswered".into());
            }
            unanswered += 1;
            next_ping = now + options.ping;
            let _ = conn.send_ping(b"", &mut out);
        }

        // Trades due since the last pass.
        let tick = market.tick_at(realtime_ns());
        let from = last_tick.max(tick.saturating_sub(MAX_BURST)) + 1;
        let quiet = options.faults.quiet_after.is_some_and(|q| sent >= q);
        for k in from..=tick {
            if quiet || !subscribed[market.symbol_of(k)] {
                continue;
            }
            text.clear();
            market.write_trade(k, &mut text);
            let _ = conn.send(MessageKind::Text, text.as_bytes(), &mut out);
            sent += 1;
            stats.trades.fetch_add(1, Ordering::Relaxed);
            if let Some(ended) = inject(options, stats, sent, &mut stream, &raw, &mut out, stop)? {
                return Ok(ended);
            }
        }
        last_tick = tick;
        if !out.is_empty() {
            stream.write_all(&out)?;
            out.clear();
        }
        // Until the next trade is due, at most 1 ms (client requests wait that long).
        let due = market.time_of(tick + 1).saturating_sub(realtime_ns());
        std::thread::sleep(Duration::from_nanos(due.clamp(20_000, 1_000_000)));
    }
}

/// Applies the faults due after the `sent`-th trade. `Some(why)` ends the session.
fn inject(
    options: &Options,
    stats: &Stats,
    sent: u64,
    stream: &mut Stream,
    raw: &TcpStream,
    out: &mut Vec<u8>,
    stop: &AtomicBool,
) -> io::Result<Option<String>> {
    let f = &options.faults;
    if f.drop_after == Some(sent) {
        stats.faults.fetch_add(1, Ordering::Relaxed);
        stream.write_all(out)?;
        let _ = raw.shutdown(std::net::Shutdown::Both);
        return Ok(Some(format!("fault: dropped after {sent} trades")));
    }
    if f.garbage_after == Some(sent) {
        stats.faults.fetch_add(1, Ordering::Relaxed);
        // Reserved bits set, reserved opcode: no valid frame starts like this.
        out.extend_from_slice(&[
            0xF3, 0x7F, 0xFF, 0xFF, b'g', b'a', b'r', b'b', b'a', b'g', b'e',
        ]);
    }
    if f.oversized_after == Some(sent) {
        stats.faults.fetch_add(1, Ordering::Relaxed);
        // 127 = 64-bit length follows: 1 TiB.
        out.extend_from_slice(&[0x82, 127]);
        out.extend_from_slice(&(1u64 << 40).to_be_bytes());
    }
    if f.stall_after == Some(sent) {
        stats.faults.fetch_add(1, Ordering::Relaxed);
        stream.write_all(out)?;
        out.clear();
        // Neither read nor write; notice only the peer leaving (peek sees its FIN).
        raw.set_read_timeout(Some(Duration::from_millis(100)))?;
        let mut probe = [0u8; 1];
        while !stop.load(Ordering::Relaxed) {
            match raw.peek(&mut probe) {
                Ok(0) => break,
                Ok(_) => std::thread::sleep(Duration::from_millis(100)),
                Err(e) if timed_out(&e) => {}
                Err(_) => break,
            }
        }
        return Ok(Some(format!("fault: stalled after {sent} trades")));
    }
    Ok(None)
}

/// Whether the request head carries header `name` with `value`.
fn has_header(head: &[u8], name: &str, value: &str) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    if req.parse(head).is_err() {
        return false;
    }
    req.headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case(name) && h.value == value.as_bytes())
}

/// The reply to a client's request.
fn answer(market: &Market, payload: &[u8], subscribed: &mut [bool]) -> String {
    #[derive(serde::Deserialize)]
    struct Request {
        method: String,
        #[serde(default)]
        params: Vec<String>,
        id: Option<u64>,
    }
    let mut copy = payload.to_vec();
    let req: Request = match simd_json::serde::from_slice(&mut copy) {
        Ok(r) => r,
        Err(_) => return r#"{"error":{"code":-1,"msg":"not a request"},"id":null}"#.into(),
    };
    let id = req.id.map_or("null".to_owned(), |i| i.to_string());
    let on = match req.method.as_str() {
        "SUBSCRIBE" => true,
        "UNSUBSCRIBE" => false,
        _ => return format!(r#"{{"error":{{"code":2,"msg":"unknown method"}},"id":{id}}}"#),
    };
    let mut targets = Vec::new();
    for p in &req.params {
        if p == "*" {
            targets.extend(0..subscribed.len());
        } else if let Some(i) = market.stream_index(p) {
            targets.push(i);
        } else {
            return format!(r#"{{"error":{{"code":3,"msg":"no such stream"}},"id":{id}}}"#);
        }
    }
    for i in targets {
        subscribed[i] = on;
    }
    format!(r#"{{"result":null,"id":{id}}}"#)
}

/// `addr` as a URL for clients.
pub fn url(addr: SocketAddr, tls: bool) -> String {
    format!("{}://{addr}/stream", if tls { "wss" } else { "ws" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_subscriptions() {
        let m = Market::new(3, 10);
        let mut subs = vec![false; 3];
        let r = answer(
            &m,
            br#"{"method":"SUBSCRIBE","params":["ethusdt@trade"],"id":7}"#,
            &mut subs,
        );
        assert_eq!(r, r#"{"result":null,"id":7}"#);
        assert_eq!(subs, [false, true, false]);
        answer(
            &m,
            br#"{"method":"SUBSCRIBE","params":["*"],"id":8}"#,
            &mut subs,
        );
        assert_eq!(subs, [true, true, true]);
        answer(
            &m,
            br#"{"method":"UNSUBSCRIBE","params":["btcusdt@trade"],"id":9}"#,
            &mut subs,
        );
        assert_eq!(subs, [false, true, true]);
        assert!(answer(
            &m,
            br#"{"method":"SUBSCRIBE","params":["nope"],"id":1}"#,
            &mut subs
        )
        .contains("no such stream"));
        assert!(answer(&m, b"garbage", &mut subs).contains("not a request"));
        assert!(answer(&m, br#"{"method":"X","id":2}"#, &mut subs).contains("unknown method"));
    }
}
