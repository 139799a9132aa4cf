//! Shared by the integration tests: start `feedrelay` as a child process on a port the
//! OS picks, find the Python interpreter that `scripts/test.sh` set up, and speak raw
//! WebSocket frames over a blocking socket (independent of our own client).
#![allow(dead_code)]

pub mod admin;
pub mod client;
pub mod nats;
pub mod procinfo;

// Not every test uses every helper.
#[allow(unused_imports)]
pub use admin::{http_get, http_get_from, metric, subscribers_listing, wait_metric};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `feedrelay` child, stopped with SIGTERM when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// The temporary config file, removed on drop.
    config: Option<PathBuf>,
    stdout: std::sync::Arc<std::sync::Mutex<String>>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Server {
    /// `feedrelay echo --listen 127.0.0.1:0` plus `args`; waits for its listening line.
    pub fn echo(args: &[&str]) -> Server {
        Server::start(&["echo", "--listen", "127.0.0.1:0"], args)
    }

    /// `feedrelay run --listen 127.0.0.1:0` plus `args` (and `--config` with `toml`
    /// written to a temporary file, if given).
    pub fn relay(args: &[&str], toml: Option<&str>) -> Server {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        if let Some(t) = toml {
            let path = std::env::temp_dir().join(format!(
                "feedrelay-test-{}-{}.toml",
                std::process::id(),
                COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            std::fs::write(&path, t).unwrap();
            all.push("--config".into());
            all.push(path.display().to_string());
        }
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        // `--listen` in `args` replaces the default loopback address.
        let base: &[&str] = if args.contains(&"--listen") {
            &["run"]
        } else {
            &["run", "--listen", "127.0.0.1:0"]
        };
        let mut server = Server::start(base, &refs);
        server.config = toml.is_some().then(|| PathBuf::from(&all[all.len() - 1]));
        server
    }

    /// `feedrelay mock-exchange` plus `args` (`--listen` defaults to 127.0.0.1:0).
    pub fn mock_exchange(args: &[&str]) -> Server {
        if args.contains(&"--listen") {
            Server::start(&["mock-exchange"], args)
        } else {
            Server::start(&["mock-exchange", "--listen", "127.0.0.1:0"], args)
        }
    }

    fn start(base: &[&str], args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_feedrelay"))
            .args(base)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("NO_COLOR", "1")
            .spawn()
            .expect("spawn feedrelay");
        // Keep stderr (the log) for the test to read, and pass it on for `--nocapture`.
        let errors = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let err_sink = std::sync::Arc::clone(&errors);
        let mut err_reader = BufReader::new(child.stderr.take().expect("stderr"));
        std::thread::spawn(move || {
            let mut l = String::new();
            while err_reader.read_line(&mut l).map(|n| n > 0).unwrap_or(false) {
                eprint!("{l}");
                if let Ok(mut s) = err_sink.lock() {
                    s.push_str(&l);
                }
                l.clear();
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line).expect("read listening line");
        // Keep reading stdout in the background so the summary at exit can be checked.
        let rest = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = std::sync::Arc::clone(&rest);
        std::thread::spawn(move || {
            let mut l = String::new();
            while reader.read_line(&mut l).map(|n| n > 0).unwrap_or(false) {
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&l);
                }
                l.clear();
            }
        });
        let addr = line
            .split("://")
            .nth(1)
            .and_then(|s| s.split(['/', ' ']).next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Server {
            child,
            addr,
            config: None,
            stdout: rest,
            stderr: errors,
        }
    }

    /// What the server logged so far (stderr).
    pub fn log(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits up to `within` for the log to contain `text`.
    pub fn wait_for_log(&self, text: &str, within: Duration) -> bool {
        let end = std::time::Instant::now() + within;
        while std::time::Instant::now() < end {
            if self.log().contains(text) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// What the server printed after its listening line (complete once it exited).
    pub fn output(&self) -> String {
        self.stdout.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The config file it was started with (by [`relay`](Server::relay)), if any.
    pub fn config_file(&self) -> Option<&std::path::Path> {
        self.config.as_deref()
    }

    /// Sends SIGHUP (the relay re-reads its config file).
    pub fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let status = self.terminate_inner();
        // Let the stdout reader catch the last lines.
        std::thread::sleep(Duration::from_millis(50));
        status
    }

    fn terminate_inner(&mut self) -> std::process::ExitStatus {
        // SAFETY: not needed; kill(2) through the command line keeps tests free of unsafe.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        // What it still holds, before the kill takes it away.
        let state = procinfo::describe(self.child.id());
        let _ = self.child.kill();
        panic!(
            "feedrelay did not exit within 5 s of SIGTERM; its threads and sockets then:\n{state}"
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(p) = &self.config {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A fresh directory under the system temp dir, removed (with its contents) on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("feedrelay-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `feedrelay ARGS`, run to its end.
pub fn feedrelay<S: AsRef<std::ffi::OsStr>>(
    args: impl IntoIterator<Item = S>,
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_feedrelay"))
        .args(args)
        .output()
        .expect("run feedrelay")
}

/// `feedrelay run --config CONFIG` run to its end (a config it refuses): the exit code
/// and what it wrote to stderr.
pub fn run_with_config(config: &std::path::Path) -> (Option<i32>, String) {
    let out = feedrelay([
        std::ffi::OsStr::new("run"),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a Python case script (`tests/python/NAME`) with `args`, echoing its output;
/// returns whether it exited 0, and its stdout (a closing `N passed, M failed` line).
pub fn python_cases<S: AsRef<std::ffi::OsStr>>(
    name: &str,
    args: impl IntoIterator<Item = S>,
) -> (bool, String) {
    let out = Command::new(python())
        .arg(script(name))
        .args(args)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    (out.status.success(), stdout)
}

/// Runs the Python case script `name` against the relay `server` (its `ws://HOST:PORT/`
/// as the argument) and fails unless every case passed; returns what it printed.
pub fn python_cases_ok(server: &Server, name: &str) -> String {
    let (ok, stdout) = python_cases(name, [format!("ws://{}/", server.addr)]);
    assert!(ok, "python cases of {name} failed");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    stdout
}

/// What a finished `feedrelay` command printed on stdout; fails (showing stdout and
/// stderr) unless it exited 0.
pub fn succeeded(out: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// A self-signed test CA and a certificate for 127.0.0.1 and localhost, written into
/// `dir` (`ca.pem`, `cert.pem`, `key.pem`).
pub fn localhost_certs(dir: &std::path::Path) -> feedrelay::mock_exchange::certs::CertFiles {
    feedrelay::mock_exchange::certs::write_self_signed(
        dir,
        &["127.0.0.1".into(), "localhost".into()],
    )
    .expect("test certificates")
}

/// A port no one listens on now (the OS picked it; free again once this returns).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// A peer program from Debian's package `package` that `scripts/test.sh` installs:
/// `$env` if set, else `name` on the PATH or in /usr/sbin. Fails, saying how to get it,
/// if absent: an interop test that cannot find its peer must not pass in silence.
pub fn debian_peer(env: &str, name: &str, package: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let dirs = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    dirs.into_iter()
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} not found: set {env} or run scripts/test.sh, \
                 which installs Debian's {package}"
            )
        })
}

/// The Python with `websockets` that `scripts/test.sh` installs. Fails loudly if absent:
/// an interop test that cannot find its peer must not pass in silence.
pub fn python() -> PathBuf {
    let path = std::env::var_os("FEEDRELAY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    assert!(
        path.exists(),
        "no Python interpreter at {} — run scripts/test.sh, which creates .venv with websockets",
        path.display()
    );
    path
}

pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

/// A WebSocket client that writes frames byte for byte as the test says.
pub struct Raw {
    pub s: TcpStream,
    buf: Vec<u8>,
    timeout_is_eof: bool,
}

pub const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

impl Raw {
    /// Connects, sends the opening handshake for `path` and asserts the 101.
    fn upgrade(addr: SocketAddr, path: &str) -> (Raw, String) {
        Raw::upgrade_from(addr, path, None)
    }

    /// [`upgrade`](Raw::upgrade) from a source address of our choosing (any of
    /// 127.0.0.0/8 is this host's).
    fn upgrade_from(
        addr: SocketAddr,
        path: &str,
        source: Option<std::net::IpAddr>,
    ) -> (Raw, String) {
        let mut raw = match source {
            Some(ip) => Raw::tcp_from(addr, ip),
            None => Raw::tcp(addr),
        };
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        raw.send_bytes(req.as_bytes());
        let head = raw.read_http_head();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        (raw, head)
    }

    /// Connects and sends an opening handshake for `path` with `extra` header lines
    /// (each ending in CRLF); returns the connection and the response head, whatever
    /// its status.
    pub fn handshake(addr: SocketAddr, path: &str, extra: &str) -> (Raw, String) {
        let mut raw = Raw::tcp(addr);
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        );
        raw.send_bytes(req.as_bytes());
        let head = raw.read_http_head();
        (raw, head)
    }

    /// Connects and completes the handshake (asserting the 101 and the accept key).
    pub fn connect(addr: SocketAddr) -> Raw {
        let (raw, head) = Raw::upgrade(addr, "/raw");
        assert!(
            head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "{head}"
        );
        raw
    }

    /// A raw relay publisher (`/pub`), handshake done.
    pub fn publish(addr: SocketAddr) -> Raw {
        Raw::upgrade(addr, "/pub").0
    }

    /// [`publish`](Raw::publish) from a source address of our choosing.
    pub fn publish_from(addr: SocketAddr, source: std::net::IpAddr) -> Raw {
        Raw::upgrade_from(addr, "/pub", Some(source)).0
    }

    /// A raw relay subscriber to `topics`, handshake done and `subscribed` reply read.
    /// Messages already flowing can arrive before the reply (the subscriber's own worker
    /// routes to it at once; the reply waits for every worker): those are skipped.
    pub fn subscribe(addr: SocketAddr, topics: &str) -> Raw {
        Raw::subscribe_from(addr, topics, None)
    }

    /// [`subscribe`](Raw::subscribe) from a source address of our choosing.
    pub fn subscribe_from(addr: SocketAddr, topics: &str, source: Option<std::net::IpAddr>) -> Raw {
        let (mut raw, _) = Raw::upgrade_from(addr, &format!("/ws?topics={topics}"), source);
        for _ in 0..100_000 {
            let (_, reply) = raw.recv().expect("subscribed reply");
            if String::from_utf8_lossy(&reply).contains("\"event\":\"subscribed\"") {
                return raw;
            }
        }
        panic!("no subscribed reply");
    }

    /// A TCP connection from `source` (bound before connecting).
    pub fn tcp_from(addr: SocketAddr, source: std::net::IpAddr) -> Raw {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )
        .unwrap();
        socket.bind(&SocketAddr::new(source, 0).into()).unwrap();
        socket.connect(&addr.into()).unwrap();
        let s: TcpStream = socket.into();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        Raw {
            s,
            buf: Vec::new(),
            timeout_is_eof: false,
        }
    }

    pub fn tcp(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        Raw {
            s,
            buf: Vec::new(),
            timeout_is_eof: false,
        }
    }

    /// Reads an HTTP response head (and leaves what follows in the buffer).
    pub fn read_http_head(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..i + 4).collect();
                return String::from_utf8_lossy(&head).into_owned();
            }
            assert!(self.fill() > 0, "connection closed before the HTTP head");
        }
    }

    /// Reads the rest of the stream until EOF (bounded by the read timeout).
    pub fn read_to_end(&mut self) -> Vec<u8> {
        while self.fill() > 0 {}
        std::mem::take(&mut self.buf)
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 65536];
        let read = loop {
            match self.s.read(&mut chunk) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        match read {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Err(e)
                if self.timeout_is_eof
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
            {
                0
            }
            Err(e) => panic!("read: {e}"),
        }
    }

    /// A whole frame with any first byte, masked with [`KEY`] or not.
    pub fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
        let mut out = vec![first];
        let m = if masked { 0x80 } else { 0 };
        match payload.len() {
            n @ 0..=125 => out.push(m | n as u8),
            n @ 126..=0xffff => {
                out.push(m | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(m | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            out.extend_from_slice(&KEY);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
        } else {
            out.extend_from_slice(payload);
        }
        out
    }

    pub fn send(&mut self, first: u8, payload: &[u8]) {
        self.s.write_all(&Raw::frame(first, payload, true)).unwrap();
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    /// Reads until the peer's close frame (10 s at most): its code and reason.
    pub fn close_frame(&mut self) -> (u16, String) {
        self.s
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        loop {
            match self.recv() {
                Some((0x88, p)) if p.len() >= 2 => {
                    let code = u16::from_be_bytes([p[0], p[1]]);
                    return (code, String::from_utf8_lossy(&p[2..]).into_owned());
                }
                Some(_) => continue,
                None => panic!("no close frame"),
            }
        }
    }

    /// The next frame, or None at EOF or when the read timeout passes first.
    pub fn recv_or_timeout(&mut self) -> Option<(u8, Vec<u8>)> {
        self.timeout_is_eof = true;
        let r = self.recv();
        self.timeout_is_eof = false;
        r
    }

    /// The next frame from the server as (first byte, payload); None at EOF.
    pub fn recv(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 2 {
                assert_eq!(self.buf[1] & 0x80, 0, "server frames must not be masked");
                let (len, at) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&self.buf[2..10]);
                        (u64::from_be_bytes(b) as usize, 10)
                    }
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && self.buf.len() >= at + len {
                    let first = self.buf[0];
                    let payload = self.buf[at..at + len].to_vec();
                    self.buf.drain(..at + len);
                    return Some((first, payload));
                }
            }
            if self.fill() == 0 {
                return None;
            }
        }
    }

    /// Expects a close frame with `code` next (after any frames `skip` allows), then
    /// the server closing TCP.
    pub fn expect_close(&mut self, code: Option<u16>) {
        let (first, payload) = self.recv().expect("a close frame, got EOF");
        assert_eq!(
            first, 0x88,
            "expected close, got frame {first:#x} {payload:?}"
        );
        let got = (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
        assert_eq!(got, code, "close payload {payload:?}");
        assert_eq!(
            self.recv(),
            None,
            "the server must close TCP after the close frame"
        );
    }
}

/// Publishes `msg` on `publisher` every 100 ms until `sub` (a subscriber downstream of
/// a feed line) receives a text frame: the line is up. Fails after 10 s with
/// `downstream`'s log.
pub fn publish_until_relayed(publisher: &mut Raw, sub: &mut Raw, msg: &[u8], downstream: &Server) {
    sub.s
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    'up: loop {
        assert!(
            std::time::Instant::now() < deadline,
            "never relayed: {}",
            downstream.log()
        );
        publisher.send(0x81, msg);
        while let Some((first, _)) = sub.recv_or_timeout() {
            if first == 0x81 {
                break 'up;
            }
        }
    }
    sub.s
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
}

/// The address the relay printed after `label` (e.g. `"metrics on http://"`), waiting
/// up to 10 s for the line.
pub fn printed_addr(server: &Server, label: &str) -> SocketAddr {
    let end = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        assert!(std::time::Instant::now() < end, "{}", server.output());
        if let Some(a) = server
            .output()
            .split(label)
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|a| a.parse::<SocketAddr>().ok())
        {
            return a;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Debian's Chromium (or `$FEEDRELAY_CHROMIUM`); fails, saying how to get it, if absent.
pub fn chromium() -> PathBuf {
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
