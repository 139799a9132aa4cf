//! `feedrelay check`: is this host ready for a low-latency relay? Each check says
//! pass, warn or fail, what it found, and the fix.

use super::{parse_cpu_list, selected, HostFs};

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Ready.
    Pass,
    /// Works, but costs latency or headroom.
    Warn,
    /// The relay will not run (or not as configured).
    Fail,
}

impl Verdict {
    /// `pass`, `warn`, `fail`.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What was checked.
    pub name: &'static str,
    /// The verdict.
    pub verdict: Verdict,
    /// What was found.
    pub found: String,
    /// What to do about it (empty on pass).
    pub fix: String,
}

fn finding(
    name: &'static str,
    verdict: Verdict,
    found: impl Into<String>,
    fix: impl Into<String>,
) -> Finding {
    Finding {
        name,
        verdict,
        found: found.into(),
        fix: if verdict == Verdict::Pass {
            String::new()
        } else {
            fix.into()
        },
    }
}

/// What the checks need besides the files: facts the caller measured on this host.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The result of actually creating a ring (`None`: not probed, e.g. a fixture).
    pub ring: Option<Result<(), String>>,
    /// Open-file limits (soft, hard).
    pub nofile: (u64, u64),
    /// Connections the relay is configured to accept.
    pub max_connections: u64,
    /// `RLIMIT_MEMLOCK` soft limit in bytes (`None`: unlimited).
    pub memlock: Option<u64>,
    /// Bytes the configured rings lock (workers x entries x [`RING_BYTES_PER_ENTRY`]).
    pub ring_bytes: u64,
}

/// Locked memory per submission-queue entry, roughly: a 64-byte SQE, two 16-byte CQEs
/// and the index arrays, rounded up.
pub const RING_BYTES_PER_ENTRY: u64 = 128;

/// Socket buffer maximum below which a burst to a slow subscriber hits the queue sooner.
pub const MIN_SOCKET_BUFFER: u64 = 4 << 20;

/// Runs every check against `fs`.
pub fn run(fs: &HostFs, measured: &Measured) -> Vec<Finding> {
    vec![
        io_uring(fs, measured),
        memlock(fs, measured),
        governor(fs),
        transparent_hugepages(fs),
        clocksource(fs),
        smt(fs),
        isolated(fs),
        socket_buffers(fs),
        fd_limit(measured),
    ]
}

fn io_uring(fs: &HostFs, measured: &Measured) -> Finding {
    const NAME: &str = "io_uring";
    if let Some(Err(e)) = &measured.ring {
        return finding(NAME, Verdict::Fail, format!("cannot create a ring: {e}"), "set kernel.io_uring_disabled=0 and allow io_uring_setup in seccomp (containers block it by default)");
    }
    match fs.read("/proc/sys/kernel/io_uring_disabled").as_deref() {
        None | Some("0") => finding(NAME, Verdict::Pass, "enabled", ""),
        Some("1") => finding(
            NAME,
            Verdict::Warn,
            "kernel.io_uring_disabled=1 (root or the io_uring group only)",
            "run as a member of kernel.io_uring_group, or set kernel.io_uring_disabled=0",
        ),
        Some(v) => finding(
            NAME,
            Verdict::Fail,
            format!("kernel.io_uring_disabled={v}"),
            "sysctl -w kernel.io_uring_disabled=0",
        ),
    }
}

