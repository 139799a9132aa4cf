//! The ring's registered file table: a socket registered in it is named by its slot in
//! each operation (`IOSQE_FIXED_FILE`), which spares the kernel the descriptor lookup
//! and reference count (`fget`, `fput`) that every operation on a plain descriptor
//! pays. Profiled at 5k msg/s to 100 subscribers, that pair was 1.5% of the relay's
//! CPU (`tuning/RESULTS.md`, issue #24).
//!
//! A socket takes a slot on its first operation on a ring and keeps it for that ring
//! only (`FileSlot` names the ring): on any other ring its plain descriptor is used.
//! Dropping the socket empties its slot at once, but the slot is not given to another
//! socket until the kernel has taken every submission queued before that moment: an
//! entry still waiting in the submission queue names the slot, and must find it empty
//! (it fails with `EBADF`), never a newer socket. A full table, a kernel without sparse
//! tables (before 5.19), or SQPOLL (whose kernel thread takes submissions whenever it
//! likes) means plain descriptors: one lookup slower per operation, otherwise the same.

use std::cell::Cell;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};

use io_uring::{squeue, types::Fd, IoUring};

use super::context::try_with_ring;

/// Slots in each ring's table by default (at most the process's soft descriptor limit).
pub const FIXED_FILES: u32 = 4096;

/// The most slots a ring's table may have (the kernel's own bound is 2^20; a slot
/// costs the kernel a pointer and a bit, taken when the ring is made).
pub const MAX_FIXED_FILES: u32 = 65_536;

/// Tells rings apart: a slot means something only on the ring that gave it.
static NEXT_RING_ID: AtomicU64 = AtomicU64::new(1);

/// A new ring's id.
pub(super) fn next_ring_id() -> u64 {
    NEXT_RING_ID.fetch_add(1, Ordering::Relaxed)
}

/// A socket's standing with the rings' tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum FileSlot {
    /// No operation yet.
    #[default]
    Untried,
    /// Slot `index` of ring `ring`'s table.
    Registered { ring: u64, index: u32 },
    /// Plain descriptor (the table was full or absent when it asked).
    Plain,
}

/// One ring's table: which slots are free, which are in use, which wait to be reused.
#[derive(Debug, Default)]
pub(super) struct FileTable {
    /// Slots registered with the kernel (0: no table, every socket is plain).
    capacity: u32,
    /// Never used yet: `next..capacity`.
    next: u32,
    /// Emptied and safe to give again.
    free: Vec<u32>,
    /// Emptied, but entries queued before that may still name them.
    cooling: Vec<u32>,
}

impl FileTable {
    /// Sets up a sparse table of up to `want` slots on `uring` (fewer if the
    /// descriptor limit is lower); none if the kernel refuses.
    pub(super) fn new(uring: &IoUring, want: u32) -> FileTable {
        let soft = crate::io::limits::fd_limits().0;
        let capacity = want.min(soft.min(u64::from(u32::MAX)) as u32);
        if capacity == 0 {
            return FileTable::default();
        }
        match uring.submitter().register_files_sparse(capacity) {
            Ok(()) => FileTable {
                capacity,
                ..FileTable::default()
            },
            Err(e) => {
                // Asked for (the default) and refused: the operator should know the
                // setting has no effect (every socket op then looks its descriptor up).
                tracing::warn!(
                    error = %e,
                    slots = capacity,
                    "the kernel refused a registered file table: ring_registered_files has no effect, sockets use plain descriptors"
                );
                FileTable::default()
            }
        }
    }

    /// Registers `fd` in a free slot; `None` if none is free or the kernel refuses.
    fn register(&mut self, uring: &IoUring, fd: RawFd) -> Option<u32> {
        let index = match self.free.pop() {
            Some(i) => i,
            None if self.next < self.capacity => {
                self.next += 1;
                self.next - 1
            }
            None => return None,
        };
        match uring.submitter().register_files_update(index, &[fd]) {
            Ok(_) => Some(index),
            Err(e) => {
                tracing::debug!(error = %e, index, "registering a socket failed: plain descriptor");
                self.free.push(index);
                None
            }
        }
    }

    /// Empties slot `index` now; it is given again once the submission queue has been
    /// taken by the kernel ([`FileTable::submitted`]).
    fn release(&mut self, uring: &IoUring, index: u32) {
        // -1 empties the slot: the kernel drops its reference to the socket (an
        // operation already under way keeps its own until it completes).
        if let Err(e) = uring.submitter().register_files_update(index, &[-1]) {
            // The slot keeps the socket (already shut down) until the ring goes;
            // it is not given again.
            tracing::warn!(error = %e, index, "emptying a registered file slot failed");
            return;
        }
        self.cooling.push(index);
    }

