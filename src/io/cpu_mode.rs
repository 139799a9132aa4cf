//! Which share of some threads' CPU time is user space and which the kernel, by
//! sampling each thread's own clock: a `perf_event_open` task-clock event per thread
//! takes a sample every [`PERIOD`] of that thread's CPU time, and the kernel writes
//! each sample, marked user or kernel, into a ring it maps into our memory.
//!
//! Why not `/proc/PID/stat`: its `utime` and `stime` are split by the scheduler tick
//! (`CONFIG_TICK_CPU_ACCOUNTING`, 250 Hz on these VMs). Each tick charges a whole tick
//! to the mode it interrupts. Their sum is exact (the kernel scales it to the
//! scheduler's own runtime), but the split is not. A load whose rate is a multiple of
//! the tick's (5,000, 10,000, 20,000 messages a second) runs in step with it, so the
//! tick lands at about the same point of every cycle. Then the split says more about
//! that phase than about the work. Against a thread whose user time was known
//! (`examples/cpu_split.rs`; `tuning/RESULTS.md`, issue #24, fifteenth pass), the tick
//! split said 100% user in two runs and 0% in a third where 34-40% had been spent
//! spinning in user space; these samples said 37-42%. The
//! period here is a prime number of nanoseconds of the thread's own CPU time, so it
//! falls in step with no load's period.
//!
//! Needs `perf_event_open` on the threads: allowed for root, or for their owner
//! when `kernel.perf_event_paranoid` is 1 or lower (kernel samples are what this
//! is for). Otherwise [`CpuModeSampler::start`] says why, and the caller falls back
//! to the tick's split.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{fence, Ordering};
use std::time::Duration;

/// The sampling period, in each thread's own CPU time: about 4 kHz, and a prime
/// number of nanoseconds.
pub const PERIOD: Duration = Duration::from_nanos(250_007);

/// Data pages of each thread's ring (a power of two). 32 pages of 4 KiB hold about
/// 8,000 samples of 16 bytes, two seconds of a busy thread at [`PERIOD`]: drain at
/// least once a second. A ring that fills loses samples, and says how many
/// ([`ModeCounts::lost`]).
pub const DATA_PAGES: usize = 32;

/// Why sampling could not start.
#[derive(Debug, thiserror::Error)]
pub enum CpuModeError {
    /// The kernel refused the event (permissions, `kernel.perf_event_paranoid`, a
    /// thread that is gone, a kernel without perf events).
    #[error("perf_event_open on thread {tid}: {source}")]
    Open {
        /// The thread.
        tid: i32,
        /// What the kernel said.
        source: io::Error,
    },
    /// The event's ring could not be mapped.
    #[error("mapping the sample ring of thread {tid}: {source}")]
    Map {
        /// The thread.
        tid: i32,
        /// What the kernel said.
        source: io::Error,
    },
    /// `/proc/PID/task` could not be read.
    #[error("listing the threads of process {pid}: {source}")]
    Threads {
        /// The process.
        pid: u32,
        /// Why.
        source: io::Error,
    },
    /// A ring's size must be a power of two of pages.
    #[error("a sample ring needs a power of two of data pages, not {0}")]
    RingSize(usize),
}

/// Samples counted so far, by the mode each one found its thread in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModeCounts {
    /// In user space.
    pub user: u64,
    /// In the kernel.
    pub kernel: u64,
    /// Anywhere else (the hypervisor, a guest, unknown): not in either share.
    pub other: u64,
    /// Lost because a ring was full when the kernel took them.
    pub lost: u64,
}

impl ModeCounts {
    /// The user share of the samples that were user or kernel, if there were any.
    pub fn user_share(&self) -> Option<f64> {
        let n = self.user + self.kernel;
        (n > 0).then(|| self.user as f64 / n as f64)
    }
}

