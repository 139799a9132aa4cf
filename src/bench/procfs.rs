//! What /proc says: a process's CPU time (user and system apart), and the host's TCP
//! segments sent, for per-delivery CPU and segment figures.

use std::time::Duration;

use crate::io::worker::clock_ticks_per_second;

/// A process's CPU time so far: in user space and in the kernel, apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// `utime`: the process's own code.
    pub user: Duration,
    /// `stime`: the kernel on its behalf (on loopback, the receivers' TCP work too).
    pub sys: Duration,
}

impl CpuTimes {
    /// User and system together.
    pub fn total(self) -> Duration {
        self.user + self.sys
    }

    /// What was spent since `before`.
    pub fn since(self, before: CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user.saturating_sub(before.user),
            sys: self.sys.saturating_sub(before.sys),
        }
    }
}

impl std::ops::Add for CpuTimes {
    type Output = CpuTimes;

    fn add(self, o: CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user + o.user,
            sys: self.sys + o.sys,
        }
    }
}

/// CPU time of a process so far, user and system apart, from /proc/PID/stat.
pub fn process_cpu_times(pid: u32) -> Option<CpuTimes> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after ") ".
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = clock_ticks_per_second();
    let of = |t: u64| Duration::from_nanos(t * 1_000_000_000 / ticks);
    Some(CpuTimes {
        user: of(utime),
        sys: of(stime),
    })
}

/// CPU time (user + system) of a process so far, from /proc/PID/stat.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    process_cpu_times(pid).map(CpuTimes::total)
}

/// TCP segments this host has sent (`OutSegs` in /proc/net/snmp), all sockets, all
/// processes: on loopback a segment's receive work lands on its sender, so fewer,
/// fuller writes are what lowers CPU.
pub fn tcp_out_segments() -> Option<u64> {
    net_counter("/proc/net/snmp", "Tcp:", "OutSegs")
}

/// IP bytes this host has sent (`OutOctets` under `IpExt:` in /proc/net/netstat),
/// headers included, all sockets: on loopback, every byte a socket sends.
pub fn ip_out_octets() -> Option<u64> {
    net_counter("/proc/net/netstat", "IpExt:", "OutOctets")
}

/// A counter of a /proc/net table: the line pair starting with `prefix` (names, then
/// values), the value under `name`.
fn net_counter(file: &str, prefix: &str, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let mut rows = text.lines().filter(|l| l.starts_with(prefix));
    let names: Vec<&str> = rows.next()?.split_whitespace().collect();
    let values: Vec<&str> = rows.next()?.split_whitespace().collect();
    let at = names.iter().position(|&n| n == name)?;
    values.get(at)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_cpu_time() {
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {}
        assert!(process_cpu(std::process::id()).is_some_and(|d| d > Duration::ZERO));
        assert!(process_cpu(u32::MAX).is_none());
    }

    #[test]
    fn counts_ip_bytes_sent() {
        let before = ip_out_octets().unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        std::io::Write::write_all(&mut c, &[0u8; 10_000]).unwrap();
        assert!(ip_out_octets().unwrap() >= before + 10_000);
    }

    #[test]
    fn counts_tcp_segments_sent() {
        let before = tcp_out_segments().unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert!(
            tcp_out_segments().unwrap() > before,
            "a handshake sends segments"
        );
    }
}
