//! Exchange feeds the relay dials: their configuration (`[[feeds]]` tables), checked
//! at load, and the pieces that run them.
//!
//! - [`line`](mod@line): one task per line: dial, subscribe, hand messages to the
//!   worker, redial.
//! - [`plan`]: lines grouped and given to workers before anything listens.
//! - [`arbiter`]: first copy of each (topic, seq) wins; gaps counted.
//! - [`backoff`]: exponential reconnect delays with full jitter.

pub mod arbiter;
pub mod backoff;
pub mod health;
pub mod line;
pub mod plan;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ws::handshake::is_token;

/// One `[[feeds]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    /// Unique name, used in logs and metrics.
    pub name: String,
    /// `ws://` or `wss://` URL.
    pub url: String,
    /// Text messages sent after every connect, in order.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// JSON pointer to the topic (default: the relay's `topic_pointer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_pointer: Option<String>,
    /// JSON pointer to the per-topic sequence number (number or decimal string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq_pointer: Option<String>,
    /// Extra handshake headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Subprotocols to offer, in order of preference (`Sec-WebSocket-Protocol`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subprotocols: Vec<String>,
    /// Offer permessage-deflate to the exchange (`Sec-WebSocket-Extensions`); its
    /// compressed messages are inflated on arrival (bounded by `max_message_bytes`).
    #[serde(default)]
    pub compression: bool,
    /// PEM file of extra trust roots for `wss://` (relative to the config file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Nothing received for this long (ms): the line is stale and is redialled. A
    /// ping is sent after half of it, so a quiet but live line answers with a pong.
    #[serde(default = "defaults::stale_after_ms")]
    pub stale_after_ms: u64,
    /// Feeds with the same group are redundant lines of one stream (needs
    /// `seq_pointer`). Default: the feed's own name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// First reconnect delay bound (ms).
    #[serde(default = "defaults::reconnect_initial_ms")]
    pub reconnect_initial_ms: u64,
    /// Largest reconnect delay bound (ms).
    #[serde(default = "defaults::reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// Full jitter: each delay is uniform in [0, bound]. Off: exactly the bound.
    #[serde(default = "defaults::yes")]
    pub reconnect_jitter: bool,
    /// TCP connect + TLS + WebSocket handshake must finish within this (ms).
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
}

mod defaults {
    pub(super) fn stale_after_ms() -> u64 {
        5_000
    }
    pub(super) fn reconnect_initial_ms() -> u64 {
        100
    }
    pub(super) fn reconnect_max_ms() -> u64 {
        10_000
    }
    pub(super) fn connect_timeout_ms() -> u64 {
        5_000
    }
    pub(super) fn yes() -> bool {
        true
    }
}

impl FeedConfig {
    /// The arbitration group: `group`, or the feed's name.
    pub fn group_name(&self) -> &str {
        self.group.as_deref().unwrap_or(&self.name)
    }

