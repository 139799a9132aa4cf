//! What an operator deploys with (`deploy/`), checked by the tools that read it: the
//! Prometheus rules by `promtool check rules`, the systemd unit by `systemd-analyze
//! verify` (pointed at the binary under test, since verify checks that `ExecStart`
//! exists), and every metric the rules and the Grafana dashboard name is one the relay
//! serves. The tools come from Debian's `prometheus` and `systemd` packages
//! (`scripts/test.sh` installs them); a missing tool fails the test, loudly.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The tool from `$env` or the PATH; panics with what to install.
fn tool(env: &str, name: &str, package: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("{name} not found (set {env} or install Debian's {package}: scripts/test.sh does)")
    })
}

#[test]
fn promtool_accepts_the_alerting_rules() {
    let promtool = tool("FEEDRELAY_PROMTOOL", "promtool", "prometheus");
    let rules = repo().join("deploy/prometheus/feedrelay.rules.yml");
    let out = Command::new(promtool)
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("SUCCESS: 11 rules found"), "{text}");
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    let analyze = tool("FEEDRELAY_SYSTEMD_ANALYZE", "systemd-analyze", "systemd");
    let unit = std::fs::read_to_string(repo().join("deploy/feedrelay.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/feedrelay run --config"));
    let unit = unit.replace("/usr/local/bin/feedrelay", env!("CARGO_BIN_EXE_feedrelay"));
    let dir = std::env::temp_dir().join(format!("feedrelay-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("feedrelay.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    // verify exits 0 on unknown keys and bad values, but says so on stderr.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
}

/// `feedrelay_*` names in `text`, without the histogram series suffixes.
fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("feedrelay_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name)
            .to_owned();
        names.push(base);
    }
    names.sort();
    names.dedup();
    names
}

#[test]
fn rules_and_dashboard_name_only_metrics_the_relay_serves() {
    let source = std::fs::read_to_string(repo().join("src/metrics/prometheus.rs")).unwrap();
    let rules =
        std::fs::read_to_string(repo().join("deploy/prometheus/feedrelay.rules.yml")).unwrap();
    let dashboard = std::fs::read_to_string(repo().join("deploy/grafana/feedrelay.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 8, "{} panels", panels.len());
    for p in panels {
        assert!(
            !p["targets"].as_array().unwrap().is_empty(),
            "panel {} has no query",
            p["title"]
        );
    }
    let named: Vec<String> = metric_names(&rules)
        .into_iter()
        .chain(metric_names(&dashboard))
        .collect();
    assert!(named.len() >= 10, "{named:?}");
    for name in named {
        assert!(
            source.contains(&format!("\"{name}\"")),
            "{name} is not a metric src/metrics/prometheus.rs renders"
        );
    }
}
