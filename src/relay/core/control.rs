//! Subscribers' control messages and the relay's replies.
//!
//! A subscriber sends `{"op":"subscribe","topics":[..]}` (with `"snapshot":true` for
//! the last message of each topic first) or `{"op":"unsubscribe","topics":[..]}` as
//! text at any time and gets `{"event":"subscribed"|"unsubscribed","topics":[..]}` back; anything else gets
//! `{"event":"error","reason":".."}` and the connection stays open. With subscriber
//! tokens (`[jwt]`), `{"op":"refresh","token":".."}` hands in a newer token and gets
//! `{"event":"refreshed","exp":N}`. The initial topics
//! come from the URL: `/ws?topics=A,B` (`*` is every topic). This is the slow path: it
//! may allocate.
//!
//! A request is bounded before it costs anything but its parse: its size by the
//! subscriber's message limit (`max_control_bytes`), then the number of topics it
//! names ([`ControlLimits::max_topics`]) and each name's length and characters. Work
//! on a request is linear in its size.

use crate::relay::core::sequence::{parse_epoch, Numbered};
use serde::{Deserialize, Serialize};

use bytes::Bytes;

use crate::relay::core::topic::check_name;
use crate::ws::{server_frame, OpCode};

/// What one control request may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlLimits {
    /// Topics one request may name (the subscription limit: more can never succeed).
    pub max_topics: usize,
    /// Longest topic name, bytes.
    pub max_topic_bytes: usize,
    /// Control messages one connection may send a second; more are ignored (counted,
    /// one error reply a second).
    pub max_per_second: u32,
}

impl Default for ControlLimits {
    fn default() -> Self {
        ControlLimits {
            max_topics: 1024,
            max_topic_bytes: 256,
            max_per_second: 100,
        }
    }
}

/// The topic that matches every topic.
pub const WILDCARD: &str = "*";

/// A control request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Add these topics; with `true`, the last message of each comes first (a snapshot).
    Subscribe(Vec<String>, bool),
    /// Add these topics, resuming each named in the positions from there (what came
    /// after it, or a `reset` and the last message); the others get a snapshot.
    Resume(Vec<String>, Vec<(String, Numbered)>),
    /// Remove these topics.
    Unsubscribe(Vec<String>),
    /// A newer subscriber token (`[jwt]`) before the current one expires.
    Refresh(String),
    /// `{"op":"stats"}`: the subscriber's own queue depth, oldest age and drops.
    Stats,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    op: String,
    #[serde(default)]
    topics: Option<Vec<String>>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    snapshot: bool,
    /// `{"T":["<epoch>",seq],..}`: where a reconnecting subscriber left each topic.
    #[serde(default)]
    resume: Option<std::collections::HashMap<String, (String, u64)>>,
}

#[derive(Serialize)]
struct Reply<'a> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    topics: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    /// When the token now in force expires (seconds since the epoch), for `refreshed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
}

fn check_topics(topics: &[String], limits: ControlLimits) -> Result<(), String> {
    if topics.len() > limits.max_topics {
        return Err(format!(
            "{} topics in one request; at most {}",
            topics.len(),
            limits.max_topics
        ));
    }
    for t in topics {
        check_name(t.as_bytes(), limits.max_topic_bytes)
            .map_err(|bad| bad.reason(limits.max_topic_bytes))?;
    }
    Ok(())
}

