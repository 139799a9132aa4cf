//! What the NATS client is started with ([`NatsOptions`], [`NatsAuth`]) and the
//! headers it writes on every exported message.

use std::path::PathBuf;
use std::time::Duration;

/// Header naming the relay that exported a message.
pub const ORIGIN_HEADER: &str = "Feedrelay-Origin";
/// Header holding a message's number on its subject from its origin.
pub const SEQ_HEADER: &str = "Feedrelay-Seq";
/// Header present (`binary`) when the message was a binary WebSocket message.
pub const KIND_HEADER: &str = "Feedrelay-Kind";
/// Header holding a text message's place in its topic's count at its origin
/// ([`Position`](super::handoff::Position)).
pub const POSITION_HEADER: &str = "Feedrelay-Position";

/// `[nats] history = "jetstream"`: a JetStream stream keeps each subject's last
/// messages, and a relay that imports reads them back at start, so its history holds
/// what came before it started (see [`history`](super::history)).
#[derive(Debug, Clone)]
pub struct StreamHistory {
    /// The stream's name.
    pub stream: String,
    /// The subjects it captures, when this relay creates it.
    pub subjects: Vec<String>,
    /// Messages it keeps per subject, when this relay creates it.
    pub per_subject: usize,
    /// Most payload bytes read back at start; past it the rest is not read (said).
    pub max_fill_bytes: usize,
    /// How long start waits for the stream; past it the relay starts without.
    pub fill_timeout: Duration,
}

/// How the relay proves who it is to the NATS servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsAuth {
    /// Nothing (a server without authorization).
    None,
    /// A token (`authorization { token: ... }` on the server).
    Token(String),
    /// A user and password.
    UserPassword(String, String),
    /// A `.creds` file (a user JWT and its NKey seed, decentralized auth).
    CredsFile(PathBuf),
}

/// What the NATS client is started with.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// Servers, tried in turn (`nats://host:port`, `tls://host:port`).
    pub urls: Vec<String>,
    /// Credentials.
    pub auth: NatsAuth,
    /// CA certificates (PEM) to verify the servers by; also requires TLS.
    pub ca_file: Option<PathBuf>,
    /// Publish what the workers offer.
    pub export: bool,
    /// Subject patterns to subscribe to.
    pub import: Vec<String>,
    /// This relay's name in [`ORIGIN_HEADER`] (unique per running relay).
    pub origin: String,
    /// Messages the export channel holds.
    pub export_queue: usize,
    /// Messages each worker's import channel holds.
    pub import_queue: usize,
    /// One connection attempt's limit.
    pub connect_timeout: Duration,
    /// The wait before the second attempt; doubles each attempt after.
    pub reconnect_initial: Duration,
    /// The longest wait before an attempt.
    pub reconnect_max: Duration,
    /// Pin the NATS thread to this core (`None`: wherever the process may run).
    pub core: Option<usize>,
    /// A JetStream stream that keeps history (`None`: none).
    pub history: Option<StreamHistory>,
}
