//! `feedrelay topology`: the host's CPUs as an operator pinning workers needs to see
//! them — SMT siblings, NUMA nodes, shared caches, isolated and nohz_full CPUs, where
//! the NIC's interrupts go — and, for a config, which worker sits on which core and what
//! is wrong with that choice.

use std::collections::BTreeMap;

use super::{parse_cpu_list, HostFs};

/// One CPU as the kernel describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpu {
    /// Its number.
    pub id: u32,
    /// CPUs sharing its physical core (itself included).
    pub siblings: Vec<u32>,
    /// Its NUMA node, if the kernel says.
    pub node: Option<u32>,
    /// CPUs sharing its last-level cache (itself included).
    pub llc: Vec<u32>,
}

/// What the host looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Every CPU, by number.
    pub cpus: Vec<Cpu>,
    /// CPUs isolated from the scheduler (`isolcpus=`).
    pub isolated: Vec<u32>,
    /// CPUs without the periodic tick (`nohz_full=`).
    pub nohz_full: Vec<u32>,
    /// CPUs that NIC interrupts may land on, per interrupt name.
    pub nic_irqs: BTreeMap<String, Vec<u32>>,
}

/// Interrupt names that belong to network interfaces (common drivers).
const NIC_IRQ_HINTS: [&str; 7] = ["eth", "ens", "enp", "eno", "mlx", "ixgbe", "i40e"];

/// Whether an interrupt name is a NIC queue: a known driver prefix, or a virtio-net
/// queue (`virtio1-input.0`; other virtio devices also start with `virtio`).
fn is_nic_irq(name: &str) -> bool {
    NIC_IRQ_HINTS.iter().any(|h| name.starts_with(h))
        || (name.starts_with("virtio") && (name.contains("-input") || name.contains("-output")))
}

impl Topology {
    /// Reads the topology under `fs`.
    pub fn read(fs: &HostFs) -> Topology {
        let cpu_dir = "/sys/devices/system/cpu";
        let list = |p: String| {
            fs.read(&p)
                .and_then(|s| parse_cpu_list(&s))
                .unwrap_or_default()
        };
        let nodes: Vec<(u32, Vec<u32>)> = fs
            .numbered("/sys/devices/system/node", "node")
            .into_iter()
            .map(|n| (n, list(format!("/sys/devices/system/node/node{n}/cpulist"))))
            .collect();
        let cpus = fs
            .numbered(cpu_dir, "cpu")
            .into_iter()
            .map(|id| {
                let mut siblings = list(format!("{cpu_dir}/cpu{id}/topology/thread_siblings_list"));
                if siblings.is_empty() {
                    siblings = vec![id];
                }
                // The last-level cache: the highest-numbered cache index.
                let llc = fs
                    .numbered(&format!("{cpu_dir}/cpu{id}/cache"), "index")
                    .last()
                    .map(|i| list(format!("{cpu_dir}/cpu{id}/cache/index{i}/shared_cpu_list")))
                    .unwrap_or_default();
                let node = nodes.iter().find(|(_, c)| c.contains(&id)).map(|(n, _)| *n);
                Cpu {
                    id,
                    siblings,
                    node,
                    llc,
                }
            })
            .collect();
        let mut nic_irqs = BTreeMap::new();
        if let Some(interrupts) = fs.read("/proc/interrupts") {
            for line in interrupts.lines().skip(1) {
                let Some((irq, rest)) = line.trim_start().split_once(':') else {
                    continue;
                };
                let Ok(irq) = irq.trim().parse::<u32>() else {
                    continue;
                };
                let name = rest.split_whitespace().last().unwrap_or("");
                if is_nic_irq(name) {
                    let cpus = list(format!("/proc/irq/{irq}/smp_affinity_list"));
                    nic_irqs.insert(format!("{irq} {name}"), cpus);
                }
            }
        }
        Topology {
            cpus,
            isolated: list(format!("{cpu_dir}/isolated")),
            nohz_full: list(format!("{cpu_dir}/nohz_full")),
            nic_irqs,
        }
    }

    fn cpu(&self, id: u32) -> Option<&Cpu> {
        self.cpus.iter().find(|c| c.id == id)
    }

