//! `[nats]`: NATS as the backbone between relays (the client itself is
//! [`io::nats`](crate::io::nats)).
//!
//! With `export`, every message the relay ingests, from publishers and from feeds
//! after arbitration, is offered to NATS as `<subject_prefix>.<topic>` (the topic
//! escaped into one token: [`subject`](super::subject)). With `import`, what
//! arrives on the listed subject patterns is ingested on a worker exactly as if a
//! publisher had sent it: topic from the payload, access to it as any subscriber's.
//! Imported messages are never exported again, and a relay skips what carries its own
//! origin header, so relays that export and import the same subjects do not loop.

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ledger::MAX_ORIGINS;
use super::subject::check_subject;
use crate::io::nats::{NatsAuth, NatsOptions, StreamHistory};
use crate::metrics::now_ns;
use crate::relay::core::topic::JsonPointer;
use crate::relay::feed::arbiter::Arbiter;

/// Most a hand-off channel (`export_queue`, `import_queue`) may hold.
pub const MAX_QUEUE: usize = 1 << 22;

/// `[nats]` in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Servers (`nats://host:port`, `tls://host:port`), tried in turn; a cluster's
    /// other members are learned from the one reached.
    pub urls: Vec<String>,
    /// Token authentication.
    pub token: Option<String>,
    /// User and password authentication.
    pub user: Option<String>,
    /// With `user`.
    pub password: Option<String>,
    /// A `.creds` file (user JWT and NKey seed).
    pub creds_file: Option<PathBuf>,
    /// CA certificates (PEM) the servers are verified by; TLS is then required.
    pub ca_file: Option<PathBuf>,
    /// Subjects are `<subject_prefix>.<escaped topic>`.
    pub subject_prefix: String,
    /// Publish every ingested message.
    pub export: bool,
    /// Subject patterns to import (`feedrelay.>`, `feedrelay.BTC-USD`).
    pub import: Vec<String>,
    /// This relay's name in the origin header (default: random per start). Two
    /// relays must never share one: each would skip the other's messages.
    pub origin: Option<String>,
    /// Messages waiting for the NATS thread; past it exports are dropped and counted.
    pub export_queue: usize,
    /// Messages waiting for each worker; past it imports are dropped and counted.
    pub import_queue: usize,
    /// One connection attempt's limit; also how long start waits before saying NATS
    /// is unreachable.
    pub connect_timeout_ms: u64,
    /// The wait before the second reconnection attempt; doubles per attempt.
    pub reconnect_initial_ms: u64,
    /// The longest wait between attempts.
    pub reconnect_max_ms: u64,
    /// Pin the NATS thread to this core (default: unpinned, wherever the process may
    /// run). Keep it off the workers' cores: it would take their time.
    pub core: Option<usize>,
    /// Arbitrate imports across exporting relays by this per-topic sequence number (a
    /// JSON pointer, as a feed's `seq_pointer`): when two relays export the same feed
    /// (a hot standby beside the primary), the first copy of each (topic, number) is
    /// relayed and the other dropped (`import_duplicates`).
    pub seq_pointer: Option<String>,
    /// Where history outlives the relay: `"none"`, or `"jetstream"` (a JetStream
    /// stream keeps each subject's last messages; an importing relay reads them back at
    /// start, so its subscribers resume across its restart). Needs
    /// `history_messages_per_topic`.
    pub history: HistoryStore,
    /// The stream's name (created if missing, capturing `<subject_prefix>.>`).
    pub history_stream: String,
    /// How long start waits to read the stream back; past it the relay starts without.
    pub history_fill_timeout_ms: u64,
    /// Most payload bytes read back at start; past it the rest is not read (said).
    pub history_fill_max_bytes: usize,
}

/// `[nats] history`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HistoryStore {
    /// History lives in the relay only.
    #[default]
    None,
    /// A JetStream stream keeps it too.
    Jetstream,
}

/// Most bytes `history_fill_max_bytes` may name.
pub const MAX_FILL_BYTES: usize = 16 << 30;

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            urls: Vec::new(),
            token: None,
            user: None,
            password: None,
            creds_file: None,
            ca_file: None,
            subject_prefix: "feedrelay".into(),
            export: false,
            import: Vec::new(),
            origin: None,
            export_queue: 65_536,
            import_queue: 65_536,
            connect_timeout_ms: 2_000,
            reconnect_initial_ms: 100,
            reconnect_max_ms: 2_000,
            core: None,
            seq_pointer: None,
            history: HistoryStore::None,
            history_stream: "FEEDRELAY".into(),
            history_fill_timeout_ms: 10_000,
            history_fill_max_bytes: 256 << 20,
        }
    }
}

