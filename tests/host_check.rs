//! `feedrelay check` against captured `/sys` and `/proc` trees (tests/fixtures/hosts):
//! the verdicts and the exit code (0 pass, 1 warn, 2 fail) for each shape of host.

use std::process::Command;

fn check(fixture: &str) -> (Option<i32>, String) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hosts")
        .join(fixture);
    let config = std::env::temp_dir().join(format!(
        "feedrelay-check-{}-{fixture}.toml",
        std::process::id()
    ));
    // A small max_connections, so the live open-file limit of any test machine passes.
    std::fs::write(&config, "max_connections = 100\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_feedrelay"))
        .args(["check", "--root"])
        .arg(&root)
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run check");
    let _ = std::fs::remove_file(&config);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_tuned_host_passes() {
    let (code, out) = check("tuned-8core");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.lines()
            .all(|l| !l.starts_with("warn") && !l.starts_with("fail")),
        "{out}"
    );
}

#[test]
fn a_container_with_io_uring_blocked_fails_with_fixes() {
    let (code, out) = check("container-blocked");
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("fail  io_uring") && out.contains("kernel.io_uring_disabled=2"),
        "{out}"
    );
    for warned in [
        "transparent huge pages",
        "clocksource",
        "isolated cores",
        "socket buffer limits",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("warn") && l.contains(warned)),
            "{warned}: {out}"
        );
    }
    assert!(
        out.contains("fix: sysctl -w kernel.io_uring_disabled=0"),
        "{out}"
    );
}