/// `(major, minor)` of a kernel release string such as `6.1.0-18-amd64`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn memlock(fs: &HostFs, measured: &Measured) -> Finding {
    const NAME: &str = "locked memory (RLIMIT_MEMLOCK)";
    let release = fs.read("/proc/sys/kernel/osrelease").unwrap_or_default();
    let limit = measured
        .memlock
        .map_or("unlimited".to_owned(), |b| format!("{} KiB", b / 1024));
    match kernel_version(&release) {
        // Since 5.12 ring memory is charged to the memory cgroup instead.
        Some(v) if v >= (5, 12) => finding(
            NAME,
            Verdict::Pass,
            format!("Linux {release}: rings are not charged to it (limit {limit}); registered buffers are not used"),
            "",
        ),
        Some(_) => match measured.memlock {
            Some(b) if b < measured.ring_bytes => finding(
                NAME,
                Verdict::Fail,
                format!("Linux {release} charges rings to it: {limit}, the rings need {} KiB", measured.ring_bytes.div_ceil(1024)),
                "raise it: `ulimit -l unlimited`, LimitMEMLOCK=infinity in the systemd unit, or --ulimit memlock=-1 for docker",
            ),
            _ => finding(NAME, Verdict::Pass, format!("{limit}, the rings need {} KiB", measured.ring_bytes.div_ceil(1024)), ""),
        },
        None => finding(
            NAME,
            Verdict::Warn,
            format!("kernel release unreadable {release:?}; limit {limit}"),
            "on Linux before 5.12, keep `ulimit -l` above the rings' size",
        ),
    }
}

fn governor(fs: &HostFs) -> Finding {
    const NAME: &str = "cpu frequency governor";
    let cpus = fs.numbered("/sys/devices/system/cpu", "cpu");
    let govs: Vec<String> = cpus
        .iter()
        .filter_map(|c| {
            fs.read(&format!(
                "/sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor"
            ))
        })
        .collect();
    if govs.is_empty() {
        return finding(NAME, Verdict::Warn, "not visible (no cpufreq: a VM, or the driver is missing)", "check the host's or hypervisor's power settings: frequency scaling adds wake-up latency");
    }
    let slow: Vec<&String> = govs
        .iter()
        .filter(|g| g.as_str() != "performance")
        .collect();
    if slow.is_empty() {
        finding(NAME, Verdict::Pass, "performance on every CPU", "")
    } else {
        finding(
            NAME,
            Verdict::Warn,
            format!(
                "{} of {} CPUs not on performance (e.g. {})",
                slow.len(),
                govs.len(),
                slow[0]
            ),
            "cpupower frequency-set -g performance",
        )
    }
}

fn transparent_hugepages(fs: &HostFs) -> Finding {
    const NAME: &str = "transparent huge pages";
    match fs.read("/sys/kernel/mm/transparent_hugepage/enabled").as_deref().and_then(selected).map(str::to_owned) {
        None => finding(NAME, Verdict::Pass, "not available", ""),
        Some(s) if s == "always" => finding(NAME, Verdict::Warn, "always", "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled (compaction stalls show up as latency spikes)"),
        Some(s) => finding(NAME, Verdict::Pass, s, ""),
    }
}

fn clocksource(fs: &HostFs) -> Finding {
    const NAME: &str = "clocksource";
    match fs.read("/sys/devices/system/clocksource/clocksource0/current_clocksource") {
        Some(c) if c == "tsc" => finding(NAME, Verdict::Pass, "tsc", ""),
        Some(c) => finding(NAME, Verdict::Warn, c, "use tsc (clocksource=tsc tsc=reliable on the kernel command line) so timestamps cost nanoseconds, not a system call"),
        None => finding(NAME, Verdict::Warn, "not visible", "check /sys/devices/system/clocksource"),
    }
}

fn smt(fs: &HostFs) -> Finding {
    const NAME: &str = "SMT (hyper-threading)";
    match fs.read("/sys/devices/system/cpu/smt/active").as_deref() {
        Some("1") => finding(
            NAME,
            Verdict::Warn,
            "active",
            "pin workers to one thread per core (see `feedrelay topology`), or turn SMT off",
        ),
        Some(_) => finding(NAME, Verdict::Pass, "off", ""),
        None => finding(NAME, Verdict::Pass, "not supported", ""),
    }
}

fn isolated(fs: &HostFs) -> Finding {
    const NAME: &str = "isolated cores";
    let list = fs
        .read("/sys/devices/system/cpu/isolated")
        .unwrap_or_default();
    match parse_cpu_list(&list) {
        Some(cpus) if !cpus.is_empty() => finding(NAME, Verdict::Pass, list.clone(), ""),
        Some(_) => finding(NAME, Verdict::Warn, "none", "isolate the workers' cores (isolcpus= / nohz_full= or cpusets) so nothing else runs on them"),
        None => finding(NAME, Verdict::Warn, format!("unreadable list {list:?}"), "check /sys/devices/system/cpu/isolated"),
    }
}

