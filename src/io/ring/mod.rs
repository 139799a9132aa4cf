//! The ring: one `io_uring` per worker thread, and the small executor that runs the
//! worker's tasks on it. Built on the `io-uring` crate; nothing outside `io` sees it.
//!
//! Why our own and not `tokio-uring`: a relay's cost is dominated by its socket writes,
//! and what lowers it is order and batching, which need control of the ring.
//! `tokio-uring` submits only when its runtime parks, waits through an `epoll` on the
//! ring (two system calls per wake-up), cannot defer the kernel's completion work, and
//! keeps the ring's flags private. Here each pass of the loop is:
//!
//! 1. run every task that is ready (their operations go into the submission queue in
//!    the order the tasks ran);
//! 2. one `io_uring_enter`: submit everything, and wait for a completion, a timer or a
//!    wake-up from another thread (or do not wait, if tasks are still ready);
//! 3. take every completion and wake the tasks awaiting them; fire the timers due.
//!
//! The ring is made with `SINGLE_ISSUER` and `DEFER_TASKRUN` (Linux 6.1; without them
//! on older kernels, or with SQPOLL, it falls back to a plain ring). With
//! `DEFER_TASKRUN` a socket read that was waiting for data completes only when the
//! loop asks for completions, after this pass's writes went out: a worker that is
//! behind reads everything that arrived meanwhile in one go, and writes it in one
//! batch per subscriber. That is what keeps the cost per delivery falling as load
//! rises.
//!
//! Other threads wake a task through its waker: the task goes on the ring's remote
//! queue and an `eventfd`, which the ring always has a read of in flight, ends its
//! wait. Timers are a deadline order ([`timer`]); the wait's timeout is the earliest.

mod context;
pub mod deadline;
pub mod files;
pub mod net;
pub mod op;
pub mod pacing;
pub mod port;
pub mod task;
pub mod timer;

#[cfg(test)]
mod tests;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring};
use slab::Slab;

use super::error::IoError;
use op::{Slot, CANCEL_TAG};
use pacing::Pacing;
use task::{Remote, Tasks};
use timer::Timers;

pub use net::{
    connect, peek_append, read_append, write_all, writev_all, TcpListener, TcpStream, WriteBatch,
};

/// Submission queue entries per ring by default (completion queue is twice that).
pub const RING_ENTRIES: u32 = 256;

/// Tasks run in one pass before the loop looks at the ring again, so a task that
/// keeps waking itself cannot starve IO.
const TASKS_PER_PASS: usize = 1024;

/// Deferred tasks (subscribers' writers) run between two looks at the ring: their
/// writes go to the kernel together, then input that arrived meanwhile is read before
/// the next chunk's writes are chosen. Smaller chunks let more writes carry late
/// messages at the cost of one `io_uring_enter` per chunk. Measured pinned, 3 rounds
/// (`tuning/RESULTS.md`, issue #24): at 5k msg/s x 100 subscribers the relay's
/// segments per delivery went 0.384 (no chunks) -> 0.353 (16) -> 0.318 (4), p50 776 ->
/// 753 -> 711 µs, CPU per delivery +2% and +5%; at 20k x 10, 0.655 -> 0.621 -> 0.617.
pub const DEFERRED_CHUNK: usize = 4;

/// `IORING_ENTER_GETEVENTS` (include/uapi/linux/io_uring.h): reap completions, and run
/// deferred task work, in this `io_uring_enter`. The `io-uring` crate keeps its copy
/// private.
const IORING_ENTER_GETEVENTS: u32 = 1;

/// `user_data` of the ring's own read of its wake-up `eventfd`.
const EVENTFD_TAG: u64 = u64::MAX;

/// How long a ring that is going away waits for its operations' cancellations.
const DRAIN_ON_DROP: Duration = Duration::from_secs(1);

/// How a worker's ring is set up (the `ring_*` and `sqpoll*` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingOptions {
    /// Submission queue entries (a power of two); the completion queue has twice that.
    pub entries: u32,
    /// `Some(idle_ms)`: a kernel thread polls the submission queue (SQPOLL), so
    /// submitting needs no `io_uring_enter`; it sleeps after `idle_ms` without work and
    /// must then be woken by one. It burns a CPU while it polls.
    pub sqpoll_idle_ms: Option<u32>,
    /// Pin the SQPOLL thread to this CPU.
    pub sqpoll_cpu: Option<u32>,
    /// While the ring is saturated, a pass of writes waits up to this long so each
    /// write carries more frames ([`pacing`]); zero: never.
    pub max_hold: Duration,
    /// Slots in the ring's registered file table ([`files`]); zero: none, every
    /// socket is named by its descriptor. Ignored with SQPOLL.
    pub fixed_files: u32,
}

