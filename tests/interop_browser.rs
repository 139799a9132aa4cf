//! Interop with a real browser: headless Chromium opens a page that talks to
//! `feedrelay echo` with the browser's own WebSocket and reports back over HTTP.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::Server;

fn chromium() -> PathBuf {
    let path = std::env::var_os("FEEDRELAY_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "no Chromium at {} — run scripts/test.sh, which installs Debian's chromium",
        path.display()
    );
    path
}

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

#[test]
fn chromium_echoes_text_and_binary_and_closes_cleanly() {
    let server = Server::echo(&[]);
    let page = PAGE.replace("ECHO_URL", &server.url());
    let http = TcpListener::bind("127.0.0.1:0").unwrap();
    let page_url = format!("http://{}/", http.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in http.incoming().take(8) {
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
            if let Some(q) = target.strip_prefix("/result?") {
                let _ = tx.send(q.to_owned());
            }
        }
    });
    let profile = std::env::temp_dir().join(format!("feedrelay-chromium-{}", std::process::id()));
    let mut browser = Command::new(chromium())
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
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(&page_url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let result = rx.recv_timeout(Duration::from_secs(60));
    let _ = browser.kill();
    let _ = browser.wait();
    let _ = std::fs::remove_dir_all(&profile);
    let result = result.expect("the page reported within 60 s");
    let decoded = percent_decode(&result);
    println!("chromium reported: {decoded}");
    assert!(decoded.contains(r#""ok":true"#), "{decoded}");
    assert!(
        decoded.contains(r#""code":1000"#) && decoded.contains(r#""clean":true"#),
        "{decoded}"
    );
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