fn socket_buffers(fs: &HostFs) -> Finding {
    const NAME: &str = "socket buffer limits";
    let get = |k: &str| {
        fs.read(&format!("/proc/sys/net/core/{k}"))
            .and_then(|v| v.parse::<u64>().ok())
    };
    match (get("rmem_max"), get("wmem_max")) {
        (Some(r), Some(w)) if r >= MIN_SOCKET_BUFFER && w >= MIN_SOCKET_BUFFER => finding(NAME, Verdict::Pass, format!("rmem_max {r}, wmem_max {w}"), ""),
        (Some(r), Some(w)) => finding(NAME, Verdict::Warn, format!("rmem_max {r}, wmem_max {w}"), format!("sysctl -w net.core.rmem_max={MIN_SOCKET_BUFFER} net.core.wmem_max={MIN_SOCKET_BUFFER}")),
        _ => finding(NAME, Verdict::Warn, "not visible", "check net.core.rmem_max and net.core.wmem_max"),
    }
}

fn fd_limit(measured: &Measured) -> Finding {
    const NAME: &str = "open-file limit";
    let (soft, hard) = measured.nofile;
    let need = measured.max_connections + 64;
    let found = format!(
        "soft {soft}, hard {hard}; max_connections {} needs {need}",
        measured.max_connections
    );
    if hard < need {
        finding(
            NAME,
            Verdict::Fail,
            found,
            format!("raise the hard limit: ulimit -Hn {need} (or LimitNOFILE= in the unit)"),
        )
    } else if soft < need {
        finding(
            NAME,
            Verdict::Pass,
            format!("{found} (the relay raises its soft limit)"),
            "",
        )
    } else {
        finding(NAME, Verdict::Pass, found, "")
    }
}

/// The worst verdict: what `feedrelay check` exits with (0, 1, 2).
pub fn exit_code(findings: &[Finding]) -> u8 {
    match findings.iter().map(|f| f.verdict).max() {
        Some(Verdict::Fail) => 2,
        Some(Verdict::Warn) => 1,
        _ => 0,
    }
}

