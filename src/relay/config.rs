//! `feedrelay run` configuration: a TOML file, defaults for everything, flags on top.
//!
//! Unknown keys are errors (a typo must not silently leave a default in force), and
//! every error names the file, the line and the field, and what is allowed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::io::idle::IdleMode;

use crate::relay::access::exposure::{AnonymousRoles, Exposure};
use crate::relay::access::jwt::JwtConfig;
use crate::relay::access::rules::{self, AccessError, PublisherTokenConfig};
use crate::relay::access::secret::Secret;
use crate::relay::core::compression::CompressionConfig;
use crate::relay::core::queue::{QueueLimits, SlowConsumerPolicy};
use crate::relay::core::routing::MAX_WORKERS;
use crate::relay::core::topic::JsonPointer;
use crate::relay::feed::{check_feeds, FeedConfig};
use crate::relay::nats::config::NatsConfig;
use crate::ws::handshake::is_token;
use crate::ws::Limits;

/// Most messages a topic's history may keep (`history_messages_per_topic`).
pub const MAX_HISTORY_PER_TOPIC: usize = 65_536;

/// The largest `max_topic_bytes` accepted: topic names are keys, copied per route.
pub const MAX_TOPIC_BYTES_LIMIT: usize = 4096;

/// The whole configuration, defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on (publishers at `/pub`, subscribers at `/ws`).
    pub listen: SocketAddr,
    /// Number of workers (default: one per entry in `cores`, or half the CPUs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// Core each worker is pinned to, in worker order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cores: Option<Vec<usize>>,
    /// How an idle worker waits: `spin`, `yield` or `park`.
    pub idle: IdleMode,
    /// JSON pointer (RFC 6901) to a message's topic.
    pub topic_pointer: String,
    /// Topic for messages without one; absent: such messages are dropped and counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_topic: Option<String>,
    /// Frames a subscriber's queue holds at most.
    pub queue_max_messages: usize,
    /// Bytes a subscriber's queue holds at most.
    pub queue_max_bytes: usize,
    /// What happens when a subscriber's queue is full: `disconnect`, `drop`, `conflate`.
    pub slow_consumer: SlowConsumerPolicy,
    /// Per-topic overrides of `slow_consumer`.
    pub topic_policies: BTreeMap<String, SlowConsumerPolicy>,
    /// Ping idle subscribers this often (ms).
    pub keepalive_interval_ms: u64,
    /// Close a connection that sent nothing (not even a pong) for this long (ms).
    pub idle_timeout_ms: u64,
    /// A client must finish the opening handshake within this time (ms).
    pub handshake_timeout_ms: u64,
    /// Largest frame payload accepted from a client.
    pub max_frame_bytes: usize,
    /// Largest message accepted from a client.
    pub max_message_bytes: usize,
    /// Most frames one client message may come in (more: closed with 1009).
    pub max_fragments: usize,
    /// Largest control message (subscribe/unsubscribe) a subscriber may send; a
    /// subscriber sends nothing else, so this (or `max_message_bytes`, if smaller) is
    /// its whole message limit (more: closed with 1009).
    pub max_control_bytes: usize,
    /// Topics one subscriber may hold at once; also the most topics one control
    /// message may name (checked before any other work on it).
    pub max_subscriptions: usize,
    /// Subscription state over the whole relay, bytes: each subscription (a topic held
    /// by a connection) counts its topic's length plus 64; past it, a subscribe request
    /// gets an error and changes nothing.
    pub max_subscription_bytes: usize,
    /// Control messages a subscriber may send a second; more are ignored unparsed
    /// (counted; one error reply a second).
    pub max_control_per_second: u32,
    /// Longest topic name, in bytes (a publisher's message whose topic is longer is
    /// dropped and counted; a subscription to one is refused).
    pub max_topic_bytes: usize,
    /// Topics each worker keeps a drop counter for; drops on further topics are
    /// counted together as `other`.
    pub max_drop_topics: usize,
    /// Topics whose last message each worker keeps for snapshots (`snapshot=1`); a
    /// message of a new topic past it is not kept, and counted. 0: no snapshots.
    pub last_value_max_topics: usize,
    /// Text messages each topic keeps, beside its last value, for subscribers that
    /// resume (`{"op":"subscribe",..,"resume":{..}}`); counted against
    /// `last_value_max_bytes`. 0: no history (a resume gets a `reset` and the last value).
    pub history_messages_per_topic: usize,
    /// Bytes of last messages each worker keeps at most.
    pub last_value_max_bytes: usize,
    /// A subscriber whose oldest queued message has waited this long (ms) is logged,
    /// once per such episode, with its queue depth, oldest age and drops.
    pub slow_subscriber_log_ms: u64,
    /// A write that makes no progress for this long closes its connection (ms):
    /// a peer that stops reading cannot hold a connection's memory forever.
    pub write_timeout_ms: u64,
    /// Connections open at once over all workers, handshaking or not; when full, the
    /// relay stops accepting (new connections wait in the kernel's backlog).
    pub max_connections: usize,
    /// Connections in their opening handshake at once, over all workers; when spent,
    /// more are held for a slot, shared fairly between sources (a source holding fewer
    /// than the greediest evicts that one's oldest handshake).
    pub max_pending_handshakes: usize,
    /// Connections open at once from one source (an IPv4 address or an IPv6 /64);
    /// more are closed at accept.
    pub max_connections_per_address: usize,
    /// Connections in their opening handshake at once from one source; more are held
    /// for the source's next free slot, in order, and closed past the handshake timeout.
    pub max_pending_per_address: usize,
    /// New connections a second from one source (a burst of this many at once passes);
    /// more are closed at accept. 0: no limit.
    pub max_new_connections_per_address_per_second: u32,
    /// On SIGTERM/SIGINT, how long to keep flushing queues before closing (ms).
    pub shutdown_grace_ms: u64,
    /// A PEM certificate chain: with `tls_key_file`, the listener is `wss://` (TLS 1.2
    /// and 1.3). Relative to the config file; re-read on SIGHUP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<PathBuf>,
    /// The PEM private key of `tls_cert_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<PathBuf>,
    /// Subprotocols served (`Sec-WebSocket-Protocol`): a client gets the first of its
    /// offers found here; a client offering only others is refused with 400.
    pub subprotocols: Vec<String>,
    /// permessage-deflate (`[compression]`): off unless `enabled`.
    pub compression: CompressionConfig,
    /// NATS as the backbone between relays (`[nats]`): off unless present.
    pub nats: Option<NatsConfig>,
    /// `Origin` values a handshake may carry (`scheme://host[:port]`); any other gets
    /// 403. Empty: any origin. Clients that send none (not browsers) always pass.
    pub allowed_origins: Vec<String>,
    /// Addresses (or CIDR blocks) of load balancers whose connections start with a
    /// PROXY protocol header (v1 or v2): the client's address in it is the one per-source
    /// limits, logs and metrics see. A connection from one of them without a valid
    /// header is closed. Empty (the default): no header is read from anyone.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub proxy_protocol_from: Vec<String>,
    /// Tokens publishers must present, each with the topics it may publish
    /// (`[[publisher_tokens]]`). None: anyone who reaches the port may publish.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub publisher_tokens: Vec<PublisherTokenConfig>,
    /// The roles (`publish`, `subscribe`, `metrics`) anyone who reaches a non-loopback
    /// address may take without credentials: `true` (all), `false` (none), or a list.
    /// A role open beyond loopback and not named here refuses start and reload.
    pub allow_anonymous: AnonymousRoles,
    /// Subscriber tokens (`[jwt]`): when set, subscribers need a JWT whose `topics`
    /// claim bounds what they may subscribe to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtConfig>,
    /// The bearer token `/metrics`, `/subscribers` and the status page need (given as
    /// `Authorization: Bearer T` or `?token=T`); `/healthz` and `/readyz` need none.
    /// Re-read on SIGHUP. Unset: those paths are served to anyone who reaches them,
    /// which beyond loopback must be named in `allow_anonymous`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_token: Option<Secret>,
    /// A file holding `metrics_token` (relative to the config file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_token_file: Option<PathBuf>,
    /// Record per-hop latency histograms (and serve `GET /metrics` where configured).
    pub metrics: bool,
    /// Also answer `GET /metrics` on the data port (`listen`), not only on
    /// `metrics_listen`.
    pub metrics_on_data_port: bool,
    /// Also serve `GET /metrics` on this separate address (plain HTTP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    /// Submission queue entries of each worker's ring (a power of two).
    pub ring_entries: u32,
    /// Slots in each worker's registered file table (`io::ring::files`): sockets named
    /// by slot skip the kernel's descriptor lookup per operation; beyond it, plain
    /// descriptors. 0: no table.
    pub ring_registered_files: u32,
    /// A kernel thread polls each worker's submission queue (SQPOLL): no syscall to
    /// submit while it polls, but it burns a CPU. See tuning/RESULTS.md before use.
    pub sqpoll: bool,
    /// The SQPOLL thread sleeps after this long without work (ms).
    pub sqpoll_idle_ms: u32,
    /// While a worker's core is saturated, a pass of writes waits up to this long (µs)
    /// so each write carries more frames; 0: never (`io::ring::pacing`).
    pub saturated_write_hold_us: u32,
    /// CPUs for the SQPOLL threads: worker `i`'s on `sqpoll_cpus[i % len]` (empty:
    /// not pinned).
    pub sqpoll_cpus: Vec<usize>,
    /// `TCP_NODELAY` on every connection (off: Nagle delays small writes).
    pub tcp_nodelay: bool,
    /// `SO_SNDBUF` for every connection, bytes (absent: the kernel's autotuning).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_send_buffer_bytes: Option<usize>,
    /// `SO_RCVBUF` for every connection, bytes (absent: the kernel's autotuning).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_recv_buffer_bytes: Option<usize>,
    /// Exchange feeds to dial (`[[feeds]]` tables).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub feeds: Vec<FeedConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 9001)),
            workers: None,
            cores: None,
            idle: IdleMode::Park,
            topic_pointer: "/s".into(),
            default_topic: None,
            queue_max_messages: 4096,
            queue_max_bytes: 4 << 20,
            slow_consumer: SlowConsumerPolicy::Drop,
            topic_policies: BTreeMap::new(),
            keepalive_interval_ms: 15_000,
            idle_timeout_ms: 60_000,
            handshake_timeout_ms: 10_000,
            max_frame_bytes: 1 << 20,
            max_message_bytes: 1 << 20,
            max_fragments: 1024,
            max_control_bytes: 64 << 10,
            max_subscriptions: 1024,
            max_subscription_bytes: 128 << 20,
            max_control_per_second: 100,
            max_topic_bytes: 256,
            max_drop_topics: 1024,
            last_value_max_topics: 10_000,
            last_value_max_bytes: 64 << 20,
            history_messages_per_topic: 0,
            slow_subscriber_log_ms: 1000,
            write_timeout_ms: 10_000,
            max_connections: 10_000,
            max_pending_handshakes: 1_024,
            max_connections_per_address: 1_024,
            max_pending_per_address: 64,
            max_new_connections_per_address_per_second: 2_048,
            shutdown_grace_ms: 2_000,
            subprotocols: Vec::new(),
            compression: CompressionConfig::default(),
            nats: None,
            tls_cert_file: None,
            tls_key_file: None,
            allowed_origins: Vec::new(),
            proxy_protocol_from: Vec::new(),
            publisher_tokens: Vec::new(),
            metrics_token: None,
            metrics_token_file: None,
            allow_anonymous: AnonymousRoles::default(),
            jwt: None,
            metrics: true,
            metrics_on_data_port: false,
            metrics_listen: None,
            ring_entries: crate::io::ring::RING_ENTRIES,
            ring_registered_files: crate::io::ring::files::FIXED_FILES,
            sqpoll: false,
            sqpoll_idle_ms: 1_000,
            sqpoll_cpus: Vec::new(),
            saturated_write_hold_us: crate::io::ring::pacing::DEFAULT_MAX_HOLD.as_micros() as u32,
            tcp_nodelay: true,
            socket_send_buffer_bytes: None,
            socket_recv_buffer_bytes: None,
            feeds: Vec::new(),
        }
    }
}

