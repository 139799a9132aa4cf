//! The client role under the Autobahn|Testsuite: an echo client over `WsClient`, the
//! same client (connection driver, TLS transport, permessage-deflate offer, limits)
//! the relay's feed lines dial exchanges with.
//!
//! `tests/autobahn/run-client.sh` starts the suite's fuzzing server and runs this with
//! `AUTOBAHN_URL` and `AUTOBAHN_AGENT` set: it asks for the number of cases, runs each
//! (every message echoed as it came, text as text, binary as binary, until the server
//! closes), then asks the server to write its report.
//!
//! `cargo run --release --example autobahn_client` (`scripts/autobahn.sh --client`).

use std::time::Duration;

use feedrelay::io::driver::client::{ConnectOptions, Incoming, WsClient};
use feedrelay::io::ring::Ring;
use feedrelay::ws::deflate::ClientOffer;
use feedrelay::ws::{Limits, MessageKind};

/// Runs one case: echoes until the server closes or the connection fails.
async fn run_case(url: &str, options: &ConnectOptions) -> Result<(), String> {
    let mut client = WsClient::connect_with(url, options)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    loop {
        match client.recv().await {
            Ok(Incoming::Message(kind, payload)) => {
                if let Err(e) = client.send(kind, &payload).await {
                    return Err(format!("echo: {e}"));
                }
            }
            Ok(Incoming::Close(_)) => return Ok(()),
            Ok(Incoming::Ping(_) | Incoming::Pong(_)) => {}
            // The fuzzing server sends invalid input on purpose: the client's answer
            // (a close with the right code, or dropping the connection) is what is
            // tested, and the case is over either way.
            Err(e) => return Err(format!("{e}")),
        }
    }
}

/// The text of the first message at `url` (the case count).
async fn first_text(url: &str) -> Result<String, String> {
    let mut client = WsClient::connect_with(url, &ConnectOptions::default())
        .await
        .map_err(|e| format!("connect {url}: {e}"))?;
    loop {
        match client.recv().await {
            Ok(Incoming::Message(MessageKind::Text, m)) => {
                return String::from_utf8(m).map_err(|e| e.to_string())
            }
            Ok(Incoming::Close(_)) => return Err(format!("{url} closed with no message")),
            Ok(_) => {}
            Err(e) => return Err(format!("{url}: {e}")),
        }
    }
}

fn main() -> Result<(), String> {
    let base = std::env::var("AUTOBAHN_URL").map_err(|_| "AUTOBAHN_URL is not set")?;
    let agent = std::env::var("AUTOBAHN_AGENT").unwrap_or_else(|_| "feedrelay".into());
    // The suite's largest messages are 16 MiB (9.x); a feed line's limits are smaller
    // by default and configured the same way.
    let limits = Limits {
        max_frame_bytes: 64 << 20,
        max_message_bytes: 64 << 20,
        max_fragments: 1 << 20,
        ..Limits::default()
    };
    let options = ConnectOptions {
        deflate: Some(ClientOffer::default()),
        limits,
        timeout: Duration::from_secs(30),
        ..ConnectOptions::default()
    };
    let ring = Ring::new().map_err(|e| e.to_string())?;
    ring.block_on(async {
        let count: usize = first_text(&format!("{base}/getCaseCount"))
            .await?
            .trim()
            .parse()
            .map_err(|e| format!("case count: {e}"))?;
        eprintln!("{count} cases");
        for case in 1..=count {
            let url = format!("{base}/runCase?case={case}&agent={agent}");
            if let Err(e) = run_case(&url, &options).await {
                eprintln!("case {case}: {e}");
            }
        }
        let url = format!("{base}/updateReports?agent={agent}");
        let mut client = WsClient::connect_with(&url, &ConnectOptions::default())
            .await
            .map_err(|e| format!("connect {url}: {e}"))?;
        // The server closes once the report is written.
        while !matches!(client.recv().await, Ok(Incoming::Close(_)) | Err(_)) {}
        Ok(())
    })
}
