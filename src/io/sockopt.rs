//! Socket options the configuration sets: `TCP_NODELAY` and the kernel's send and
//! receive buffer sizes. Set on each listener, from which Linux copies them to every
//! accepted socket, and on each socket the relay dials (feeds).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use socket2::SockRef;

/// The options; `None` buffer sizes leave the kernel's defaults (and its autotuning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOptions {
    /// `TCP_NODELAY`: send small writes at once instead of waiting for an ACK (Nagle).
    pub nodelay: bool,
    /// `SO_SNDBUF` in bytes (the kernel doubles it and caps it at `net.core.wmem_max`).
    pub send_buffer: Option<usize>,
    /// `SO_RCVBUF` in bytes (doubled, capped at `net.core.rmem_max`).
    pub recv_buffer: Option<usize>,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            nodelay: true,
            send_buffer: None,
            recv_buffer: None,
        }
    }
}

impl SocketOptions {
    /// Applies the options to `socket`.
    pub fn apply(&self, socket: SockRef<'_>) -> io::Result<()> {
        socket.set_nodelay(self.nodelay)?;
        if let Some(n) = self.send_buffer {
            socket.set_send_buffer_size(n)?;
        }
        if let Some(n) = self.recv_buffer {
            socket.set_recv_buffer_size(n)?;
        }
        Ok(())
    }

    /// Applies the options to a socket known only by its descriptor (a ring stream).
    pub fn apply_to(&self, socket: &impl AsRawFd) -> io::Result<()> {
        // SAFETY: the descriptor belongs to `socket`, which outlives this borrow; the
        // options are set through it and nothing is closed.
        let fd = unsafe { BorrowedFd::borrow_raw(socket.as_raw_fd()) };
        self.apply(SockRef::from(&fd))
    }
}

/// A TCP socket's own segment counters (`TCP_INFO`, Linux 4.2+): exact per socket,
/// unlike the host-wide `/proc/net/snmp`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpCounts {
    /// Segments received (`tcpi_segs_in`), pure ACKs included.
    pub segs_in: u64,
    /// Segments sent (`tcpi_segs_out`), retransmissions included.
    pub segs_out: u64,
}

/// The segment counters of the TCP socket `fd`; `None` if it is not one (or closed).
pub fn tcp_counts(fd: std::os::fd::RawFd) -> Option<TcpCounts> {
    // SAFETY: tcp_info is plain integers, so all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is a valid, writable tcp_info of `len` bytes for the call; the
    // kernel writes at most `len` bytes and says how many in `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(TcpCounts {
        segs_in: u64::from(info.tcpi_segs_in),
        segs_out: u64::from(info.tcpi_segs_out),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn tcp_counts_are_each_sockets_own() {
        use std::io::{Read, Write};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut tx = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        tx.set_nodelay(true).unwrap();
        let (mut rx, _) = listener.accept().unwrap();
        let (tx0, rx0) = (
            tcp_counts(tx.as_raw_fd()).unwrap(),
            tcp_counts(rx.as_raw_fd()).unwrap(),
        );
        let mut buf = [0u8; 16];
        for _ in 0..5 {
            // One write, read before the next: one data segment each.
            tx.write_all(b"0123456789abcdef").unwrap();
            rx.read_exact(&mut buf).unwrap();
        }
        let (tx1, rx1) = (
            tcp_counts(tx.as_raw_fd()).unwrap(),
            tcp_counts(rx.as_raw_fd()).unwrap(),
        );
        assert!(tx1.segs_out - tx0.segs_out >= 5, "{tx0:?} -> {tx1:?}");
        assert!(rx1.segs_in - rx0.segs_in >= 5, "{rx0:?} -> {rx1:?}");
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        assert_eq!(tcp_counts(file.as_raw_fd()), None, "not a socket");
    }

    #[test]
    fn accepted_sockets_inherit_the_listeners_options() {
        for opts in [
            SocketOptions {
                nodelay: false,
                send_buffer: Some(64 << 10),
                recv_buffer: Some(32 << 10),
            },
            SocketOptions::default(),
        ] {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            opts.apply(SockRef::from(&listener)).unwrap();
            let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (accepted, _) = listener.accept().unwrap();
            let s = SockRef::from(&accepted);
            assert_eq!(s.nodelay().unwrap(), opts.nodelay);
            if let Some(n) = opts.send_buffer {
                // Linux doubles the value for bookkeeping overhead.
                assert_eq!(s.send_buffer_size().unwrap(), 2 * n);
            }
            if let Some(n) = opts.recv_buffer {
                assert_eq!(s.recv_buffer_size().unwrap(), 2 * n);
            }
        }
    }

    #[test]
    fn applies_through_a_raw_descriptor() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let opts = SocketOptions {
            nodelay: true,
            send_buffer: None,
            recv_buffer: Some(48 << 10),
        };
        opts.apply_to(&client).unwrap();
        assert!(client.nodelay().unwrap());
        assert_eq!(SockRef::from(&client).recv_buffer_size().unwrap(), 96 << 10);
    }
}
