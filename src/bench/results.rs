//! What `feedrelay bench` prints and writes: the setup, one table per rate (latency
//! p50 to max, counts, throughput, relay CPU and TCP segments per delivery), and for a
//! sweep each variant's capacity per core; JSON, a plot and the curves on request.

use std::time::Duration;

use anyhow::{anyhow, Context};
use hdrhistogram::Histogram;

use super::args::{BenchArgs, Payload, Variant};
use super::load::LoadResult;
use super::plot::{write_curve_svg, write_svg, Curve};
use super::procfs::{CpuTimes, HostCounters};
use super::relay_cpu::CpuSplit;
use crate::metrics::percentiles::{percentiles_us, PercentileTable};

/// One variant's results at one rate, summed over rounds.
pub(super) struct Totals {
    pub(super) latency: Histogram<u64>,
    pub(super) sent: u64,
    pub(super) expected: u64,
    pub(super) received: u64,
    pub(super) lost: u64,
    pub(super) duplicated: u64,
    pub(super) reordered: u64,
    pub(super) cpu: CpuTimes,
    /// Where the user/system split came from: the tick's if any round's was (with the
    /// first reason seen).
    pub(super) cpu_split: CpuSplit,
    pub(super) relay_segments: Option<u64>,
    pub(super) wall: Duration,
    pub(super) host: HostCounters,
    pub(super) publisher_lag: Histogram<u64>,
}

impl Totals {
    pub(super) fn new(r: LoadResult) -> Self {
        Totals {
            latency: r.latency,
            sent: r.sent,
            expected: r.expected,
            received: r.received,
            lost: r.lost,
            duplicated: r.duplicated,
            reordered: r.reordered,
            cpu: r.relay_cpu.unwrap_or_default(),
            cpu_split: r.cpu_split,
            relay_segments: r.relay_segments,
            wall: r.elapsed,
            host: r.host,
            publisher_lag: r.publisher_lag,
        }
    }

    pub(super) fn add(&mut self, r: &LoadResult) -> anyhow::Result<()> {
        self.latency.add(&r.latency).map_err(|e| anyhow!("{e}"))?;
        self.sent += r.sent;
        self.expected += r.expected;
        self.received += r.received;
        self.lost += r.lost;
        self.duplicated += r.duplicated;
        self.reordered += r.reordered;
        self.cpu = self.cpu + r.relay_cpu.unwrap_or_default();
        self.cpu_split =
            std::mem::replace(&mut self.cpu_split, CpuSplit::NoRelay).and(r.cpu_split.clone());
        self.relay_segments = self
            .relay_segments
            .zip(r.relay_segments)
            .map(|(a, b)| a + b);
        self.wall += r.elapsed;
        self.host = self.host.plus(r.host);
        self.publisher_lag
            .add(&r.publisher_lag)
            .map_err(|e| anyhow!("{e}"))?;
        Ok(())
    }
}

/// The generator's cores at least this busy (percent) get a note under the table: a
/// message then waits for the generator itself (to be sent, or to be read once it
/// arrives), and that wait is in every variant's latency. Measured here (2 vCPUs, 256
/// B, 10 topics, relay pinned on one core, generator alone on the other): 81% busy at
/// 10k msg/s x 10 subscribers (publisher lag p99 166 µs), 90% at 20k x 10 (147 µs),
/// 86% at 5k x 100 (2.1 ms: the relay's fuller writes cost the generator less per
/// delivery, but half a million deliveries a second still queue). With the
/// publisher's lag beside it, the column says when a comparison measures the generator
/// as much as the relays.
pub const GENERATOR_BUSY_WARN_PCT: f64 = 80.0;

/// The p99 a rate must keep, in µs, to count towards a relay's capacity.
pub const CAPACITY_P99_US: f64 = 1_000.0;

/// One variant at one rate, as reported.
struct Row<'a> {
    label: String,
    rate: u64,
    t: &'a Totals,
    /// p50, p90, p99, p99.9, p99.99, max (µs).
    p: [f64; 6],
    received_per_s: f64,
    cpu_pct: f64,
    cpu_ns_per_delivery: f64,
    user_ns_per_delivery: f64,
    sys_ns_per_delivery: f64,
    segments_per_delivery: Option<f64>,
    /// The relay's segments to the subscribers per delivery (their sockets' count).
    relay_segments_per_delivery: Option<f64>,
    /// IP bytes the host sent per delivery.
    bytes_per_delivery: Option<f64>,
    /// Inter-processor interrupts the host took per delivery.
    ipis_per_delivery: Option<f64>,
    /// p99 of how late the publisher's sends completed (µs).
    publisher_lag_p99: f64,
    /// How busy the generator's cores were over the measured windows (%).
    generator_busy_pct: Option<f64>,
}

