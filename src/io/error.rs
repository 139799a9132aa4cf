//! IO failures: which operation, on what, and the OS error.

use std::io;

/// An IO operation failed, or the host cannot run io_uring workers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IoError {
    /// An operation on a socket or address failed.
    #[error("{op} {target}: {source}")]
    Op {
        /// What we were doing ("listen on", "accept on", "read from", "write to").
        op: &'static str,
        /// The address or connection it was done on.
        target: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The kernel refused to set up an io_uring.
    #[error("io_uring is not available ({hint})")]
    RingUnavailable {
        /// The error from `io_uring_setup`.
        #[source]
        source: io::Error,
        /// What the operator can do about it.
        hint: &'static str,
    },
    /// The operator asked for workers or cores this host cannot give.
    #[error("bad worker/core configuration: {0}")]
    Config(String),
    /// The NATS client could not start.
    #[error(transparent)]
    Nats(#[from] crate::io::nats::error::NatsError),
    /// A worker thread died (a bug: it should have reported an error instead). The
    /// process must stop: the other workers cannot take over its connections.
    #[error("worker {worker} died: {cause}")]
    WorkerPanicked {
        /// Which worker.
        worker: usize,
        /// The panic's message.
        cause: String,
    },
}

impl IoError {
    /// An [`IoError::Op`].
    pub fn op(op: &'static str, target: impl ToString, source: io::Error) -> IoError {
        IoError::Op {
            op,
            target: target.to_string(),
            source,
        }
    }
}