impl NatsConfig {
    /// Why the section cannot be used, naming the field (`history_per_topic`: the
    /// relay's `history_messages_per_topic`, which a stream's history needs).
    pub fn check(&self, history_per_topic: usize) -> Result<(), (&'static str, String)> {
        if self.urls.is_empty() {
            return Err(("nats.urls", "lists no server".into()));
        }
        if let Some(u) = self.urls.iter().find(|u| !url_looks_right(u)) {
            return Err((
                "nats.urls",
                format!("{u:?} is not nats://host:port or tls://host:port"),
            ));
        }
        if !self.export && self.import.is_empty() {
            return Err((
                "nats",
                "neither export nor import is set: the section would do nothing".into(),
            ));
        }
        check_subject(&self.subject_prefix, false).map_err(|e| ("nats.subject_prefix", e))?;
        for (i, p) in self.import.iter().enumerate() {
            check_subject(p, true).map_err(|e| ("nats.import", e))?;
            if self.import[..i].contains(p) {
                return Err(("nats.import", format!("{p:?} is listed twice")));
            }
        }
        let ways = [
            self.token.is_some(),
            self.user.is_some(),
            self.creds_file.is_some(),
        ];
        if ways.iter().filter(|w| **w).count() > 1 {
            return Err((
                "nats.token",
                "give one of token, user and password, creds_file".into(),
            ));
        }
        if self.user.is_some() != self.password.is_some() {
            return Err(("nats.user", "give user and password together".into()));
        }
        if let Some(ca) = &self.ca_file {
            match crate::io::transport::read_certs(ca) {
                Ok(c) if !c.is_empty() => {}
                Ok(_) => {
                    return Err((
                        "nats.ca_file",
                        format!("{} holds no certificate", ca.display()),
                    ))
                }
                Err(e) => return Err(("nats.ca_file", format!("{}: {e}", ca.display()))),
            }
        }
        if let Some(f) = &self.creds_file {
            if let Err(e) = std::fs::metadata(f) {
                return Err(("nats.creds_file", format!("{}: {e}", f.display())));
            }
        }
        if let Some(p) = &self.seq_pointer {
            JsonPointer::parse(p).map_err(|e| ("nats.seq_pointer", e))?;
        }
        if let Some(o) = &self.origin {
            if o.is_empty() || o.len() > 64 || !o.bytes().all(|b| b.is_ascii_graphic()) {
                return Err((
                    "nats.origin",
                    "must be 1-64 printable ASCII characters without spaces".into(),
                ));
            }
        }
        for (field, n) in [
            ("nats.export_queue", self.export_queue),
            ("nats.import_queue", self.import_queue),
        ] {
            if n == 0 || n > MAX_QUEUE {
                return Err((field, format!("must be 1..={MAX_QUEUE}, got {n}")));
            }
        }
        for (field, ms) in [
            ("nats.connect_timeout_ms", self.connect_timeout_ms),
            ("nats.reconnect_initial_ms", self.reconnect_initial_ms),
            ("nats.reconnect_max_ms", self.reconnect_max_ms),
        ] {
            if ms == 0 {
                return Err((field, "must be greater than 0".into()));
            }
        }
        if !is_stream_name(&self.history_stream) {
            return Err((
                "nats.history_stream",
                "must be 1-64 characters of A-Z, a-z, 0-9, _ and -".into(),
            ));
        }
        if self.history == HistoryStore::Jetstream && history_per_topic == 0 {
            return Err((
                "nats.history",
                "\"jetstream\" keeps history for resumes: set history_messages_per_topic too"
                    .into(),
            ));
        }
        if self.history_fill_timeout_ms == 0 {
            return Err((
                "nats.history_fill_timeout_ms",
                "must be greater than 0".into(),
            ));
        }
        if self.history_fill_max_bytes == 0 || self.history_fill_max_bytes > MAX_FILL_BYTES {
            return Err((
                "nats.history_fill_max_bytes",
                format!("must be 1..={MAX_FILL_BYTES}"),
            ));
        }
        if self.reconnect_initial_ms > self.reconnect_max_ms {
            return Err((
                "nats.reconnect_initial_ms",
                "must not exceed reconnect_max_ms".into(),
            ));
        }
        Ok(())
    }

    /// The client's options; the origin is drawn at random when not configured; a
    /// stream made for history keeps `history_per_topic` messages per subject.
    pub fn options(&self, history_per_topic: usize) -> NatsOptions {
        let auth = match (&self.token, &self.user, &self.password, &self.creds_file) {
            (Some(t), ..) => NatsAuth::Token(t.clone()),
            (_, Some(u), Some(p), _) => NatsAuth::UserPassword(u.clone(), p.clone()),
            (.., Some(f)) => NatsAuth::CredsFile(f.clone()),
            _ => NatsAuth::None,
        };
        NatsOptions {
            urls: self.urls.clone(),
            auth,
            ca_file: self.ca_file.clone(),
            export: self.export,
            import: self.import.clone(),
            origin: self.origin.clone().unwrap_or_else(random_origin),
            export_queue: self.export_queue,
            import_queue: self.import_queue,
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            reconnect_initial: Duration::from_millis(self.reconnect_initial_ms),
            reconnect_max: Duration::from_millis(self.reconnect_max_ms),
            core: self.core,
            history: (self.history == HistoryStore::Jetstream).then(|| StreamHistory {
                stream: self.history_stream.clone(),
                subjects: vec![format!("{}.>", self.subject_prefix)],
                per_subject: history_per_topic,
                max_fill_bytes: self.history_fill_max_bytes,
                fill_timeout: Duration::from_millis(self.history_fill_timeout_ms),
            }),
        }
    }
}

