//! Interop with a real browser: headless Chromium opens a page that talks to
//! `feedrelay echo` with the browser's own WebSocket and reports back over HTTP.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::Server;

const PAGE: &str = r#"<!doctype html><html><body><script>
const report = (r) => fetch('/result?' + encodeURIComponent(r));
const ws = new WebSocket('ECHO_URL');
ws.binaryType = 'arraybuffer';
const expected = ['hello from chromium κόσμε', 'bin:0,1,2,255', 'big:100000'];
const got = [];
ws.onopen = () => {
  ws.send('hello from chromium κόσμε');
  ws.send(new Uint8Array([0, 1, 2, 255]));
  ws.send('x'.repeat(100000));
};
ws.onmessage = (e) => {
  if (typeof e.data === 'string') got.push(e.data.length === 100000 ? 'big:100000' : e.data);
  else got.push('bin:' + Array.from(new Uint8Array(e.data)).join(','));
  if (got.length === expected.length) ws.close(1000, 'done');
};
ws.onclose = (e) => report(JSON.stringify({ok: JSON.stringify(got) === JSON.stringify(expected), got, code: e.code, clean: e.wasClean}));
ws.onerror = () => report(JSON.stringify({ok: false, error: 'websocket error'}));
</script></body></html>"#;

/// Serves `page` at `/` on loopback, opens it in headless Chromium, and returns what
/// the page reports at `/result?..` (and, if it calls `/ready`, calls `on_ready` first).
fn run_page(page: String, on_ready: impl FnOnce()) -> String {
    run_page_with(page, &[], on_ready)
}

/// [`run_page`] with extra Chromium flags.
fn run_page_with(page: String, flags: &[&str], on_ready: impl FnOnce()) -> String {
    let http = TcpListener::bind("127.0.0.1:0").unwrap();
    let page_url = format!("http://{}/", http.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in http.incoming().take(16) {
            let Ok(mut stream) = stream else { continue };
            let mut line = String::new();
            let _ = BufReader::new(&stream).read_line(&mut line);
            let target = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let body = if target == "/" { page.as_str() } else { "ok" };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            if target == "/ready" {
                let _ = tx.send(None);
            } else if let Some(q) = target.strip_prefix("/result?") {
                let _ = tx.send(Some(q.to_owned()));
            }
        }
    });
    let profile = std::env::temp_dir().join(format!(
        "feedrelay-chromium-{}-{}",
        std::process::id(),
        page_url
            .rsplit(':')
            .next()
            .unwrap_or("0")
            .trim_end_matches('/')
    ));
    let mut browser = Command::new(common::chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(&page_url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let mut on_ready = Some(on_ready);
    let result = loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(None) => {
                if let Some(f) = on_ready.take() {
                    f();
                }
            }
            other => break other,
        }
    };
    let _ = browser.kill();
    let _ = browser.wait();
    let _ = std::fs::remove_dir_all(&profile);
    let result = result
        .expect("the page reported within 60 s")
        .unwrap_or_default();
    let decoded = percent_decode(&result);
    println!("chromium reported: {decoded}");
    decoded
}

#[test]
fn chromium_echoes_text_and_binary_and_closes_cleanly() {
    let server = Server::echo(&[]);
    let decoded = run_page(PAGE.replace("ECHO_URL", &server.url()), || {});
    assert!(decoded.contains(r#""ok":true"#), "{decoded}");
    assert!(
        decoded.contains(r#""code":1000"#) && decoded.contains(r#""clean":true"#),
        "{decoded}"
    );
}

const SUBSCRIBER_PAGE: &str = r#"<!doctype html><html><body><script>
const ws = new WebSocket('RELAY_URL');
const got = [];
ws.onmessage = (e) => {
  const m = JSON.parse(e.data);
  if (m.event === 'subscribed') { fetch('/ready'); return; }
  got.push(m.seq);
  if (got.length === 20) {
    const ok = got.every((s, i) => s === i);
    ws.close(1000);
    fetch('/result?' + encodeURIComponent(JSON.stringify({ok, got})));
  }
};
ws.onerror = () => fetch('/result?' + encodeURIComponent(JSON.stringify({ok: false, error: 'websocket error'})));
</script></body></html>"#;

/// With permessage-deflate on (Chromium offers it; every message is compressed, once,
/// and our publisher compresses what it sends too).
#[test]
fn chromium_subscribes_to_the_relay_and_receives_in_order() {
    let server = Server::relay(
        &["--workers", "2"],
        Some("metrics_on_data_port = true\n[compression]\nenabled = true\nmin_bytes = 0\n"),
    );
    let page =
        SUBSCRIBER_PAGE.replace("RELAY_URL", &format!("ws://{}/ws?topics=TICK", server.addr));
    let addr = server.addr;
    let decoded = run_page(page, move || {
        let options = feedrelay::io::driver::client::ConnectOptions {
            deflate: Some(Default::default()),
            ..Default::default()
        };
        publish_ticks(&format!("ws://{addr}/pub"), options)
    });
    assert!(decoded.contains(r#""ok":true"#), "{decoded}");
    common::wait_metric(addr, None, "feedrelay_deflate_messages_total", |n| n == 20);
}

/// Chromium subscribes over `wss://` to a relay with `tls_cert_file` (the test CA is
/// not in its trust store, so certificate errors are waived for this profile; the
/// Python test checks the certificate properly).
#[test]
fn chromium_subscribes_over_wss() {
    let dir = common::TempDir::new("chromium-wss");
    let certs = common::localhost_certs(&dir.join("certs"));
    let config = dir.join("relay.toml");
    std::fs::write(
        &config,
        format!(
            "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            certs.cert.display(),
            certs.key.display()
        ),
    )
    .unwrap();
    let server = Server::relay(
        &["--workers", "1", "--config", config.to_str().unwrap()],
        None,
    );
    let port = server.addr.port();
    let page = SUBSCRIBER_PAGE.replace(
        "RELAY_URL",
        &format!("wss://localhost:{port}/ws?topics=TICK"),
    );
    let decoded = run_page_with(page, &["--ignore-certificate-errors"], move || {
        let options = feedrelay::io::driver::client::ConnectOptions {
            tls: Some(feedrelay::io::transport::client_config(Some(&certs.ca)).unwrap()),
            ..Default::default()
        };
        publish_ticks(&format!("wss://localhost:{port}/pub"), options)
    });
    assert!(decoded.contains(r#""ok":true"#), "{decoded}");
}

/// Publishes 20 `TICK` messages (`seq` 0..20) to `url` and closes.
fn publish_ticks(url: &str, options: feedrelay::io::driver::client::ConnectOptions) {
    feedrelay::io::ring::Ring::new()
        .unwrap()
        .block_on(async move {
            let publ = feedrelay::io::driver::client::WsClient::connect_with(url, &options)
                .await
                .unwrap();
            for seq in 0..20 {
                let m = format!(r#"{{"s":"TICK","seq":{seq}}}"#);
                publ.send(feedrelay::ws::MessageKind::Text, m.as_bytes())
                    .await
                    .unwrap();
            }
            let _ = publ.close(feedrelay::ws::CloseCode::NORMAL, "").await;
        });
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() + 1 {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..(i + 3).min(s.len())], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
