//! What a burst of subscriber logins (ES256 JWTs) does to the latency of a stream
//! already flowing through the same worker: the measurement behind verifying tokens
//! on helper threads (`tuning/login_burst.sh` runs it against two builds).
//!
//! It writes an ES256 key and a relay config into a temporary directory, starts the
//! relay binary it is given (one worker, pinned where `--relay-cpu` says, this process
//! on `--client-cpu`), and runs a pair: a publisher sending one message every
//! `1e6 / rate` µs on a fixed schedule, a subscriber measuring each message's latency
//! from its scheduled send time (coordinated-omission-correct). After a quiet second,
//! `--logins` subscribers open at once with valid tokens; the pair's latency is
//! reported for the quiet second and for the burst (from its start until every login
//! is answered, plus 100 ms), with the time the burst took.
//!
//! `cargo run --release --example login_burst -- --relay target/release/feedrelay`

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

struct Args {
    relay: PathBuf,
    logins: usize,
    rate: u64,
    relay_cpu: usize,
    client_cpu: usize,
}

fn args() -> Args {
    let mut a = Args {
        relay: PathBuf::from("target/release/feedrelay"),
        logins: 500,
        rate: 2_000,
        relay_cpu: 0,
        client_cpu: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_default();
        match k.as_str() {
            "--relay" => a.relay = v.into(),
            "--logins" => a.logins = v.parse().expect("--logins N"),
            "--rate" => a.rate = v.parse().expect("--rate N"),
            "--relay-cpu" => a.relay_cpu = v.parse().expect("--relay-cpu N"),
            "--client-cpu" => a.client_cpu = v.parse().expect("--client-cpu N"),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn start_relay(a: &Args, dir: &std::path::Path) -> (Child, SocketAddr) {
    let config = dir.join("relay.toml");
    std::fs::write(
        &config,
        format!(
            "[jwt]\nalgorithm = \"ES256\"\nkey_file = \"{}\"\n",
            dir.join("es256.pem").display()
        ),
    )
    .expect("config");
    let mut child = Command::new("taskset")
        .args(["-c", &a.relay_cpu.to_string()])
        .arg(&a.relay)
        .args([
            "run",
            "--workers",
            "1",
            "--listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the relay");
    let mut out = child.stdout.take().expect("stdout");
    let mut text = String::new();
    let mut buf = [0u8; 512];
    let addr = loop {
        let n = out.read(&mut buf).expect("relay output");
        assert!(n > 0, "the relay ended: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        if let Some(a) = text
            .split("ws://")
            .nth(1)
            .and_then(|r| r.split(|c: char| c == '/' || c.is_whitespace()).next())
            .and_then(|a| a.parse().ok())
        {
            break a;
        }
    };
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    (child, addr)
}

fn handshake(addr: SocketAddr, path: &str, token: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .expect("send handshake");
    s
}

fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).expect("read head") == 0 {
            break;
        }
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn masked_text(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x81, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    f.extend_from_slice(payload);
    f
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn main() {
    let a = args();
    let _ = core_affinity::set_for_current(core_affinity::CoreId { id: a.client_cpu });
    let dir = std::env::temp_dir().join(format!("login-burst-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    std::fs::write(dir.join("es256.pem"), key.public_key_pem()).expect("key file");
    let claims = serde_json::json!({"exp": now_ns() / 1_000_000_000 + 3_600, "topics": ["*"]});
    let token = encode(
        &Header::new(Algorithm::ES256),
        &claims,
        &EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).expect("key"),
    )
    .expect("token");
    let (mut relay, addr) = start_relay(&a, &dir);

    let mut sub = handshake(addr, "/ws?topics=P", &token);
    assert!(read_head(&mut sub).starts_with("HTTP/1.1 101"));
    let mut publ = handshake(addr, "/pub", &token);
    assert!(read_head(&mut publ).starts_with("HTTP/1.1 101"));
    std::thread::sleep(Duration::from_millis(200));

    let period = Duration::from_nanos(1_000_000_000 / a.rate);
    let total = Duration::from_secs(3);
    let publisher = std::thread::spawn(move || {
        let start = Instant::now();
        let mut i: u64 = 0;
        while start.elapsed() < total {
            let due = start + period * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let scheduled =
                now_ns() - Instant::now().saturating_duration_since(due).as_nanos() as u64;
            let body = format!(r#"{{"s":"P","t":{scheduled}}}"#);
            publ.write_all(&masked_text(body.as_bytes()))
                .expect("publish");
            i += 1;
        }
        publ
    });
    // Logins at 1 s: all sent at once, then answered.
    let burst = std::thread::spawn({
        let (token, logins) = (token.clone(), a.logins);
        move || {
            std::thread::sleep(Duration::from_secs(1));
            let began = now_ns();
            let mut conns: Vec<TcpStream> = (0..logins)
                .map(|_| handshake(addr, "/ws?topics=Q", &token))
                .collect();
            let ok = conns
                .iter_mut()
                .map(read_head)
                .filter(|h| h.starts_with("HTTP/1.1 101"))
                .count();
            (began, now_ns(), ok, conns)
        }
    });
    let mut quiet = Histogram::<u64>::new(3).expect("histogram");
    let mut during = Histogram::<u64>::new(3).expect("histogram");
    let mut samples: Vec<(u64, u64)> = Vec::new();
    sub.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut buf = vec![0u8; 1 << 16];
    let mut pending = Vec::new();
    let end = Instant::now() + total + Duration::from_millis(300);
    while Instant::now() < end {
        let n = match sub.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(_) => continue,
        };
        let received = now_ns();
        pending.extend_from_slice(&buf[..n]);
        while pending.len() >= 2 {
            let len = (pending[1] & 0x7f) as usize;
            if pending.len() < 2 + len {
                break;
            }
            let body = String::from_utf8_lossy(&pending[2..2 + len]).into_owned();
            pending.drain(..2 + len);
            if let Some(t) = body
                .split("\"t\":")
                .nth(1)
                .and_then(|r| r.trim_end_matches('}').parse::<u64>().ok())
            {
                samples.push((t, received.saturating_sub(t)));
            }
        }
    }
    let _publ = publisher.join().expect("publisher");
    let (began, ended, ok, conns) = burst.join().expect("burst");
    let window_end = ended + 100_000_000;
    for (t, lat) in &samples {
        let us = (lat / 1_000).max(1);
        if *t < began {
            let _ = quiet.record(us);
        } else if *t <= window_end {
            let _ = during.record(us);
        }
    }
    let row = |name: &str, h: &Histogram<u64>| {
        println!(
            "{name:>6}: n {:>5}  p50 {:>6} µs  p99 {:>6} µs  p99.9 {:>6} µs  max {:>6} µs",
            h.len(),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max()
        );
    };
    println!(
        "logins {ok}/{} answered in {:.1} ms",
        a.logins,
        (ended - began) as f64 / 1e6
    );
    row("quiet", &quiet);
    row("burst", &during);
    drop(conns);
    let _ = relay.kill();
    let _ = relay.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