impl<'a> Row<'a> {
    fn new(label: String, rate: u64, t: &'a Totals) -> Self {
        let wall = t.wall.as_secs_f64().max(1e-9);
        let received = t.received.max(1) as f64;
        Row {
            label,
            rate,
            t,
            p: percentiles_us(&t.latency),
            received_per_s: t.received as f64 / wall,
            cpu_pct: 100.0 * t.cpu.total().as_secs_f64() / wall,
            cpu_ns_per_delivery: t.cpu.total().as_nanos() as f64 / received,
            user_ns_per_delivery: t.cpu.user.as_nanos() as f64 / received,
            sys_ns_per_delivery: t.cpu.sys.as_nanos() as f64 / received,
            segments_per_delivery: t.host.tcp_segments.map(|s| s as f64 / received),
            relay_segments_per_delivery: t.relay_segments.map(|s| s as f64 / received),
            bytes_per_delivery: t.host.ip_bytes.map(|b| b as f64 / received),
            ipis_per_delivery: t.host.ipis.map(|i| i as f64 / received),
            publisher_lag_p99: percentiles_us(&t.publisher_lag)[2],
            generator_busy_pct: t.host.generator_busy_percent(),
        }
    }

    /// The generator's cores were this busy or more: its own queueing is in the
    /// figures (see [`GENERATOR_BUSY_WARN_PCT`]).
    fn generator_saturated(&self) -> Option<f64> {
        self.generator_busy_pct
            .filter(|&b| b >= GENERATOR_BUSY_WARN_PCT)
    }

    /// Counts toward capacity: p99 within the limit, nothing lost and everything
    /// expected delivered.
    fn within_capacity(&self) -> bool {
        self.p[2] <= CAPACITY_P99_US
            && self.t.lost == 0
            && self.t.received > 0
            && self.undelivered_pct().is_none()
    }

    /// The share of the expected deliveries (%) that had not arrived when the run's
    /// drain window closed, if any: a relay that falls behind without gaps (nothing
    /// `lost`) leaves them queued, and the latency columns count only what arrived.
    fn undelivered_pct(&self) -> Option<f64> {
        let missing = self.t.expected.saturating_sub(self.t.received);
        (missing > 0).then(|| 100.0 * missing as f64 / self.t.expected as f64)
    }

    fn json(&self) -> String {
        let (t, p) = (self.t, &self.p);
        let segs = or_absent(self.segments_per_delivery, 3, "null");
        let bytes = or_absent(self.bytes_per_delivery, 1, "null");
        let relay_segs = or_absent(self.relay_segments_per_delivery, 3, "null");
        let ipis = or_absent(self.ipis_per_delivery, 4, "null");
        let gen = or_absent(self.generator_busy_pct, 1, "null");
        let split = t.cpu_split.name();
        format!(
            r#"{{"variant":"{}","rate":{},"p50_us":{:.1},"p90_us":{:.1},"p99_us":{:.1},"p999_us":{:.1},"p9999_us":{:.1},"max_us":{:.1},"sent":{},"expected":{},"received":{},"lost":{},"duplicated":{},"reordered":{},"received_per_s":{:.0},"relay_cpu_percent":{:.1},"cpu_ns_per_delivery":{:.0},"user_ns_per_delivery":{:.0},"sys_ns_per_delivery":{:.0},"cpu_split":"{split}","segments_per_delivery":{segs},"relay_segments_per_delivery":{relay_segs},"wire_bytes_per_delivery":{bytes},"ipis_per_delivery":{ipis},"publisher_lag_p99_us":{:.1},"generator_busy_percent":{gen}}}"#,
            self.label,
            self.rate,
            p[0],
            p[1],
            p[2],
            p[3],
            p[4],
            p[5],
            t.sent,
            t.expected,
            t.received,
            t.lost,
            t.duplicated,
            t.reordered,
            self.received_per_s,
            self.cpu_pct,
            self.cpu_ns_per_delivery,
            self.user_ns_per_delivery,
            self.sys_ns_per_delivery,
            self.publisher_lag_p99
        )
    }
}