    /// What is wrong with pinning workers to `cores` (worker i on `cores[i]`).
    pub fn conflicts(&self, cores: &[usize]) -> Vec<String> {
        let mut out = Vec::new();
        let irq_cpus: Vec<u32> = self.nic_irqs.values().flatten().copied().collect();
        for (w, &core) in cores.iter().enumerate() {
            let c = core as u32;
            let Some(cpu) = self.cpu(c) else {
                out.push(format!("worker {w}: core {c} does not exist on this host"));
                continue;
            };
            if c == 0 {
                out.push(format!(
                    "worker {w}: core 0 takes housekeeping work and most interrupts; pick another"
                ));
            }
            if !self.isolated.is_empty() && !self.isolated.contains(&c) {
                out.push(format!(
                    "worker {w}: core {c} is not in the isolated set {:?}",
                    self.isolated
                ));
            }
            if irq_cpus.contains(&c) {
                out.push(format!("worker {w}: core {c} takes NIC interrupts"));
            }
            for (v, &other) in cores.iter().enumerate().skip(w + 1) {
                let o = other as u32;
                if o == c {
                    out.push(format!("workers {w} and {v} share core {c}"));
                } else if cpu.siblings.contains(&o) {
                    out.push(format!("workers {w} and {v} are SMT siblings ({c}, {o}): they share one physical core"));
                }
            }
        }
        let nodes: std::collections::BTreeSet<u32> = cores
            .iter()
            .filter_map(|&c| self.cpu(c as u32)?.node)
            .collect();
        if nodes.len() > 1 {
            out.push(format!(
                "workers span NUMA nodes {nodes:?}: cross-node hand-offs cost memory latency"
            ));
        }
        out
    }

    /// The human table, with the worker map if `cores` is given.
    pub fn render(&self, cores: Option<&[usize]>) -> String {
        let mut out =
            String::from("cpu  node  siblings      llc shared with   isolated nohz_full worker\n");
        for c in &self.cpus {
            let worker = cores
                .and_then(|cs| cs.iter().position(|&x| x as u32 == c.id))
                .map_or(String::new(), |w| format!("w{w}"));
            out.push_str(&format!(
                "{:<4} {:<5} {:<13} {:<16} {:<8} {:<9} {}\n",
                c.id,
                c.node.map_or("-".into(), |n| n.to_string()),
                fmt_list(&c.siblings),
                fmt_list(&c.llc),
                if self.isolated.contains(&c.id) {
                    "yes"
                } else {
                    ""
                },
                if self.nohz_full.contains(&c.id) {
                    "yes"
                } else {
                    ""
                },
                worker
            ));
        }
        if self.nic_irqs.is_empty() {
            out.push_str("NIC interrupts: none visible\n");
        }
        for (irq, cpus) in &self.nic_irqs {
            out.push_str(&format!("NIC interrupt {irq} → cpus {}\n", fmt_list(cpus)));
        }
        if let Some(cs) = cores {
            let conflicts = self.conflicts(cs);
            if conflicts.is_empty() {
                out.push_str("worker map: no conflicts\n");
            }
            for c in conflicts {
                out.push_str(&format!("conflict: {c}\n"));
            }
        }
        out
    }

    /// The same as JSON, for scripts.
    pub fn to_json(&self, cores: Option<&[usize]>) -> String {
        let cpus: Vec<String> = self
            .cpus
            .iter()
            .map(|c| {
                format!(
                    r#"{{"cpu":{},"node":{},"siblings":{:?},"llc":{:?}}}"#,
                    c.id,
                    c.node.map_or("null".into(), |n| n.to_string()),
                    c.siblings,
                    c.llc
                )
            })
            .collect();
        let irqs: Vec<String> = self
            .nic_irqs
            .iter()
            .map(|(k, v)| format!("{k:?}:{v:?}"))
            .collect();
        let conflicts: Vec<String> = cores
            .map(|cs| self.conflicts(cs))
            .unwrap_or_default()
            .iter()
            .map(|c| format!("{c:?}"))
            .collect();
        format!(
            r#"{{"cpus":[{}],"isolated":{:?},"nohz_full":{:?},"nic_irqs":{{{}}},"workers":{},"conflicts":[{}]}}"#,
            cpus.join(","),
            self.isolated,
            self.nohz_full,
            irqs.join(","),
            cores.map_or("null".into(), |c| format!("{c:?}")),
            conflicts.join(",")
        )
    }
}

fn fmt_list(v: &[u32]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nic_interrupt_names() {
        assert!(is_nic_irq("eth0-TxRx-0") && is_nic_irq("mlx5_comp3@pci:0000:3b:00.0"));
        assert!(is_nic_irq("virtio1-input.0") && is_nic_irq("virtio1-output.0"));
        assert!(!is_nic_irq("virtio0-config") && !is_nic_irq("nvme0q1"));
    }
}
