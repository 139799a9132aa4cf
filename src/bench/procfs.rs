//! What /proc says: a process's CPU time (user and system apart), the host's TCP
//! segments sent and its inter-processor interrupts, for per-delivery figures; and how
//! busy the generator's own cores were, to tell a relay's latency from the generator's.

use std::time::Duration;

use crate::io::worker::clock_ticks_per_second;

/// A process's CPU time so far: in user space and in the kernel, apart.
///
/// From `/proc/PID/stat`, the sum is exact (the kernel scales it to the scheduler's
/// runtime) but the split is the scheduler tick's, which a load in step with the tick
/// biases: [`split_by`](Self::split_by) puts sampled shares on the exact sum
/// ([`crate::io::cpu_mode`]).
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

    /// The same total, split by `user_share` (0 to 1) instead.
    pub fn split_by(self, user_share: f64) -> CpuTimes {
        let total = self.total();
        let user = total.mul_f64(user_share.clamp(0.0, 1.0));
        CpuTimes {
            user,
            sys: total.saturating_sub(user),
        }
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
    cpu_times_in(&format!("/proc/{pid}/stat"))
}

/// CPU time of one thread of a process so far, user and system apart, from
/// /proc/PID/task/TID/stat.
pub fn thread_cpu_times(pid: u32, tid: i32) -> Option<CpuTimes> {
    cpu_times_in(&format!("/proc/{pid}/task/{tid}/stat"))
}

/// `utime` and `stime` of a `stat` file of /proc.
fn cpu_times_in(path: &str) -> Option<CpuTimes> {
    let stat = std::fs::read_to_string(path).ok()?;
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

/// The host-wide counters a run reads at both ends of its measured window (every
/// socket and process on the host, not the relay's alone).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostCounters {
    /// TCP segments sent ([`tcp_out_segments`]): the relay's deliveries, the
    /// publisher's sends, acknowledgements.
    pub tcp_segments: Option<u64>,
    /// IP bytes sent, headers included ([`ip_out_octets`]): what compression saves
    /// shows here.
    pub ip_bytes: Option<u64>,
    /// Inter-processor (function-call) interrupts taken
    /// ([`function_call_interrupts`]): with loopback's receive steered to another
    /// core, what handing segments to it cost the senders.
    pub ipis: Option<u64>,
    /// Busy ticks of the cores the generator may run on ([`own_cores_ticks`]).
    pub generator_busy: Option<u64>,
    /// All ticks of those cores, busy or idle.
    pub generator_ticks: Option<u64>,
}

impl HostCounters {
    /// The counters now (each `None` where /proc does not have it).
    pub fn read() -> HostCounters {
        let cores = own_cores_ticks();
        HostCounters {
            tcp_segments: tcp_out_segments(),
            ip_bytes: ip_out_octets(),
            ipis: function_call_interrupts(),
            generator_busy: cores.map(|(busy, _)| busy),
            generator_ticks: cores.map(|(_, all)| all),
        }
    }

    /// How busy the generator's cores were, in percent (`None` if /proc/stat could not
    /// tell, or no time passed).
    pub fn generator_busy_percent(&self) -> Option<f64> {
        let (busy, all) = (self.generator_busy?, self.generator_ticks?);
        (all > 0).then(|| 100.0 * busy as f64 / all as f64)
    }

    /// What each counter gained since `before` (`None` where either end is missing).
    pub fn since(self, before: HostCounters) -> HostCounters {
        self.each(before, u64::saturating_sub)
    }

    /// Two windows' gains together (`None` where either is missing): rounds summed.
    pub fn plus(self, other: HostCounters) -> HostCounters {
        self.each(other, |a, b| a + b)
    }

    fn each(self, o: HostCounters, f: impl Fn(u64, u64) -> u64) -> HostCounters {
        let both = |a: Option<u64>, b: Option<u64>| Some(f(a?, b?));
        HostCounters {
            tcp_segments: both(self.tcp_segments, o.tcp_segments),
            ip_bytes: both(self.ip_bytes, o.ip_bytes),
            ipis: both(self.ipis, o.ipis),
            generator_busy: both(self.generator_busy, o.generator_busy),
            generator_ticks: both(self.generator_ticks, o.generator_ticks),
        }
    }
}

/// Busy and total time, in ticks, of the CPUs the calling thread may run on: the
/// generator's cores, once `--bench-cores` has pinned it (every CPU otherwise). Busy is
/// everything but idle and I/O wait, so the softirq work of the segments it receives
/// counts, and so does time a hypervisor gave to others (`steal`): in both the core was
/// not the generator's to use. A core near 100% busy means the generator queues
/// messages itself, and its latency is then in every variant's figures.
pub fn own_cores_ticks() -> Option<(u64, u64)> {
    let cpus: Vec<usize> = core_affinity::get_core_ids()?
        .into_iter()
        .map(|c| c.id)
        .collect();
    cores_ticks_in(&std::fs::read_to_string("/proc/stat").ok()?, &cpus)
}

