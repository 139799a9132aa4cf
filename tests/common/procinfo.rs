//! What a child process is doing, read from `/proc`, for a test that gave up waiting on
//! it: its threads (name and scheduler state) and its TCP sockets (addresses, state and
//! the bytes queued each way). A relay that does not exit on SIGTERM is then described
//! in the failure itself: which connection it still holds, and whether its peer reads.

use std::collections::HashMap;
use std::fs;

/// The threads and TCP sockets of process `pid`, one per line.
pub fn describe(pid: u32) -> String {
    let mut out = String::new();
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let stat = fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            // "tid (comm) S ...": the name may hold spaces, the state follows its ')'.
            let comm = stat.split(['(', ')']).nth(1).unwrap_or("?");
            let state = stat.rsplit(") ").next().and_then(|s| s.split(' ').next());
            out.push_str(&format!("thread {comm}: {}\n", state.unwrap_or("?")));
        }
    }
    let sockets = tcp_sockets();
    if let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) {
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy().into_owned();
            let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
            else {
                continue;
            };
            if let Some(line) = sockets.get(inode) {
                out.push_str(&format!("tcp {line}\n"));
            }
        }
    }
    out
}

/// Every TCP socket of this network namespace by inode: "local -> remote STATE
/// tx=N rx=N".
fn tcp_sockets() -> HashMap<String, String> {
    let mut by_inode = HashMap::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = fs::read_to_string(table).unwrap_or_default();
        for row in text.lines().skip(1) {
            let f: Vec<&str> = row.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            let (tx, rx) = f[4].split_once(':').unwrap_or(("?", "?"));
            let line = format!(
                "{} -> {} {} tx={} rx={}",
                address(f[1]),
                address(f[2]),
                state(f[3]),
                u64::from_str_radix(tx, 16).unwrap_or(0),
                u64::from_str_radix(rx, 16).unwrap_or(0),
            );
            by_inode.insert(f[9].to_string(), line);
        }
    }
    by_inode
}

/// "0100007F:1F90" (IPv4, the address's bytes as the kernel holds them) as
/// "127.0.0.1:8080"; an IPv6 address is left in hex with its port decoded.
fn address(hex: &str) -> String {
    let (ip, port) = hex.split_once(':').unwrap_or((hex, "0"));
    let port = u16::from_str_radix(port, 16).unwrap_or(0);
    match u32::from_str_radix(ip, 16) {
        Ok(v) if ip.len() == 8 => format!("{}:{port}", std::net::Ipv4Addr::from(v.swap_bytes())),
        _ => format!("[{ip}]:{port}"),
    }
}

/// The kernel's TCP state number as its name.
fn state(hex: &str) -> &'static str {
    const NAMES: [&str; 12] = [
        "?",
        "ESTABLISHED",
        "SYN_SENT",
        "SYN_RECV",
        "FIN_WAIT1",
        "FIN_WAIT2",
        "TIME_WAIT",
        "CLOSE",
        "CLOSE_WAIT",
        "LAST_ACK",
        "LISTEN",
        "CLOSING",
    ];
    let n = usize::from_str_radix(hex, 16).unwrap_or(0);
    NAMES.get(n).copied().unwrap_or("?")
}
