//! Relays `feedrelay bench --spawn` starts for a run: this same binary as `feedrelay
//! run` on a port the OS picks, killed when dropped.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, Context};

use crate::io::idle::IdleMode;

/// A relay started for one benchmark run; killed when dropped.
pub struct SpawnedRelay {
    child: Child,
    /// Its base URL (`ws://127.0.0.1:PORT/`).
    pub url: String,
}

impl SpawnedRelay {
    /// Starts one relay; `config` is TOML text for `--config`.
    pub fn start(
        idle: IdleMode,
        metrics: bool,
        workers: usize,
        cores: Option<&[usize]>,
        config: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["run", "--listen", "127.0.0.1:0", "--workers"])
            .arg(workers.to_string())
            .args(["--idle", idle.name()]);
        let config_file = match config {
            Some(text) => {
                let path = std::env::temp_dir().join(format!(
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
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the relay")?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().context("relay stdout")?)
            .read_line(&mut line)?;
        if let Some(p) = config_file {
            let _ = std::fs::remove_file(p);
        }
        let addr = line
            .split("ws://")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .ok_or_else(|| anyhow!("relay did not start: {line:?}"))?;
        Ok(SpawnedRelay {
            url: format!("ws://{addr}/"),
            child,
        })
    }

    /// `hops` relays, upstream first; each downstream one dials the one before as a
    /// feed (`/ws?topics=*`, sequence numbers at `/seq`).
    pub fn chain(
        hops: u8,
        idle: IdleMode,
        metrics: bool,
        workers: usize,
        cores: Option<&[usize]>,
        config: Option<&str>,
    ) -> anyhow::Result<Vec<SpawnedRelay>> {
        let mut relays: Vec<SpawnedRelay> = Vec::new();
        for _ in 0..hops.max(1) {
            let mut text = config.unwrap_or_default().to_owned();
            if let Some(up) = relays.last() {
                text.push_str(&format!(
                    "\n[[feeds]]\nname = \"upstream\"\nurl = \"{}ws?topics=*\"\nseq_pointer = \"/seq\"\n",
                    up.url
                ));
            }
            let text = (!text.is_empty()).then_some(text.as_str());
            relays.push(SpawnedRelay::start(idle, metrics, workers, cores, text)?);
        }
        // Let each downstream relay's feed connect and be routed upstream.
        if relays.len() > 1 {
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(relays)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for SpawnedRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
