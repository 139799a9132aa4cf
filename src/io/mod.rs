//! io_uring workers pinned to cores, their listeners, and the drivers that run a
//! [`ws::Connection`](crate::ws::Connection) over a socket.
//!
//! This module owns the ring, the buffers and the cores; it knows nothing of WebSocket
//! rules, which live in [`ws`](crate::ws). A connection driver moves bytes between a
//! socket and a `ws::Connection`: it reads into a buffer allocated once per connection
//! (never zero-filled, never reallocated on the steady path), lets the protocol core
//! consume whole frames from it in place, and writes everything one read produced in a
//! single submission.
//!
//! - [`ring`]: every call into `tokio-uring`, so the ring layer can be replaced (the
//!   `io-uring` crate directly) by changing one file.
//! - [`listener`]: `SO_REUSEPORT` listeners, one per worker.
//! - [`worker`]: worker threads, one per configured core, each with its own ring.
//! - [`server`]: the server-side connection driver, generic over a [`server::Service`].
//! - [`relay`]: the relay's workers: publishers, subscribers, the inbox between workers.
//! - [`client`]: a WebSocket client over the same core, for feeds and load generation.
//! - [`feed`]: exchange feed lines: dial, subscribe, arbitrate, reconnect with backoff.
//! - [`procfs`]: CPU time of a process from /proc.
//! - [`signal`]: a lock-free wake-up flag for tasks on one worker.
//! - [`sockopt`]: `TCP_NODELAY` and socket buffer sizes, for listeners and dialled sockets.
//! - [`shutdown`]: SIGINT/SIGTERM turned into a signal every task can wait on.
//! - [`transport`]: plain TCP or TLS (rustls, sans-IO) over the ring.
#![allow(unsafe_code)]

pub mod client;
pub mod error;
pub mod feed;
pub mod listener;
pub mod procfs;
pub mod relay;
pub mod ring;
pub mod server;
pub mod shutdown;
pub mod signal;
pub mod sockopt;
pub mod transport;
pub mod worker;

pub use error::IoError;
