//! Tasks on a ring: spawned futures, the queue of those ready to run, and their
//! wakers.
//!
//! A task lives in a slab slot. Its waker can be called from any thread (a shutdown
//! signal, a worker waking a parked one): on the ring's own thread it puts the task on
//! the ready queue directly; from another thread it goes through the ring's remote
//! queue and an `eventfd` write that ends the ring's wait.
//!
//! Two kinds of task (`Kind`): most run as soon as they are woken; a *deferred* task
//! (one that turns what the others produced into output, such as a subscriber's
//! writer) waits on a queue of its own that the ring serves after every other ready
//! task, in chunks, so that what arrives while a pass's writes go out joins the writes
//! not yet made (see `Ring::block_on`).
//!
//! A task that panics is dropped, not the worker: its future's destructors release
//! what it held (a connection's slot, its socket), its [`JoinHandle`] gives `None`, and
//! the ring's other tasks go on. The panic's cause is logged by the panic hook.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use slab::Slab;

use super::context::with_ring;

/// A task's slot index and generation (a stale waker of a reused slot does nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TaskId {
    index: usize,
    generation: u64,
}

/// A spawned future.
struct Task {
    future: Option<Pin<Box<dyn Future<Output = ()>>>>,
    generation: u64,
    /// Its wake-up state (the `queued` flag is cleared before each poll).
    wake_state: Arc<TaskWaker>,
    /// The waker made once from `wake_state`, shared through an `Rc`: a poll clones
    /// the `Rc`, not the `Arc` (no atomic operation per poll).
    waker: Rc<Waker>,
}

/// When a woken task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// As soon as the ring gets to it.
    Now,
    /// After every ready [`Kind::Now`] task, in chunks (output: it should carry all
    /// that the others produced first).
    Deferred,
}

/// What wakes a task: its id, and the way into its ring from any thread.
struct TaskWaker {
    id: TaskId,
    kind: Kind,
    /// Already on a ready queue (cleared when the task is polled).
    queued: AtomicBool,
    remote: Arc<Remote>,
}

/// The part of a ring other threads may touch.
pub(super) struct Remote {
    /// The ring's thread, to tell a local wake from a remote one.
    pub(super) thread: std::thread::ThreadId,
    /// Tasks woken from other threads, taken by the ring's loop.
    pub(super) woken: Mutex<Vec<(TaskId, Kind)>>,
    /// Written to end the ring's wait (the ring keeps a read of it in flight).
    pub(super) eventfd: std::os::fd::OwnedFd,
}

impl Remote {
    /// Ends the ring's wait, if it is waiting.
    pub(super) fn notify(&self) {
        use std::os::fd::AsRawFd;
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a valid u64 to an eventfd we own; a full
        // counter (EAGAIN) means a wake-up is pending anyway.
        unsafe {
            libc::write(
                self.eventfd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            );
        }
    }
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        // On the ring's own thread the task goes straight onto its queue. Asking the
        // thread's context is cheaper than `std::thread::current()`, which clones an
        // `Arc` (two atomic operations on every wake).
        let local = super::context::try_with_ring(|ring| {
            let own = Arc::ptr_eq(&ring.remote, &self.remote);
            if own {
                ring.tasks.push(self.id, self.kind);
            }
            own
        });
        if local == Some(true) {
            return;
        }
        if let Ok(mut woken) = self.remote.woken.lock() {
            woken.push((self.id, self.kind));
        }
        self.remote.notify();
    }
}

/// A ring's tasks.
pub(super) struct Tasks {
    slab: RefCell<Slab<Task>>,
    /// Woken [`Kind::Now`] tasks, in the order woken.
    pub(super) ready: RefCell<VecDeque<TaskId>>,
    /// Woken [`Kind::Deferred`] tasks, in the order woken.
    pub(super) deferred: RefCell<VecDeque<TaskId>>,
    next_generation: Cell<u64>,
    /// Tasks that panicked so far.
    pub(super) panicked: Cell<u64>,
}

