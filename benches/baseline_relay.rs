//! The baseline relay: the same client contract as `feedrelay run`, written the way most
//! Rust teams would — tokio's multi-threaded runtime, `tokio-tungstenite`, one
//! `tokio::sync::broadcast` channel for every message, `serde_json` for the topic. Every
//! feedrelay latency claim is compared against this, in the same run.
//!
//! Run: `cargo bench --bench baseline_relay -- --listen 127.0.0.1:9100` (prints the
//! same listening line as feedrelay). With no arguments (as `cargo test` runs benches)
//! it relays one message through itself and exits, so the suite keeps it working.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

/// Messages the broadcast channel holds; a subscriber further behind loses messages
/// (counted, as feedrelay's `drop` policy counts them).
const CAPACITY: usize = 4096;

type Feed = broadcast::Sender<(Arc<str>, Message)>;

fn topic_of(payload: &[u8]) -> Option<Arc<str>> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    v.get("s")?.as_str().map(Arc::from)
}

// The handshake callback's error type is tokio-tungstenite's, not ours.
#[allow(clippy::result_large_err)]
async fn serve(stream: TcpStream, feed: Feed) {
    let _ = stream.set_nodelay(true);
    let mut path = String::new();
    let ws = tokio_tungstenite::accept_hdr_async(stream, |req: &Request, resp: Response| {
        path = req.uri().to_string();
        Ok(resp)
    })
    .await;
    let Ok(ws) = ws else { return };
    let (mut sink, mut source) = ws.split();
    if path.starts_with("/pub") {
        while let Some(Ok(msg)) = source.next().await {
            if let Message::Text(_) | Message::Binary(_) = msg {
                if let Some(topic) = topic_of(&msg.clone().into_data()) {
                    let _ = feed.send((topic, msg));
                }
            }
        }
    } else if let Some(query) = path.strip_prefix("/ws?topics=") {
        let topics: HashSet<String> = query.split(',').map(str::to_owned).collect();
        let all = topics.contains("*");
        let reply = format!(
            r#"{{"event":"subscribed","topics":{:?}}}"#,
            topics.iter().collect::<Vec<_>>()
        );
        if sink.send(Message::text(reply)).await.is_err() {
            return;
        }
        let mut rx = feed.subscribe();
        loop {
            tokio::select! {
                m = rx.recv() => match m {
                    Ok((topic, msg)) => {
                        if (all || topics.contains(&*topic)) && sink.send(msg).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                incoming = source.next() => if !matches!(incoming, Some(Ok(_))) { return },
            }
        }
    }
}

async fn run(listen: SocketAddr, once: bool) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    println!("baseline relay listening on ws://{local} (tokio multi-thread, tokio-tungstenite, broadcast)");
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
    // Self-check: one subscriber, one publisher, one message.
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

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let listen = args
        .iter()
        .position(|a| a == "--listen")
        .and_then(|i| args.get(i + 1));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match listen {
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
    }
}
