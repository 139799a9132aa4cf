//! The relay's CPU time over a run's measured window, user and kernel apart: the
//! total from /proc, which is exact, split by samples of the relay's threads
//! ([`crate::io::cpu_mode`]) where perf events allow it. /proc's own split is made by
//! the scheduler tick, and a load whose rate is a multiple of the tick's runs in step
//! with it, so that split says more about where the tick lands than about the work.

use super::procfs::{process_cpu_times, CpuTimes};
use crate::io::cpu_mode::CpuModeSampler;

/// Where a run's user/system split of the relay's CPU time came from. The total is
/// exact either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuSplit {
    /// Samples of the relay's threads (`io::cpu_mode`): this many, user and kernel.
    Sampled(u64),
    /// The scheduler tick's split in /proc, and why not samples.
    Ticks(String),
    /// No relay process to measure (the floor, or no `--relay-pid`).
    NoRelay,
}

impl CpuSplit {
    /// The split of a variant over several rounds: the tick's if any round's was.
    pub fn and(self, other: CpuSplit) -> CpuSplit {
        match (self, other) {
            (CpuSplit::Ticks(why), _) | (_, CpuSplit::Ticks(why)) => CpuSplit::Ticks(why),
            (CpuSplit::Sampled(a), CpuSplit::Sampled(b)) => CpuSplit::Sampled(a + b),
            (CpuSplit::NoRelay, other) | (other, CpuSplit::NoRelay) => other,
        }
    }

    /// How the JSON names it.
    pub fn name(&self) -> &'static str {
        match self {
            CpuSplit::Sampled(_) => "samples",
            CpuSplit::Ticks(_) => "ticks",
            CpuSplit::NoRelay => "none",
        }
    }
}

/// The relay processes' CPU time over the measured window: the total from /proc
/// (exact), split into user and kernel by samples of their threads where perf events
/// allow it (/proc's own split is the scheduler tick's, which a load whose rate is a
/// multiple of the tick's biases).
pub(super) struct RelayCpu {
    pids: Vec<u32>,
    before: Option<CpuTimes>,
    /// The sampler, or the split the run gets without one.
    sampler: Result<CpuModeSampler, CpuSplit>,
}

impl RelayCpu {
    /// Reads the relays' CPU time so far and, if `sample`, starts sampling their
    /// threads.
    pub(super) fn start(pids: &[u32], sample: bool) -> RelayCpu {
        let sampler = if pids.is_empty() {
            Err(CpuSplit::NoRelay)
        } else if !sample {
            Err(CpuSplit::Ticks("not asked for: --cpu-samples".into()))
        } else {
            CpuModeSampler::for_processes(pids).map_err(|e| CpuSplit::Ticks(e.to_string()))
        };
        RelayCpu {
            pids: pids.to_vec(),
            before: Self::read(pids),
            sampler,
        }
    }

    fn read(pids: &[u32]) -> Option<CpuTimes> {
        let mut all = pids.iter().map(|&p| process_cpu_times(p));
        let first = all.next()??;
        all.try_fold(first, |sum, t| Some(sum + t?))
    }

    /// Empties the sample rings: at least once a second.
    pub(super) fn drain(&mut self) {
        if let Ok(sampler) = self.sampler.as_mut() {
            sampler.drain();
        }
    }

    /// The CPU time since [`start`](Self::start), and where its split came from.
    pub(super) fn finish(self) -> (Option<CpuTimes>, CpuSplit) {
        let spent = Self::read(&self.pids)
            .zip(self.before)
            .map(|(after, before)| after.since(before));
        let modes = self.sampler.map(|mut sampler| sampler.drain());
        match modes {
            Ok(m) => match m.user_share() {
                Some(share) => (
                    spent.map(|cpu| cpu.split_by(share)),
                    CpuSplit::Sampled(m.user + m.kernel),
                ),
                None => (
                    spent,
                    CpuSplit::Ticks("no samples: the relay took no CPU time".into()),
                ),
            },
            Err(split) => (spent, split),
        }
    }
}
