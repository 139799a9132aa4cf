//! The relay's own listener over TLS (`tls_cert_file`, `tls_key_file`): our client
//! and Python's `ssl` (TLS 1.2 and 1.3) relay through it; a client that stalls in the
//! TLS handshake is cut at the handshake timeout; SIGHUP swaps the certificate without
//! dropping connections, and a bad new certificate leaves the old one in force.

mod common;

use common::client::{next_text, send_text};
use std::path::Path;
use std::time::Duration;

use common::{Server, TempDir};
use feedrelay::io::driver::client::{ConnectOptions, Incoming, WsClient};
use feedrelay::io::ring::Ring;
use feedrelay::io::transport::client_config;
use feedrelay::ws::MessageKind;

/// A relay on `wss://` with the certificate in `dir` (made there now).
fn tls_relay(dir: &TempDir, extra: &str) -> (Server, std::path::PathBuf) {
    let certs = common::localhost_certs(&dir.join("certs"));
    let config = dir.join("relay.toml");
    std::fs::write(
        &config,
        format!("tls_cert_file = \"certs/cert.pem\"\ntls_key_file = \"certs/key.pem\"\n{extra}"),
    )
    .unwrap();
    let server = Server::relay(
        &["--workers", "1", "--config", config.to_str().unwrap()],
        None,
    );
    (server, certs.ca)
}

fn options(ca: &Path) -> ConnectOptions {
    ConnectOptions {
        tls: Some(client_config(Some(ca)).unwrap()),
        timeout: Duration::from_secs(5),
        ..ConnectOptions::default()
    }
}

async fn subscribed(url: &str, ca: &Path) -> WsClient {
    let mut c = WsClient::connect_with(url, &options(ca)).await.unwrap();
    match c.recv().await.unwrap() {
        Incoming::Message(_, m) => assert!(String::from_utf8_lossy(&m).contains("subscribed")),
        other => panic!("{other:?}"),
    }
    c
}

#[test]
fn our_client_relays_over_wss_and_plain_ws_is_refused() {
    let dir = TempDir::new("tls-relay");
    let (server, ca) = tls_relay(&dir, "");
    let base = format!("wss://localhost:{}", server.addr.port());
    Ring::new().unwrap().block_on(async {
        let mut sub = subscribed(&format!("{base}/ws?topics=T"), &ca).await;
        let publ = WsClient::connect_with(&format!("{base}/pub"), &options(&ca))
            .await
            .unwrap();
        // Sizes around a TLS record's 16 KiB, so batches are gathered into records,
        // cut between them, and large frames written on their own, all in order
        // (2.6 MB in all: within the subscriber's 4 MiB queue, so nothing is dropped).
        let sizes = [10, 300, 5_000, 16_300, 16_384, 40_000, 3];
        let sent: Vec<String> = (0..140)
            .map(|n| {
                format!(
                    r#"{{"s":"T","n":{n},"pad":"{}"}}"#,
                    "x".repeat(sizes[n % 7])
                )
            })
            .collect();
        for m in &sent {
            publ.send(MessageKind::Text, m.as_bytes()).await.unwrap();
        }
        for m in &sent {
            assert_eq!(&next_text(&mut sub).await, m);
        }
        // A plain WebSocket handshake on the TLS port is not a TLS ClientHello.
        let plain = WsClient::connect_with(
            &format!("ws://127.0.0.1:{}/ws?topics=T", server.addr.port()),
            &ConnectOptions {
                timeout: Duration::from_secs(5),
                ..ConnectOptions::default()
            },
        )
        .await;
        assert!(plain.is_err(), "plain ws:// on a wss:// listener");
    });
}