/// The human table.
pub fn render(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        out.push_str(&format!(
            "{:<4}  {:<24} {}\n",
            f.verdict.name(),
            f.name,
            f.found
        ));
        if !f.fix.is_empty() {
            out.push_str(&format!("      {:<24} fix: {}\n", "", f.fix));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A fixture tree, removed when dropped.
    struct Tree(HostFs, PathBuf);

    impl std::ops::Deref for Tree {
        type Target = HostFs;
        fn deref(&self) -> &HostFs {
            &self.0
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }

    /// A fixture tree written from (path, contents) pairs.
    fn tree(name: &str, files: &[(&str, &str)]) -> Tree {
        let root =
            std::env::temp_dir().join(format!("feedrelay-host-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        for (p, c) in files {
            let path: PathBuf = root.join(p.trim_start_matches('/'));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, c).unwrap();
        }
        Tree(HostFs::new(root.clone()), root)
    }

    fn measured(max_connections: u64) -> Measured {
        Measured {
            ring: None,
            nofile: (1024, 1 << 20),
            max_connections,
            memlock: Some(8 << 20),
            ring_bytes: 2 * 256 * RING_BYTES_PER_ENTRY,
        }
    }

    fn verdict(fs: &[Finding], name: &str) -> Verdict {
        fs.iter().find(|f| f.name == name).unwrap().verdict
    }

    #[test]
    fn a_tuned_host_passes_everything() {
        let fs = tree(
            "tuned",
            &[
                ("/proc/sys/kernel/io_uring_disabled", "0\n"),
                ("/proc/sys/kernel/osrelease", "6.1.0-18-amd64\n"),
                (
                    "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor",
                    "performance\n",
                ),
                (
                    "/sys/devices/system/cpu/cpu1/cpufreq/scaling_governor",
                    "performance\n",
                ),
                (
                    "/sys/kernel/mm/transparent_hugepage/enabled",
                    "always [madvise] never\n",
                ),
                (
                    "/sys/devices/system/clocksource/clocksource0/current_clocksource",
                    "tsc\n",
                ),
                ("/sys/devices/system/cpu/smt/active", "0\n"),
                ("/sys/devices/system/cpu/isolated", "2-7\n"),
                ("/proc/sys/net/core/rmem_max", "16777216\n"),
                ("/proc/sys/net/core/wmem_max", "16777216\n"),
            ],
        );
        let f = run(&fs, &measured(10_000));
        assert!(
            f.iter().all(|f| f.verdict == Verdict::Pass),
            "{}",
            render(&f)
        );
        assert_eq!(exit_code(&f), 0);
    }

    #[test]
    fn an_untuned_host_warns_with_fixes() {
        let fs = tree(
            "untuned",
            &[
                ("/proc/sys/kernel/io_uring_disabled", "1\n"),
                (
                    "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor",
                    "powersave\n",
                ),
                (
                    "/sys/kernel/mm/transparent_hugepage/enabled",
                    "[always] madvise never\n",
                ),
                (
                    "/sys/devices/system/clocksource/clocksource0/current_clocksource",
                    "hpet\n",
                ),
                ("/sys/devices/system/cpu/smt/active", "1\n"),
                ("/sys/devices/system/cpu/isolated", "\n"),
                ("/proc/sys/net/core/rmem_max", "212992\n"),
                ("/proc/sys/net/core/wmem_max", "212992\n"),
            ],
        );
        let f = run(&fs, &measured(10_000));
        // No osrelease in this tree: unknown kernel, warned about.
        assert_eq!(verdict(&f, "locked memory (RLIMIT_MEMLOCK)"), Verdict::Warn);
        for name in [
            "io_uring",
            "cpu frequency governor",
            "transparent huge pages",
            "clocksource",
            "SMT (hyper-threading)",
            "isolated cores",
            "socket buffer limits",
        ] {
            assert_eq!(verdict(&f, name), Verdict::Warn, "{name}: {}", render(&f));
            assert!(
                !f.iter().find(|x| x.name == name).unwrap().fix.is_empty(),
                "{name} has a fix"
            );
        }
        assert_eq!(exit_code(&f), 1);
    }

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(kernel_version("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(kernel_version("5.12"), Some((5, 12)));
        assert_eq!(kernel_version("4.19.0+"), Some((4, 19)));
        assert_eq!(kernel_version("garbage"), None);
        // An old kernel with enough locked memory passes.
        let fs = tree("old-ok", &[("/proc/sys/kernel/osrelease", "5.4.0\n")]);
        let f = run(&fs, &measured(10));
        assert_eq!(verdict(&f, "locked memory (RLIMIT_MEMLOCK)"), Verdict::Pass);
    }

    #[test]
    fn blockers_fail() {
        let fs = tree(
            "blocked",
            &[
                ("/proc/sys/kernel/io_uring_disabled", "2\n"),
                ("/proc/sys/kernel/osrelease", "5.10.0-28-amd64\n"),
            ],
        );
        let f = run(&fs, &measured(10_000));
        assert_eq!(verdict(&f, "io_uring"), Verdict::Fail);
        let f = run(
            &fs,
            &Measured {
                ring: Some(Err("EPERM".into())),
                nofile: (1024, 4096),
                max_connections: 10_000,
                memlock: Some(64 << 10),
                ring_bytes: 2 * 4096 * RING_BYTES_PER_ENTRY,
            },
        );
        assert_eq!(verdict(&f, "io_uring"), Verdict::Fail);
        assert_eq!(verdict(&f, "open-file limit"), Verdict::Fail);
        // Linux 5.10 charges rings to RLIMIT_MEMLOCK: 64 KiB is below 1 MiB of rings.
        assert_eq!(verdict(&f, "locked memory (RLIMIT_MEMLOCK)"), Verdict::Fail);
        assert_eq!(exit_code(&f), 2);
        // A VM without cpufreq or SMT files: warned about, not failed.
        assert_eq!(verdict(&f, "cpu frequency governor"), Verdict::Warn);
        assert_eq!(verdict(&f, "SMT (hyper-threading)"), Verdict::Pass);
    }
}