    /// Checks one feed; returns what is wrong.
    pub fn check(&self) -> Result<(), String> {
        let name = &self.name;
        if name.is_empty() || name.len() > 64 || name.contains(|c: char| c.is_control()) {
            return Err(format!(
                "feed name {name:?} must be 1..=64 printable characters"
            ));
        }
        self.url
            .parse::<crate::io::url::WsUrl>()
            .map_err(|e| format!("feed {name}: {e}"))?;
        if let Some(p) = self.subprotocols.iter().find(|p| !is_token(p)) {
            return Err(format!(
                "feed {name}: subprotocol {p:?} is not an HTTP token"
            ));
        }
        for (field, p) in [
            ("topic_pointer", &self.topic_pointer),
            ("seq_pointer", &self.seq_pointer),
        ] {
            if let Some(p) = p {
                crate::relay::core::topic::JsonPointer::parse(p)
                    .map_err(|e| format!("feed {name}: {field}: {e}"))?;
            }
        }
        for (k, v) in &self.headers {
            let token = !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token {
                return Err(format!(
                    "feed {name}: header name {k:?} is not an HTTP token"
                ));
            }
            if v.contains(['\r', '\n', '\0']) {
                return Err(format!("feed {name}: header {k}: value has CR, LF or NUL"));
            }
            let reserved = [
                "host",
                "upgrade",
                "connection",
                "sec-websocket-key",
                "sec-websocket-version",
            ];
            if reserved.contains(&k.to_ascii_lowercase().as_str()) {
                return Err(format!(
                    "feed {name}: header {k} is set by the client itself"
                ));
            }
        }
        let positive = [
            ("stale_after_ms", self.stale_after_ms),
            ("reconnect_initial_ms", self.reconnect_initial_ms),
            ("connect_timeout_ms", self.connect_timeout_ms),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(format!("feed {name}: {field} must be positive"));
            }
        }
        if self.reconnect_max_ms < self.reconnect_initial_ms {
            return Err(format!(
                "feed {name}: reconnect_max_ms ({}) is below reconnect_initial_ms ({})",
                self.reconnect_max_ms, self.reconnect_initial_ms
            ));
        }
        Ok(())
    }
}

/// Checks the feeds together: unique names, and every line of a multi-line group
/// sequenced (arbitration needs the sequence number).
pub fn check_feeds(feeds: &[FeedConfig]) -> Result<(), String> {
    let mut names = std::collections::HashSet::new();
    let mut groups: BTreeMap<&str, Vec<&FeedConfig>> = BTreeMap::new();
    for f in feeds {
        f.check()?;
        if !names.insert(f.name.as_str()) {
            return Err(format!("feed name {:?} is used twice", f.name));
        }
        groups.entry(f.group_name()).or_default().push(f);
    }
    for (group, lines) in groups {
        if lines.len() > 1 {
            if let Some(f) = lines.iter().find(|f| f.seq_pointer.is_none()) {
                return Err(format!(
                    "group {group:?} has {} lines but feed {} has no seq_pointer; A/B \
                     arbitration needs one on every line",
                    lines.len(),
                    f.name
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(name: &str) -> FeedConfig {
        toml::from_str(&format!("name = \"{name}\"\nurl = \"ws://127.0.0.1:1/\"")).unwrap()
    }

    #[test]
    fn defaults_and_checks() {
        let f = feed("a");
        assert_eq!(
            (f.stale_after_ms, f.reconnect_initial_ms, f.reconnect_max_ms),
            (5000, 100, 10_000)
        );
        assert!(f.reconnect_jitter);
        assert_eq!(f.group_name(), "a");
        assert!(f.check().is_ok());
        let mut bad = feed("a");
        bad.url = "http://x".into();
        assert!(bad.check().unwrap_err().contains("scheme"));
        let mut bad = feed("a");
        bad.headers
            .insert("X-Key".into(), "a\r\nInjected: 1".into());
        assert!(bad.check().unwrap_err().contains("CR"));
        let mut bad = feed("a");
        bad.headers.insert("Host".into(), "x".into());
        assert!(bad.check().is_err());
        let mut bad = feed("a");
        bad.reconnect_max_ms = 10;
        assert!(bad.check().unwrap_err().contains("below"));
        let mut bad = feed("a");
        bad.seq_pointer = Some("u".into());
        assert!(bad.check().unwrap_err().contains("seq_pointer"));
        assert!(check_feeds(&[feed("a"), feed("a")])
            .unwrap_err()
            .contains("twice"));
        let (mut a, mut b) = (feed("a"), feed("b"));
        a.group = Some("g".into());
        b.group = Some("g".into());
        assert!(check_feeds(&[a.clone(), b.clone()])
            .unwrap_err()
            .contains("seq_pointer"));
        a.seq_pointer = Some("/u".into());
        b.seq_pointer = Some("/u".into());
        assert!(check_feeds(&[a, b]).is_ok());
    }
}
