//! Sockets on the ring: accept, connect, read, write and vectored write as ring
//! operations over owned buffers.
//!
//! A buffer passes to the kernel with the operation and comes back with its result:
//! that is why these functions take and return `Vec<u8>` and [`WriteBatch`]. Reads go
//! into a buffer's spare capacity, never zero-filled.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use bytes::Bytes;
use io_uring::{opcode, squeue, types::Fd};
use socket2::SockAddr;

use super::files::{self, FileSlot};
use super::op::Op;

/// A connected TCP socket driven by the ring. Closing it shuts it down first, so an
/// operation still in flight on it ends instead of waiting for a peer. Its reads and
/// writes name it by a slot in the ring's registered file table when there is one
/// ([`files`]).
#[derive(Debug)]
pub struct TcpStream {
    fd: OwnedFd,
    pub(super) slot: Cell<FileSlot>,
}

/// A listening TCP socket driven by the ring.
#[derive(Debug)]
pub struct TcpListener {
    fd: OwnedFd,
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for TcpStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        // SAFETY: shutdown(2) on a descriptor we own; failure (already shut) is fine.
        unsafe { libc::shutdown(self.fd.as_raw_fd(), libc::SHUT_RDWR) };
        // The table's reference goes before the descriptor, so closing it closes the
        // socket.
        files::release(&self.slot);
    }
}

fn result(res: i32) -> io::Result<usize> {
    if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(res as usize)
    }
}

impl TcpStream {
    /// Takes a connected std socket.
    pub fn from_std(s: std::net::TcpStream) -> TcpStream {
        TcpStream::from_owned(s.into())
    }

    fn from_owned(fd: OwnedFd) -> TcpStream {
        TcpStream {
            fd,
            slot: Cell::new(FileSlot::Untried),
        }
    }

    /// How an operation names this socket on this thread's ring (see [`files`]).
    fn target(&self) -> (Fd, io_uring::squeue::Flags) {
        files::target(&self.slot, self.fd.as_raw_fd())
    }

    /// Sets `TCP_NODELAY`.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        socket2::SockRef::from(&self.fd).set_nodelay(on)
    }

    /// Shuts down one or both directions now (an operation in flight ends).
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        socket2::SockRef::from(&self.fd).shutdown(how)
    }

    /// This end's address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        socket2::SockRef::from(&self.fd)
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("not an IP socket"))
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        socket2::SockRef::from(&self.fd)
            .peer_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("not an IP socket"))
    }
}

impl TcpListener {
    /// Takes a bound, listening std socket.
    pub fn from_std(l: std::net::TcpListener) -> TcpListener {
        TcpListener { fd: l.into() }
    }

    /// Accepts one connection.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let mut addr = Box::new(AcceptAddr {
            // SAFETY: sockaddr_storage is plain data; all zeroes is a valid value.
            storage: unsafe { std::mem::zeroed() },
            len: std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        });
        let entry = opcode::Accept::new(
            Fd(self.fd.as_raw_fd()),
            (&mut addr.storage as *mut libc::sockaddr_storage).cast(),
            &mut addr.len,
        )
        .flags(libc::SOCK_CLOEXEC)
        .build();
        // SAFETY: the address and its length live in `addr` (boxed, owned by the op);
        // the listener outlives the op (it is borrowed for the await).
        let (res, addr) = unsafe { Op::submit(entry, addr) }.yields_fd().await;
        let fd = result(res)? as RawFd;
        // SAFETY: a successful accept returns a new descriptor that nothing else owns.
        let stream = TcpStream::from_owned(unsafe { OwnedFd::from_raw_fd(fd) });
        // SAFETY: the kernel filled `len` bytes of the storage with the peer's address.
        let peer = unsafe { SockAddr::new(addr.storage, addr.len) };
        let peer = peer
            .as_socket()
            .ok_or_else(|| io::Error::other("accepted a non-IP socket"))?;
        Ok((stream, peer))
    }
}