/// Parses a control message; `Err` is the reason to send back.
pub fn parse(payload: &[u8], limits: ControlLimits) -> Result<Control, String> {
    let mut copy = payload.to_vec();
    let req: Request = simd_json::serde::from_slice(&mut copy).map_err(|e| {
        format!(r#"expected {{"op":"subscribe"|"unsubscribe","topics":[..]}} or {{"op":"refresh","token":".."}}: {e}"#)
    })?;
    match (req.op.as_str(), req.topics, req.token) {
        ("subscribe", Some(topics), None) if req.resume.is_some() => {
            check_topics(&topics, limits)?;
            let mut positions = Vec::new();
            for (topic, (epoch, seq)) in req.resume.unwrap_or_default() {
                if !topics.contains(&topic) && !topics.iter().any(|t| t == WILDCARD) {
                    return Err(format!("resume: {topic:?} is not among the topics"));
                }
                let epoch = parse_epoch(&epoch)
                    .ok_or_else(|| format!("resume: {topic:?}: the epoch is 16 hex digits"))?;
                positions.push((topic, Numbered { epoch, seq }));
            }
            Ok(Control::Resume(topics, positions))
        }
        ("subscribe", Some(topics), None) => {
            check_topics(&topics, limits)?;
            Ok(Control::Subscribe(topics, req.snapshot))
        }
        ("unsubscribe", Some(topics), None) => {
            check_topics(&topics, limits)?;
            Ok(Control::Unsubscribe(topics))
        }
        ("refresh", None, Some(token)) => Ok(Control::Refresh(token)),
        ("stats", None, None) => Ok(Control::Stats),
        ("subscribe" | "unsubscribe", _, _) => Err(format!(
            r#"{}: expected {{"op":"{}","topics":[..]}}"#,
            req.op, req.op
        )),
        ("refresh", _, _) => Err(r#"refresh: expected {"op":"refresh","token":".."}"#.into()),
        ("stats", _, _) => Err(r#"stats: expected {"op":"stats"}"#.into()),
        (other, _, _) => Err(format!(
            "unknown op {other:?}: use subscribe, unsubscribe, refresh or stats"
        )),
    }
}

/// Topics from the `topics` query parameter: comma-separated, percent-decoded.
pub fn parse_query_topics(value: &str, limits: ControlLimits) -> Result<Vec<String>, String> {
    let mut topics = Vec::new();
    for raw in value.split(',').filter(|t| !t.is_empty()) {
        if topics.len() == limits.max_topics {
            return Err(format!("more than {} topics", limits.max_topics));
        }
        let t = percent_decode(raw).ok_or_else(|| format!("bad percent-encoding in {raw:?}"))?;
        topics.push(t);
    }
    check_topics(&topics, limits)?;
    Ok(topics)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// `{"event":"subscribed","topics":[..]}` (or `unsubscribed`).
pub fn reply(event: &str, topics: &[String]) -> String {
    simd_json::to_string(&Reply {
        event,
        topics: Some(topics),
        reason: None,
        exp: None,
    })
    .unwrap_or_default()
}

/// `{"event":"error","reason":".."}`.
pub fn reply_error(reason: &str) -> String {
    simd_json::to_string(&Reply {
        event: "error",
        topics: None,
        reason: Some(reason),
        exp: None,
    })
    .unwrap_or_default()
}

/// A subscriber's own lag, as `{"op":"stats"}` answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Lag {
    /// Frames queued for it when it asked.
    pub queued: usize,
    /// Their bytes.
    pub queued_bytes: usize,
    /// How long the oldest queued message has waited, µs (0: none queued).
    pub oldest_us: u64,
    /// Messages dropped for it since it connected.
    pub drops: u64,
}

/// `{"event":"stats","queued":N,"queued_bytes":B,"oldest_us":U,"drops":D}`.
pub fn reply_stats(lag: Lag) -> String {
    #[derive(Serialize)]
    struct Stats {
        event: &'static str,
        #[serde(flatten)]
        lag: Lag,
    }
    simd_json::to_string(&Stats {
        event: "stats",
        lag,
    })
    .unwrap_or_default()
}

/// `{"event":"refreshed","exp":N}`: the new token is in force until `exp`.
pub fn reply_refreshed(exp: u64) -> String {
    simd_json::to_string(&Reply {
        event: "refreshed",
        topics: None,
        reason: None,
        exp: Some(exp),
    })
    .unwrap_or_default()
}

/// A server text frame on the control path (allocates; not the relay's hot path).
pub fn control_frame(text: &str) -> Bytes {
    Bytes::from(server_frame(OpCode::Text, text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: ControlLimits = ControlLimits {
        max_topics: 4,
        max_topic_bytes: 8,
        max_per_second: 100,
    };

    #[test]
    fn parses_requests() {
        assert_eq!(
            parse(br#"{"op":"subscribe","topics":["A","B"]}"#, L),
            Ok(Control::Subscribe(vec!["A".into(), "B".into()], false))
        );
        assert_eq!(
            parse(br#"{"op":"subscribe","topics":["A"],"snapshot":true}"#, L),
            Ok(Control::Subscribe(vec!["A".into()], true))
        );
        assert_eq!(
            parse(br#"{"topics":["*"],"op":"unsubscribe"}"#, L),
            Ok(Control::Unsubscribe(vec!["*".into()]))
        );
        for bad in [
            &br#"{"op":"subscribe"}"#[..],
            br#"{"op":"sub","topics":[]}"#,
            b"nope",
            br#"{"op":"subscribe","topics":[1]}"#,
            br#"{"op":"subscribe","topics":[""]}"#,
            br#"{"op":"subscribe","topics":[],"x":1}"#,
        ] {
            assert!(parse(bad, L).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn requests_are_held_to_their_limits() {
        let long = br#"{"op":"subscribe","topics":["123456789"]}"#;
        assert!(parse(long, L).unwrap_err().contains("longer than 8"));
        let at_limit = br#"{"op":"subscribe","topics":["12345678","a","b","c"]}"#;
        assert!(parse(at_limit, L).is_ok());
        let many = br#"{"op":"subscribe","topics":["a","b","c","d","e"]}"#;
        assert!(parse(many, L)
            .unwrap_err()
            .contains("5 topics in one request; at most 4"));
        let control = br#"{"op":"subscribe","topics":["a\u0001"]}"#;
        assert!(parse(control, L).unwrap_err().contains("control character"));
        assert!(parse_query_topics("a,b,c,d", L).is_ok());
        assert!(parse_query_topics("a,b,c,d,e", L)
            .unwrap_err()
            .contains("more than 4"));
        assert!(parse_query_topics("a%0Ab", L)
            .unwrap_err()
            .contains("control"));
    }

    #[test]
    fn a_huge_request_is_refused_in_linear_time() {
        // 150,000 topics in one message: refused on its count, not after per-topic work.
        let names: Vec<String> = (0..150_000).map(|i| format!("\"t{i}\"")).collect();
        let msg = format!(r#"{{"op":"subscribe","topics":[{}]}}"#, names.join(","));
        let t = std::time::Instant::now();
        let e = parse(msg.as_bytes(), ControlLimits::default()).unwrap_err();
        assert!(e.contains("150000 topics"), "{e}");
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn query_topics() {
        assert_eq!(
            parse_query_topics("A,B,,%2A", L),
            Ok(vec!["A".into(), "B".into(), "*".into()])
        );
        assert!(parse_query_topics("%zz", L).is_err());
    }

    #[test]
    fn replies_are_json() {
        assert_eq!(
            reply("subscribed", &["A".into()]),
            r#"{"event":"subscribed","topics":["A"]}"#
        );
        assert_eq!(
            reply_error("bad \"x\""),
            r#"{"event":"error","reason":"bad \"x\""}"#
        );
    }
}