/// A configuration the relay refuses to start with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("config {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key, or a value of the wrong type.
    #[error("config {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// toml's report: line, column, field and what is expected.
        message: String,
    },
    /// A value is out of range.
    #[error("config {path}: field `{field}`: {reason}")]
    Invalid {
        /// The file (or `flags`).
        path: String,
        /// The offending field.
        field: &'static str,
        /// What is allowed.
        reason: String,
    },
}

fn access_error(origin: &str, e: AccessError) -> ConfigError {
    match e {
        AccessError::Invalid(field, reason) => ConfigError::Invalid {
            path: origin.to_owned(),
            field,
            reason,
        },
        AccessError::TokenFile { path, source } => ConfigError::Read { path, source },
    }
}

impl Config {
    /// Reads and checks a config file; files it names are relative to its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Config::parse_in(&text, &shown, path.parent().unwrap_or(Path::new(".")))
    }

    /// Parses and checks config text; `origin` names it in errors, and files it names
    /// are relative to the current directory.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        Config::parse_in(text, origin, Path::new("."))
    }

    fn parse_in(text: &str, origin: &str, dir: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        // Files named in the config are relative to it (`join` keeps absolute ones).
        let files = config.feeds.iter_mut().map(|f| &mut f.ca_file);
        let nats_files = config
            .nats
            .iter_mut()
            .flat_map(|n| [&mut n.ca_file, &mut n.creds_file]);
        for file in files
            .chain(nats_files)
            .chain([&mut config.tls_cert_file, &mut config.tls_key_file])
            .flatten()
        {
            *file = dir.join(&*file);
        }
        rules::read_token_files(&mut config.publisher_tokens, dir)
            .map_err(|e| access_error(origin, e))?;
        if let Some(file) = &config.metrics_token_file {
            config.metrics_token = Some(
                rules::read_metrics_token(config.metrics_token.is_some(), &dir.join(file))
                    .map_err(|e| access_error(origin, e))?,
            );
        }
        if let Some(jwt) = &mut config.jwt {
            jwt.read_key(dir).map_err(|e| ConfigError::Invalid {
                path: origin.to_owned(),
                field: "jwt",
                reason: e.to_string(),
            })?;
        }
        config.validate(origin)?;
        Ok(config)
    }

    /// How worker `i`'s ring is set up.
    pub fn ring_options(&self, i: usize) -> crate::io::ring::RingOptions {
        crate::io::ring::RingOptions {
            entries: self.ring_entries,
            sqpoll_idle_ms: self.sqpoll.then_some(self.sqpoll_idle_ms),
            sqpoll_cpu: match self.sqpoll_cpus.len() {
                0 => None,
                n => Some(self.sqpoll_cpus[i % n] as u32),
            },
            max_hold: Duration::from_micros(self.saturated_write_hold_us.into()),
            fixed_files: self.ring_registered_files,
        }
    }

    /// The options every connection's socket gets.
    pub fn socket_options(&self) -> crate::io::sockopt::SocketOptions {
        crate::io::sockopt::SocketOptions {
            nodelay: self.tcp_nodelay,
            send_buffer: self.socket_send_buffer_bytes,
            recv_buffer: self.socket_recv_buffer_bytes,
        }
    }

    /// Checks ranges that types alone do not.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |field, reason: String| ConfigError::Invalid {
            path: origin.to_owned(),
            field,
            reason,
        };
        self.trusted_proxies()
            .map_err(|why| bad("proxy_protocol_from", why))?;
        if let Some(w) = self.workers {
            if w == 0 || w > MAX_WORKERS {
                return Err(bad(
                    "workers",
                    format!("must be 1..={MAX_WORKERS}, got {w}"),
                ));
            }
        }
        if let Some(c) = &self.cores {
            if c.is_empty() || c.len() > MAX_WORKERS {
                return Err(bad("cores", format!("must list 1..={MAX_WORKERS} cores")));
            }
            if let Some(w) = self.workers {
                if w != c.len() {
                    return Err(bad(
                        "workers",
                        format!("is {w} but cores lists {} cores", c.len()),
                    ));
                }
            }
        }
        JsonPointer::parse(&self.topic_pointer).map_err(|e| bad("topic_pointer", e))?;
        check_feeds(&self.feeds).map_err(|e| bad("feeds", e))?;
        if let Err((field, why)) = self.ring_options(0).check() {
            return Err(bad(field, why));
        }
        for (field, v) in [
            ("socket_send_buffer_bytes", self.socket_send_buffer_bytes),
            ("socket_recv_buffer_bytes", self.socket_recv_buffer_bytes),
        ] {
            if let Some(n) = v {
                if !(4096..=1 << 30).contains(&n) {
                    return Err(bad(field, format!("must be 4096..=1073741824, got {n}")));
                }
            }
        }
        if let Some(field) = self.first_zero_limit() {
            return Err(bad(field, "must be greater than 0".into()));
        }
        if self.max_topic_bytes > MAX_TOPIC_BYTES_LIMIT {
            return Err(bad(
                "max_topic_bytes",
                format!("must be at most {MAX_TOPIC_BYTES_LIMIT}"),
            ));
        }
        if self.history_messages_per_topic > MAX_HISTORY_PER_TOPIC {
            return Err(bad(
                "history_messages_per_topic",
                format!("must be at most {MAX_HISTORY_PER_TOPIC}"),
            ));
        }
        if self.max_frame_bytes > self.max_message_bytes {
            return Err(bad(
                "max_frame_bytes",
                "must not exceed max_message_bytes".into(),
            ));
        }
        if let Some(p) = self.subprotocols.iter().find(|p| !is_token(p)) {
            return Err(bad("subprotocols", format!("{p:?} is not an HTTP token")));
        }
        if let Err((field, why)) = self.compression.check() {
            return Err(bad(field, why));
        }
        let history = self.history_messages_per_topic;
        if let Some(Err((field, why))) = self.nats.as_ref().map(|n| n.check(history)) {
            return Err(bad(field, why));
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(bad(
                "tls_cert_file",
                "give tls_cert_file and tls_key_file together".into(),
            ));
        }
        rules::validate(
            self.exposure(),
            &self.allow_anonymous,
            &self.allowed_origins,
            &self.publisher_tokens,
            self.jwt.as_ref(),
            self.metrics_token.as_ref(),
        )
        .map_err(|e| access_error(origin, e))
    }

    /// The first of the limits that must be positive that is 0.
    fn first_zero_limit(&self) -> Option<&'static str> {
        let positive: [(&'static str, u64); 19] = [
            ("queue_max_messages", self.queue_max_messages as u64),
            ("queue_max_bytes", self.queue_max_bytes as u64),
            ("keepalive_interval_ms", self.keepalive_interval_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("handshake_timeout_ms", self.handshake_timeout_ms),
            ("max_frame_bytes", self.max_frame_bytes as u64),
            ("max_message_bytes", self.max_message_bytes as u64),
            ("max_subscriptions", self.max_subscriptions as u64),
            ("max_subscription_bytes", self.max_subscription_bytes as u64),
            (
                "max_control_per_second",
                u64::from(self.max_control_per_second),
            ),
            ("max_fragments", self.max_fragments as u64),
            ("max_control_bytes", self.max_control_bytes as u64),
            ("max_topic_bytes", self.max_topic_bytes as u64),
            ("max_drop_topics", self.max_drop_topics as u64),
            ("write_timeout_ms", self.write_timeout_ms),
            ("max_connections", self.max_connections as u64),
            ("max_pending_handshakes", self.max_pending_handshakes as u64),
            (
                "max_connections_per_address",
                self.max_connections_per_address as u64,
            ),
            (
                "max_pending_per_address",
                self.max_pending_per_address as u64,
            ),
        ];
        positive
            .iter()
            .find(|(_, v)| *v == 0)
            .map(|(field, _)| *field)
    }

    /// Where the relay can be reached: the data port, and where metrics are served.
    pub fn exposure(&self) -> Exposure {
        Exposure {
            listen: self.listen,
            metrics: match self.metrics {
                true => [
                    self.metrics_on_data_port.then_some(self.listen),
                    self.metrics_listen,
                ],
                false => [None, None],
            },
        }
    }

    /// The access rules (origins, publisher tokens) as a worker applies them.
    pub fn access(&self) -> rules::Access {
        rules::Access::new(
            &self.allowed_origins,
            &self.publisher_tokens,
            self.jwt.as_ref(),
        )
        .with_metrics_token(self.metrics_token.clone())
    }

    /// The effective configuration as TOML (for `--print-config`).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot print config: {e}\n"))
    }

    /// Protocol limits for client connections.
    pub fn ws_limits(&self) -> Limits {
        Limits {
            max_frame_bytes: self.max_frame_bytes,
            max_message_bytes: self.max_message_bytes,
            max_fragments: self.max_fragments,
            ..Limits::default()
        }
    }

    /// Protocol limits for subscribers, who send only control messages (at most
    /// `max_control_bytes`, and never more than `max_message_bytes`).
    pub fn subscriber_limits(&self) -> Limits {
        let max = self.max_control_bytes.min(self.max_message_bytes);
        Limits {
            max_frame_bytes: max,
            max_message_bytes: max,
            ..self.ws_limits()
        }
    }

    /// What a control message may hold.
    pub fn control_limits(&self) -> crate::relay::core::control::ControlLimits {
        crate::relay::core::control::ControlLimits {
            max_topics: self.max_subscriptions,
            max_topic_bytes: self.max_topic_bytes,
            max_per_second: self.max_control_per_second,
        }
    }

    /// Write timeout.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }

    /// The load balancers whose connections start with a PROXY header.
    pub fn trusted_proxies(&self) -> Result<crate::io::proxy::TrustedProxies, String> {
        crate::io::proxy::TrustedProxies::parse(&self.proxy_protocol_from)
    }

    /// The admission limits.
    pub fn admission_limits(&self) -> crate::relay::access::admission::AdmissionLimits {
        crate::relay::access::admission::AdmissionLimits {
            max_connections: self.max_connections,
            max_pending_handshakes: self.max_pending_handshakes,
            max_connections_per_address: self.max_connections_per_address,
            max_pending_per_address: self.max_pending_per_address,
            max_new_connections_per_address_per_second: self
                .max_new_connections_per_address_per_second,
        }
    }

    /// Subscriber queue bounds.
    pub fn queue_limits(&self) -> QueueLimits {
        QueueLimits {
            max_messages: self.queue_max_messages,
            max_bytes: self.queue_max_bytes,
        }
    }

    /// Keepalive interval.
    pub fn keepalive(&self) -> Duration {
        Duration::from_millis(self.keepalive_interval_ms)
    }

    /// Idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_print_config() {
        let c = Config::default();
        assert_eq!(Config::parse(&c.to_toml(), "printed").unwrap(), c);
    }

    #[test]
    fn a_full_file_parses() {
        let c = Config::parse(
            r#"
listen = "0.0.0.0:9100"
allow_anonymous = true
cores = [0, 1]
idle = "spin"
topic_pointer = "/data/s"
default_topic = "misc"
slow_consumer = "disconnect"
[topic_policies]
"BTC-USD" = "conflate"
"#,
            "relay.toml",
        )
        .unwrap();
        assert_eq!(c.idle, IdleMode::Spin);
        assert_eq!(c.topic_policies["BTC-USD"], SlowConsumerPolicy::Conflate);
    }

    #[test]
    fn errors_name_file_line_field_and_allowed_values() {
        let e = Config::parse(
            "listen = \"127.0.0.1:1\"\nqueue_max_mesages = 5\n",
            "relay.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("relay.toml") && e.contains("line 2") && e.contains("queue_max_mesages"),
            "{e}"
        );
        assert!(
            e.contains("queue_max_messages"),
            "lists what is allowed: {e}"
        );
        let e = Config::parse("idle = \"sleep\"\n", "relay.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 1") && e.contains("spin") && e.contains("park"),
            "{e}"
        );
        let e = Config::parse("workers = 0\n", "relay.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`workers`") && e.contains("1..=64"), "{e}");
        let e = Config::parse("topic_pointer = \"s\"\n", "relay.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("topic_pointer"), "{e}");
        let e = Config::parse("queue_max_bytes = 0\n", "relay.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("queue_max_bytes") && e.contains("greater than 0"),
            "{e}"
        );
    }
}
