//! The `feedrelay bench` command: which variants to compare (spawned relays in several
//! configurations, relays already running, the baseline relay, the no-relay floor), at
//! which rates, in rounds that alternate them; the report is in [`super::results`].

use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context};
use hdrhistogram::Histogram;

use super::args::{BenchArgs, Chain, OnOff, Payload, RelayConfig, Variant};
use super::load::{run as run_load, LoadResult, LoadSpec};
use super::results::Totals;
use super::spawn::{Link, RelaySpec, SpawnedRelay};
use crate::relay::config::Config;

/// One measured run, for the hlog: variant, latency, when it started, how long.
type BenchRun = (String, Histogram<u64>, SystemTime, Duration);

/// Runs `feedrelay bench`, printing through `say`.
pub fn command(a: BenchArgs, say: &dyn Fn(&str)) -> anyhow::Result<()> {
    if !a.spawn && a.target.is_empty() && a.baseline.is_empty() && !a.floor {
        anyhow::bail!("give --spawn, --target URL (one or more), --baseline PATH or --floor");
    }
    if let Some(cores) = &a.bench_cores {
        crate::io::worker::pin_current_thread(cores)?;
    }
    let mut modes = if a.spawn {
        spawn_variants(&a)?
    } else {
        Vec::new()
    };
    modes.extend(target_variants(&a));
    modes.extend(baseline_variants(&a.baseline));
    if a.floor {
        modes.push(Variant::Floor);
    }
    let rates = if a.rates.is_empty() {
        vec![a.rate]
    } else {
        a.rates.clone()
    };
    // totals[rate][variant]
    let mut totals: Vec<Vec<Option<Totals>>> = rates
        .iter()
        .map(|_| (0..modes.len()).map(|_| None).collect())
        .collect();
    let started = SystemTime::now();
    let mut runs: Vec<BenchRun> = Vec::new();
    for (ri, &rate) in rates.iter().enumerate() {
        for round in 0..a.rounds.max(1) {
            for (m, mode) in modes.iter().enumerate() {
                let label = mode.label();
                eprintln!(
                    "{rate} msg/s, round {} / {}: {label}: {} s warm-up + {} s measured ...",
                    round + 1,
                    a.rounds.max(1),
                    a.warmup,
                    a.duration
                );
                let run_started = SystemTime::now();
                let r = run_variant(&a, mode, rate)?;
                if a.hlog.is_some() {
                    runs.push((label, r.latency.clone(), run_started, r.elapsed));
                }
                match &mut totals[ri][m] {
                    Some(t) => t.add(&r)?,
                    slot => *slot = Some(Totals::new(r)),
                }
            }
        }
    }
    super::results::report(&a, &modes, &rates, &totals, say)?;
    if let Some(path) = &a.hlog {
        write_hlog(path, started, &runs)?;
    }
    Ok(())
}

/// Every combination of the `--spawn` dimensions.
fn spawn_variants(a: &BenchArgs) -> anyhow::Result<Vec<Variant>> {
    let configs: Vec<Option<RelayConfig>> = if a.relay_config.is_empty() {
        vec![None]
    } else {
        a.relay_config
            .iter()
            .map(|c| {
                let (name, path) = match c.split_once('=') {
                    Some((n, p)) => (n.to_owned(), p.to_owned()),
                    None => (
                        std::path::Path::new(c)
                            .file_stem()
                            .map_or("config".into(), |s| s.to_string_lossy().into_owned()),
                        c.clone(),
                    ),
                };
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("--relay-config {path}"))?;
                Config::load(std::path::Path::new(&path))?;
                let dir = std::path::Path::new(&path)
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .map_or_else(|| std::path::PathBuf::from("."), std::path::Path::to_owned);
                Ok(Some(RelayConfig { name, text, dir }))
            })
            .collect::<anyhow::Result<_>>()?
    };
    let pins: Vec<Option<bool>> = if a.pin.is_empty() {
        vec![None]
    } else {
        a.pin.iter().map(|p| Some(*p == OnOff::On)).collect()
    };
    let mut v = Vec::new();
    for &idle in &a.idle {
        for &m in &a.metrics {
            for &hops in &a.hops {
                for &pinned in &pins {
                    for config in &configs {
                        v.push(Variant::Spawn {
                            idle,
                            metrics: m == OnOff::On,
                            hops,
                            pinned,
                            config: config.clone(),
                        });
                    }
                }
            }
        }
    }
    Ok(v)
}

/// The `--target` relays, named.
fn target_variants(a: &BenchArgs) -> Vec<Variant> {
    a.target
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let (name, url) = match t.split_once('=') {
                Some((n, u)) if !n.contains('/') => (n.to_owned(), u.to_owned()),
                _ => (format!("target{i}"), t.clone()),
            };
            let url = if url.ends_with('/') {
                url
            } else {
                format!("{url}/")
            };
            Variant::Target {
                name,
                url,
                pid: a.relay_pid.get(i).copied(),
            }
        })
        .collect()
}

/// `--baseline` values, `PATH` or `NAME=PATH`: an unnamed first one is `baseline`, the
/// others `baselineN`.
fn baseline_variants(values: &[String]) -> Vec<Variant> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let (name, path) = match v.split_once('=') {
                Some((n, p)) if !n.is_empty() && !n.contains('/') => (n.to_owned(), p),
                _ if i == 0 => ("baseline".to_owned(), v.as_str()),
                _ => (format!("baseline{i}"), v.as_str()),
            };
            Variant::Baseline {
                name,
                path: path.into(),
            }
        })
        .collect()
}

