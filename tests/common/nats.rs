//! Real `nats-server` processes on loopback for the NATS backbone's tests: one server,
//! or a cluster whose routes are on loopback, each on ports the OS picked. The binary
//! is `$FEEDRELAY_NATS_SERVER` or `nats-server` on the PATH (`scripts/test.sh`
//! installs it); a test that cannot find it fails, saying so.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `nats-server`, killed when dropped.
pub struct NatsServer {
    child: Option<Child>,
    /// Its client port.
    pub port: u16,
    /// Its monitoring port (`/routez`, `/connz`).
    pub monitor: u16,
}

pub use super::free_port;

fn binary() -> PathBuf {
    super::debian_peer("FEEDRELAY_NATS_SERVER", "nats-server", "nats-server")
}

impl NatsServer {
    /// One server on `port` (0: a free one).
    pub fn start(port: u16) -> NatsServer {
        let port = if port == 0 { free_port() } else { port };
        NatsServer::spawn(port, &[])
    }

    /// One server on a free port that speaks only TLS, with `cert` and `key`.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> NatsServer {
        let args = [
            "--tls".to_string(),
            "--tlscert".into(),
            cert.display().to_string(),
            "--tlskey".into(),
            key.display().to_string(),
        ];
        NatsServer::spawn(free_port(), &args)
    }

    /// One server on a free port with `args` (`--auth TOKEN`, `--user U --pass P`).
    pub fn start_with(args: &[&str]) -> NatsServer {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        NatsServer::spawn(free_port(), &args)
    }

    /// `n` servers routed to each other on loopback; returns once every route is up.
    pub fn cluster(n: usize) -> Vec<NatsServer> {
        let cluster_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let routes = cluster_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let servers: Vec<NatsServer> = cluster_ports
            .iter()
            .enumerate()
            .map(|(i, cp)| {
                let args = [
                    "--name".to_string(),
                    format!("n{i}"),
                    "--cluster_name".into(),
                    "feedrelay-test".into(),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{cp}"),
                    "--routes".into(),
                    routes.clone(),
                ];
                NatsServer::spawn(free_port(), &args)
            })
            .collect();
        let end = Instant::now() + Duration::from_secs(15);
        for s in &servers {
            loop {
                let routez = s.monitoring("/routez");
                if routez.contains(&format!("\"num_routes\": {}", n - 1)) {
                    break;
                }
                assert!(
                    Instant::now() < end,
                    "cluster routes never formed: {routez}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        servers
    }

    fn spawn(port: u16, extra: &[String]) -> NatsServer {
        let monitor = free_port();
        let child = Command::new(binary())
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(["-m", &monitor.to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        let server = NatsServer {
            child: Some(child),
            port,
            monitor,
        };
        let end = Instant::now() + Duration::from_secs(10);
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < end, "nats-server never listened on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// A monitoring endpoint's JSON.
    pub fn monitoring(&self, path: &str) -> String {
        let addr: SocketAddr = ([127, 0, 0, 1], self.monitor).into();
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Ok(_) => super::http_get(addr, path),
            Err(_) => String::new(),
        }
    }

    /// Client connections it holds now (`/connz`).
    pub fn connections(&self) -> usize {
        let connz = self.monitoring("/connz");
        connz
            .split("\"num_connections\":")
            .nth(1)
            .and_then(|s| s.trim_start().split([',', '\n']).next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Kills it at once (SIGKILL: no lame-duck mode, no goodbye to clients).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
