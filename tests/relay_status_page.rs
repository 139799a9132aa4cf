//! The operator's status page (`/status` on the metrics listener) in a real browser:
//! headless Chromium loads it while a publisher runs; the page shows the worker, the
//! egress hop and the subscriber, its delivered count grows between two loads, and a
//! screenshot is kept at `target/test-artifacts/status-page.png`.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{Raw, Server};

/// Runs headless Chromium on `url` for 3 s of page time with `extra` flags; returns
/// its standard output.
fn chromium_run(url: &str, profile: &Path, extra: &[&str]) -> String {
    let out = Command::new(common::chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=3000",
            "--window-size=1280,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("start chromium");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The page's delivered-messages total, as the rendered DOM carries it.
fn messages_out(dom: &str) -> u64 {
    dom.split("data-messages-out=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the page never rendered /status.json: {dom}"))
}

#[test]
fn the_status_page_shows_live_numbers_in_chromium() {
    let server = Server::relay(&["--workers", "1", "--metrics", "127.0.0.1:0"], None);
    let url = format!(
        "http://{}/status",
        common::printed_addr(&server, "status page on http://")
    );
    let mut sub = Raw::subscribe(server.addr, "*");
    let mut publisher = Raw::publish(server.addr);
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = std::thread::spawn({
        let stop = Arc::clone(&stop);
        move || {
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let m = format!(r#"{{"s":"BTC-USD","seq":{seq}}}"#);
                publisher.send(0x81, m.as_bytes());
                seq += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });
    let reading = std::thread::spawn(move || {
        sub.s
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        while sub.recv_or_timeout().is_some() {}
    });
    // The worker reports once a second: let two reports carry traffic.
    std::thread::sleep(Duration::from_millis(2500));
    let profile = std::env::temp_dir().join(format!("feedrelay-status-{}", std::process::id()));
    let first = chromium_run(&url, &profile, &["--dump-dom"]);
    std::thread::sleep(Duration::from_millis(1500));
    let second = chromium_run(&url, &profile, &["--dump-dom"]);
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    chromium_run(
        &url,
        &profile,
        &[&format!("--screenshot={}", shot.display())],
    );
    stop.store(true, Ordering::Relaxed);
    publishing.join().unwrap();
    reading.join().unwrap();
    let _ = std::fs::remove_dir_all(&profile);

    let (a, b) = (messages_out(&first), messages_out(&second));
    assert!(a > 0, "traffic delivered before the first load: {a}");
    assert!(b > a, "the numbers move: {a} then {b}");
    for dom in [&first, &second] {
        assert!(dom.contains(r#"id="ready" class="ok">ready"#), "{dom}");
        assert!(
            dom.contains("<td>egress</td>"),
            "the egress hop's last minute: {dom}"
        );
        assert!(
            dom.contains("<td>127.0.0.1:"),
            "the subscriber is listed: {dom}"
        );
    }
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot: {} bytes",
        png.len()
    );
}
