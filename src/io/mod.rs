//! The IO layer: io_uring workers pinned to cores, their sockets and timers, TLS, and
//! the one connection driver that runs a [`ws::Connection`](crate::ws::Connection)
//! over a socket.
//!
//! This module owns the ring, the buffers and the cores. It knows nothing of what a
//! message means (that is [`relay`](crate::relay)), and of WebSocket rules it knows only
//! what [`driver`] asks of [`ws`](crate::ws): nothing else in `io` imports `ws`. The
//! ring (the `io-uring` crate, with our own executor) is named only here.
//!
//! - [`ring`]: every ring operation (read, write, vectored write, connect, accept).
//! - [`rt`]: spawning tasks, timers, racing futures: the runtime as the crate sees it.
//! - [`worker`]: worker threads, one per configured core, each with its own ring.
//! - [`idle`]: what a worker does between duty cycles (spin, yield, park).
//! - [`listener`]: `SO_REUSEPORT` listeners, one per worker, and the accept loop.
//! - [`driver`]: the connection driver, with its [`server`](driver::server) side
//!   (handshake, `serve`) and [`client`](driver::client) side (`WsClient`).
//! - [`transport`]: plain TCP or TLS (rustls, sans-IO) over the ring.
//! - [`http`]: plain `GET` endpoints (`/metrics`) on a thread of their own.
//! - [`nats`]: the NATS client (async-nats) on a thread of its own, and its bounded
//!   hand-offs to and from the workers.
//! - [`offload`]: CPU work (signature checks) on helper threads, awaited by a task.
//! - [`proxy`]: the PROXY protocol header (v1 or v2) a load balancer puts before a stream.
//! - [`url`]: `ws://` / `wss://` URLs.
//! - [`sockopt`]: `TCP_NODELAY` and socket buffer sizes.
//! - [`cpu_mode`]: which share of some threads' CPU time is user space, sampled
//!   (perf events), for the bench.
//! - [`local`]: a wake-up flag and a lock for tasks on one worker thread.
//! - [`shutdown`]: SIGINT/SIGTERM turned into a signal every task can wait on.
#![allow(unsafe_code)]

pub mod cpu_mode;
pub mod driver;
pub mod error;
pub mod http;
pub mod idle;
pub mod limits;
pub mod listener;
pub mod local;
pub mod nats;
pub mod offload;
pub mod proxy;
pub mod resolve;
pub mod ring;
pub mod rt;
pub mod shutdown;
pub mod sockopt;
pub mod transport;
pub mod url;
pub mod worker;

pub use error::IoError;
