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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

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
