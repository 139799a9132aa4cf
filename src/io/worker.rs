//! Worker threads: one per configured core, each pinned and running its own ring.
//!
//! A worker owns everything it touches (its ring, its listener, its connections), so
//! the hot path shares nothing between cores. Pinning uses `core_affinity`; a worker
//! with no core in the [`CoreMap`] floats, which is what an unpinned run measures.

use std::future::Future;
use std::sync::Arc;
use std::thread;

use super::error::IoError;
use super::ring::{Ring, RingOptions};

/// Which core each worker is pinned to (`None`: not pinned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreMap {
    cores: Vec<Option<usize>>,
}

impl CoreMap {
    /// Builds the map from `--workers` and `--cores`. With cores given, there is one
    /// worker per core (and `workers`, if also given, must agree); with neither,
    /// [`default_workers`] unpinned workers. Every core must exist on this host.
    pub fn new(workers: Option<usize>, cores: Option<&[usize]>) -> Result<CoreMap, IoError> {
        Self::limited(workers, cores, usize::MAX)
    }

    /// [`new`](Self::new) for a program that can run at most `max` workers: more
    /// asked for is an error, and the default is held to `max` whatever the host.
    pub fn limited(
        workers: Option<usize>,
        cores: Option<&[usize]>,
        max: usize,
    ) -> Result<CoreMap, IoError> {
        let online: Vec<usize> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect();
        Self::for_host(workers, cores, max, &online)
    }

    /// [`limited`](Self::limited) on a host whose online CPUs are `online`.
    fn for_host(
        workers: Option<usize>,
        cores: Option<&[usize]>,
        max: usize,
        online: &[usize],
    ) -> Result<CoreMap, IoError> {
        let asked = workers.or(cores.map(<[usize]>::len));
        if let Some(n) = asked.filter(|&n| n > max) {
            return Err(IoError::Config(format!(
                "{n} workers asked for; at most {max} (the width of the routing mask)"
            )));
        }
        match (workers, cores) {
            (Some(0), _) => Err(IoError::Config("--workers must be at least 1".into())),
            (Some(n), Some(c)) if n != c.len() => Err(IoError::Config(format!(
                "--workers {n} but --cores lists {} cores; give one core per worker",
                c.len()
            ))),
            (_, Some([])) => Err(IoError::Config("--cores is empty".into())),
            (_, Some(c)) => {
                for core in c {
                    if !online.contains(core) {
                        return Err(IoError::Config(format!(
                            "core {core} is not online on this host (online: {online:?})"
                        )));
                    }
                }
                Ok(CoreMap {
                    cores: c.iter().map(|&c| Some(c)).collect(),
                })
            }
            (Some(n), None) => Ok(CoreMap {
                cores: vec![None; n],
            }),
            (None, None) => Ok(CoreMap {
                cores: vec![None; default_workers(online.len()).min(max)],
            }),
        }
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.cores.len()
    }

    /// The core of worker `i`, if pinned.
    pub fn core(&self, i: usize) -> Option<usize> {
        self.cores.get(i).copied().flatten()
    }
}

/// Workers when none are configured: half of the CPUs this process may run on, at
/// least one.
///
/// Not one per CPU: a relay's cost is mostly the kernel's network work, which runs
/// beside the workers (softirqs, the receivers' wake-ups), and the clients on a small
/// host need CPU too. Measured on a 2-core VM (tuning/RESULTS.md): one worker
/// against two, unpinned, used 28-50% less CPU per delivery with the same or lower
/// latency. On a host dedicated to the relay, give `cores` (one worker per core, pinned)
/// as `tuning/` describes.
pub fn default_workers(cpus: usize) -> usize {
    (cpus / 2).max(1)
}

/// Starts one thread per worker, pins it, sets up its ring and runs `body(i)` on it;
/// returns every worker's result, in worker order, once all have returned.
///
/// A worker that fails or dies is reported as soon as it does, without waiting for the
/// others: a relay missing a worker must not stay half-alive (its listener's share of
/// connections would go unserved), so the caller is expected to stop the process.
pub fn run_workers<F, Fut, T>(map: &CoreMap, body: F) -> Result<Vec<T>, IoError>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, IoError>>,
    T: Send + 'static,
{
    run_workers_with(map, |_| RingOptions::default(), body)
}

/// [`run_workers`], with worker `i`'s ring set up as `ring(i)` says.
pub fn run_workers_with<R, F, Fut, T>(map: &CoreMap, ring: R, body: F) -> Result<Vec<T>, IoError>
where
    R: Fn(usize) -> RingOptions,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, IoError>>,
    T: Send + 'static,
{
    let body = Arc::new(body);
    let (done_tx, done_rx) = std::sync::mpsc::channel::<(usize, Result<T, IoError>)>();
    for i in 0..map.workers() {
        let body = Arc::clone(&body);
        let core = map.core(i);
        let options = ring(i);
        let done = done_tx.clone();
        thread::Builder::new()
            .name(format!("feedrelay-w{i}"))
            .spawn(move || {
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    if let Some(id) = core {
                        if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
                            return Err(IoError::Config(format!(
                                "could not pin worker {i} to core {id}"
                            )));
                        }
                    }
                    let ring = Ring::with_options(&options)?;
                    ring.block_on(body(i))
                }));
                let outcome = run.unwrap_or_else(|payload| {
                    Err(IoError::WorkerPanicked {
                        worker: i,
                        cause: super::rt::panic_cause(payload.as_ref()).to_owned(),
                    })
                });
                let _ = done.send((i, outcome));
            })
            .map_err(|e| IoError::op("spawn worker thread", i, e))?;
    }
    drop(done_tx);
    let mut results: Vec<Option<T>> = (0..map.workers()).map(|_| None).collect();
    for _ in 0..map.workers() {
        match done_rx.recv() {
            Ok((i, Ok(v))) => results[i] = Some(v),
            Ok((_, Err(e))) => return Err(e),
            // Every sender is gone without a word: cannot happen (each thread sends).
            Err(_) => break,
        }
    }
    Ok(results.into_iter().flatten().collect())
}

