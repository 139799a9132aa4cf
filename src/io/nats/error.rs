//! What can go wrong starting the NATS client.

/// What went wrong starting the client.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// A file named in the options cannot be used.
    #[error("nats: {what} {path}: {reason}")]
    File {
        /// Which option.
        what: &'static str,
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The client could not be set up (a bad URL, a runtime that would not start).
    #[error("nats: {0}")]
    Setup(String),
}
