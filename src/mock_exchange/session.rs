//! One mock-exchange connection: TLS if configured, the opening handshake (401 without
//! the required header), then requests answered, trades paced by the wall clock,
//! pings, and the faults the options ask for.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::market::Market;
use super::options::{Options, Stats};
use crate::io::driver::server::{accept_handshake, ServerConfig};
use crate::io::driver::{Driver, DriverError};
use crate::io::ring::TcpStream;
use crate::io::rt::{self, Either};
use crate::io::shutdown::Shutdown;
use crate::io::transport::Transport;
use crate::metrics::clock::realtime_ns;
use crate::ws::{CloseCode, Event, MessageKind};

/// Most trades sent in one burst (after a pause the stream catches up, bounded).
const MAX_BURST: u64 = 10_000;

/// Where a connection stands between passes (the driver stays apart: a read of it is
/// always in flight while this changes).
struct Conn<'a> {
    market: Market,
    options: &'a Options,
    stats: &'a Stats,
    subscribed: Vec<bool>,
    sent: u64,
    last_tick: u64,
    next_ping: Instant,
    unanswered: u32,
}

/// Serves one connection; returns why it ended.
pub(super) async fn run(
    tcp: TcpStream,
    peer: SocketAddr,
    options: &Options,
    stats: &Stats,
    mut shutdown: Shutdown,
) -> Result<String, DriverError> {
    let _ = tcp.set_nodelay(true);
    let transport = match &options.tls {
        None => Transport::plain(tcp),
        Some(config) => {
            rt::sleep(options.faults.slow_tls).await;
            Transport::tls_server(tcp, std::sync::Arc::clone(config))
                .await
                .map_err(|source| DriverError::Tls {
                    target: peer.to_string(),
                    source,
                })?
        }
    };
    let config = ServerConfig {
        handshake_timeout: Duration::from_secs(5),
        ..ServerConfig::default()
    };
    let limits = config.limits;
    let accepted = accept_handshake(
        transport,
        peer,
        &config,
        |req| match &options.require_header {
            Some((name, value)) if req.header(name) != Some(value.as_str()) => {
                Err((401, format!("{name} required")))
            }
            _ => Ok(limits),
        },
        |_| None,
    )
    .await?;
    let Some((_, driver)) = accepted else {
        return Ok("handshake refused or abandoned".into());
    };
    let market = Market::new(options.symbols, options.rate);
    let mut conn = Conn {
        subscribed: vec![false; market.symbols()],
        sent: 0,
        last_tick: market.tick_at(realtime_ns()),
        market,
        options,
        stats,
        next_ping: Instant::now() + options.ping,
        unanswered: 0,
    };
    conn.serve(&driver, &mut shutdown).await
}

/// What a pass decided.
enum Pass {
    /// Go on.
    Next,
    /// The session ended, for this reason.
    Ended(String),
    /// The stall fault: read and discard until the peer leaves.
    Stall(String),
}