    /// The kernel has taken every queued submission: the emptied slots are free.
    pub(super) fn submitted(&mut self) {
        self.free.append(&mut self.cooling);
    }

    /// Whether slots wait for the submission queue to be taken.
    pub(super) fn cooling(&self) -> bool {
        !self.cooling.is_empty()
    }

    /// Slots in use (neither free nor waiting).
    #[cfg(test)]
    pub(super) fn in_use(&self) -> u32 {
        self.next - (self.free.len() + self.cooling.len()) as u32
    }
}

/// How an operation on `fd` names it on this thread's ring: by its slot (registering
/// it on its first operation) or by the descriptor. `slot` is the socket's standing,
/// updated here.
pub(super) fn target(slot: &Cell<FileSlot>, fd: RawFd) -> (Fd, squeue::Flags) {
    let plain = (Fd(fd), squeue::Flags::empty());
    let fixed = |index: u32| (Fd(index as RawFd), squeue::Flags::FIXED_FILE);
    match slot.get() {
        FileSlot::Plain => plain,
        FileSlot::Registered { ring, index } => {
            match try_with_ring(|r| r.id == ring) {
                Some(true) => fixed(index),
                // Another ring's slot names another socket there.
                _ => plain,
            }
        }
        FileSlot::Untried => {
            let got = try_with_ring(|r| {
                let uring = r.uring.try_borrow().ok()?;
                let index = r.files.borrow_mut().register(&uring, fd)?;
                Some((r.id, index))
            })
            .flatten();
            match got {
                Some((ring, index)) => {
                    slot.set(FileSlot::Registered { ring, index });
                    fixed(index)
                }
                None => {
                    slot.set(FileSlot::Plain);
                    plain
                }
            }
        }
    }
}

/// Gives the socket's slot back (its socket is being closed). On another thread, or
/// once its ring is gone, there is nothing to give back to (a ring's table goes with
/// it).
pub(super) fn release(slot: &Cell<FileSlot>) {
    let FileSlot::Registered { ring, index } = slot.replace(FileSlot::Plain) else {
        return;
    };
    let _ = try_with_ring(|r| {
        if r.id != ring {
            return;
        }
        match r.uring.try_borrow() {
            Ok(uring) => r.files.borrow_mut().release(&uring, index),
            Err(_) => tracing::warn!(index, "ring busy: a registered file slot stays taken"),
        }
    });
}

/// Rings' tables as the tests see them.
#[cfg(test)]
pub(super) fn in_use() -> u32 {
    try_with_ring(|r| r.files.borrow().in_use()).unwrap_or(0)
}

