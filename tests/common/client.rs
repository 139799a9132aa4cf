//! Our own client (`io::driver::client::WsClient`) as the tests drive it: the next
//! text message, a text message sent, each failing the test with what it was doing.

use std::time::Duration;

use feedrelay::io::driver::client::{Incoming, WsClient};
use feedrelay::ws::MessageKind;

/// The next data message as text, answering pings on the way; panics on a close, an
/// error, or nothing within 10 s.
pub async fn next_text(c: &mut WsClient) -> String {
    loop {
        match feedrelay::io::rt::timeout(Duration::from_secs(10), c.recv()).await {
            Ok(Ok(Incoming::Message(_, p))) => return String::from_utf8(p).unwrap(),
            Ok(Ok(Incoming::Ping(_) | Incoming::Pong(_))) => {}
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// Sends `text` as one text message; panics (naming it) when the send fails.
pub async fn send_text(c: &WsClient, text: &str) {
    if let Err(e) = c.send(MessageKind::Text, text.as_bytes()).await {
        panic!("sending {text:?}: {e}");
    }
}
