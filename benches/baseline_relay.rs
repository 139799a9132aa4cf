//! The baseline relay: the same client contract as `feedrelay run`, written as a careful
//! engineer would with the usual Rust stack, so that every comparison means something.
//!
//! - tokio's multi-threaded runtime, `--threads N` workers (default: one per CPU the
//!   process may run on), `TCP_NODELAY` on every connection;
//! - tokio-tungstenite with a 16 KiB read buffer (its default is 128 KiB, which it
//!   zero-fills as it grows) and a 64 KiB write buffer that is flushed explicitly;
//! - one `tokio::sync::broadcast` channel for the feed, 64 Ki messages deep, each
//!   message a cheap clone (`Bytes` inside); a subscriber that falls that far behind
//!   loses messages (counted, as feedrelay's `drop` policy counts them);
//! - per subscriber, write coalescing: the first message waits, every message already
//!   in the channel is fed behind it (up to 256), then one flush: under load a
//!   subscriber gets one write for many messages, as feedrelay's batched writes do;
//! - the topic read with `serde_json` into a borrowed struct, not a `Value`.
//!
//! Run: `cargo bench --bench baseline_relay -- --listen 127.0.0.1:9100 [--threads N]`
//! (prints the same listening line as feedrelay). With no arguments (as `cargo test`
//! runs benches) it relays one message through itself and exits, so the suite keeps it
//! working.

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Messages the broadcast channel holds; a subscriber further behind loses messages.
const CAPACITY: usize = 65_536;

/// Messages fed to a subscriber's sink before one flush.
const MAX_BATCH: usize = 256;

type Feed = broadcast::Sender<(Arc<str>, Message)>;

/// Messages lost by subscribers that fell more than [`CAPACITY`] behind.
static LAGGED: AtomicU64 = AtomicU64::new(0);

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 << 10)
        .write_buffer_size(64 << 10)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

#[derive(serde::Deserialize)]
struct Topic<'a> {
    #[serde(borrow)]
    s: Cow<'a, str>,
}

fn topic_of(payload: &[u8]) -> Option<Arc<str>> {
    serde_json::from_slice::<Topic<'_>>(payload)
        .ok()
        .map(|t| Arc::from(t.s.as_ref()))
}

// The handshake callback's error type is tokio-tungstenite's, not ours.
#[allow(clippy::result_large_err)]
async fn serve(stream: TcpStream, feed: Feed) {
    let _ = stream.set_nodelay(true);
    let mut path = String::new();
    let callback = |req: &Request, resp: Response| {
        path = req.uri().to_string();
        Ok(resp)
    };
    let ws = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(ws_config()));
    let Ok(ws) = ws.await else { return };
    let (mut sink, mut source) = ws.split();
    if path.starts_with("/pub") {
        while let Some(Ok(msg)) = source.next().await {
            if let Message::Text(_) | Message::Binary(_) = msg {
                if let Some(topic) = topic_of(msg.clone().into_data().as_ref()) {
                    let _ = feed.send((topic, msg));
                }
            }
        }
        return;
    }
    let Some(query) = path.strip_prefix("/ws?topics=") else {
        return;
    };
    let topics: HashSet<String> = query.split(',').map(str::to_owned).collect();
    let all = topics.contains("*");
    let reply = format!(
        r#"{{"event":"subscribed","topics":{:?}}}"#,
        topics.iter().collect::<Vec<_>>()
    );
    if sink.send(Message::text(reply)).await.is_err() {
        return;
    }
    let wanted = |topic: &str| all || topics.contains(topic);
    let mut rx = feed.subscribe();
    loop {
        let first = tokio::select! {
            biased;
            m = rx.recv() => m,
            incoming = source.next() => match incoming {
                Some(Ok(_)) => continue,
                _ => return,
            },
        };
        let mut next = Some(first);
        let mut fed = 0;
        while let Some(m) = next.take() {
            match m {
                Ok((topic, msg)) => {
                    if wanted(&topic) && sink.feed(msg).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    LAGGED.fetch_add(n, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
            fed += 1;
            if fed < MAX_BATCH {
                next = match rx.try_recv() {
                    Ok(v) => Some(Ok(v)),
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        Some(Err(broadcast::error::RecvError::Lagged(n)))
                    }
                    Err(_) => None,
                };
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}

async fn run(listen: SocketAddr, once: bool) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    println!(
        "baseline relay listening on ws://{local} (tokio multi-thread, tokio-tungstenite 16 KiB reads, broadcast, coalesced writes)"
    );
    let (feed, _) = broadcast::channel(CAPACITY);
    let server = {
        let feed = feed.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, feed.clone()));
            }
        })
    };
    if !once {
        return server.await.map_err(std::io::Error::other);
    }
    self_check(local).await
}

/// One subscriber, one publisher, one message through the relay.
async fn self_check(local: SocketAddr) -> std::io::Result<()> {
    let (mut sub, _) = tokio_tungstenite::connect_async(format!("ws://{local}/ws?topics=T"))
        .await
        .map_err(std::io::Error::other)?;
    let _subscribed = sub.next().await;
    let (mut publ, _) = tokio_tungstenite::connect_async(format!("ws://{local}/pub"))
        .await
        .map_err(std::io::Error::other)?;
    publ.send(Message::text(r#"{"s":"T","seq":0}"#))
        .await
        .map_err(std::io::Error::other)?;
    match sub.next().await {
        Some(Ok(Message::Text(t))) if t.as_str() == r#"{"s":"T","seq":0}"# => {
            println!("baseline relay self-check: ok");
            Ok(())
        }
        other => Err(std::io::Error::other(format!(
            "baseline relay self-check failed: {other:?}"
        ))),
    }
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let threads = match flag(&args, "--threads") {
        Some(n) => n
            .parse()
            .map_err(|e| std::io::Error::other(format!("--threads: {e}")))?,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    let result = match flag(&args, "--listen") {
        Some(addr) => {
            let addr = addr
                .parse()
                .map_err(|e| std::io::Error::other(format!("--listen: {e}")))?;
            rt.block_on(run(addr, false))
        }
        None => rt.block_on(run(
            "127.0.0.1:0".parse().map_err(std::io::Error::other)?,
            true,
        )),
    };
    let lagged = LAGGED.load(Ordering::Relaxed);
    if lagged > 0 {
        eprintln!("baseline relay: {lagged} messages lost by lagging subscribers");
    }
    result
}
