//! Relays `feedrelay bench` starts for a run: this same binary as `feedrelay run`
//! (`--spawn`), or the baseline relay (`--baseline`), on a port the OS picks, pinned
//! with `taskset` when asked, killed when dropped.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, Context};

use crate::io::idle::IdleMode;

/// How `feedrelay bench` starts a relay of its own: the same for every relay of a
/// chain (each downstream one adds its link to the one before).
#[derive(Debug, Clone, Copy)]
pub struct RelaySpec<'a> {
    /// Idle strategy (`--idle`).
    pub idle: IdleMode,
    /// Per-hop metrics on.
    pub metrics: bool,
    /// Worker count (`--workers`; `None`: the relay's default).
    pub workers: Option<usize>,
    /// Cores the workers are pinned to (`--cores`).
    pub cores: Option<&'a [usize]>,
    /// Cores the whole process is put on (`taskset`).
    pub pin: Option<&'a [usize]>,
    /// TOML for `--config`, and the directory its relative paths resolve from.
    pub config: Option<(&'a str, &'a std::path::Path)>,
}

/// A relay started for one benchmark run; killed when dropped.
pub struct SpawnedRelay {
    child: Child,
    /// Its base URL (`ws://127.0.0.1:PORT/`).
    pub url: String,
}

impl SpawnedRelay {
    /// Starts one relay as `spec` says.
    pub fn start(spec: RelaySpec<'_>) -> anyhow::Result<Self> {
        let RelaySpec {
            idle,
            metrics,
            workers,
            cores,
            pin,
            config,
        } = spec;
        let mut cmd = pinned_command(&std::env::current_exe()?, pin);
        cmd.args(["run", "--listen", "127.0.0.1:0", "--idle", idle.name()]);
        if let Some(w) = workers {
            cmd.arg("--workers").arg(w.to_string());
        }
        let config_file = match config {
            Some((text, dir)) => {
                let path = dir.join(format!(
                    "feedrelay-bench-{}-{}.toml",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos())
                        .unwrap_or(0)
                ));
                std::fs::write(&path, text).context("writing the spawned relay's config")?;
                cmd.arg("--config").arg(&path);
                Some(path)
            }
            None => None,
        };
        if !metrics {
            cmd.arg("--no-metrics");
        }
        if let Some(c) = cores {
            let list: Vec<String> = c.iter().map(|c| c.to_string()).collect();
            cmd.arg("--cores").arg(list.join(","));
        }
        let relay = SpawnedRelay::launch(cmd);
        if let Some(p) = config_file {
            let _ = std::fs::remove_file(p);
        }
        relay
    }

    /// Starts the baseline relay binary at `path` (one thread per `pin` core, or its
    /// default: one per CPU it may run on).
    pub fn baseline(path: &std::path::Path, pin: Option<&[usize]>) -> anyhow::Result<Self> {
        let mut cmd = pinned_command(path, pin);
        cmd.args(["--listen", "127.0.0.1:0"]);
        if let Some(cores) = pin {
            cmd.arg("--threads").arg(cores.len().to_string());
        }
        SpawnedRelay::launch(cmd)
    }

    /// Runs `cmd` and waits for its listening line (`... listening on ws://ADDR ...`).
    fn launch(mut cmd: Command) -> anyhow::Result<Self> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().context("relay stdout")?)
            .read_line(&mut line)?;
        // `listening on ws://ADDR` or `wss://ADDR` (a config with tls_cert_file).
        let scheme = if line.contains(" wss://") {
            "wss"
        } else {
            "ws"
        };
        let addr = line
            .split("://")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .map(str::to_owned);
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(anyhow!("relay did not start ({cmd:?}): {line:?}"));
        };
        Ok(SpawnedRelay {
            url: format!("{scheme}://{addr}/"),
            child,
        })
    }

    /// The relays `link` asks for, upstream first, each as `spec` says.
    pub fn chain(link: Link<'_>, spec: RelaySpec<'_>) -> anyhow::Result<Vec<SpawnedRelay>> {
        let config = spec.config;
        let mut relays: Vec<SpawnedRelay> = Vec::new();
        let temp = std::env::temp_dir();
        let dir = config.map_or(temp.as_path(), |(_, d)| d);
        let count = match link {
            Link::Feeds(n) => n.max(1),
            Link::Nats(_) => 2,
        };
        for i in 0..count {
            let mut text = config.map(|(t, _)| t).unwrap_or_default().to_owned();
            match (link, relays.last()) {
                (Link::Feeds(_), Some(up)) => text.push_str(&format!(
                    "\n[[feeds]]\nname = \"upstream\"\nurl = \"{}ws?topics=*\"\nseq_pointer = \"/seq\"\n",
                    up.url
                )),
                (Link::Nats(url), _) => {
                    let role = match i {
                        0 => "export = true",
                        _ => "import = [\"feedrelay.>\"]",
                    };
                    text.push_str(&format!("\n[nats]\nurls = [{url:?}]\n{role}\n"));
                }
                (Link::Feeds(_), None) => {}
            }
            let text = (!text.is_empty()).then_some((text.as_str(), dir));
            relays.push(SpawnedRelay::start(RelaySpec {
                config: text,
                ..spec
            })?);
        }
        // Let each downstream relay's feed (or NATS subscription) connect and be
        // routed upstream.
        if relays.len() > 1 {
            std::thread::sleep(Duration::from_millis(1_000));
        }
        Ok(relays)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// How a chain's relays are linked.
#[derive(Debug, Clone, Copy)]
pub enum Link<'a> {
    /// This many relays; each downstream one dials the one before as a feed
    /// (`/ws?topics=*`, sequence numbers at `/seq`).
    Feeds(u8),
    /// Two relays across the NATS server at this URL: the first exports everything,
    /// the second imports `feedrelay.>`.
    Nats(&'a str),
}

/// `program`, under `taskset -c CORES` when pinned.
fn pinned_command(program: &std::path::Path, pin: Option<&[usize]>) -> Command {
    match pin {
        Some(cores) => {
            let list: Vec<String> = cores.iter().map(usize::to_string).collect();
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(list.join(",")).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

impl Drop for SpawnedRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
