//! The shell scripts CI and operators run stay safe under `set -o pipefail`.
//!
//! With `pipefail`, a pipeline fails with the status of any command in it. A reader that
//! stops early (`head`, `grep -q`, `grep -m`) closes the pipe while the writer may still
//! be writing; the writer then dies of SIGPIPE and the pipeline exits 141 — sometimes,
//! depending on scheduling. That sank one CI run (`haproxy -v | head -1`); `sed -n 1p`
//! reads to the end and cannot cause it.

use std::path::{Path, PathBuf};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every shell script in the repository: `*.sh` under the script folders, and `.ci/run`.
fn scripts() -> Vec<PathBuf> {
    let mut found = vec![repo().join(".ci/run")];
    for dir in ["scripts", "tuning", "deploy", "tests/autobahn"] {
        let Ok(entries) = std::fs::read_dir(repo().join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "sh") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The lines of `text` that pipe into a reader that may stop before the writer is done,
/// as (line number, line). Comments are not code.
fn early_closing_pipes(text: &str) -> Vec<(usize, String)> {
    let stops_early = [
        "head",
        "grep -q",
        "grep -m",
        "grep --max-count",
        "grep --quiet",
    ];
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with('#') {
            continue;
        }
        let piped = code.split('|').skip(1).map(str::trim_start);
        if piped
            .clone()
            .any(|stage| stops_early.iter().any(|r| stage.starts_with(r)))
        {
            found.push((n + 1, line.to_string()));
        }
    }
    found
}

#[test]
fn no_script_under_pipefail_pipes_into_a_reader_that_stops_early() {
    let scripts = scripts();
    assert!(scripts.len() >= 5, "found only {scripts:?}");
    let mut offenders = Vec::new();
    for path in &scripts {
        let text = std::fs::read_to_string(path).expect("read a script");
        if !text.contains("pipefail") {
            continue;
        }
        for (n, line) in early_closing_pipes(&text) {
            offenders.push(format!("{}:{n}: {line}", path.display()));
        }
    }
    assert!(
        offenders.is_empty(),
        "under pipefail these can exit 141 when the writer outlives the reader \
         (use `sed -n 1p`, or `grep` without -q/-m):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_check_sees_what_it_looks_for() {
    let sample = "# a | head in a comment is fine\n\
                  haproxy -v | head -1\n\
                  x=$(ls | grep -v d | sed -n 1p)\n\
                  dmesg | grep -q oops && echo\n\
                  a || b\n";
    let lines: Vec<usize> = early_closing_pipes(sample)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(lines, vec![2, 4]);
}
