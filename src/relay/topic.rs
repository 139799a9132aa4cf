//! Reading a message's topic from a JSON pointer, with `simd-json`, without allocating.
//!
//! The relay does not otherwise look inside messages. The pointer (RFC 6901, default
//! `/s`) is resolved on a simd-json tape; the parse buffers and the tape are kept per
//! connection and reused, and the payload is copied once into a scratch buffer because
//! simd-json parses in place. The topic comes back as a range into the original payload
//! when the JSON string had no escapes (the common case), so the caller can slice the
//! shared frame instead of copying the name.

use simd_json::prelude::ValueIntoString;
use simd_json::tape::{Tape, Value};
use simd_json::Buffers;

/// A parsed JSON pointer (RFC 6901): `/data/s` → `["data", "s"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPointer {
    tokens: Vec<String>,
}

impl JsonPointer {
    /// Parses a pointer; it must be empty or start with `/`. `~1` is `/`, `~0` is `~`.
    pub fn parse(s: &str) -> Result<JsonPointer, String> {
        if s.is_empty() {
            return Ok(JsonPointer { tokens: Vec::new() });
        }
        let rest = s
            .strip_prefix('/')
            .ok_or_else(|| format!("JSON pointer {s:?} must start with '/'"))?;
        let tokens = rest
            .split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect();
        Ok(JsonPointer { tokens })
    }
}

/// Where the topic is, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicLookup {
    /// The topic is `payload[range]` verbatim.
    InPayload(std::ops::Range<usize>),
    /// The topic string had escapes; here it is unescaped.
    Unescaped(String),
    /// The payload is JSON but the pointer leads nowhere, or not to a string.
    Missing,
    /// The payload is not JSON.
    NotJson,
}

/// Per-connection state for topic lookups: scratch copy, parse buffers, tape.
pub struct TopicReader {
    pointer: JsonPointer,
    seq_pointer: Option<JsonPointer>,
    /// The sequence number the last lookup found.
    seq: Option<u64>,
    scratch: Vec<u8>,
    buffers: Buffers,
    tape: Option<Tape<'static>>,
}

impl std::fmt::Debug for TopicReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicReader")
            .field("pointer", &self.pointer)
            .finish_non_exhaustive()
    }
}

impl TopicReader {
    /// A reader for `pointer`.
    pub fn new(pointer: JsonPointer) -> Self {
        TopicReader::with_seq(pointer, None)
    }

    /// A reader that also reads a sequence number (a non-negative integer, or a string
    /// of decimal digits) at `seq_pointer`, in the same parse; see [`seq`](Self::seq).
    pub fn with_seq(pointer: JsonPointer, seq_pointer: Option<JsonPointer>) -> Self {
        TopicReader {
            pointer,
            seq_pointer,
            seq: None,
            scratch: Vec::new(),
            buffers: Buffers::default(),
            tape: Some(Tape::null()),
        }
    }

    /// Finds the topic of `payload`.
    pub fn lookup(&mut self, payload: &[u8]) -> TopicLookup {
        self.scratch.clear();
        self.scratch.extend_from_slice(payload);
        let base = self.scratch.as_ptr() as usize;
        let mut tape = self.tape.take().unwrap_or_else(Tape::null).reset();
        self.seq = None;
        let result = match simd_json::fill_tape(&mut self.scratch, &mut self.buffers, &mut tape) {
            Err(_) => TopicLookup::NotJson,
            Ok(()) => {
                if let Some(p) = &self.seq_pointer {
                    self.seq = resolve(tape.as_value(), p).and_then(as_seq);
                }
                match resolve(tape.as_value(), &self.pointer).and_then(|v| v.into_string()) {
                    None => TopicLookup::Missing,
                    Some(s) => {
                        let at = (s.as_ptr() as usize).wrapping_sub(base);
                        match payload.get(at..at + s.len()) {
                            Some(raw) if raw == s.as_bytes() => {
                                TopicLookup::InPayload(at..at + s.len())
                            }
                            _ => TopicLookup::Unescaped(s.to_owned()),
                        }
                    }
                }
            }
        };
        self.tape = Some(tape.reset());
        result
    }