impl RingOptions {
    /// Checks the ranges the kernel and [`pacing`] accept; on failure, the setting
    /// at fault and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !self.entries.is_power_of_two() || self.entries > 32_768 {
            let why = format!("must be a power of two in 1..=32768, got {}", self.entries);
            return Err(("ring_entries", why));
        }
        if self.fixed_files > files::MAX_FIXED_FILES {
            let why = format!(
                "must be at most {}, got {}",
                files::MAX_FIXED_FILES,
                self.fixed_files
            );
            return Err(("ring_registered_files", why));
        }
        if self.sqpoll_idle_ms == Some(0) {
            return Err(("sqpoll_idle_ms", "must be positive".into()));
        }
        if self.max_hold > pacing::MAX_HOLD_LIMIT {
            let why = format!(
                "must be at most {} µs, got {}",
                pacing::MAX_HOLD_LIMIT.as_micros(),
                self.max_hold.as_micros()
            );
            return Err(("saturated_write_hold_us", why));
        }
        Ok(())
    }
}

impl Default for RingOptions {
    fn default() -> Self {
        RingOptions {
            entries: RING_ENTRIES,
            sqpoll_idle_ms: None,
            sqpoll_cpu: None,
            max_hold: Duration::ZERO,
            fixed_files: files::FIXED_FILES,
        }
    }
}

/// The ring's state, shared (through the thread's context) by its tasks and ops.
pub(crate) struct Inner {
    uring: RefCell<IoUring>,
    ops: RefCell<Slab<Slot>>,
    /// Slots of completed operations, dropped after a reap lets go of the ring (kept
    /// for its capacity).
    freed: RefCell<Vec<Slot>>,
    tasks: Tasks,
    timers: Timers,
    deadlines: deadline::Deadlines,
    remote: Arc<Remote>,
    /// The eventfd read's buffer (the kernel writes 8 bytes into it); taken and leaked
    /// if the ring goes away with that read still in flight.
    eventfd_buf: RefCell<Option<Box<Cell<u64>>>>,
    /// Whether the eventfd read is in flight.
    eventfd_armed: Cell<bool>,
    /// SQPOLL: a kernel thread submits (and must sometimes be woken to).
    sqpoll: bool,
    /// When completions were last taken (see [`recent_now`]).
    now: Cell<Instant>,
    /// Whether the next pass of writes waits (see [`pacing`]).
    pacing: RefCell<Pacing>,
    /// The deferred task running made a chunk's worth of output (see [`chunk_full`]).
    chunk_full: Cell<bool>,
    /// Tells this ring from others (a registered file's slot is only good here).
    id: u64,
    /// The registered file table ([`files`]).
    files: RefCell<files::FileTable>,
    /// Every completion port used on this ring, by the index its operations'
    /// `user_data` names ([`port`]); kept while the ring lives.
    ports: RefCell<Vec<Rc<dyn port::Sink>>>,
    /// The ports' operations in flight.
    port_ops: Cell<usize>,
}

impl Inner {
    /// Queues a submission entry, submitting first if the queue is full.
    ///
    /// # Safety
    ///
    /// The entry's memory must stay valid until its completion (see [`op::Op::submit`]).
    unsafe fn push(&self, entry: squeue::Entry) {
        let mut uring = self.uring.borrow_mut();
        loop {
            // SAFETY: the caller guarantees the entry's memory outlives it.
            if unsafe { uring.submission().push(&entry) }.is_ok() {
                return;
            }
            // Full: hand what is queued to the kernel and try again.
            if let Err(e) = uring.submit() {
                if e.raw_os_error() != Some(libc::EBUSY) && e.raw_os_error() != Some(libc::EINTR) {
                    tracing::error!(error = %e, "io_uring submit failed");
                    return;
                }
                drop(uring);
                self.reap();
                uring = self.uring.borrow_mut();
            }
        }
    }