/// Pins the calling thread, and every thread it starts afterwards, to `cores`.
pub fn pin_current_thread(cores: &[usize]) -> Result<(), IoError> {
    // SAFETY: cpu_set_t is plain data; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cores {
        if c >= libc::CPU_SETSIZE as usize {
            return Err(IoError::Config(format!("core {c} is past CPU_SETSIZE")));
        }
        // SAFETY: `c` is below CPU_SETSIZE, the set's capacity.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of that size.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(IoError::op(
            "pin to cores",
            format!("{cores:?}"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Sets the calling thread's timer slack (how late the kernel may end its sleeps, to
/// group wake-ups; 50 µs by default) to `ns`. For a thread that must wake on time.
pub fn set_timer_slack_ns(ns: u64) {
    // SAFETY: prctl(PR_SET_TIMERSLACK) takes an integer and touches no memory of ours;
    // failure leaves the default, which is only less precise.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong, 0, 0, 0) };
}

/// CPUs online on this host (not just those this process may run on).
pub fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as usize
}

/// The unit of CPU times in /proc (`USER_HZ`, clock ticks per second).
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks.max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_worker_is_reported_at_once_not_at_shutdown() {
        let map = CoreMap::new(Some(2), None).unwrap();
        let start = std::time::Instant::now();
        let result = run_workers(&map, |i| async move {
            if i == 1 {
                panic!("worker bug");
            }
            // Worker 0 would run for a long time: the caller must not wait for it.
            crate::io::rt::sleep(std::time::Duration::from_secs(30)).await;
            Ok(())
        });
        match result {
            Err(IoError::WorkerPanicked { worker: 1, cause }) => assert_eq!(cause, "worker bug"),
            other => panic!("expected worker 1's death, got {other:?}"),
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn worker_count_is_held_to_the_limit_on_hosts_with_more_cpus() {
        let online: Vec<usize> = (0..512).collect();
        let m = CoreMap::for_host(None, None, 64, &online).unwrap();
        assert_eq!(m.workers(), 64, "512 CPUs: the default stops at the limit");
        let e = CoreMap::for_host(Some(65), None, 64, &online).unwrap_err();
        assert!(e.to_string().contains("at most 64"), "{e}");
        let cores: Vec<usize> = (0..65).collect();
        assert!(CoreMap::for_host(None, Some(&cores), 64, &online).is_err());
        assert_eq!(
            CoreMap::for_host(Some(64), None, 64, &online)
                .unwrap()
                .workers(),
            64
        );
    }

    #[test]
    fn core_map_rules() {
        assert_eq!(CoreMap::new(Some(3), None).unwrap().workers(), 3);
        let m = CoreMap::new(None, Some(&[0])).unwrap();
        assert_eq!((m.workers(), m.core(0)), (1, Some(0)));
        assert!(CoreMap::new(Some(2), Some(&[0])).is_err());
        assert!(CoreMap::new(Some(0), None).is_err());
        assert!(CoreMap::new(None, Some(&[])).is_err());
        let err = CoreMap::new(None, Some(&[4096])).unwrap_err().to_string();
        assert!(err.contains("core 4096 is not online"), "{err}");
        assert!(CoreMap::new(None, None).unwrap().workers() >= 1);
        assert_eq!(
            [1, 2, 3, 8, 64].map(default_workers),
            [1, 1, 1, 4, 32],
            "half the CPUs, at least one"
        );
    }

    #[test]
    fn a_thread_pinned_to_a_core_runs_there_and_its_children_too() {
        std::thread::spawn(|| {
            pin_current_thread(&[0]).unwrap();
            let child = std::thread::spawn(|| core_affinity::get_core_ids().unwrap_or_default());
            let allowed = child.join().unwrap();
            assert_eq!(allowed.iter().map(|c| c.id).collect::<Vec<_>>(), [0]);
            assert!(pin_current_thread(&[100_000]).is_err());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn workers_run_pinned_on_their_own_ring() {
        let map = CoreMap::new(None, Some(&[0])).unwrap();
        run_workers(&map, |i| async move {
            assert_eq!(i, 0);
            // A ring operation works here: a connect to a closed port is refused.
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            drop(l);
            assert!(crate::io::ring::connect(addr).await.is_err());
            Ok(())
        })
        .unwrap();
    }
}