/// `v` with `digits` decimals, or `absent` (`null` in JSON, `-` in a table) when the
/// figure could not be read.
fn or_absent(v: Option<f64>, digits: usize, absent: &str) -> String {
    v.map_or_else(|| absent.to_owned(), |v| format!("{v:.digits$}"))
}

/// The cores a variant's relay ran on, for capacity per core.
fn cores_of(a: &BenchArgs, mode: &Variant) -> usize {
    match (mode, &a.relay_cores, &a.cores) {
        (Variant::Floor, _, _) => 1,
        (_, Some(c), _) => c.len().max(1),
        (Variant::Spawn { .. }, None, Some(c)) => c.len().max(1),
        (Variant::Spawn { .. }, None, None) => a.workers.unwrap_or_else(|| {
            crate::io::worker::default_workers(crate::io::worker::online_cpus())
        }),
        _ => std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

/// Prints the setup, the tables and the capacities; writes JSON and plots if asked.
pub(super) fn report(
    a: &BenchArgs,
    modes: &[Variant],
    rates: &[u64],
    totals: &[Vec<Option<Totals>>],
    say: &dyn Fn(&str),
) -> anyhow::Result<()> {
    let pin = |c: &Option<Vec<usize>>| {
        c.as_ref()
            .map_or("unpinned".to_owned(), |c| format!("{c:?}"))
    };
    say(&format!(
        "setup: {} B ({} padding{}), {} topics, {} subscribers, {} publisher(s), {} s x {} rounds after {} s warm-up; relay cores {}, bench cores {}, {} CPUs",
        a.size,
        if a.payload == Payload::Book { "order-book" } else { "x" },
        if a.deflate { ", subscribers offer permessage-deflate" } else { "" },
        a.topics,
        a.subs,
        a.pubs,
        a.duration,
        a.rounds.max(1),
        a.warmup,
        pin(&a.relay_cores.clone().or(a.cores.clone())),
        pin(&a.bench_cores),
        crate::io::worker::online_cpus()
    ));
    let mut json_rows = Vec::new();
    let mut curves: Vec<Curve> = modes.iter().map(|m| (m.label(), Vec::new())).collect();
    let mut capacity: Vec<Option<f64>> = vec![None; modes.len()];
    for (ri, &rate) in rates.iter().enumerate() {
        say(&format!(
            "{rate} msg/s in, {} deliveries/s expected:",
            rate * a.subs as u64
        ));
        let mut table = PercentileTable::new("variant").with_columns(&[
            "sent",
            "expected",
            "received",
            "lost",
            "dup",
            "reord",
            "recv msg/s",
            "relay CPU%",
            "CPU ns/delivery",
            "user ns",
            "sys ns",
            "segs/delivery",
            "relay segs",
            "wire B/delivery",
            "IPIs/delivery",
            "pub lag p99 us",
            "gen busy %",
        ]);
        let mut saturated = Vec::new();
        let mut undelivered = Vec::new();
        let mut ticks = Vec::new();
        for (m, mode) in modes.iter().enumerate() {
            let Some(t) = &totals[ri][m] else { continue };
            let row = Row::new(mode.label(), rate, t);
            let mut extra: Vec<String> = [
                t.sent,
                t.expected,
                t.received,
                t.lost,
                t.duplicated,
                t.reordered,
            ]
            .iter()
            .map(u64::to_string)
            .collect();
            extra.extend([
                format!("{:.0}", row.received_per_s),
                format!("{:.1}", row.cpu_pct),
                format!("{:.0}", row.cpu_ns_per_delivery),
                format!("{:.0}", row.user_ns_per_delivery),
                format!("{:.0}", row.sys_ns_per_delivery),
                or_absent(row.segments_per_delivery, 3, "-"),
                or_absent(row.relay_segments_per_delivery, 3, "-"),
                or_absent(row.bytes_per_delivery, 0, "-"),
                or_absent(row.ipis_per_delivery, 4, "-"),
                format!("{:.1}", row.publisher_lag_p99),
                or_absent(row.generator_busy_pct, 0, "-"),
            ]);
            if let Some(busy) = row.generator_saturated() {
                saturated.push(format!("{} ({busy:.0}%)", row.label));
            }
            if let Some(pct) = row.undelivered_pct() {
                undelivered.push(format!("{} ({pct:.1}%)", row.label));
            }
            if let CpuSplit::Ticks(why) = &t.cpu_split {
                ticks.push(format!("{} ({why})", row.label));
            }
            table.row(&row.label, &t.latency, &extra);
            if row.within_capacity() {
                let per_core = row.received_per_s / cores_of(a, mode) as f64;
                capacity[m] = Some(capacity[m].map_or(per_core, |c: f64| c.max(per_core)));
            }
            curves[m]
                .1
                .push((row.received_per_s, row.p[0], row.p[2], row.p[4]));
            json_rows.push(row.json());
        }
        say(&table.render());
        if let Some(note) = generator_note(a.bench_cores.is_some(), &saturated) {
            say(&note);
        }
        if let Some(note) = undelivered_note(&undelivered) {
            say(&note);
        }
        if let Some(note) = tick_split_note(&ticks) {
            say(&note);
        }
    }
    if rates.len() > 1 {
        say(&capacity_lines(modes, &capacity));
    }
    write_outputs(a, modes, rates, totals, &curves, &json_rows, say)
}

/// The note under a table whose variants (`saturated`, with their busy share) kept the
/// generator's cores at least [`GENERATOR_BUSY_WARN_PCT`] busy; none if no variant did.
fn generator_note(bench_pinned: bool, saturated: &[String]) -> Option<String> {
    if saturated.is_empty() {
        return None;
    }
    // Unpinned, the generator may run on every CPU, so its "cores" are the host's and
    // their busy time is the relay's too.
    let whose = if bench_pinned {
        "the generator's cores (--bench-cores)"
    } else {
        "every CPU (the generator is not pinned, so this counts the relay too)"
    };
    Some(format!(
        "note: {whose} were at least {GENERATOR_BUSY_WARN_PCT:.0}% busy during {}: the generator's own queueing is in these latencies (give it cores of its own: --bench-cores)",
        saturated.join(", ")
    ))
}

/// The note under a table whose variants (`short`, with the share missing) did not
/// deliver everything expected by the end of the drain window; none if all did.
fn undelivered_note(short: &[String]) -> Option<String> {
    (!short.is_empty()).then(|| {
        format!(
            "note: not everything expected arrived within the drain window during {}: that relay fell behind (the latency columns count only what arrived, and it does not count toward capacity)",
            short.join(", ")
        )
    })
}

/// The note under a table whose variants (`ticks`, with the reason) had their user and
/// system CPU split by the scheduler tick rather than by samples; none if none did.
fn tick_split_note(ticks: &[String]) -> Option<String> {
    (!ticks.is_empty()).then(|| {
        format!(
            "note: the user/sys split of {} is /proc's, made by the scheduler tick, which a load in step with the tick biases (the total is exact); --cpu-samples splits it by samples of the relay's threads instead (perf events: root, or kernel.perf_event_paranoid <= 1)",
            ticks.join(", ")
        )
    })
}

/// Capacity per core of each variant, and its ratio to the baseline's.
fn capacity_lines(modes: &[Variant], capacity: &[Option<f64>]) -> String {
    let baseline = modes
        .iter()
        .position(|m| matches!(m, Variant::Baseline { .. }))
        .and_then(|i| capacity[i]);
    let mut text = format!(
        "capacity per core (highest deliveries/s per relay core with p99 <= {CAPACITY_P99_US:.0} us and nothing lost):"
    );
    for (m, mode) in modes.iter().enumerate() {
        let label = mode.label();
        match (capacity[m], baseline) {
            (Some(c), Some(b)) if b > 0.0 => {
                text.push_str(&format!("\n  {label}: {c:.0} ({:.2}x the baseline)", c / b));
            }
            (Some(c), _) => text.push_str(&format!("\n  {label}: {c:.0}")),
            (None, _) => text.push_str(&format!("\n  {label}: none of the rates met it")),
        }
    }
    text
}

/// The JSON rows, the plot (percentiles for one rate, curves for a sweep).
fn write_outputs(
    a: &BenchArgs,
    modes: &[Variant],
    rates: &[u64],
    totals: &[Vec<Option<Totals>>],
    curves: &[Curve],
    json_rows: &[String],
    say: &dyn Fn(&str),
) -> anyhow::Result<()> {
    if let Some(path) = &a.plot {
        if rates.len() > 1 {
            let title = format!("latency against throughput, {} subscribers", a.subs);
            write_curve_svg(path, &title, curves)?;
        } else {
            let series: Vec<(String, &Histogram<u64>)> = modes
                .iter()
                .zip(&totals[0])
                .filter_map(|(m, t)| Some((m.label(), &t.as_ref()?.latency)))
                .collect();
            let title = format!(
                "end-to-end latency, {} msg/s to {} subscribers",
                rates[0], a.subs
            );
            write_svg(path, &title, &series)?;
        }
        say(&format!("plot: {}", path.display()));
    }
    if let Some(path) = &a.json {
        let text = format!("[\n  {}\n]\n", json_rows.join(",\n  "));
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_note_names_the_variants_and_whose_cores() {
        assert_eq!(
            generator_note(true, &[]),
            None,
            "no note when none saturated"
        );
        let pinned = generator_note(true, &["park (91%)".to_owned()]).unwrap();
        assert!(
            pinned.contains("generator's cores (--bench-cores)"),
            "{pinned}"
        );
        assert!(pinned.contains("during park (91%)"), "{pinned}");
        let unpinned = generator_note(false, &["a (85%)".into(), "b (99%)".into()]).unwrap();
        assert!(unpinned.contains("every CPU"), "{unpinned}");
        assert!(unpinned.contains("during a (85%), b (99%)"), "{unpinned}");
    }

    fn totals(expected: u64, received: u64, latency_us: u64) -> Totals {
        let mut latency = Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for _ in 0..received {
            latency.record(latency_us * 1_000).unwrap();
        }
        Totals {
            latency,
            sent: expected,
            expected,
            received,
            lost: 0,
            duplicated: 0,
            reordered: 0,
            cpu: CpuTimes::default(),
            cpu_split: CpuSplit::Sampled(1),
            relay_segments: None,
            wall: Duration::from_secs(1),
            host: HostCounters::default(),
            publisher_lag: Histogram::new(3).unwrap(),
        }
    }

    #[test]
    fn a_relay_that_fell_behind_without_gaps_is_told_and_not_within_capacity() {
        // Everything arrived, fast: within capacity, no note.
        let all = totals(1_000, 1_000, 100);
        let row = Row::new("park".into(), 100, &all);
        assert_eq!(row.undelivered_pct(), None);
        assert!(row.within_capacity());
        assert_eq!(undelivered_note(&[]), None);
        // A third never arrived (no sequence gap, so nothing "lost"), and what did
        // arrived fast: said, and not counted toward capacity.
        let behind = totals(1_000, 690, 100);
        let row = Row::new("uws".into(), 100, &behind);
        assert_eq!(row.undelivered_pct(), Some(31.0));
        assert!(!row.within_capacity());
        let note = undelivered_note(&["uws (31.0%)".into()]).unwrap();
        assert!(note.contains("during uws (31.0%)"), "{note}");
    }

    #[test]
    fn a_split_by_the_tick_is_told_and_marked() {
        assert_eq!(tick_split_note(&[]), None);
        let note = tick_split_note(&["park (EACCES)".into()]).unwrap();
        assert!(note.contains("split of park (EACCES) is /proc's"), "{note}");
        assert!(note.contains("--cpu-samples"), "{note}");
        let mut t = totals(10, 10, 100);
        let json = Row::new("park".into(), 10, &t).json();
        assert!(json.contains(r#""cpu_split":"samples""#), "{json}");
        t.cpu_split = CpuSplit::Ticks("EACCES".into());
        let json = Row::new("park".into(), 10, &t).json();
        assert!(json.contains(r#""cpu_split":"ticks""#), "{json}");
        t.cpu_split = CpuSplit::NoRelay;
        let json = Row::new("floor".into(), 10, &t).json();
        assert!(json.contains(r#""cpu_split":"none""#), "{json}");
        // Over rounds: the tick's if any round's was; no relay changes nothing.
        let rounds = CpuSplit::Sampled(5)
            .and(CpuSplit::NoRelay)
            .and(CpuSplit::Sampled(2));
        assert_eq!(rounds, CpuSplit::Sampled(7));
        let why = CpuSplit::Ticks("x".into());
        assert_eq!(CpuSplit::Sampled(5).and(why.clone()), why);
        assert_eq!(why.clone().and(CpuSplit::Sampled(5)), why);
    }

    #[test]
    fn absent_figures_print_as_told() {
        assert_eq!(or_absent(Some(0.12345), 3, "null"), "0.123");
        assert_eq!(or_absent(Some(86.6), 0, "-"), "87");
        assert_eq!(or_absent(None, 3, "null"), "null");
        assert_eq!(or_absent(None, 0, "-"), "-");
    }
}