    /// Submits what is queued; waits for at least one completion for at most `left`
    /// (`None`: no wait; `Some(None)`: no bound). Errors other than a timeout or an
    /// interruption are logged: the loop goes on.
    fn enter(&self, wait_for: Option<Option<Duration>>) {
        let uring = self.uring.borrow();
        let submitter = uring.submitter();
        let res = match wait_for {
            // With SQPOLL the kernel thread submits; the crate wakes it if it sleeps.
            None if self.sqpoll => submitter.submit(),
            None => {
                // No wait, but ask for completions (deferred task work runs here).
                // The kernel submits at most what is queued.
                // SAFETY: plain io_uring_enter with no argument pointer.
                unsafe {
                    submitter.enter::<libc::sigset_t>(
                        uring.params().sq_entries(),
                        0,
                        IORING_ENTER_GETEVENTS,
                        None,
                    )
                }
            }
            Some(None) => submitter.submit_and_wait(1),
            Some(Some(left)) => {
                let ts = types::Timespec::from(left);
                let args = types::SubmitArgs::new().timespec(&ts);
                submitter.submit_with_args(1, &args)
            }
        };
        if let Err(e) = res {
            match e.raw_os_error() {
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN) => {}
                _ => tracing::error!(error = %e, "io_uring_enter failed"),
            }
        }
        drop(uring);
        // Emptied file slots can be given again once no queued entry can name them.
        if self.files.borrow().cooling() && self.uring.borrow_mut().submission().is_empty() {
            self.files.borrow_mut().submitted();
        }
    }

    /// Submits and waits for a completion, the earliest timer or the end of a hold,
    /// then takes the completions. Time waited with no output pending is idle time
    /// for [`pacing`]. `pass_end`: when a pass of writes just ended, if one did (the
    /// clock was read then; nothing but the eventfd's arming ran since).
    ///
    /// One clock read, at most, before the wait: it serves both the wait's bound and
    /// the idle count (a clock read costs 34-43 ns on the VMs we measure on).
    fn wait(&self, held: Option<Instant>, output: bool, pass_end: Option<Instant>) {
        let until = match (self.timers.next_deadline(), held) {
            (Some(t), Some(h)) => Some(t.min(h)),
            (t, h) => t.or(h),
        };
        let pacing = self.pacing.borrow().enabled();
        let before = (pacing || until.is_some()).then(|| pass_end.unwrap_or_else(Instant::now));
        let left = until
            .zip(before)
            .map(|(t, b)| t.saturating_duration_since(b));
        self.enter(Some(left));
        self.reap();
        if let Some(before) = before.filter(|_| pacing && !output) {
            let now = self.now.get();
            self.pacing
                .borrow_mut()
                .idled(now.saturating_duration_since(before), now);
        }
    }

    /// Takes every completion: wakes the ops' tasks, frees orphans' memory, re-arms the
    /// eventfd read; notes the time (one clock read per batch of completions, which
    /// [`recent_now`] hands out). Returns how many.
    fn reap(&self) -> usize {
        self.now.set(Instant::now());
        let mut n = 0;
        let mut eventfd_done = false;
        let mut freed = std::mem::take(&mut *self.freed.borrow_mut());
        {
            let mut uring = self.uring.borrow_mut();
            let mut ops = self.ops.borrow_mut();
            for cqe in uring.completion() {
                n += 1;
                match cqe.user_data() {
                    EVENTFD_TAG => eventfd_done = true,
                    CANCEL_TAG => {}
                    tag if tag & port::PORT_BIT != 0 => {
                        let (port, token) = port::split(tag);
                        self.port_ops.set(self.port_ops.get().saturating_sub(1));
                        if let Some(p) = self.ports.borrow().get(port) {
                            p.complete(token, cqe.result());
                        }
                    }
                    index => {
                        let index = index as usize;
                        if ops.get_mut(index).is_some_and(|s| s.complete(cqe.result())) {
                            // Dropped below, outside the borrows: what a slot keeps
                            // alive may reach back into the ring when it goes.
                            freed.push(ops.remove(index));
                        }
                    }
                }
            }
        }
        freed.clear();
        *self.freed.borrow_mut() = freed;
        if eventfd_done {
            self.eventfd_armed.set(false);
        }
        n
    }

    /// Keeps a read of the wake-up eventfd in flight.
    fn arm_eventfd(&self) {
        let Some(buf) = self.eventfd_buf.borrow().as_ref().map(|b| b.as_ptr()) else {
            return;
        };
        if self.eventfd_armed.replace(true) {
            return;
        }
        let entry = opcode::Read::new(types::Fd(self.remote.eventfd.as_raw_fd()), buf.cast(), 8)
            .build()
            .user_data(EVENTFD_TAG);
        // SAFETY: the buffer is a boxed u64 owned by the ring, which waits for this
        // read's completion (or cancels it) before it frees the box.
        unsafe { self.push(entry) };
    }

    /// Moves tasks woken from other threads onto the ready queue.
    fn take_remote(&self) {
        let woken = match self.remote.woken.lock() {
            Ok(mut w) if !w.is_empty() => std::mem::take(&mut *w),
            _ => return,
        };
        for (id, kind) in woken {
            self.tasks.push(id, kind);
        }
    }
}

