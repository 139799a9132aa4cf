//! The example core maps in `tuning/maps` are valid configs with no conflicts on the
//! host shape each was written for (fixture trees in tests/fixtures/hosts), and
//! `scripts/tune-host.sh` prints (dry run), makes (--apply) and then finds nothing
//! left of the changes a map wants, on a copy of a tree.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const MAPS: [(&str, &str); 3] = [
    ("tuning/maps/2core.toml", "tests/fixtures/hosts/2core-vm"),
    (
        "tuning/maps/8core.toml",
        "tests/fixtures/hosts/8core-1socket",
    ),
    (
        "tuning/maps/32core-2socket.toml",
        "tests/fixtures/hosts/32core-2socket-smt",
    ),
];

fn feedrelay(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_feedrelay"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run feedrelay");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn example_maps_are_valid_and_conflict_free_on_their_hosts() {
    for (map, host) in MAPS {
        let (ok, text) = feedrelay(&["run", "--config", map, "--print-config"]);
        assert!(ok, "{map}: {text}");
        let (ok, json) = feedrelay(&["topology", "--json", "--config", map, "--root", host]);
        assert!(ok, "{map}: {json}");
        assert!(
            json.contains(r#""conflicts":[]"#),
            "{map} on {host}: {json}"
        );
        assert!(
            !json.contains(r#""workers":[]"#),
            "{map} pins workers: {json}"
        );
    }
}

fn copy_tree(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let status = Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

fn tune(map: &str, root: &Path, apply: bool) -> (i32, String) {
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("scripts/tune-host.sh"))
        .args(["--config", map, "--root"])
        .arg(root)
        .args(["--feedrelay", env!("CARGO_BIN_EXE_feedrelay")])
        .current_dir(repo());
    if apply {
        cmd.arg("--apply");
    }
    let out = cmd.output().expect("run tune-host.sh");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn tune_host_dry_runs_applies_and_is_idempotent() {
    let root = std::env::temp_dir().join(format!("feedrelay-tune-{}", std::process::id()));
    copy_tree(&repo().join("tests/fixtures/hosts/8core-1socket"), &root);
    // Detune the copy: a NIC queue on a worker core, a slow governor, small buffers.
    let set = |p: &str, v: &str| std::fs::write(root.join(p), format!("{v}\n")).unwrap();
    let get = |p: &str| {
        std::fs::read_to_string(root.join(p))
            .unwrap()
            .trim()
            .to_owned()
    };
    set("proc/irq/100/smp_affinity_list", "2-3");
    set(
        "sys/devices/system/cpu/cpu3/cpufreq/scaling_governor",
        "powersave",
    );
    set("proc/sys/net/core/rmem_max", "212992");
    set(
        "sys/kernel/mm/transparent_hugepage/enabled",
        "[always] madvise never",
    );
    set("proc/sys/kernel/io_uring_disabled", "2");

    let (code, dry) = tune("tuning/maps/8core.toml", &root, false);
    assert_eq!(code, 0, "{dry}");
    for want in [
        "would: irq 100 (ens1f0-TxRx-0): cpus 2-3 → 0-1",
        "would: cpu 3 governor: powersave → performance",
        "would: net.core.rmem_max: 212992 → 4194304",
        "would: transparent huge pages: always → madvise",
        "would: kernel.io_uring_disabled: 2 → 0",
        "5 change(s)",
    ] {
        assert!(dry.contains(want), "{want} not in:\n{dry}");
    }
    assert!(
        !dry.contains("irq 101"),
        "irqs already off the workers stay:\n{dry}"
    );
    assert_eq!(
        get("proc/irq/100/smp_affinity_list"),
        "2-3",
        "a dry run writes nothing"
    );

    let (code, applied) = tune("tuning/maps/8core.toml", &root, true);
    assert_eq!(code, 0, "{applied}");
    assert_eq!(applied.matches("did:").count(), 5, "{applied}");
    assert_eq!(get("proc/irq/100/smp_affinity_list"), "0-1");
    assert_eq!(
        get("sys/devices/system/cpu/cpu3/cpufreq/scaling_governor"),
        "performance"
    );
    assert_eq!(get("proc/sys/kernel/io_uring_disabled"), "0");

    let (code, again) = tune("tuning/maps/8core.toml", &root, false);
    assert_eq!(code, 0, "{again}");
    assert!(again.contains("nothing to change now"), "{again}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn tune_host_refuses_a_map_without_cores_and_says_what_boot_settings_are_missing() {
    let (code, text) = tune(
        "examples/feeds.toml",
        &repo().join("tests/fixtures/hosts/2core-vm"),
        false,
    );
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("pins no workers"), "{text}");
    let (code, text) = tune(
        "tuning/maps/2core.toml",
        &repo().join("tests/fixtures/hosts/2core-vm"),
        false,
    );
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("isolcpus="),
        "the 2-core VM isolates nothing: {text}"
    );
}
