//! Every call into `tokio-uring`, in one place.
//!
//! `tokio-uring` 0.5 has had no release since 2024 and lacks multishot receive and
//! provided-buffer rings; keeping it behind this module means replacing it (by the
//! `io-uring` crate directly) changes one file. Buffers pass to the kernel by ownership
//! and come back with the result: a read or write owns its buffer until its completion
//! arrives, which is why these functions take and return `Vec<u8>`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio_uring::buf::BoundedBuf;

use super::error::IoError;

pub use tokio_uring::net::{TcpListener, TcpStream};

/// Submission queue entries per ring by default (completion queue is twice that).
pub const RING_ENTRIES: u32 = 256;

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
}

impl Default for RingOptions {
    fn default() -> Self {
        RingOptions {
            entries: RING_ENTRIES,
            sqpoll_idle_ms: None,
            sqpoll_cpu: None,
        }
    }
}

/// One io_uring runtime, owned by the worker thread that created it.
pub struct Ring {
    rt: tokio_uring::Runtime,
}

thread_local! {
    /// This thread's ring descriptor, for [`submit_pending`]; -1 if unknown.
    static RING_FD: std::cell::Cell<i32> = const { std::cell::Cell::new(-1) };
    /// Whether this thread's ring was set up with SQPOLL.
    static RING_SQPOLL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Serialises ring creation so each thread can tell which new descriptor is its ring.
static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The io_uring descriptors open in this process.
fn ring_fds() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let target = std::fs::read_link(e.path()).ok()?;
        (target.as_os_str() == "anon_inode:[io_uring]")
            .then(|| e.file_name().to_str()?.parse().ok())
            .flatten()
    })
    .collect()
}

impl Ring {
    /// Sets up a ring with the default options on this thread; fails with a hint if
    /// the kernel refuses.
    pub fn new() -> Result<Ring, IoError> {
        Ring::with_options(&RingOptions::default())
    }

    /// Sets up a ring as `options` say on this thread.
    pub fn with_options(options: &RingOptions) -> Result<Ring, IoError> {
        let mut builder = tokio_uring::builder();
        builder.entries(options.entries);
        if let Some(idle) = options.sqpoll_idle_ms {
            let mut urb = tokio_uring::uring_builder();
            urb.setup_sqpoll(idle);
            if let Some(cpu) = options.sqpoll_cpu {
                urb.setup_sqpoll_cpu(cpu);
            }
            builder.uring_builder(&urb);
        }
        let _creating = CREATING.lock().unwrap_or_else(|e| e.into_inner());
        let before = ring_fds();
        let rt = tokio_uring::Runtime::new(&builder).map_err(|e| {
            match (options.sqpoll_idle_ms, e.raw_os_error()) {
                (Some(_), Some(libc::EINVAL)) => IoError::RingUnavailable {
                    source: e,
                    hint: "SQPOLL was refused: is every CPU in sqpoll_cpus online?",
                },
                (Some(_), Some(libc::EPERM)) => IoError::RingUnavailable {
                    source: e,
                    hint: "SQPOLL needs CAP_SYS_NICE before Linux 5.11: turn sqpoll off",
                },
                _ => ring_unavailable(e),
            }
        })?;
        let new: Vec<i32> = ring_fds()
            .into_iter()
            .filter(|fd| !before.contains(fd))
            .collect();
        if let [fd] = new[..] {
            RING_FD.with(|r| r.set(fd));
        }
        RING_SQPOLL.with(|s| s.set(options.sqpoll_idle_ms.is_some()));
        Ok(Ring { rt })
    }

    /// Runs `fut` to completion on this ring (tasks it spawns run here too).
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        self.rt.block_on(fut)
    }
}

/// Submits the operations queued in this thread's ring now (one `io_uring_enter`).
///
/// `tokio-uring` 0.5 submits only when the tokio runtime parks. A worker that never
/// parks (the `spin` and `yield` idle strategies, or one kept busy by its inbox) would
/// otherwise leave its writes and accepts queued and unseen by the kernel. `tokio-uring`
/// exposes no submit call, so the ring's descriptor is found when the ring is created
/// (the one new `anon_inode:[io_uring]` in /proc/self/fd) and entered directly: the
/// submission tail is already published (io-uring publishes it when a push ends). When
/// the ring layer moves to the `io-uring` crate directly, this becomes its `submit()`.
pub fn submit_pending() {
    let fd = RING_FD.with(|r| r.get());
    if fd < 0 {
        return;
    }
    const TO_SUBMIT: u32 = 4096;
    /// `IORING_ENTER_SQ_WAKEUP`: wake the SQPOLL thread if it went to sleep. The
    /// ring's flags word (which says whether it sleeps) is private to tokio-uring, so
    /// with SQPOLL every call asks; waking an awake thread costs only the syscall.
    const SQ_WAKEUP: u32 = 1 << 1;
    let flags = if RING_SQPOLL.with(|s| s.get()) {
        SQ_WAKEUP
    } else {
        0
    };
    // SAFETY: `fd` is this thread's io_uring, open for the ring's lifetime; with no
    // GETEVENTS flag and no argument, io_uring_enter only consumes submission entries
    // that the runtime has already written and published (or, with SQPOLL, wakes the
    // kernel thread that consumes them).
    unsafe {
        libc::syscall(
            libc::SYS_io_uring_enter,
            fd,
            TO_SUBMIT,
            0u32,
            flags,
            std::ptr::null::<libc::c_void>(),
            0usize,
        );
    }
}

