//! Subscribers' control messages and the relay's replies.
//!
//! A subscriber sends `{"op":"subscribe","topics":[..]}` or
//! `{"op":"unsubscribe","topics":[..]}` as text at any time and gets
//! `{"event":"subscribed"|"unsubscribed","topics":[..]}` back; anything else gets
//! `{"event":"error","reason":".."}` and the connection stays open. The initial topics
//! come from the URL: `/ws?topics=A,B` (`*` is every topic). This is the slow path: it
//! may allocate.

use serde::{Deserialize, Serialize};

/// Longest topic name accepted, in bytes.
pub const MAX_TOPIC_BYTES: usize = 256;

/// The topic that matches every topic.
pub const WILDCARD: &str = "*";

/// A control request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Add these topics.
    Subscribe(Vec<String>),
    /// Remove these topics.
    Unsubscribe(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    op: String,
    topics: Vec<String>,
}

#[derive(Serialize)]
struct Reply<'a> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    topics: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

fn check_topic(t: &str) -> Result<(), String> {
    if t.is_empty() {
        return Err("empty topic name".into());
    }
    if t.len() > MAX_TOPIC_BYTES {
        return Err(format!("topic name longer than {MAX_TOPIC_BYTES} bytes"));
    }
    Ok(())
}

/// Parses a control message; `Err` is the reason to send back.
pub fn parse(payload: &[u8]) -> Result<Control, String> {
    let mut copy = payload.to_vec();
    let req: Request = simd_json::serde::from_slice(&mut copy).map_err(|e| {
        format!(r#"expected {{"op":"subscribe"|"unsubscribe","topics":[..]}}: {e}"#)
    })?;
    for t in &req.topics {
        check_topic(t)?;
    }
    match req.op.as_str() {
        "subscribe" => Ok(Control::Subscribe(req.topics)),
        "unsubscribe" => Ok(Control::Unsubscribe(req.topics)),
        other => Err(format!(
            "unknown op {other:?}: use subscribe or unsubscribe"
        )),
    }
}

/// Topics from the `topics` query parameter: comma-separated, percent-decoded.
pub fn parse_query_topics(value: &str) -> Result<Vec<String>, String> {
    let mut topics = Vec::new();
    for raw in value.split(',').filter(|t| !t.is_empty()) {
        let t = percent_decode(raw).ok_or_else(|| format!("bad percent-encoding in {raw:?}"))?;
        check_topic(&t)?;
        topics.push(t);
    }
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
    })
    .unwrap_or_default()
}

/// `{"event":"error","reason":".."}`.
pub fn reply_error(reason: &str) -> String {
    simd_json::to_string(&Reply {
        event: "error",
        topics: None,
        reason: Some(reason),
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        assert_eq!(
            parse(br#"{"op":"subscribe","topics":["A","B"]}"#),
            Ok(Control::Subscribe(vec!["A".into(), "B".into()]))
        );
        assert_eq!(
            parse(br#"{"topics":["*"],"op":"unsubscribe"}"#),
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
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let long = format!(
            r#"{{"op":"subscribe","topics":["{}"]}}"#,
            "x".repeat(MAX_TOPIC_BYTES + 1)
        );
        assert!(parse(long.as_bytes()).unwrap_err().contains("longer than"));
    }

    #[test]
    fn query_topics() {
        assert_eq!(
            parse_query_topics("A,B,,%2A"),
            Ok(vec!["A".into(), "B".into(), "*".into()])
        );
        assert!(parse_query_topics("%zz").is_err());
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