/// The cores the spawned relays run on, if pinned.
fn relay_cores(a: &BenchArgs) -> Option<&[usize]> {
    a.relay_cores.as_deref()
}

/// One round of one variant at `rate`: start its relays (if it has any), run the load,
/// stop them.
fn run_variant(a: &BenchArgs, mode: &Variant, rate: u64) -> anyhow::Result<LoadResult> {
    let pin = relay_cores(a);
    let relays = match mode {
        Variant::Spawn {
            idle,
            metrics,
            hops,
            pinned,
            config,
        } => {
            let all: Vec<usize> = (0..a.workers.unwrap_or(1)).collect();
            let cores = match (pin, pinned) {
                (Some(c), _) => Some(c),
                (None, Some(true)) => Some(a.cores.as_deref().unwrap_or(&all)),
                (None, Some(false)) => None,
                (None, None) => a.cores.as_deref(),
            };
            let spec = RelaySpec {
                idle: *idle,
                metrics: *metrics,
                workers: cores.map(<[usize]>::len).or(a.workers),
                cores,
                pin,
                config: config.as_ref().map(|c| (c.text.as_str(), c.dir.as_path())),
            };
            let link = match hops {
                Chain::Relays(n) => Link::Feeds(*n),
                Chain::Nats => Link::Nats(
                    a.nats_url
                        .as_deref()
                        .context("--hops nats needs --nats-url")?,
                ),
            };
            SpawnedRelay::chain(link, spec)?
        }
        Variant::Baseline { path, .. } => vec![SpawnedRelay::baseline(path, pin)?],
        Variant::Target { .. } | Variant::Floor => Vec::new(),
    };
    let (url, publish_to, pids) = match (mode, relays.first(), relays.last()) {
        (_, Some(first), Some(last)) => (
            last.url.clone(),
            (relays.len() > 1).then(|| first.url.clone()),
            relays
                .iter()
                .map(SpawnedRelay::pid)
                .chain(a.nats_pid.filter(|_| is_nats(mode)))
                .collect(),
        ),
        (Variant::Target { url, pid, .. }, _, _) => (
            url.clone(),
            a.publish_to.as_ref().map(|u| match u.ends_with('/') {
                true => u.clone(),
                false => format!("{u}/"),
            }),
            pid.iter().copied().collect(),
        ),
        _ => (String::new(), None, Vec::new()),
    };
    let spec = LoadSpec {
        target: url,
        publish_to,
        rate,
        duration: Duration::from_secs_f64(a.duration),
        warmup: Duration::from_secs_f64(a.warmup),
        subs: a.subs,
        pubs: a.pubs,
        topics: a.topics,
        size: a.size,
        deflate: a.deflate,
        seq: a.seq,
        book_payload: a.payload == Payload::Book,
        relay_pids: pids,
        sample_cpu_modes: a.cpu_samples,
        floor: matches!(mode, Variant::Floor),
        tls: match &a.ca {
            Some(ca) => Some(
                crate::io::transport::client_config(Some(ca))
                    .with_context(|| format!("--ca {}", ca.display()))?,
            ),
            None => None,
        },
    };
    let r = run_load(&spec);
    drop(relays);
    r
}

/// A variant whose relays are linked by NATS.
fn is_nats(mode: &Variant) -> bool {
    matches!(
        mode,
        Variant::Spawn {
            hops: Chain::Nats,
            ..
        }
    )
}

/// Writes each run's end-to-end histogram as an interval of an HdrHistogram log.
fn write_hlog(path: &std::path::Path, start: SystemTime, runs: &[BenchRun]) -> anyhow::Result<()> {
    use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
    use hdrhistogram::serialization::V2DeflateSerializer;
    let mut file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut serializer = V2DeflateSerializer::new();
    let mut writer = IntervalLogWriterBuilder::new()
        .add_comment("feedrelay bench: end-to-end latency (ns) from scheduled send to receipt; tag = variant")
        .with_start_time(start)
        .with_base_time(start)
        .with_max_value_divisor(1e9)
        .begin_log_with(&mut file, &mut serializer)?;
    for (label, h, at, took) in runs {
        let offset = at.duration_since(start).unwrap_or_default();
        writer
            .write_histogram(h, offset, *took, Tag::new(label))
            .map_err(|e| anyhow!("encoding {label}: {e:?}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels_and_paths(values: &[&str]) -> Vec<(String, String)> {
        let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        baseline_variants(&values)
            .into_iter()
            .map(|v| match v {
                Variant::Baseline { name, path } => (name, path.display().to_string()),
                other => panic!("not a baseline: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn baselines_are_named_or_numbered() {
        assert_eq!(
            labels_and_paths(&["target/b", "uws=/tmp/uws_relay", "/x/y"]),
            [
                ("baseline".to_owned(), "target/b".to_owned()),
                ("uws".to_owned(), "/tmp/uws_relay".to_owned()),
                ("baseline2".to_owned(), "/x/y".to_owned()),
            ]
        );
        // A path with '=' in a directory is a path, not a name.
        assert_eq!(
            labels_and_paths(&["/opt/a=b/relay"]),
            [("baseline".to_owned(), "/opt/a=b/relay".to_owned())]
        );
    }
}