/// Checks that this host can create an io_uring, before any worker starts.
pub fn probe() -> Result<(), IoError> {
    Ring::new().map(drop)
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

/// Reads into the spare capacity of `buf` (after its `len()`), without zero-filling it.
/// Returns the number of bytes read (0 at end of stream) and the buffer.
pub async fn read_append(stream: &TcpStream, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
    let len = buf.len();
    if len == buf.capacity() {
        return (Err(io::Error::other("read buffer full")), buf);
    }
    let (res, slice) = stream.read(buf.slice(len..)).await;
    (res, slice.into_inner())
}

/// Writes all of `buf` (one submission unless the socket takes it in parts) and hands
/// the buffer back, cleared, for reuse.
pub async fn write_all(stream: &TcpStream, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
    if buf.is_empty() {
        return (Ok(()), buf);
    }
    let (res, mut buf) = stream.write_all(buf).await;
    buf.clear();
    (res, buf)
}

/// Connects to `addr` through the ring, with `TCP_NODELAY`.
pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    connect_with(addr, &super::sockopt::SocketOptions::default()).await
}

/// Connects to `addr` through the ring and sets `options` (buffer sizes set after
/// connect do not change the window scale the handshake agreed).
pub async fn connect_with(
    addr: SocketAddr,
    options: &super::sockopt::SocketOptions,
) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    options.apply_to(&stream)?;
    Ok(stream)
}

/// Wraps a bound std listener for this ring.
pub fn listener(std: std::net::TcpListener) -> TcpListener {
    TcpListener::from_std(std)
}

/// Frames for one vectored write, with the `iovec` array that describes them; both
/// vectors keep their capacity from write to write, so writing allocates nothing.
/// (`tokio-uring`'s own `writev` builds a fresh `iovec` vector per call.)
#[derive(Default)]
pub struct WriteBatch {
    /// The frames, in order.
    pub frames: Vec<bytes::Bytes>,
    /// Per frame, when it was queued (for the caller's egress latency; not written).
    pub times: Vec<u64>,
    iovs: Vec<libc::iovec>,
}

impl WriteBatch {
    /// Room for `n` frames.
    pub fn with_capacity(n: usize) -> Self {
        WriteBatch {
            frames: Vec::with_capacity(n),
            times: Vec::with_capacity(n),
            iovs: Vec::with_capacity(n),
        }
    }
}

struct WritevTransform;

impl tokio_uring::OneshotOutputTransform for WritevTransform {
    type Output = (io::Result<usize>, WriteBatch);
    type StoredData = WriteBatch;

    fn transform_oneshot_output(
        self,
        batch: WriteBatch,
        cqe: io_uring::cqueue::Entry,
    ) -> Self::Output {
        let res = if cqe.result() >= 0 {
            Ok(cqe.result() as usize)
        } else {
            Err(io::Error::from_raw_os_error(-cqe.result()))
        };
        (res, batch)
    }
}

/// One `IORING_OP_WRITEV` over the batch's frames.
async fn writev_once(stream: &TcpStream, mut batch: WriteBatch) -> (io::Result<usize>, WriteBatch) {
    use std::os::fd::AsRawFd;
    batch.iovs.clear();
    for f in &batch.frames {
        batch.iovs.push(libc::iovec {
            iov_base: f.as_ptr() as *mut libc::c_void,
            iov_len: f.len(),
        });
    }
    // The kernel reads the iovecs and the frames they point to until the completion
    // arrives. Both live in `batch`, which the op owns until then (tokio-uring keeps an
    // op's data alive even if this future is dropped), and moving the vectors does not
    // move their heap contents. The caller holds `stream` open across the await.
    let sqe = io_uring::opcode::Writev::new(
        io_uring::types::Fd(stream.as_raw_fd()),
        batch.iovs.as_ptr(),
        batch.iovs.len() as u32,
    )
    .build();
    tokio_uring::UnsubmittedOneshot::new(batch, WritevTransform, sqe)
        .submit()
        .await
}

/// Writes every frame in the batch (one submission unless the socket takes only part;
/// a partly written frame is resubmitted from where it stopped, as a slice, not a copy)
/// and hands the batch back, empty, for reuse.
pub async fn writev_all(stream: &TcpStream, mut batch: WriteBatch) -> (io::Result<()>, WriteBatch) {
    use bytes::Buf;
    while !batch.frames.is_empty() {
        let (res, back) = writev_once(stream, batch).await;
        batch = back;
        let mut written = match res {
            Ok(0) => {
                batch.frames.clear();
                return (Err(io::ErrorKind::WriteZero.into()), batch);
            }
            Ok(n) => n,
            Err(e) => {
                batch.frames.clear();
                return (Err(e), batch);
            }
        };
        let done = batch
            .frames
            .iter()
            .take_while(|f| {
                if written >= f.len() {
                    written -= f.len();
                    true
                } else {
                    false
                }
            })
            .count();
        batch.frames.drain(..done);
        if let Some(first) = batch.frames.first_mut() {
            first.advance(written);
        }
    }
    (Ok(()), batch)
}
