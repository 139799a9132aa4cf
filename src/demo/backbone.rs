//! `feedrelay demo --nats`: the demo across a NATS backbone. A second relay in this
//! process takes the exchange's messages and exports them; the demo's relay imports
//! them and serves the subscribers, so the table shows the NATS hop (`import`) and
//! end-to-end latency across it. The `nats-server` is the one at the given URL, or one
//! this starts from the PATH on a port the OS picked.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};

use crate::io::listener::bind_reuseport;
use crate::io::shutdown::{self, Trigger};
use crate::io::worker::CoreMap;
use crate::relay::config::Config;
use crate::relay::nats::config::NatsConfig;
use crate::relay::reload::ReloadableSettings;
use crate::relay::run::{run_relay, RelayStart};

/// The exporting relay and the server it exports to; both stopped when dropped.
pub struct Backbone {
    /// Where the exchange publishes (the exporting relay's base URL).
    pub upstream: String,
    /// The NATS server.
    pub nats_url: String,
    server: Option<Child>,
    stop: Trigger,
    relay: Option<std::thread::JoinHandle<()>>,
}

impl Backbone {
    /// Starts the server (unless `url` names one) and the exporting relay.
    pub fn start(url: Option<&str>) -> anyhow::Result<Backbone> {
        let (nats_url, server) = match url {
            Some(u) => (u.to_owned(), None),
            None => {
                let (url, child) = start_server()?;
                (url, Some(child))
            }
        };
        let mut config = Config {
            listen: "127.0.0.1:0".parse()?,
            workers: Some(1),
            metrics: false,
            ..Config::default()
        };
        config.nats = Some(NatsConfig {
            urls: vec![nats_url.clone()],
            export: true,
            ..NatsConfig::default()
        });
        let map = CoreMap::new(Some(1), None)?;
        let listeners = bind_reuseport(config.listen, 1)?;
        let upstream = format!("ws://{}/", listeners[0].local_addr()?);
        let settings = ReloadableSettings::new(&config)?;
        let (stop, shutdown) = shutdown::channel();
        let relay = std::thread::spawn(move || {
            let start = RelayStart::new(listeners, std::sync::Arc::new(config), shutdown, settings);
            if let Err(e) = run_relay(&map, start) {
                tracing::error!("demo: the exporting relay stopped: {e}");
            }
        });
        Ok(Backbone {
            upstream,
            nats_url,
            server,
            stop,
            relay: Some(relay),
        })
    }

    /// The demo relay's `[nats]`: import everything the exporting relay sends.
    pub fn import_config(&self) -> NatsConfig {
        NatsConfig {
            urls: vec![self.nats_url.clone()],
            import: vec!["feedrelay.>".into()],
            ..NatsConfig::default()
        }
    }
}

impl Drop for Backbone {
    fn drop(&mut self) {
        self.stop.fire();
        if let Some(r) = self.relay.take() {
            let _ = r.join();
        }
        if let Some(mut s) = self.server.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
    }
}

/// `nats-server` from the PATH on a free loopback port, once it listens.
fn start_server() -> anyhow::Result<(String, Child)> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut child = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting nats-server (apt-get install nats-server, or give --nats URL)")?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let until = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
        if Instant::now() > until || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(anyhow!("nats-server did not listen on {addr} within 5 s"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((format!("nats://{addr}"), child))
}