/// Busy and total ticks of `cpus` in a /proc/stat text; `None` unless every one of
/// them has a line.
fn cores_ticks_in(text: &str, cpus: &[usize]) -> Option<(u64, u64)> {
    let (mut busy, mut all, mut found) = (0u64, 0u64, 0usize);
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(cpu) = fields
            .next()
            .and_then(|label| label.strip_prefix("cpu"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if !cpus.contains(&cpu) {
            continue;
        }
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let ticks: Vec<u64> = fields
            .take(8)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        let total: u64 = ticks.iter().sum();
        let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
        busy += total.saturating_sub(idle);
        all += total;
        found += 1;
    }
    (found > 0 && found == cpus.len()).then_some((busy, all))
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

/// Function-call interrupts every CPU of this host has taken (/proc/interrupts: the
/// `CAL` row on x86, an `IPI` row on arm64): with loopback's receive processing steered
/// to another core (`rps_cpus`), each burst of segments the sender hands to that core's
/// backlog costs the sender one of these inter-processor interrupts, which a real NIC
/// would not (its interrupt goes to the receiving core). In a VM each one is an exit to
/// the hypervisor, and a large share of the sender's kernel time.
pub fn function_call_interrupts() -> Option<u64> {
    call_interrupts_in(&std::fs::read_to_string("/proc/interrupts").ok()?)
}

/// The sum of the per-CPU counts on the function-call row of a /proc/interrupts text
/// (one count per CPU of the header line, after the row's label).
fn call_interrupts_in(text: &str) -> Option<u64> {
    let cpus = text.lines().next()?.split_whitespace().count();
    let row = text
        .lines()
        .find(|l| l.trim_end().ends_with("Function call interrupts"))?;
    let mut fields = row.split_whitespace().skip(1);
    (0..cpus).map(|_| fields.next()?.parse::<u64>().ok()).sum()
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
    fn a_sampled_share_splits_the_exact_total() {
        let ticks = CpuTimes {
            user: Duration::from_millis(10),
            sys: Duration::from_millis(90),
        };
        let sampled = ticks.split_by(0.4);
        assert_eq!(sampled.total(), ticks.total());
        assert_eq!(sampled.user, Duration::from_millis(40));
        assert_eq!(
            ticks.split_by(1.5).sys,
            Duration::ZERO,
            "a share is at most 1"
        );
        assert_eq!(ticks.split_by(-1.0).user, Duration::ZERO);
    }

    #[test]
    fn host_counters_gain_only_where_both_ends_are_known() {
        let before = HostCounters {
            tcp_segments: Some(10),
            ip_bytes: None,
            ipis: Some(5),
            ..HostCounters::default()
        };
        let after = HostCounters {
            tcp_segments: Some(25),
            ip_bytes: Some(100),
            ipis: Some(4),
            ..HostCounters::default()
        };
        let gained = after.since(before);
        assert_eq!(gained.tcp_segments, Some(15));
        assert_eq!(gained.ip_bytes, None, "unknown at the start");
        assert_eq!(
            gained.ipis,
            Some(0),
            "a counter that went back gains nothing"
        );
        let two = gained.plus(gained);
        assert_eq!(
            (two.tcp_segments, two.ip_bytes, two.ipis),
            (Some(30), None, Some(0))
        );
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
    fn sums_the_function_call_interrupts_of_every_cpu() {
        let text = "           CPU0       CPU1\n\
                    \x20 0:         12          0   IO-APIC   2-edge      timer\n\
                    RES:    4862049    4749391   Rescheduling interrupts\n\
                    CAL:       8463   14393746   Function call interrupts\n\
                    TLB:          3          4   TLB shootdowns\n";
        assert_eq!(call_interrupts_in(text), Some(8463 + 14393746));
        let arm = "       CPU0       CPU1\n\
                   IPI0:   5   6       Rescheduling interrupts\n\
                   IPI1:   7   8       Function call interrupts\n";
        assert_eq!(call_interrupts_in(arm), Some(15));
        assert_eq!(
            call_interrupts_in("CPU0\nRES: 1 Rescheduling interrupts\n"),
            None
        );
        let short = "CPU0 CPU1\nCAL: 1 Function call interrupts\n";
        assert_eq!(
            call_interrupts_in(short),
            None,
            "a count missing is not zero"
        );
        // This host's own (x86 and arm64 kernels both have the row).
        assert!(function_call_interrupts().is_some());
    }

    #[test]
    fn busy_time_of_the_generator_cores_only() {
        let text = "cpu  100 0 50 800 10 0 5 0 0 0\n\
                    cpu0 60 0 30 0 0 0 5 5 0 0\n\
                    cpu1 40 0 20 800 10 0 0 0 0 0\n\
                    intr 12345\n";
        // cpu1: 60 busy of 870 (idle and I/O wait are not busy).
        assert_eq!(cores_ticks_in(text, &[1]), Some((60, 870)));
        // cpu0: softirq and steal count as busy, the aggregate `cpu` line is not a core.
        assert_eq!(cores_ticks_in(text, &[0]), Some((100, 100)));
        assert_eq!(cores_ticks_in(text, &[0, 1]), Some((160, 970)));
        assert_eq!(cores_ticks_in(text, &[2]), None, "a core with no line");
        assert_eq!(cores_ticks_in(text, &[1, 2]), None, "not every core known");
        let c = HostCounters {
            generator_busy: Some(45),
            generator_ticks: Some(50),
            ..HostCounters::default()
        };
        assert_eq!(c.generator_busy_percent(), Some(90.0));
        assert_eq!(HostCounters::default().generator_busy_percent(), None);
        // This host's own.
        let (busy, all) = own_cores_ticks().unwrap();
        assert!(all > 0 && busy <= all);
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
