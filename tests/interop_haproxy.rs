//! A real load balancer in front of the relay: HAProxy (Debian's package) forwarding
//! TCP with `send-proxy` (the PROXY v1 text line) on one frontend and `send-proxy-v2`
//! on another. Subscribers dial HAProxy from their own loopback addresses; the relay
//! must see those addresses, not HAProxy's, and relay messages through both; HAProxy's
//! health checks, which send a header and close, are not refusals. The binary
//! is `$FEEDRELAY_HAPROXY` or `haproxy` on the PATH (`scripts/test.sh` installs it); a
//! test that cannot find it fails, saying so.

mod common;

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    free_port, http_get_from, printed_addr, publish_until_relayed, subscribers_listing, Raw,
    Server, TempDir,
};

/// HAProxy in the foreground, killed when dropped.
struct Haproxy {
    child: Child,
    _dir: TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts HAProxy with one TCP frontend per `(port, server option)`, each forwarding
/// to `relay`; returns once every frontend accepts connections.
fn haproxy(relay: SocketAddr, frontends: &[(u16, &str)]) -> Haproxy {
    let dir = TempDir::new("haproxy");
    let mut cfg = String::from(
        "global\n  maxconn 100\ndefaults\n  mode tcp\n  timeout connect 5s\n  \
         timeout client 30s\n  timeout server 30s\n",
    );
    for (i, (port, option)) in frontends.iter().enumerate() {
        cfg.push_str(&format!(
            "frontend f{i}\n  bind 127.0.0.1:{port}\n  default_backend b{i}\n\
             backend b{i}\n  server relay {relay} {option}\n"
        ));
    }
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).expect("write haproxy.cfg");
    let child = Command::new(common::debian_peer(
        "FEEDRELAY_HAPROXY",
        "haproxy",
        "haproxy",
    ))
    .args(["-db", "-f"])
    .arg(&path)
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("start haproxy");
    let mut proxy = Haproxy { child, _dir: dir };
    let end = Instant::now() + Duration::from_secs(10);
    for (port, _) in frontends {
        while TcpStream::connect(("127.0.0.1", *port)).is_err() {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!("haproxy exited at start: {status}");
            }
            assert!(Instant::now() < end, "haproxy never listened on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    proxy
}

#[test]
fn subscribers_behind_haproxy_are_seen_as_themselves_over_v1_and_v2() {
    let config = "proxy_protocol_from = [\"127.0.0.1\"]\nmetrics_on_data_port = true\n";
    let server = Server::relay(
        &["--workers", "1", "--metrics", "127.0.0.1:0"],
        Some(config),
    );
    let (v1_port, v2_port) = (free_port(), free_port());
    let _haproxy = haproxy(
        server.addr,
        &[
            (v1_port, "send-proxy check inter 100ms"),
            (v2_port, "send-proxy-v2 check inter 100ms"),
        ],
    );
    // HAProxy's health checks (a v1 line naming itself, a v2 LOCAL header, then a
    // close) run all along: they must not count as bad headers (checked at the end).
    std::thread::sleep(Duration::from_millis(1500));
    let v1_client: IpAddr = "127.0.0.21".parse().unwrap();
    let v2_client: IpAddr = "127.0.0.22".parse().unwrap();
    let front = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let mut via_v1 = Raw::subscribe_from(front(v1_port), "T", Some(v1_client));
    let mut via_v2 = Raw::subscribe_from(front(v2_port), "T", Some(v2_client));
    // Messages reach both through HAProxy: the stream after each header is intact.
    // (The publisher dials the relay itself, from an address not taken for HAProxy.)
    let mut publisher = Raw::publish_from(server.addr, "127.0.0.23".parse().unwrap());
    publish_until_relayed(&mut publisher, &mut via_v1, br#"{"s":"T","n":1}"#, &server);
    publish_until_relayed(&mut publisher, &mut via_v2, br#"{"s":"T","n":2}"#, &server);
    // The relay lists the clients' own addresses, not HAProxy's.
    let metrics = printed_addr(&server, "metrics on http://");
    let scraper = Some("127.0.0.4".parse::<IpAddr>().unwrap());
    let listed = subscribers_listing(metrics, scraper, &["\"127.0.0.21:", "\"127.0.0.22:"]);
    assert!(listed.contains("\"127.0.0.21:"), "v1: {listed}");
    assert!(listed.contains("\"127.0.0.22:"), "v2: {listed}");
    assert!(
        !listed.contains("\"127.0.0.1:"),
        "HAProxy's own address: {listed}"
    );
    let refused = "feedrelay_refused_total{reason=\"proxy_header\"}";
    let text = http_get_from(server.addr, "/metrics", scraper);
    assert_eq!(common::metric(&text, refused).unwrap_or(0), 0, "{text}");
}