/// `struct perf_event_attr` as of its first version (`PERF_ATTR_SIZE_VER0`, 64
/// bytes): every later field is zero, which the kernel reads as "not asked for".
#[repr(C)]
#[derive(Default)]
struct EventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_COUNT_SW_TASK_CLOCK: u64 = 1;
const PERF_SAMPLE_IP: u64 = 1;
/// `exclude_hv`, bit 6 of the attribute's flags.
const EXCLUDE_HV: u64 = 1 << 6;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;
const PERF_RECORD_LOST: u32 = 2;
const PERF_RECORD_SAMPLE: u32 = 9;
const CPUMODE_MASK: u16 = 7;
const CPUMODE_KERNEL: u16 = 1;
const CPUMODE_USER: u16 = 2;
/// Offsets in the ring's first page (`struct perf_event_mmap_page`).
const DATA_HEAD: usize = 1024;
const DATA_TAIL: usize = 1032;
const DATA_OFFSET: usize = 1040;
const DATA_SIZE: usize = 1048;

/// One thread's event and the ring its samples arrive in.
struct SampleRing {
    /// Keeps the event (and so the mapping's source) open; closed after the unmap.
    _event: OwnedFd,
    base: *mut u8,
    len: usize,
    /// Where the data area starts in the mapping, and its size (a power of two).
    data: usize,
    size: usize,
}

impl SampleRing {
    fn open(tid: i32, period: Duration, data_pages: usize) -> Result<SampleRing, CpuModeError> {
        if !data_pages.is_power_of_two() {
            return Err(CpuModeError::RingSize(data_pages));
        }
        let attr = EventAttr {
            kind: PERF_TYPE_SOFTWARE,
            size: std::mem::size_of::<EventAttr>() as u32,
            config: PERF_COUNT_SW_TASK_CLOCK,
            sample_period: (period.as_nanos() as u64).max(10_000),
            sample_type: PERF_SAMPLE_IP,
            flags: EXCLUDE_HV,
            ..EventAttr::default()
        };
        // SAFETY: `attr` is a valid `perf_event_attr` of the size its `size` field gives
        // (version 0: the kernel zero-fills the rest), alive for the call; the other
        // arguments are plain integers (this thread of any CPU, no group).
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                &attr as *const EventAttr,
                tid,
                -1 as libc::c_int,
                -1 as libc::c_int,
                PERF_FLAG_FD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(CpuModeError::Open {
                tid,
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: the kernel just gave us this descriptor; nothing else owns it.
        let event = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
        let page = page_size();
        let len = page * (1 + data_pages);
        // SAFETY: a new shared mapping of the event's ring, of the size the kernel
        // requires (one header page and a power of two of data pages); the result is
        // checked before use.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                event.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(CpuModeError::Map {
                tid,
                source: io::Error::last_os_error(),
            });
        }
        let mut ring = SampleRing {
            _event: event,
            base: base.cast(),
            len,
            data: page,
            size: page * data_pages,
        };
        // Kernels since 4.1 say where the data area is; older ones leave these zero.
        let (offset, size) = (ring.header(DATA_OFFSET), ring.header(DATA_SIZE));
        if size != 0 && size.is_power_of_two() && offset as usize + size as usize <= len {
            ring.data = offset as usize;
            ring.size = size as usize;
        }
        Ok(ring)
    }

    /// A `u64` of the header page.
    fn header(&self, at: usize) -> u64 {
        debug_assert!(at % 8 == 0 && at + 8 <= self.data);
        // SAFETY: `at` is an 8-aligned offset inside the first page of our live
        // mapping (page-aligned); the kernel updates these words, so read them as
        // volatile.
        unsafe { std::ptr::read_volatile(self.base.add(at).cast::<u64>()) }
    }

    /// The `u64` at offset `at` of the data area (taken modulo its size).
    fn data_word(&self, at: u64) -> u64 {
        let at = (at % self.size as u64) as usize & !7;
        // SAFETY: `at` is 8-aligned and below `size`, so the word lies inside the data
        // area of our live mapping; the records before the head are complete (the
        // acquire fence in `drain` orders this read after the head's).
        unsafe { std::ptr::read_volatile(self.base.add(self.data + at).cast::<u64>()) }
    }

    /// Counts the records the kernel wrote since the last drain, and gives their
    /// space back.
    fn drain(&mut self, counts: &mut ModeCounts) {
        let head = self.header(DATA_HEAD);
        // The records before `head` are written before `head` is (the kernel's side of
        // the protocol): read them only after reading it.
        fence(Ordering::Acquire);
        let mut tail = self.header(DATA_TAIL);
        while tail < head {
            // `struct perf_event_header`: type (u32), misc (u16), size (u16), little
            // endian. Records are 8-aligned, so a header never wraps.
            let word = self.data_word(tail);
            let (kind, misc, size) = (word as u32, (word >> 32) as u16, (word >> 48) as u16);
            if size < 8 {
                // Not a record: give everything back rather than loop.
                tail = head;
                break;
            }
            match kind {
                PERF_RECORD_SAMPLE => match misc & CPUMODE_MASK {
                    CPUMODE_USER => counts.user += 1,
                    CPUMODE_KERNEL => counts.kernel += 1,
                    _ => counts.other += 1,
                },
                // `{ header, id: u64, lost: u64 }`.
                PERF_RECORD_LOST => counts.lost += self.data_word(tail + 16),
                _ => {}
            }
            tail += u64::from(size);
        }
        // Our reads of the records happen before the kernel may reuse their space.
        fence(Ordering::Release);
        // SAFETY: `DATA_TAIL` is an 8-aligned word of the first page of our live
        // mapping, the one word of the header the reader writes.
        unsafe { std::ptr::write_volatile(self.base.add(DATA_TAIL).cast::<u64>(), tail) };
    }
}