/// The root future's waker: sets a flag (and ends the ring's wait from another thread).
struct RootWaker {
    woken: AtomicBool,
    remote: Arc<Remote>,
}

impl Wake for RootWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        if std::thread::current().id() != self.remote.thread {
            self.remote.notify();
        }
    }
}

/// One io_uring and its executor, owned by the worker thread that made it.
pub struct Ring {
    inner: Rc<Inner>,
}

/// Serialises ring creation with the SQPOLL CPU checks of the host (none today); kept
/// so two threads' errors do not interleave in logs.
static CREATING: Mutex<()> = Mutex::new(());

impl Ring {
    /// Sets up a ring with the default options on this thread; fails with a hint if
    /// the kernel refuses.
    pub fn new() -> Result<Ring, IoError> {
        Ring::with_options(&RingOptions::default())
    }

    /// Sets up a ring as `options` say on this thread.
    pub fn with_options(options: &RingOptions) -> Result<Ring, IoError> {
        let _creating = CREATING.lock().unwrap_or_else(|e| e.into_inner());
        let uring = build(options)?;
        let files = match options.sqpoll_idle_ms {
            None => files::FileTable::new(&uring, options.fixed_files),
            Some(_) => files::FileTable::default(),
        };
        // Blocking: a ring read of a non-blocking file fails with EAGAIN instead of
        // waiting. A write blocks only if the counter would pass 2^64 - 2.
        // SAFETY: eventfd(2) with valid flags; the result is checked.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(IoError::op("create", "eventfd", io::Error::last_os_error()));
        }
        // SAFETY: a new descriptor nothing else owns.
        let eventfd = unsafe { OwnedFd::from_raw_fd(efd) };
        let inner = Rc::new(Inner {
            sqpoll: options.sqpoll_idle_ms.is_some(),
            uring: RefCell::new(uring),
            ops: RefCell::new(Slab::with_capacity(256)),
            freed: RefCell::new(Vec::new()),
            tasks: Tasks::new(),
            timers: Timers::default(),
            deadlines: deadline::Deadlines::default(),
            remote: Arc::new(Remote {
                thread: std::thread::current().id(),
                woken: Mutex::new(Vec::new()),
                eventfd,
            }),
            eventfd_buf: RefCell::new(Some(Box::new(Cell::new(0)))),
            eventfd_armed: Cell::new(false),
            now: Cell::new(Instant::now()),
            pacing: RefCell::new(Pacing::new(options.max_hold, Instant::now())),
            chunk_full: Cell::new(false),
            id: files::next_ring_id(),
            files: RefCell::new(files),
            ports: RefCell::new(Vec::new()),
            port_ops: Cell::new(0),
        });
        Ok(Ring { inner })
    }

    /// Runs `fut` to completion on this ring; tasks it spawns run here too (those still
    /// running when it finishes are dropped with the ring).
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        let _entered = context::enter(Rc::clone(&self.inner));
        let inner = &*self.inner;
        let root = Arc::new(RootWaker {
            woken: AtomicBool::new(true),
            remote: Arc::clone(&inner.remote),
        });
        let waker = Waker::from(Arc::clone(&root));
        let mut cx = Context::from_waker(&waker);
        let mut fut = std::pin::pin!(fut);
        loop {
            if root.woken.swap(false, Ordering::AcqRel) {
                if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                    return v;
                }
            }
            inner.take_remote();
            let (ran, pass_end) = run_ready(inner);
            inner.arm_eventfd();
            let output = !inner.tasks.deferred.borrow().is_empty();
            let held = inner.pacing.borrow_mut().held(inner.now.get());
            let busy = ran >= TASKS_PER_PASS
                || !inner.tasks.ready.borrow().is_empty()
                || (output && held.is_none())
                || root.woken.load(Ordering::Acquire);
            if busy {
                inner.enter(None);
                inner.reap();
            } else {
                inner.wait(held, output, pass_end);
            }
            inner.timers.fire_due(inner.now.get());
        }
    }
}

