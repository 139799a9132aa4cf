//! `feedrelay topology` against a captured 2-socket SMT host (tests/fixtures/hosts):
//! siblings, nodes, caches, isolated CPUs, NIC interrupts, and the worker-map conflicts.

use std::process::Command;

fn topology(cores: &str, json: bool) -> String {
    let root =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hosts/2socket-smt");
    let config = std::env::temp_dir().join(format!(
        "feedrelay-topo-{}-{}.toml",
        std::process::id(),
        cores.len()
    ));
    std::fs::write(&config, format!("cores = [{cores}]\n")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_feedrelay"));
    cmd.args(["topology", "--root"])
        .arg(&root)
        .arg("--config")
        .arg(&config);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().expect("run topology");
    let _ = std::fs::remove_file(&config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_bad_worker_map_is_flagged_for_every_reason() {
    let out = topology("0, 2, 4", false);
    assert!(
        out.contains("0    0     0,4           0,1,4,5"),
        "siblings, node and LLC of cpu 0:\n{out}"
    );
    assert!(
        out.contains("NIC interrupt 30 eth0-TxRx-0 → cpus 2"),
        "{out}"
    );
    assert!(!out.contains("nvme"), "only NIC interrupts: {out}");
    for conflict in [
        "worker 0: core 0 takes housekeeping work",
        "worker 0: core 0 is not in the isolated set",
        "workers 0 and 2 are SMT siblings (0, 4)",
        "worker 1: core 2 takes NIC interrupts",
        "workers span NUMA nodes {0, 1}",
    ] {
        assert!(out.contains(conflict), "{conflict} missing:\n{out}");
    }
}

#[test]
fn a_good_worker_map_has_no_conflicts_and_json_says_so() {
    let out = topology("6, 7", false);
    assert!(out.contains("worker map: no conflicts"), "{out}");
    let json = topology("6, 7", true);
    assert!(
        json.contains(r#""workers":[6, 7]"#) && json.contains(r#""conflicts":[]"#),
        "{json}"
    );
    assert!(json.contains(r#""isolated":[1, 2, 3, 5, 6, 7]"#), "{json}");
}