/// The peer address an accept fills.
struct AcceptAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

/// Connects to `addr` (a new socket, through the ring).
pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM.cloexec(),
        Some(socket2::Protocol::TCP),
    )?;
    let stream = TcpStream::from_owned(OwnedFd::from(socket));
    let addr = Box::new(SockAddr::from(addr));
    let entry =
        opcode::Connect::new(Fd(stream.as_raw_fd()), addr.as_ptr().cast(), addr.len()).build();
    // SAFETY: the address is boxed and owned by the op; the socket is borrowed for the
    // await and outlives it.
    let (res, _) = unsafe { Op::submit(entry, addr) }.await;
    result(res)?;
    Ok(stream)
}

/// Reads into the spare capacity of `buf` (after its `len()`), without zero-filling it.
/// Returns the number of bytes read (0 at end of stream) and the buffer.
pub async fn read_append(stream: &TcpStream, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
    recv_append(stream, buf, 0).await
}

/// Like [`read_append`], but the bytes stay in the socket (`MSG_PEEK`): the next read
/// or peek sees them again. Waits while nothing is there; returns at once when
/// anything is, however little.
pub async fn peek_append(stream: &TcpStream, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
    recv_append(stream, buf, libc::MSG_PEEK).await
}

async fn recv_append(
    stream: &TcpStream,
    mut buf: Vec<u8>,
    flags: i32,
) -> (io::Result<usize>, Vec<u8>) {
    let len = buf.len();
    let spare = buf.capacity() - len;
    if spare == 0 {
        return (Err(io::Error::other("read buffer full")), buf);
    }
    // SAFETY: the pointer is to `spare` bytes of the Vec's allocation past its length.
    let at = unsafe { buf.as_mut_ptr().add(len) };
    let (fd, fixed) = stream.target();
    let entry = opcode::Recv::new(fd, at, spare.min(u32::MAX as usize) as u32)
        .flags(flags)
        .build()
        .flags(fixed);
    // SAFETY: the buffer is owned by the op until it completes (its heap memory does
    // not move with it); the stream is borrowed for the await.
    let (res, mut buf) = unsafe { Op::submit(entry, buf) }.await;
    match result(res) {
        Ok(n) => {
            // SAFETY: the kernel wrote `n` bytes (at most `spare`) after `len`.
            unsafe { buf.set_len(len + n.min(spare)) };
            (Ok(n), buf)
        }
        Err(e) => (Err(e), buf),
    }
}