impl Conn<'_> {
    async fn serve(
        &mut self,
        driver: &Driver,
        shutdown: &mut Shutdown,
    ) -> Result<String, DriverError> {
        // One read always in flight, re-armed when it completes.
        let mut read = Box::pin(driver.read());
        loop {
            let mut pass = self.handle_requests(driver).await?;
            if let Pass::Next = pass {
                pass = self.ping(driver).await?;
            }
            if let Pass::Next = pass {
                pass = self.trades(driver).await?;
            }
            match pass {
                Pass::Next => {}
                Pass::Ended(why) => {
                    driver.shutdown().await;
                    let _ = read.await;
                    return Ok(why);
                }
                Pass::Stall(why) => {
                    // Neither answer nor write; notice only the peer leaving.
                    loop {
                        match rt::race(read.as_mut(), shutdown.wait()).await {
                            Either::Left(Ok(_)) => {
                                driver.discard_buffered();
                                read = Box::pin(driver.read());
                            }
                            Either::Left(Err(_)) => return Ok(why),
                            Either::Right(()) => {
                                driver.shutdown().await;
                                let _ = read.await;
                                return Ok(why);
                            }
                        }
                    }
                }
            }
            driver.flush().await?;
            // Until the next trade is due, at most 1 ms (requests wait that long).
            let tick = self.market.tick_at(realtime_ns());
            let due = self.market.time_of(tick + 1).saturating_sub(realtime_ns());
            let pause = Duration::from_nanos(due.clamp(20_000, 1_000_000));
            match rt::race(read.as_mut(), rt::race(rt::sleep(pause), shutdown.wait())).await {
                Either::Left(Ok(_)) => read = Box::pin(driver.read()),
                Either::Left(Err(DriverError::Closed)) => return Ok("client closed".into()),
                Either::Left(Err(e)) => return Err(e),
                Either::Right(Either::Left(())) => {}
                Either::Right(Either::Right(())) => {
                    driver.close(CloseCode::GOING_AWAY, "exchange shutting down");
                    let _ = driver.flush().await;
                    driver.shutdown().await;
                    let _ = read.await;
                    return Ok("shutdown".into());
                }
            }
        }
    }

    /// Answers what the client sent.
    async fn handle_requests(&mut self, driver: &Driver) -> Result<Pass, DriverError> {
        let (market, subscribed) = (&self.market, &mut self.subscribed);
        let (mut pongs, mut closed) = (0u64, false);
        let handled = driver.handle_buffered(|event, reply| match event {
            Event::Message {
                kind: MessageKind::Text,
                payload,
                ..
            } => reply.send(
                MessageKind::Text,
                answer(market, payload, subscribed).as_bytes(),
            ),
            Event::Pong(_) => pongs += 1,
            Event::Close(_) => closed = true,
            _ => {}
        });
        if pongs > 0 {
            self.unanswered = 0;
            self.stats.pongs.fetch_add(pongs, Ordering::Relaxed);
        }
        let ended = match handled {
            Err(e) => format!("client broke the protocol: {e}"),
            Ok(_) if closed => "client closed the WebSocket".to_owned(),
            Ok(_) => return Ok(Pass::Next),
        };
        let _ = driver.flush().await;
        Ok(Pass::Ended(ended))
    }

    /// Pings every interval; three unanswered end the session.
    async fn ping(&mut self, driver: &Driver) -> Result<Pass, DriverError> {
        let now = Instant::now();
        if now < self.next_ping {
            return Ok(Pass::Next);
        }
        if self.unanswered >= 3 {
            driver.close(CloseCode::POLICY_VIOLATION, "pong timeout");
            let _ = driver.flush().await;
            return Ok(Pass::Ended("three pings unanswered".into()));
        }
        self.unanswered += 1;
        self.next_ping = now + self.options.ping;
        driver.ping(b"").await?;
        Ok(Pass::Next)
    }

    /// Queues the trades due since the last pass, injecting faults as they come due.
    async fn trades(&mut self, driver: &Driver) -> Result<Pass, DriverError> {
        let tick = self.market.tick_at(realtime_ns());
        let from = self.last_tick.max(tick.saturating_sub(MAX_BURST)) + 1;
        self.last_tick = tick;
        let quiet_after = self.options.faults.quiet_after;
        let mut text = String::with_capacity(256);
        for k in from..=tick {
            if quiet_after.is_some_and(|q| self.sent >= q)
                || !self.subscribed[self.market.symbol_of(k)]
            {
                continue;
            }
            text.clear();
            self.market.write_trade(k, &mut text);
            let _ = driver.queue(MessageKind::Text, text.as_bytes());
            self.sent += 1;
            self.stats.trades.fetch_add(1, Ordering::Relaxed);
            let pass = self.inject(driver).await?;
            if !matches!(pass, Pass::Next) {
                return Ok(pass);
            }
        }
        Ok(Pass::Next)
    }

    /// Applies the faults due after the `sent`-th trade.
    async fn inject(&mut self, driver: &Driver) -> Result<Pass, DriverError> {
        let f = &self.options.faults;
        let sent = self.sent;
        let hit = [
            f.drop_after,
            f.garbage_after,
            f.oversized_after,
            f.stall_after,
        ]
        .contains(&Some(sent));
        if !hit {
            return Ok(Pass::Next);
        }
        self.stats.faults.fetch_add(1, Ordering::Relaxed);
        driver.flush().await?;
        if f.drop_after == Some(sent) {
            // Abruptly: no close frame, no close_notify.
            driver.transport().shutdown_both_now();
            return Ok(Pass::Ended(format!("fault: dropped after {sent} trades")));
        }
        if f.garbage_after == Some(sent) {
            // Reserved bits set, reserved opcode: no valid frame starts like this.
            let garbage = vec![
                0xF3, 0x7F, 0xFF, 0xFF, b'g', b'a', b'r', b'b', b'a', b'g', b'e',
            ];
            driver.write_raw(garbage).await?;
        }
        if f.oversized_after == Some(sent) {
            // 127 = 64-bit length follows: 1 TiB.
            let mut header = vec![0x82, 127];
            header.extend_from_slice(&(1u64 << 40).to_be_bytes());
            driver.write_raw(header).await?;
        }
        if f.stall_after == Some(sent) {
            return Ok(Pass::Stall(format!("fault: stalled after {sent} trades")));
        }
        Ok(Pass::Next)
    }
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