/// The message a panic carried (`panic!("..")` gives a `&str` or a `String`).
pub fn panic_cause(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

impl Tasks {
    pub(super) fn new() -> Self {
        Tasks {
            slab: RefCell::new(Slab::new()),
            ready: RefCell::new(VecDeque::new()),
            deferred: RefCell::new(VecDeque::new()),
            next_generation: Cell::new(1),
            panicked: Cell::new(0),
        }
    }

    /// Queues a woken task on its kind's queue.
    pub(super) fn push(&self, id: TaskId, kind: Kind) {
        match kind {
            Kind::Now => self.ready.borrow_mut().push_back(id),
            Kind::Deferred => self.deferred.borrow_mut().push_back(id),
        }
    }

    /// Adds a task of `kind`, ready to run.
    pub(super) fn spawn(
        &self,
        remote: &Arc<Remote>,
        kind: Kind,
        future: Pin<Box<dyn Future<Output = ()>>>,
    ) {
        let generation = self.next_generation.get();
        self.next_generation.set(generation + 1);
        let mut slab = self.slab.borrow_mut();
        let entry = slab.vacant_entry();
        let id = TaskId {
            index: entry.key(),
            generation,
        };
        let wake_state = Arc::new(TaskWaker {
            id,
            kind,
            queued: AtomicBool::new(true),
            remote: Arc::clone(remote),
        });
        let waker = Rc::new(Waker::from(Arc::clone(&wake_state)));
        entry.insert(Task {
            future: Some(future),
            generation,
            wake_state,
            waker,
        });
        self.push(id, kind);
    }

    /// Polls the task `id` once, if it still exists; a finished task is removed.
    pub(super) fn run(&self, id: TaskId) {
        let (mut future, waker) = {
            let mut slab = self.slab.borrow_mut();
            let Some(task) = slab.get_mut(id.index) else {
                return;
            };
            if task.generation != id.generation {
                return;
            }
            task.wake_state.queued.store(false, Ordering::Release);
            let Some(future) = task.future.take() else {
                return;
            };
            (future, Rc::clone(&task.waker))
        };
        // The slab is not borrowed while the task runs: it may spawn others.
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            future.as_mut().poll(&mut Context::from_waker(&waker))
        }));
        let done = match polled {
            Ok(poll) => poll.is_ready(),
            Err(_) => {
                // The panic hook has logged the cause and where (once).
                self.panicked.set(self.panicked.get() + 1);
                tracing::warn!("the task that panicked is dropped; what it held is released");
                true
            }
        };
        let mut slab = self.slab.borrow_mut();
        if done {
            if slab
                .get(id.index)
                .is_some_and(|t| t.generation == id.generation)
            {
                slab.remove(id.index);
            }
        } else if let Some(task) = slab.get_mut(id.index) {
            task.future = Some(future);
        }
    }

    /// Drops every task's future (the ring is going away), outside the slab's borrow:
    /// dropping a future may drop ops and timers that reach back into the ring.
    pub(super) fn drop_all(&self) {
        loop {
            let futures: Vec<_> = self
                .slab
                .borrow_mut()
                .drain()
                .filter_map(|mut t| t.future.take())
                .collect();
            if futures.is_empty() {
                break;
            }
            drop(futures);
        }
        self.ready.borrow_mut().clear();
        self.deferred.borrow_mut().clear();
    }
}

/// The output of a spawned task, for its [`JoinHandle`].
struct JoinState<T> {
    output: Option<T>,
    finished: bool,
    waiter: Option<Waker>,
}

/// A spawned task; awaiting it gives its output (`None` if it was dropped unfinished,
/// as at the ring's end).
pub struct JoinHandle<T> {
    state: Rc<RefCell<JoinState<T>>>,
}

impl<T> std::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl<T> JoinHandle<T> {
    /// Whether the task has finished.
    pub fn is_finished(&self) -> bool {
        self.state.borrow().finished
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.state.borrow_mut();
        if state.finished {
            return Poll::Ready(state.output.take());
        }
        state.waiter = Some(cx.waker().clone());
        Poll::Pending
    }
}

pin_project_lite::pin_project! {
    /// A spawned future and where its output goes. A struct, not an `async` block: a
    /// block would hold the future twice (as its capture and as its awaited state),
    /// and every connection's task would pay for it.
    struct Spawned<F: Future> {
        #[pin]
        future: F,
        state: Rc<RefCell<JoinState<F::Output>>>,
    }

    impl<F: Future> PinnedDrop for Spawned<F> {
        fn drop(this: Pin<&mut Self>) {
            // Finished, run or not: wake whoever joins it.
            let waiter = {
                let mut state = this.state.borrow_mut();
                state.finished = true;
                state.waiter.take()
            };
            if let Some(w) = waiter {
                w.wake();
            }
        }
    }
}

impl<F: Future> Future for Spawned<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        match this.future.poll(cx) {
            Poll::Ready(output) => {
                this.state.borrow_mut().output = Some(output);
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Tasks on this thread's ring that panicked so far (0 outside a ring).
pub fn panicked() -> u64 {
    super::context::try_with_ring(|r| r.tasks.panicked.get()).unwrap_or(0)
}

/// Spawns `future` on this thread's ring.
pub fn spawn<F: Future + 'static>(future: F) -> JoinHandle<F::Output> {
    spawn_kind(Kind::Now, future)
}

/// Spawns `future` as a deferred task: whenever woken, it runs after every other ready
/// task, so the output it makes carries what they produced (a subscriber's writer
/// drains its queue after the pass's input was read).
pub fn spawn_deferred<F: Future + 'static>(future: F) -> JoinHandle<F::Output> {
    spawn_kind(Kind::Deferred, future)
}

fn spawn_kind<F: Future + 'static>(kind: Kind, future: F) -> JoinHandle<F::Output> {
    let state = Rc::new(RefCell::new(JoinState {
        output: None,
        finished: false,
        waiter: None,
    }));
    let task = Spawned {
        future,
        state: Rc::clone(&state),
    };
    with_ring(|ring| ring.tasks.spawn(&ring.remote, kind, Box::pin(task)));
    JoinHandle { state }
}