/// Writes all of `buf` (one operation unless the socket takes it in parts) and hands it
/// back, cleared, for reuse.
pub async fn write_all(stream: &TcpStream, mut buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
    let mut at = 0;
    while at < buf.len() {
        let rest = &buf[at..];
        let (fd, fixed) = stream.target();
        let entry = opcode::Send::new(fd, rest.as_ptr(), rest.len().min(u32::MAX as usize) as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .flags(fixed);
        // SAFETY: as for `read_append`: the op owns the buffer until it completes.
        let (res, back) = unsafe { Op::submit(entry, buf) }.await;
        buf = back;
        match result(res) {
            Ok(0) => {
                buf.clear();
                return (Err(io::ErrorKind::WriteZero.into()), buf);
            }
            Ok(n) => at += n,
            Err(e) => {
                buf.clear();
                return (Err(e), buf);
            }
        }
    }
    buf.clear();
    (Ok(()), buf)
}

/// Frames for one vectored send, with the `iovec` array that describes them and the
/// `msghdr` that points at it; all keep their memory from write to write, so writing
/// allocates nothing.
pub struct WriteBatch {
    /// The frames, in order.
    pub frames: Vec<Bytes>,
    /// Per frame, when it was queued (for the caller's egress latency; not written).
    pub times: Vec<u64>,
    iovs: Vec<libc::iovec>,
    /// Boxed: the kernel reads it at its address while the op is in flight.
    msg: Box<libc::msghdr>,
}

impl Default for WriteBatch {
    fn default() -> Self {
        WriteBatch::with_capacity(0)
    }
}

impl WriteBatch {
    /// Room for `n` frames.
    pub fn with_capacity(n: usize) -> Self {
        // SAFETY: an all-zero msghdr is a valid empty one (no name, no control data).
        let msg = Box::new(unsafe { std::mem::zeroed::<libc::msghdr>() });
        WriteBatch {
            frames: Vec::with_capacity(n),
            times: Vec::with_capacity(n),
            iovs: Vec::with_capacity(n),
            msg,
        }
    }
}

impl WriteBatch {
    /// One send of the batch's frames on `stream`, as a submission entry that points
    /// into the batch (which must neither move its frames nor change while the send is
    /// in flight). A send, not a `WRITEV`: the socket's own path, without the file
    /// layer's checks and notifications that a write to any file takes. One frame
    /// (most writes on a feed with idle time) goes as `IORING_OP_SEND`, which skips the
    /// kernel's copy of a `msghdr` and of an `iovec` array; more frames as one
    /// `IORING_OP_SENDMSG`.
    pub fn send_entry(&mut self, stream: &TcpStream) -> squeue::Entry {
        let (fd, fixed) = stream.target();
        let flags = libc::MSG_NOSIGNAL;
        if let [frame] = self.frames.as_slice() {
            let len = frame.len().min(u32::MAX as usize) as u32;
            return opcode::Send::new(fd, frame.as_ptr(), len)
                .flags(flags)
                .build()
                .flags(fixed);
        }
        self.iovs.clear();
        for f in &self.frames {
            self.iovs.push(libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            });
        }
        self.msg.msg_iov = self.iovs.as_mut_ptr();
        self.msg.msg_iovlen = self.iovs.len();
        opcode::SendMsg::new(fd, &*self.msg)
            .flags(flags as u32)
            .build()
            .flags(fixed)
    }

    /// Takes the result of a send of this batch: drops the frames written and moves
    /// past the written part of a frame the socket took only part of (a slice, not a
    /// copy). `Ok(true)`: everything is written. On failure (a send that wrote nothing
    /// counts) the frames are dropped.
    pub fn sent(&mut self, res: i32) -> io::Result<bool> {
        use bytes::Buf;
        let mut written = match result(res) {
            Ok(0) if !self.frames.is_empty() => Err(io::ErrorKind::WriteZero.into()),
            other => other,
        }
        .inspect_err(|_| self.frames.clear())?;
        let done = self
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
        self.frames.drain(..done);
        if let Some(first) = self.frames.first_mut() {
            first.advance(written);
        }
        Ok(self.frames.is_empty())
    }
}

/// One send of the batch's frames, submitted now (a plain function returning the op,
/// not an `async fn`: no state machine of its own per write).
fn writev_once(stream: &TcpStream, mut batch: WriteBatch) -> Op<WriteBatch> {
    let entry = batch.send_entry(stream);
    // SAFETY: the entry points into `batch` (the msghdr and iovecs are boxed and
    // vector-held, the frames' bytes are behind `Bytes`: heap memory that does not move
    // with it), which the op owns until the completion arrives.
    unsafe { Op::submit(entry, batch) }
}

/// Writes every frame in the batch (one operation unless the socket takes only part; a
/// partly written frame is resubmitted from where it stopped, as a slice, not a copy)
/// and hands the batch back, empty, for reuse.
pub async fn writev_all(stream: &TcpStream, mut batch: WriteBatch) -> (io::Result<()>, WriteBatch) {
    while !batch.frames.is_empty() {
        let (res, back) = writev_once(stream, batch).await;
        batch = back;
        if let Err(e) = batch.sent(res) {
            return (Err(e), batch);
        }
    }
    (Ok(()), batch)
}