/// A JetStream stream name this relay accepts (the server refuses `.`, `*`, `>`,
/// spaces and path separators; this keeps to a plain subset).
fn is_stream_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `nats://`, `tls://` or a bare `host:port`, with a port.
fn url_looks_right(u: &str) -> bool {
    let rest = u
        .strip_prefix("nats://")
        .or_else(|| u.strip_prefix("tls://"))
        .unwrap_or(u);
    if rest.contains("://") {
        return false;
    }
    let host_port = rest.rsplit('@').next().unwrap_or(rest);
    match host_port.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}

/// 16 hex digits from the OS's random source (the clock if that fails).
fn random_origin() -> String {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        b = now_ns().to_le_bytes();
    }
    format!("fr-{:016x}", u64::from_le_bytes(b))
}

/// The arbiter for imports across exporting relays, when `seq_pointer` is set.
pub(in crate::relay) fn import_arbiter(config: Option<&NatsConfig>) -> Option<RefCell<Arbiter>> {
    config?
        .seq_pointer
        .as_ref()
        .map(|_| RefCell::new(Arbiter::new(MAX_ORIGINS)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> NatsConfig {
        NatsConfig {
            urls: vec!["nats://127.0.0.1:4222".into()],
            export: true,
            ..NatsConfig::default()
        }
    }

    #[test]
    fn a_plain_section_is_accepted() {
        assert_eq!(ok().check(0), Ok(()));
        let o = ok().options(0);
        assert_eq!(ok().subject_prefix, "feedrelay");
        assert_eq!(o.auth, NatsAuth::None);
        assert!(
            o.origin.starts_with("fr-") && o.origin.len() > 3,
            "{}",
            o.origin
        );
        assert_ne!(o.origin, ok().options(0).origin, "a fresh origin per start");
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(&str, NatsConfig)> = vec![
            (
                "nats.urls",
                NatsConfig {
                    urls: vec![],
                    ..ok()
                },
            ),
            (
                "nats.urls",
                NatsConfig {
                    urls: vec!["http://x:1".into()],
                    ..ok()
                },
            ),
            (
                "nats.urls",
                NatsConfig {
                    urls: vec!["nats://x".into()],
                    ..ok()
                },
            ),
            (
                "nats",
                NatsConfig {
                    export: false,
                    ..ok()
                },
            ),
            (
                "nats.subject_prefix",
                NatsConfig {
                    subject_prefix: "a.*".into(),
                    ..ok()
                },
            ),
            (
                "nats.subject_prefix",
                NatsConfig {
                    subject_prefix: "".into(),
                    ..ok()
                },
            ),
            (
                "nats.import",
                NatsConfig {
                    import: vec!["a.>.b".into()],
                    ..ok()
                },
            ),
            (
                "nats.import",
                NatsConfig {
                    import: vec!["a.>".into(), "a.>".into()],
                    ..ok()
                },
            ),
            (
                "nats.seq_pointer",
                NatsConfig {
                    seq_pointer: Some("no-slash".into()),
                    ..ok()
                },
            ),
            (
                "nats.token",
                NatsConfig {
                    token: Some("t".into()),
                    creds_file: Some("c".into()),
                    ..ok()
                },
            ),
            (
                "nats.user",
                NatsConfig {
                    user: Some("u".into()),
                    ..ok()
                },
            ),
            (
                "nats.origin",
                NatsConfig {
                    origin: Some("a b".into()),
                    ..ok()
                },
            ),
            (
                "nats.export_queue",
                NatsConfig {
                    export_queue: 0,
                    ..ok()
                },
            ),
            (
                "nats.import_queue",
                NatsConfig {
                    import_queue: MAX_QUEUE + 1,
                    ..ok()
                },
            ),
            (
                "nats.connect_timeout_ms",
                NatsConfig {
                    connect_timeout_ms: 0,
                    ..ok()
                },
            ),
            (
                "nats.reconnect_initial_ms",
                NatsConfig {
                    reconnect_initial_ms: 5_000,
                    ..ok()
                },
            ),
        ];
        for (field, c) in cases {
            assert_eq!(c.check(0).map_err(|(f, _)| f), Err(field), "{c:?}");
        }
    }

    #[test]
    fn credentials_become_the_clients() {
        let c = NatsConfig {
            user: Some("u".into()),
            password: Some("p".into()),
            ..ok()
        };
        assert_eq!(
            c.options(0).auth,
            NatsAuth::UserPassword("u".into(), "p".into())
        );
        let c = NatsConfig {
            token: Some("t".into()),
            ..ok()
        };
        assert_eq!(c.options(0).auth, NatsAuth::Token("t".into()));
        let c = NatsConfig {
            import: vec!["feedrelay.>".into()],
            export: false,
            ..ok()
        };
        assert_eq!(c.check(0), Ok(()));
        assert!(url_looks_right("nats://u:p@127.0.0.1:4222"));
        assert!(url_looks_right("127.0.0.1:4222"));
    }
}