#[test]
fn python_ssl_clients_relay_over_tls_1_2_and_1_3() {
    let dir = TempDir::new("tls-python");
    let (server, ca) = tls_relay(&dir, "");
    let url = format!("wss://localhost:{}/", server.addr.port());
    let (ok, stdout) = common::python_cases("relay_wss.py", [url.as_ref(), ca.as_os_str()]);
    assert!(ok, "python wss cases failed");
    assert!(
        stdout.contains("TLSv1.2") && stdout.contains("TLSv1.3"),
        "{stdout}"
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

#[test]
fn a_client_stalled_in_the_tls_handshake_is_cut() {
    let dir = TempDir::new("tls-stall");
    let (server, ca) = tls_relay(&dir, "handshake_timeout_ms = 500\n");
    let mut stalled = std::net::TcpStream::connect(server.addr).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let n = std::io::Read::read(&mut stalled, &mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed without a byte");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Everyone else is served meanwhile.
    let base = format!("wss://localhost:{}", server.addr.port());
    Ring::new().unwrap().block_on(async {
        subscribed(&format!("{base}/ws?topics=T"), &ca).await;
    });
}

/// The TLS handshake and the WebSocket handshake after it share one
/// `handshake_timeout_ms`: a client slow in each, within the timeout in each but not in
/// both, is cut when the one deadline passes.
#[test]
fn one_timeout_bounds_the_tls_and_websocket_handshakes_together() {
    let dir = TempDir::new("tls-slow-both");
    let (server, ca) = tls_relay(&dir, "handshake_timeout_ms = 1000\n");
    let mut tcp = std::net::TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = std::time::Instant::now();
    std::thread::sleep(Duration::from_millis(600));
    let config = feedrelay::io::transport::client_config(Some(&ca)).unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = rustls::ClientConnection::new(config, name).unwrap();
    while tls.is_handshaking() {
        tls.complete_io(&mut tcp)
            .expect("TLS within the first 600 ms");
    }
    std::thread::sleep(Duration::from_millis(600));
    let request = "GET /ws?topics=T HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let mut stream = rustls::Stream::new(&mut tls, &mut tcp);
    let _ = std::io::Write::write_all(&mut stream, request.as_bytes());
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        !answer.contains("101"),
        "upgraded after {:?}: {answer}",
        started.elapsed()
    );
}

#[test]
fn sighup_swaps_the_certificate_and_keeps_connections() {
    let dir = TempDir::new("tls-reload");
    let (server, old_ca) = tls_relay(&dir, "");
    let base = format!("wss://localhost:{}", server.addr.port());
    Ring::new().unwrap().block_on(async {
        let mut held = subscribed(&format!("{base}/ws?topics=T"), &old_ca).await;
        // A new CA and certificate in the same files, then SIGHUP.
        let moved = common::localhost_certs(&dir.join("next"));
        std::fs::copy(&moved.cert, dir.join("certs/cert.pem")).unwrap();
        std::fs::copy(&moved.key, dir.join("certs/key.pem")).unwrap();
        server.hangup();
        assert!(server.wait_for_log("reloaded on SIGHUP", Duration::from_secs(5)));
        let mut fresh = subscribed(&format!("{base}/ws?topics=T"), &moved.ca).await;
        let stale = WsClient::connect_with(&format!("{base}/ws?topics=T"), &options(&old_ca)).await;
        assert!(stale.is_err(), "the old certificate is gone");
        // A broken certificate: the reload fails and the one in force stays.
        std::fs::write(dir.join("certs/cert.pem"), "not a certificate").unwrap();
        server.hangup();
        assert!(server.wait_for_log("reload on SIGHUP failed", Duration::from_secs(5)));
        subscribed(&format!("{base}/ws?topics=T"), &moved.ca).await;
        // The connection made before both reloads still gets data.
        let publ = WsClient::connect_with(&format!("{base}/pub"), &options(&moved.ca))
            .await
            .unwrap();
        send_text(&publ, r#"{"s":"T","n":2}"#).await;
        assert_eq!(next_text(&mut held).await, r#"{"s":"T","n":2}"#);
        assert_eq!(next_text(&mut fresh).await, r#"{"s":"T","n":2}"#);
    });
}

#[test]
fn certificate_and_key_are_checked_at_start() {
    let dir = TempDir::new("tls-bad");
    common::localhost_certs(&dir.join("certs"));
    for (toml, want) in [
        ("tls_cert_file = \"certs/cert.pem\"\n", "together"),
        (
            "tls_cert_file = \"certs/missing.pem\"\ntls_key_file = \"certs/key.pem\"\n",
            "missing.pem",
        ),
        (
            "tls_cert_file = \"certs/cert.pem\"\ntls_key_file = \"certs/cert.pem\"\n",
            "cert.pem",
        ),
    ] {
        let config = dir.join("relay.toml");
        std::fs::write(&config, toml).unwrap();
        let (code, err) = common::run_with_config(&config);
        assert_eq!(code, Some(2), "{toml}: {err}");
        assert!(err.contains(want), "{toml}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
}
