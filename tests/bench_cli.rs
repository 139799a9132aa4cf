//! `feedrelay bench` end to end on a spawned relay and on the floor (no relay): every
//! expected delivery arrives, in order, and the JSON and the hlog (decoded by Python's
//! `hdrhistogram`) agree with it.

mod common;

use std::process::Command;

use common::{python, script};

/// A field of a JSON row, parsed as `T`.
fn field_as<T: std::str::FromStr>(json: &str, name: &str) -> T {
    let key = format!("\"{name}\":");
    let at = json
        .find(&key)
        .unwrap_or_else(|| panic!("{name} in {json}"))
        + key.len();
    json[at..]
        .split([',', '}'])
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {json}"))
}

fn field(json: &str, name: &str) -> u64 {
    field_as(json, name)
}

/// The JSON row (one per line) of `variant`.
fn row<'a>(json: &'a str, variant: &str) -> &'a str {
    json.lines()
        .find(|l| l.contains(&format!(r#""variant":"{variant}""#)))
        .unwrap_or_else(|| panic!("no {variant} row: {json}"))
}

/// Runs `feedrelay bench` with `args` and `--json JSON`; the rows it wrote (the run must
/// succeed).
fn bench_rows(args: &[std::ffi::OsString], json: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_feedrelay"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .arg(json)
        .output()
        .expect("run bench");
    common::succeeded(&out);
    std::fs::read_to_string(json).expect("json written")
}

/// A one-second run at 1,000 msg/s to `subs` subscribers after half a second's
/// warm-up: long enough to measure, short enough for the suite.
fn short_run(subs: usize) -> Vec<String> {
    [
        "--rate",
        "1000",
        "--subs",
        &subs.to_string(),
        "--duration",
        "1",
        "--warmup",
        "0.5",
    ]
    .map(str::to_owned)
    .to_vec()
}

#[test]
fn bench_spawned_relay_json_and_hlog_agree() {
    let dir = std::env::temp_dir();
    let json = dir.join(format!("feedrelay-bench-{}.json", std::process::id()));
    let hlog = dir.join(format!("feedrelay-bench-{}.hlog", std::process::id()));
    let plot = dir.join(format!("feedrelay-bench-{}.svg", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_feedrelay"))
        .args(["bench", "--spawn", "--floor", "--cpu-samples"])
        .args(short_run(3))
        .arg("--json")
        .arg(&json)
        .arg("--hlog")
        .arg(&hlog)
        .arg("--plot")
        .arg(&plot)
        .output()
        .expect("run bench");
    let text = common::succeeded(&out);
    // Sampled, so no note; the floor has no relay, so no split at all.
    assert!(!text.contains("user/sys split of"), "{text}");
    let all = std::fs::read_to_string(&json).expect("json written");
    let floor = row(&all, "floor");
    assert!(floor.contains(r#""cpu_split":"none""#), "floor: {floor}");
    assert_eq!(
        field(floor, "received"),
        field(floor, "expected"),
        "floor: {floor}"
    );
    let j = row(&all, "park").to_owned();
    let (sent, expected, received) = (
        field(&j, "sent"),
        field(&j, "expected"),
        field(&j, "received"),
    );
    assert_eq!(expected, sent * 3);
    assert_eq!(received, expected, "every delivery arrived: {j}");
    assert_eq!(
        (
            field(&j, "lost"),
            field(&j, "duplicated"),
            field(&j, "reordered")
        ),
        (0, 0, 0)
    );
    // At 1,000 msg/s each message is its own write to each subscriber: about one
    // segment per delivery, as the subscribers' own sockets count them.
    let segs = field_as::<f64>(&j, "relay_segments_per_delivery");
    assert!(
        (0.5..=1.5).contains(&segs),
        "relay segments per delivery: {j}"
    );
    let (user, sys, cpu) = (
        field_as::<f64>(&j, "user_ns_per_delivery"),
        field_as::<f64>(&j, "sys_ns_per_delivery"),
        field_as::<f64>(&j, "cpu_ns_per_delivery"),
    );
    assert!((user + sys - cpu).abs() <= 2.0, "user + sys = CPU: {j}");
    // Asked for: split by samples of the relay's threads, not by the scheduler tick
    // (which a load in step with it biases); perf events are available to the suite.
    assert!(j.contains(r#""cpu_split":"samples""#), "CPU split: {j}");
    assert!(user > 0.0 && sys > 0.0, "both modes sampled: {j}");
    // Host-wide (every process's), so only its presence and sign say anything here.
    let ipis = field_as::<f64>(&j, "ipis_per_delivery");
    assert!(ipis >= 0.0, "IPIs per delivery: {j}");
    // The generator's cores (unpinned here: every CPU) are known, as a share. Tick
    // sampled, so a light one-second run may show none of the little it did.
    let gen = field_as::<f64>(&j, "generator_busy_percent");
    assert!((0.0..=100.0).contains(&gen), "generator busy: {j}");
    let decoded = Command::new(python())
        .arg(script("hlog_counts.py"))
        .arg(&hlog)
        .output()
        .unwrap();
    let counts = String::from_utf8_lossy(&decoded.stdout);
    assert!(
        counts.contains(&format!(r#""park": {{"count": {received},"#)),
        "{counts}"
    );
    let svg = std::fs::read_to_string(&plot).expect("plot written");
    assert!(
        svg.contains("<svg") && svg.contains("park") && svg.contains("floor"),
        "{svg:.300}"
    );
    let _ = std::fs::remove_file(&plot);
    let _ = std::fs::remove_file(&json);
    let _ = std::fs::remove_file(&hlog);
}

/// A rate sweep with the relay and the generator on cores of their own: one row per
/// variant and rate, every delivery there, a capacity per core, the curves drawn.
#[test]
fn a_pinned_rate_sweep_reports_rows_capacity_and_curves() {
    let dir = std::env::temp_dir();
    let json = dir.join(format!("feedrelay-sweep-{}.json", std::process::id()));
    let plot = dir.join(format!("feedrelay-sweep-{}.svg", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_feedrelay"))
        .args([
            "bench",
            "--spawn",
            "--rates",
            "500,1000",
            "--relay-cores",
            "0",
            "--bench-cores",
            "1",
            "--subs",
            "2",
            "--duration",
            "1",
            "--warmup",
            "0.3",
            "--json",
        ])
        .arg(&json)
        .arg("--plot")
        .arg(&plot)
        .output()
        .expect("run bench");
    let text = common::succeeded(&out);
    assert!(text.contains("relay cores [0], bench cores [1]"), "{text}");
    assert!(text.contains("capacity per core"), "{text}");
    // Without --cpu-samples, /proc's split: told under each table, marked in every row.
    assert!(
        text.contains("note: the user/sys split of park (not asked for: --cpu-samples) is /proc's"),
        "{text}"
    );
    let rows = std::fs::read_to_string(&json).expect("json written");
    for rate in [500u64, 1000] {
        let row = rows
            .lines()
            .find(|l| l.contains(&format!("\"rate\":{rate},")))
            .unwrap_or_else(|| panic!("rate {rate} in {rows}"));
        assert_eq!(field(row, "received"), field(row, "expected"), "{row}");
        assert_eq!(field(row, "lost"), 0, "{row}");
        assert!(row.contains(r#""cpu_split":"ticks""#), "{row}");
    }
    let svg = std::fs::read_to_string(&plot).expect("curves drawn");
    assert!(svg.contains("park p99") && svg.contains("deliveries per second"));
    let _ = std::fs::remove_file(&json);
    let _ = std::fs::remove_file(&plot);
}

/// A relay config with `tls_cert_file` makes a `wss://` variant (its certificate paths
/// relative to the config file); `--ca` lets the generator trust it.
#[test]
fn bench_compares_a_tls_relay_with_a_plain_one() {
    let dir = common::TempDir::new("bench-tls");
    let certs = common::localhost_certs(&dir.join("certs"));
    std::fs::write(
        dir.join("tls.toml"),
        "tls_cert_file = \"certs/cert.pem\"\ntls_key_file = \"certs/key.pem\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("plain.toml"), "# defaults\n").unwrap();
    let mut args: Vec<std::ffi::OsString> = vec![
        "--spawn".into(),
        "--relay-config".into(),
        format!("plain={}", dir.join("plain.toml").display()).into(),
        "--relay-config".into(),
        format!("tls={}", dir.join("tls.toml").display()).into(),
        "--ca".into(),
        certs.ca.clone().into(),
    ];
    args.extend(short_run(3).into_iter().map(Into::into));
    let all = bench_rows(&args, &dir.join("tls.json"));
    for variant in ["park-plain", "park-tls"] {
        let row = row(&all, variant);
        assert_eq!(field(row, "received"), field(row, "expected"), "{row}");
        assert_eq!(field(row, "lost"), 0, "{row}");
    }
    // Without --ca the generator cannot trust the relay: the run fails, loudly.
    let out = Command::new(env!("CARGO_BIN_EXE_feedrelay"))
        .args(["bench", "--spawn", "--relay-config"])
        .arg(format!("tls={}", dir.join("tls.toml").display()))
        .args(short_run(1))
        .output()
        .expect("run bench");
    assert!(!out.status.success());
}

/// With `--seq` each message arrives in the relay's envelope: the generator finds it
/// there and counts every delivery (a message it cannot read is not counted).
#[test]
fn bench_reads_messages_inside_the_sequence_envelope() {
    let dir = common::TempDir::new("bench-seq");
    let args: Vec<std::ffi::OsString> = ["--spawn", "--seq"]
        .into_iter()
        .map(String::from)
        .chain(short_run(2))
        .map(Into::into)
        .collect();
    let all = bench_rows(&args, &dir.join("seq.json"));
    let j = row(&all, "park");
    assert!(field(j, "expected") > 0, "{j}");
    assert_eq!(field(j, "received"), field(j, "expected"), "{j}");
    assert_eq!(
        (field(j, "lost"), field(j, "reordered")),
        (0, 0),
        "the relay's sequence read as the generator's: {j}"
    );
}