impl Drop for SampleRing {
    fn drop(&mut self) {
        // SAFETY: `base` and `len` are the mapping `open` made, unmapped only here.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// Samples some threads' modes until dropped (see the module docs).
pub struct CpuModeSampler {
    rings: Vec<SampleRing>,
    counts: ModeCounts,
}

impl std::fmt::Debug for CpuModeSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuModeSampler")
            .field("threads", &self.rings.len())
            .field("counts", &self.counts)
            .finish()
    }
}

impl CpuModeSampler {
    /// Starts sampling every thread of the processes `pids` (those alive now; threads
    /// started later are not sampled) every [`PERIOD`] of each thread's CPU time.
    pub fn for_processes(pids: &[u32]) -> Result<CpuModeSampler, CpuModeError> {
        let mut tids = Vec::new();
        for &pid in pids {
            tids.extend(threads_of(pid)?);
        }
        CpuModeSampler::start(&tids, PERIOD, DATA_PAGES)
    }

    /// Starts sampling threads `tids` every `period` of each one's CPU time (at least
    /// 10 µs), into rings of `data_pages` pages each (a power of two).
    pub fn start(
        tids: &[i32],
        period: Duration,
        data_pages: usize,
    ) -> Result<CpuModeSampler, CpuModeError> {
        let rings = tids
            .iter()
            .map(|&tid| SampleRing::open(tid, period, data_pages))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CpuModeSampler {
            rings,
            counts: ModeCounts::default(),
        })
    }

    /// Reads what the rings hold (call at least once a second, see [`DATA_PAGES`]) and
    /// returns the counts so far.
    pub fn drain(&mut self) -> ModeCounts {
        for ring in &mut self.rings {
            ring.drain(&mut self.counts);
        }
        self.counts
    }
}