/// Whether this thread's ring has a table.
#[cfg(test)]
pub(super) fn has_table() -> bool {
    try_with_ring(|r| r.files.borrow().capacity > 0).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::io::Read;
    use std::net::TcpStream as StdStream;
    use std::time::Duration;

    use super::*;
    use crate::io::ring::net::{read_append, write_all, TcpStream};
    use crate::io::ring::{Ring, RingOptions};

    /// A connected pair: (our end for the ring, the peer's std socket).
    fn connected() -> (StdStream, StdStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = StdStream::connect(l.local_addr().unwrap()).unwrap();
        let (ours, _) = l.accept().unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        (ours, peer)
    }

    fn read_exactly(peer: &mut StdStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        peer.read_exact(&mut buf).unwrap();
        buf
    }

    /// `tcpi_state`, the first byte of `struct tcp_info`.
    fn tcp_state(s: &StdStream) -> u8 {
        use std::os::fd::AsRawFd;
        let mut info = [0u8; 256];
        let mut len = info.len() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `info`; checked.
        let rc = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                info.as_mut_ptr().cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        info[0]
    }

    #[test]
    fn a_socket_takes_a_slot_on_its_first_operation_and_gives_it_back_when_dropped() {
        let (ours, mut peer) = connected();
        Ring::new().unwrap().block_on(async move {
            assert!(has_table(), "this kernel (5.19+) takes a sparse table");
            let s = TcpStream::from_std(ours);
            assert_eq!(in_use(), 0, "nothing registered before an operation");
            let (res, _) = write_all(&s, b"hello".to_vec()).await;
            res.unwrap();
            assert_eq!(in_use(), 1);
            assert!(matches!(s.slot.get(), FileSlot::Registered { .. }));
            assert_eq!(read_exactly(&mut peer, 5), b"hello");
            std::io::Write::write_all(&mut peer, b"back").unwrap();
            let (n, got) = read_append(&s, Vec::with_capacity(16)).await;
            assert_eq!((n.unwrap(), &got[..]), (4, &b"back"[..]));
            drop(s);
            assert_eq!(in_use(), 0);
        });
    }

    #[test]
    fn dropping_a_registered_socket_closes_it_not_only_shuts_it_down() {
        // Unread bytes when a socket is closed make the kernel reset the connection;
        // a socket only shut down (its file still held by the table) sends FIN alone,
        // and the peer would sit in CLOSE_WAIT.
        const TCP_CLOSE: u8 = 7;
        let (ours, mut peer) = connected();
        Ring::new().unwrap().block_on(async {
            let s = TcpStream::from_std(ours);
            let (res, _) = write_all(&s, b"x".to_vec()).await;
            res.unwrap();
            assert!(matches!(s.slot.get(), FileSlot::Registered { .. }));
            assert_eq!(read_exactly(&mut peer, 1), b"x");
            std::io::Write::write_all(&mut peer, b"never read").unwrap();
            crate::io::rt::sleep(Duration::from_millis(50)).await;
            drop(s);
            // Checked while the ring (and its table) is still there.
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while tcp_state(&peer) != TCP_CLOSE && std::time::Instant::now() < deadline {
                crate::io::rt::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(
                tcp_state(&peer),
                TCP_CLOSE,
                "the peer was reset: the socket closed"
            );
        });
    }

    #[test]
    fn a_send_queued_when_its_socket_is_dropped_never_reaches_the_next_socket() {
        let (a_ours, mut a_peer) = connected();
        let (b_ours, mut b_peer) = connected();
        Ring::new().unwrap().block_on(async move {
            let a = TcpStream::from_std(a_ours);
            let (res, _) = write_all(&a, b"1".to_vec()).await;
            res.unwrap();
            assert_eq!(read_exactly(&mut a_peer, 1), b"1");
            // A send on `a` goes into the submission queue (polled once, not yet
            // entered), then `a` is dropped before the ring is entered.
            let mut queued = Box::pin(write_all(&a, b"FROM-A".to_vec()));
            std::future::poll_fn(|cx| {
                assert!(queued.as_mut().poll(cx).is_pending());
                std::task::Poll::Ready(())
            })
            .await;
            drop(queued);
            drop(a);
            // `b` registers now, before the queue is taken: not in `a`'s slot.
            let b = TcpStream::from_std(b_ours);
            let (res, _) = write_all(&b, b"b".to_vec()).await;
            res.unwrap();
            let (res, _) = write_all(&b, b"!".to_vec()).await;
            res.unwrap();
            drop(b);
        });
        let mut got = Vec::new();
        b_peer.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"b!", "only b's own bytes reach b's peer");
    }

    #[test]
    fn a_socket_moved_to_another_ring_uses_its_descriptor_there() {
        let (ours, mut peer) = connected();
        let s = Ring::new().unwrap().block_on(async move {
            let s = TcpStream::from_std(ours);
            let (res, _) = write_all(&s, b"one".to_vec()).await;
            res.unwrap();
            assert_eq!(in_use(), 1);
            s
        });
        std::thread::spawn(move || {
            Ring::new().unwrap().block_on(async move {
                let (res, _) = write_all(&s, b"two".to_vec()).await;
                res.unwrap();
                assert_eq!(in_use(), 0, "not registered again here");
            })
        })
        .join()
        .unwrap();
        assert_eq!(read_exactly(&mut peer, 6), b"onetwo");
    }

    #[test]
    fn a_full_table_or_none_means_plain_descriptors() {
        for slots in [0, 1] {
            let (o1, mut p1) = connected();
            let (o2, mut p2) = connected();
            let options = RingOptions {
                fixed_files: slots,
                ..RingOptions::default()
            };
            Ring::with_options(&options).unwrap().block_on(async move {
                let (s1, s2) = (TcpStream::from_std(o1), TcpStream::from_std(o2));
                write_all(&s1, b"1".to_vec()).await.0.unwrap();
                write_all(&s2, b"2".to_vec()).await.0.unwrap();
                assert_eq!(in_use(), slots, "{slots} slots");
                assert_eq!(s2.slot.get(), FileSlot::Plain);
            });
            assert_eq!(read_exactly(&mut p1, 1), b"1");
            assert_eq!(read_exactly(&mut p2, 1), b"2");
        }
    }
}