/// How many passes of writes this thread's ring has held back (see [`pacing`]); 0
/// outside a ring.
pub fn held_passes() -> u64 {
    context::try_with_ring(|r| r.pacing.borrow().holds()).unwrap_or(0)
}

/// When this thread's ring last took completions (just before the tasks they woke
/// run), or `Instant::now()` outside a ring. One clock read serves every task a batch
/// of completions wakes: a write's deadline and the time a write was seen done are
/// read here, not from the clock per write. Behind the clock by at most the time the
/// ring's tasks have run since (a pass; the ring takes completions between chunks of
/// output).
pub fn recent_now() -> Instant {
    context::try_with_ring(|r| r.now.get()).unwrap_or_else(Instant::now)
}

/// Called by a deferred task that makes many writes of its own (the relay's fan-out):
/// the writes it made in this poll fill a chunk, so the ring submits them and reads the
/// input that arrived before it runs more deferred tasks (see `run_ready`). No effect
/// outside a ring.
pub fn chunk_full() {
    let _ = context::try_with_ring(|r| r.chunk_full.set(true));
}

/// Runs the ready tasks (at most [`TASKS_PER_PASS`]); returns how many ran, and when
/// the pass of writes ended if one ran and [`pacing`] read the clock for it.
///
/// Input before output, and output chosen late: every ready task runs first, then
/// deferred tasks (subscribers' writers) in chunks of [`DEFERRED_CHUNK`]. Between
/// chunks the ring is entered without waiting: the chunk's writes go to the kernel,
/// completions (a publisher's read that just arrived included) are taken, and the
/// tasks they woke run before the next chunk, so a message that arrives while a
/// pass's writes go out rides in every write not yet made. On a quiet feed there is one
/// chunk and nothing waits. While [`pacing`] holds (a saturated ring), only the ready
/// tasks run.
fn run_ready(inner: &Inner) -> (usize, Option<Instant>) {
    let mut ran = 0;
    let held = inner.pacing.borrow_mut().held(inner.now.get()).is_some();
    let pass_start = (!held && inner.pacing.borrow().enabled()).then(|| inner.now.get());
    let mut wrote = false;
    loop {
        while ran < TASKS_PER_PASS {
            let Some(id) = inner.tasks.ready.borrow_mut().pop_front() else {
                break;
            };
            inner.tasks.run(id);
            ran += 1;
        }
        if held {
            // Writes wait (the ring is saturated); input is read meanwhile.
            return (ran, None);
        }
        let mut chunk = 0;
        // A pass's first chunk runs even when ready tasks used up the pass: writers
        // are never starved by input that keeps waking itself.
        while chunk < DEFERRED_CHUNK && (ran < TASKS_PER_PASS || !wrote) {
            let Some(id) = inner.tasks.deferred.borrow_mut().pop_front() else {
                break;
            };
            inner.tasks.run(id);
            chunk += 1;
            ran += 1;
            if inner.chunk_full.replace(false) {
                // The task made a chunk's worth of output on its own.
                chunk = chunk.max(DEFERRED_CHUNK);
            }
        }
        wrote |= chunk > 0;
        if chunk < DEFERRED_CHUNK
            || ran >= TASKS_PER_PASS
            || inner.tasks.deferred.borrow().is_empty()
        {
            let ended = pass_start.filter(|_| wrote).map(|start| {
                let end = Instant::now();
                inner.pacing.borrow_mut().pass_done(start, end);
                end
            });
            return (ran, ended);
        }
        // More output to make: send this chunk's, take what came in meanwhile.
        inner.enter(None);
        inner.reap();
        inner.take_remote();
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // Drop the tasks inside the ring's context, so their ops are orphaned and
        // cancelled rather than freed under the kernel.
        let _entered = context::enter(Rc::clone(&self.inner));
        let inner = &*self.inner;
        inner.tasks.drop_all();
        // Cancel the eventfd read too, then wait (bounded) until no op is in flight.
        if inner.eventfd_armed.get() {
            let cancel = opcode::AsyncCancel::new(EVENTFD_TAG)
                .build()
                .user_data(CANCEL_TAG);
            // SAFETY: a cancel request points to no memory.
            unsafe { inner.push(cancel) };
        }
        let deadline = Instant::now() + DRAIN_ON_DROP;
        let in_flight = || inner.ops.borrow().len() + inner.port_ops.get();
        while (in_flight() > 0 || inner.eventfd_armed.get()) && Instant::now() < deadline {
            inner.enter(Some(Some(
                deadline.saturating_duration_since(Instant::now()),
            )));
            inner.reap();
        }
        let left = in_flight();
        if left > 0 || inner.eventfd_armed.get() {
            // The kernel may still write into these: never free them.
            tracing::warn!(
                ops = left,
                "ring dropped with operations in flight; their memory is leaked"
            );
            std::mem::forget(std::mem::take(&mut *inner.ops.borrow_mut()));
            if inner.port_ops.get() > 0 {
                std::mem::forget(std::mem::take(&mut *inner.ports.borrow_mut()));
            }
            if inner.eventfd_armed.get() {
                std::mem::forget(inner.eventfd_buf.borrow_mut().take());
            }
        }
        // What the ports still hold (operations done but never released: their task
        // went first) goes here, in the ring's context, as the tasks did.
        let ports = std::mem::take(&mut *inner.ports.borrow_mut());
        drop(ports);
    }
}