/// The threads of process `pid`, from `/proc/PID/task`.
pub fn threads_of(pid: u32) -> Result<Vec<i32>, CpuModeError> {
    let err = |source| CpuModeError::Threads { pid, source };
    let mut tids = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).map_err(err)? {
        let name = entry.map_err(err)?.file_name();
        if let Some(tid) = name.to_str().and_then(|s| s.parse().ok()) {
            tids.push(tid);
        }
    }
    Ok(tids)
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if page > 0 {
        page as usize
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::{mpsc, Arc};
    use std::time::Instant;

    fn gettid() -> i32 {
        // SAFETY: gettid has no preconditions.
        unsafe { libc::syscall(libc::SYS_gettid) as i32 }
    }

    /// Runs `work` on a thread of its own for `secs`, sampled every 100 µs into rings
    /// of `pages` pages, drained every `drain_every`; the counts.
    fn sample(work: fn(&AtomicBool), secs: f64, pages: usize, drain_every: Duration) -> ModeCounts {
        let stop = Arc::new(AtomicBool::new(false));
        let (tid_tx, tid_rx) = mpsc::channel();
        let flag = Arc::clone(&stop);
        let worker = std::thread::spawn(move || {
            tid_tx.send(gettid()).unwrap();
            work(&flag);
        });
        let tid = tid_rx.recv().unwrap();
        let mut sampler = CpuModeSampler::start(&[tid], Duration::from_micros(100), pages)
            .unwrap_or_else(|e| {
                stop.store(true, Ordering::Relaxed);
                panic!(
                    "perf events are needed to measure the bench's user/sys split and are \
                     not available here: {e}"
                )
            });
        let end = Instant::now() + Duration::from_secs_f64(secs);
        while Instant::now() < end {
            std::thread::sleep(drain_every);
            sampler.drain();
        }
        stop.store(true, Ordering::Relaxed);
        worker.join().unwrap();
        sampler.drain()
    }

    fn spin(stop: &AtomicBool) {
        let mut x = 1u64;
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..1000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
    }

    fn syscalls(stop: &AtomicBool) {
        let dir = std::env::temp_dir();
        while !stop.load(Ordering::Relaxed) {
            // A path walk and an inode read per call: nearly all of it the kernel's.
            let _ = std::hint::black_box(std::fs::metadata(&dir));
        }
    }

    /// A thread spinning in user space is sampled as user space, one that does nothing
    /// but system calls as the kernel, at the period asked for.
    #[test]
    fn a_spinning_thread_is_user_and_a_syscalling_one_is_kernel() {
        let user = sample(spin, 0.4, DATA_PAGES, Duration::from_millis(50));
        let n = user.user + user.kernel;
        // 0.4 s at 100 µs is ~4,000 samples if the thread had the core; a shared box
        // gives it less.
        assert!(n > 400, "{user:?}");
        assert!(user.user_share().unwrap() > 0.9, "{user:?}");
        let kernel = sample(syscalls, 0.4, DATA_PAGES, Duration::from_millis(50));
        assert!(kernel.user + kernel.kernel > 400, "{kernel:?}");
        assert!(kernel.user_share().unwrap() < 0.5, "{kernel:?}");
        assert_eq!(user.lost + kernel.lost, 0);
    }

    /// A ring drained less often than it fills wraps many times: every record is still
    /// read whole (a garbled header would end the count early), and what the kernel
    /// could not write is counted as lost, not dropped silently.
    #[test]
    fn a_small_ring_wraps_and_counts_what_it_lost() {
        // One page holds ~250 samples: 25 ms of a spinning thread at 100 µs.
        let often = sample(spin, 0.5, 1, Duration::from_millis(5));
        assert!(often.user > 1000, "{often:?}");
        let rarely = sample(spin, 0.5, 1, Duration::from_millis(200));
        assert!(rarely.lost > 0, "{rarely:?}");
        assert!(rarely.user > 200, "{rarely:?}");
        assert_eq!(rarely.other, 0, "{rarely:?}");
    }

    /// A ring size the kernel would refuse is refused here, with the reason; a thread
    /// that does not exist is an error naming it.
    #[test]
    fn bad_requests_are_errors() {
        assert!(matches!(
            CpuModeSampler::start(&[gettid()], PERIOD, 3),
            Err(CpuModeError::RingSize(3))
        ));
        let err = CpuModeSampler::start(&[i32::MAX], PERIOD, 1).unwrap_err();
        assert!(
            matches!(err, CpuModeError::Open { tid: i32::MAX, .. }),
            "{err}"
        );
        assert!(threads_of(u32::MAX).is_err());
        assert!(threads_of(std::process::id()).unwrap().contains(&gettid()));
    }
}