    /// The sequence number found by the last [`lookup`](Self::lookup), if any.
    pub fn seq(&self) -> Option<u64> {
        self.seq
    }
}

fn as_seq(v: Value<'_, '_>) -> Option<u64> {
    use simd_json::prelude::ValueAsScalar;
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let s = v.as_str()?;
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn resolve<'t, 'i>(mut v: Value<'t, 'i>, pointer: &JsonPointer) -> Option<Value<'t, 'i>> {
    for token in &pointer.tokens {
        v = if v.is_array() {
            v.get_idx(token.parse().ok()?)?
        } else {
            v.get(token.as_str())?
        };
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pointer: &str, payload: &str) -> TopicLookup {
        TopicReader::new(JsonPointer::parse(pointer).unwrap()).lookup(payload.as_bytes())
    }

    #[test]
    fn finds_topics_in_place() {
        let p = r#"{"s":"SYM7","seq":1,"ts":2}"#;
        assert_eq!(lookup("/s", p), TopicLookup::InPayload(6..10));
        let p = r#"{"stream":"x","data":{"e":"trade","s":"BTCUSDT"}}"#;
        let TopicLookup::InPayload(r) = lookup("/data/s", p) else {
            panic!()
        };
        assert_eq!(&p[r], "BTCUSDT");
        let TopicLookup::InPayload(r) = lookup("/a/1", r#"{"a":["x","y"]}"#) else {
            panic!()
        };
        assert_eq!(r, 11..12);
        let TopicLookup::InPayload(r) = lookup("/a~1b", r#"{"a/b":"slash"}"#) else {
            panic!()
        };
        assert_eq!(r, 8..13);
    }

    #[test]
    fn escapes_missing_and_garbage() {
        assert_eq!(
            lookup("/s", r#"{"s":"A\u0042"}"#),
            TopicLookup::Unescaped("AB".into())
        );
        assert_eq!(lookup("/s", r#"{"t":"x"}"#), TopicLookup::Missing);
        assert_eq!(lookup("/s", r#"{"s":7}"#), TopicLookup::Missing);
        assert_eq!(lookup("/s", r#"[1,2]"#), TopicLookup::Missing);
        assert_eq!(lookup("/s", r#"{"s":"x""#), TopicLookup::NotJson);
        assert_eq!(lookup("/s", "\u{0}\u{1}binary"), TopicLookup::NotJson);
        assert!(JsonPointer::parse("s").is_err());
    }

    #[test]
    fn reads_sequence_numbers_in_the_same_parse() {
        let p = |s: &str| JsonPointer::parse(s).unwrap();
        let mut r = TopicReader::with_seq(p("/data/s"), Some(p("/data/u")));
        let cases = [
            (r#"{"data":{"s":"A","u":42}}"#, Some(42)),
            (r#"{"data":{"s":"A","u":"43"}}"#, Some(43)),
            (r#"{"data":{"s":"A","u":-1}}"#, None),
            (r#"{"data":{"s":"A","u":1.5}}"#, None),
            (r#"{"data":{"s":"A","u":"12x"}}"#, None),
            (r#"{"data":{"s":"A"}}"#, None),
            (
                r#"{"data":{"s":"A","u":18446744073709551615}}"#,
                Some(u64::MAX),
            ),
            ("not json", None),
        ];
        for (payload, want) in cases {
            r.lookup(payload.as_bytes());
            assert_eq!(r.seq(), want, "{payload}");
        }
        let mut plain = TopicReader::new(p("/s"));
        plain.lookup(br#"{"s":"A","u":1}"#);
        assert_eq!(plain.seq(), None);
    }

    #[test]
    fn reader_is_reusable() {
        let mut r = TopicReader::new(JsonPointer::parse("/s").unwrap());
        for i in 0..100 {
            let p = format!(r#"{{"s":"T{i}","pad":"{}"}}"#, "x".repeat(i));
            let TopicLookup::InPayload(range) = r.lookup(p.as_bytes()) else {
                panic!()
            };
            assert_eq!(&p[range], format!("T{i}"));
        }
    }
}