/// Builds the io_uring as `options` say: SINGLE_ISSUER + DEFER_TASKRUN where the
/// kernel has them (not with SQPOLL), else a plain ring.
fn build(options: &RingOptions) -> Result<IoUring, IoError> {
    let mut builder = IoUring::builder();
    builder.setup_cqsize(options.entries.saturating_mul(2));
    if let Some(idle) = options.sqpoll_idle_ms {
        builder.setup_sqpoll(idle);
        if let Some(cpu) = options.sqpoll_cpu {
            builder.setup_sqpoll_cpu(cpu);
        }
        return builder
            .build(options.entries)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EINVAL) => IoError::RingUnavailable {
                    source: e,
                    hint: "SQPOLL was refused: is every CPU in sqpoll_cpus online?",
                },
                Some(libc::EPERM) => IoError::RingUnavailable {
                    source: e,
                    hint: "SQPOLL needs CAP_SYS_NICE before Linux 5.11: turn sqpoll off",
                },
                _ => ring_unavailable(e),
            });
    }
    let mut deferred = IoUring::builder();
    deferred
        .setup_cqsize(options.entries.saturating_mul(2))
        .setup_single_issuer()
        .setup_defer_taskrun();
    match deferred.build(options.entries) {
        Ok(ring) => Ok(ring),
        // Older kernels refuse the flags with EINVAL: a plain ring still works.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            builder.build(options.entries).map_err(ring_unavailable)
        }
        Err(e) => Err(ring_unavailable(e)),
    }
}

/// Submits what this thread's ring has queued now (one `io_uring_enter`), for a task
/// that keeps the loop busy and wants its operations under way.
pub fn submit_pending() {
    let _ = context::try_with_ring(|ring| {
        let _ = ring.uring.borrow().submit();
    });
}

/// Checks that this host can create an io_uring, before any worker starts.
pub fn probe() -> Result<(), IoError> {
    build(&RingOptions::default()).map(drop)
}

fn ring_unavailable(source: io::Error) -> IoError {
    let hint = match source.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            "io_uring is disabled or blocked: set `sysctl kernel.io_uring_disabled=0` \
             (2 disables it for everyone, 1 for unprivileged users), or allow \
             io_uring_setup in the container's seccomp profile"
        }
        Some(libc::ENOSYS) => "this kernel has no io_uring (Linux 5.11 or later is needed)",
        Some(libc::ENOMEM) => {
            "the ring could not be allocated: raise `ulimit -l` (RLIMIT_MEMLOCK) on older kernels"
        }
        _ => "run `feedrelay check` to see what the host is missing",
    };
    IoError::RingUnavailable { source, hint }
}

/// Wraps a bound std listener for this ring.
pub fn listener(std: std::net::TcpListener) -> TcpListener {
    TcpListener::from_std(std)
}

/// Connects to `addr` through the ring and sets `options` (buffer sizes set after
/// connect do not change the window scale the handshake agreed).
pub async fn connect_with(
    addr: std::net::SocketAddr,
    options: &super::sockopt::SocketOptions,
) -> io::Result<TcpStream> {
    let stream = connect(addr).await?;
    options.apply_to(&stream)?;
    Ok(stream)
}
