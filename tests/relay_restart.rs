//! Restarts that drop nobody: on SIGTERM every subscriber is told (`{"event":
//! "shutdown","reconnect_in_ms":N}`, then the close 1001), and a second relay process
//! can take over the listening address (`SO_REUSEPORT`) so that a rolling restart has
//! no moment where the port refuses connections.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{Raw, Server};

#[test]
fn subscribers_hear_of_the_shutdown_before_the_close() {
    let mut server = Server::relay(&["--workers", "2"], None);
    let mut sub = Raw::subscribe(server.addr, "T");
    let mut quiet = Raw::handshake(server.addr, "/ws?topics=T&events=0", "").0;
    let reply = quiet.recv().expect("the subscribed reply").1;
    assert!(String::from_utf8_lossy(&reply).contains("subscribed"));
    let mut publ = Raw::publish(server.addr);
    publ.send(0x81, br#"{"s":"T","n":1}"#);
    assert_eq!(sub.recv().unwrap().1, br#"{"s":"T","n":1}"#);
    assert_eq!(quiet.recv().unwrap().1, br#"{"s":"T","n":1}"#);
    drop(publ);
    let killer = std::thread::spawn(move || {
        server.terminate();
        server
    });
    let (op, event) = sub.recv().expect("the shutdown event");
    let text = String::from_utf8_lossy(&event).into_owned();
    assert_eq!(op, 0x81, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["event"], "shutdown", "{text}");
    assert!(v["reconnect_in_ms"].as_u64().unwrap() < 1_000, "{text}");
    sub.expect_close(Some(1001));
    quiet.expect_close(Some(1001));
    let server = killer.join().unwrap();
    drop(server);
}

/// A connection that has not finished its handshake has nothing to flush: shutdown
/// closes it at once instead of waiting out the handshake timeout (10 s), whether it
/// is part-way through its request or a load balancer's that has not sent its PROXY
/// header yet.
#[test]
fn a_handshake_in_progress_does_not_hold_the_shutdown() {
    let server = Server::relay(&["--workers", "2"], None);
    let sub = Raw::subscribe(server.addr, "T");
    let mut partial = TcpStream::connect(server.addr).unwrap();
    partial
        .write_all(b"GET /ws?topics=T HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    stops_at_once(server, partial, Some(sub));
    // From a trusted load balancer, before its PROXY header.
    let config = "proxy_protocol_from = [\"127.0.0.1\"]\n";
    let behind = Server::relay(&["--workers", "2"], Some(config));
    let unheaded = TcpStream::connect(behind.addr).unwrap();
    stops_at_once(behind, unheaded, None);
}

/// Terminates `server` while `waiting` is accepted and mid-handshake: the relay exits
/// within 2 s (`sub`, if any, answering its close at once) and `waiting` is closed
/// with no response.
fn stops_at_once(mut server: Server, mut waiting: TcpStream, sub: Option<Raw>) {
    // Accepted, its read waiting, before the signal.
    std::thread::sleep(Duration::from_millis(300));
    let killer = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let code = server.terminate().code();
        (code, started.elapsed())
    });
    if let Some(mut sub) = sub {
        sub.recv().expect("the shutdown event");
        sub.expect_close(Some(1001));
    }
    let (code, took) = killer.join().unwrap();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    waiting
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 512];
    match waiting.read(&mut buf) {
        Ok(n) => assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&buf[..n])),
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
    }
}

/// A restart that waits on a slow client says so: a subscriber that answers the close
/// only after 1.2 s makes the relay log how long its drain took.
#[test]
fn a_slow_drain_is_logged_with_how_long_it_took() {
    let mut server = Server::relay(&[], None);
    let mut sub = Raw::subscribe(server.addr, "T");
    let pid = server.child.id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    sub.recv().expect("the shutdown event");
    std::thread::sleep(Duration::from_millis(1_200));
    sub.expect_close(Some(1001));
    assert_eq!(server.terminate().code(), Some(0));
    let log = server.log();
    assert!(
        log.contains("shutdown: the last connection closed after"),
        "{log}"
    );
}

/// Connects and asks for a subscription; Ok(true) for a 101.
fn try_subscribe(addr: SocketAddr) -> std::io::Result<bool> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(
        format!("GET /ws?topics=T HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").as_bytes(),
    )?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head)?;
    Ok(head.starts_with(b"HTTP/1.1 101"))
}

/// A second process listens on the same address; the first is stopped. Clients that
/// connect all along are never refused: before, by either; after, by the second.
#[test]
fn a_second_process_takes_over_the_address_with_no_refused_connection() {
    let mut first = Server::relay(&["--workers", "2"], None);
    let addr = first.addr;
    let listen = addr.to_string();
    let second = Server::relay(&["--workers", "2", "--listen", &listen], None);
    assert_eq!(second.addr, addr, "the same address, shared");
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, refused, other) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let client = {
        let (stop, ok, refused, other) = (
            Arc::clone(&stop),
            Arc::clone(&ok),
            Arc::clone(&refused),
            Arc::clone(&other),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let counter = match try_subscribe(addr) {
                    Ok(true) => &ok,
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => &refused,
                    _ => &other,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(first.terminate().code(), Some(0));
    let served_before = ok.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    let (ok, refused, other) = (
        ok.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed),
    );
    assert_eq!(refused, 0, "the port refused {refused} connections");
    assert!(
        ok > served_before + 20,
        "served after the hand-over: {ok} ({served_before} before)"
    );
    // A connection caught in the first process's accept queue as it closes is reset
    // (unless net.ipv4.tcp_migrate_req = 1): counted, never more than a few.
    assert!(other <= 3, "{other} connections reset or cut mid-handshake");
    assert!(try_subscribe(addr).unwrap(), "the second serves");
}
