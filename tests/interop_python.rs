//! Interop with an independent implementation, the Python `websockets` library:
//! its client against `feedrelay echo`, and our client against its server.

mod common;

use common::client::send_text;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{python, script, Server};
use feedrelay::io::driver::client::{Incoming, WsClient};
use feedrelay::io::ring::Ring;
use feedrelay::ws::{CloseCode, Limits, MessageKind, OpCode};

#[test]
fn python_client_against_feedrelay_echo() {
    let server = Server::echo(&["--workers", "2"]);
    let (ok, stdout) = common::python_cases("echo_client.py", [server.url()]);
    assert!(ok, "python websockets client cases failed");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

#[test]
fn feedrelay_client_against_python_server() {
    let mut child = Command::new(python())
        .arg(script("echo_server.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start python websockets server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{line:?}"));
    let url = format!("ws://127.0.0.1:{port}/echo?x=1");

    let ring = Ring::new().expect("io_uring");
    ring.block_on(async {
        let mut c = WsClient::connect(&url, &[("X-Test".into(), "1".into())], Limits::default())
            .await
            .unwrap();
        let big: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        for (kind, payload) in [
            (MessageKind::Text, "hello κόσμε".as_bytes().to_vec()),
            (MessageKind::Binary, vec![0, 1, 255]),
            (MessageKind::Text, vec![]),
            (MessageKind::Binary, big),
        ] {
            c.send(kind, &payload).await.unwrap();
            assert_eq!(c.recv().await.unwrap(), Incoming::Message(kind, payload));
        }
        c.send_frame(OpCode::Text, false, b"frag").await.unwrap();
        c.send_frame(OpCode::Continuation, true, b"mented")
            .await
            .unwrap();
        assert_eq!(
            c.recv().await.unwrap(),
            Incoming::Message(MessageKind::Text, b"fragmented".to_vec())
        );
        c.ping(b"p1").await.unwrap();
        assert_eq!(c.recv().await.unwrap(), Incoming::Pong(b"p1".to_vec()));
        // Client-initiated close: the server answers with our code.
        let got = c.close(CloseCode::NORMAL, "done").await.unwrap();
        assert_eq!(got.map(|(code, _)| code), Some(CloseCode::NORMAL));

        // Server-initiated close: we answer, and see its code and reason.
        let mut c = WsClient::connect(&url, &[], Limits::default())
            .await
            .unwrap();
        send_text(&c, "close:4001").await;
        assert_eq!(
            c.recv().await.unwrap(),
            Incoming::Close(Some((CloseCode(4001), "server closes".into())))
        );
        assert!(c.recv().await.is_err(), "nothing after close");
    });
    drop(child.stdin.take());
    let _ = child.wait();
}

#[test]
fn python_publisher_and_subscribers_through_the_relay() {
    let server = Server::relay(&["--workers", "2"], None);
    common::python_cases_ok(&server, "relay_pubsub.py");
}

/// permessage-deflate against an independent implementation, both ways: Python
/// publishers compress with context takeover, the relay inflates; the relay's shared
/// compressed frames are inflated by Python subscribers.
#[test]
fn python_clients_relay_compressed_messages() {
    let server = Server::relay(
        &["--workers", "2"],
        Some("max_message_bytes = 1048576\nmax_frame_bytes = 1048576\n[compression]\nenabled = true\n"),
    );
    let stdout = common::python_cases_ok(&server, "relay_deflate.py");
    assert!(stdout.contains("4 passed, 0 failed"), "{stdout}");
}

#[test]
fn python_clients_negotiate_subprotocols() {
    let server = Server::relay(
        &["--workers", "1"],
        Some("subprotocols = [\"feedrelay.v1\", \"json\"]\n"),
    );
    let stdout = common::python_cases_ok(&server, "relay_subprotocols.py");
    assert!(stdout.contains("3 passed, 0 failed"), "{stdout}");
}
