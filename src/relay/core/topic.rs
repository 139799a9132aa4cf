//! Reading a message's topic from a JSON pointer, without allocating.
//!
//! The relay does not otherwise look inside messages. The pointer (RFC 6901, default
//! `/s`) is followed by [`json_scan`], one pass that also checks the
//! message is JSON, in place: nothing is copied and no number converted. The topic
//! comes back as a range into the original payload when the JSON string had no escapes
//! (the common case), so the caller can slice the shared frame instead of copying the
//! name.
//!
//! Topic names are bounded ([`check_name`]): a publisher's message with a name that
//! breaks the rules is dropped and counted rather than creating a routing key. The
//! scan's stack grows with the deepest nesting seen; after a message larger than
//! [`RETAIN_INPUT_BYTES`] it is given back, so one deep message cannot pin memory for
//! the rest of a connection's life.

use super::json_scan::{self, Hit, Path, Scanner};

/// Input size above which the scan's stack is freed after use instead of kept.
pub const RETAIN_INPUT_BYTES: usize = 64 << 10;

/// Why a topic name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadName {
    /// Empty.
    Empty,
    /// Longer than the limit.
    TooLong,
    /// Holds an ASCII control character (0x00-0x1f or 0x7f).
    ControlCharacter,
    /// A key on the pointer's path appears twice in its object (`{"s":"A","s":"B"}`):
    /// simd-json reads the first, browsers and Python the last, so the relay would
    /// route by one reading while clients see another.
    DuplicateKey,
    /// The pointer leads to a value that is not a string (a number, an object):
    /// routing it to the default topic would file it where clients do not look.
    NotAString,
}

impl BadName {
    /// What to tell the client.
    pub fn reason(self, max: usize) -> String {
        match self {
            BadName::Empty => "empty topic name".into(),
            BadName::TooLong => format!("topic name longer than {max} bytes"),
            BadName::ControlCharacter => "control character in a topic name".into(),
            BadName::DuplicateKey => "the topic's key appears twice".into(),
            BadName::NotAString => "the topic is not a string".into(),
        }
    }
}

/// Checks a topic name: 1 to `max` bytes, no ASCII control characters (names are
/// logged and printed in metrics labels).
pub fn check_name(name: &[u8], max: usize) -> Result<(), BadName> {
    if name.is_empty() {
        return Err(BadName::Empty);
    }
    if name.len() > max {
        return Err(BadName::TooLong);
    }
    if name.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(BadName::ControlCharacter);
    }
    Ok(())
}

/// A parsed JSON pointer (RFC 6901): `/data/s` → `["data", "s"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPointer {
    tokens: Vec<String>,
    /// Each token as an array index, if it reads as one.
    indices: Vec<Option<usize>>,
}

impl JsonPointer {
    /// Parses a pointer; it must be empty or start with `/`. `~1` is `/`, `~0` is `~`.
    pub fn parse(s: &str) -> Result<JsonPointer, String> {
        let tokens: Vec<String> = if s.is_empty() {
            Vec::new()
        } else {
            let rest = s
                .strip_prefix('/')
                .ok_or_else(|| format!("JSON pointer {s:?} must start with '/'"))?;
            rest.split('/')
                .map(|t| t.replace("~1", "/").replace("~0", "~"))
                .collect()
        };
        let indices = tokens.iter().map(|t| t.parse().ok()).collect();
        Ok(JsonPointer { tokens, indices })
    }

    fn path(&self) -> Path<'_> {
        Path {
            tokens: &self.tokens,
            indices: &self.indices,
        }
    }
}

/// Where the topic is, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicLookup {
    /// The topic is `payload[range]` verbatim.
    InPayload(std::ops::Range<usize>),
    /// The topic string had escapes; here it is unescaped.
    Unescaped(String),
    /// The payload is JSON but the pointer leads nowhere.
    Missing,
    /// The topic breaks the naming rules ([`check_name`]).
    BadName(BadName),
    /// The payload is not JSON.
    NotJson,
}

impl TopicLookup {
    /// The topic's bytes (`payload` is what was looked up), if it has a usable one.
    pub fn name<'a>(&'a self, payload: &'a [u8]) -> Option<&'a [u8]> {
        match self {
            TopicLookup::InPayload(r) => payload.get(r.clone()),
            TopicLookup::Unescaped(s) => Some(s.as_bytes()),
            TopicLookup::Missing | TopicLookup::NotJson | TopicLookup::BadName(_) => None,
        }
    }
}

/// Per-connection state for topic lookups: the scan's reused stack.
pub struct TopicReader {
    pointer: JsonPointer,
    max_name: usize,
    seq_pointer: Option<JsonPointer>,
    /// The sequence number the last lookup found.
    seq: Option<u64>,
    scanner: Scanner,
    /// Unescaped strings (a sequence number written with escapes).
    unescaped: Vec<u8>,
}

impl std::fmt::Debug for TopicReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicReader")
            .field("pointer", &self.pointer)
            .finish_non_exhaustive()
    }
}

impl TopicReader {
    /// A reader for `pointer`, with names of at most 256 bytes.
    pub fn new(pointer: JsonPointer) -> Self {
        TopicReader::with_seq(pointer, None)
    }

    /// Names longer than `max` bytes are [`TopicLookup::BadName`].
    pub fn max_name_bytes(mut self, max: usize) -> Self {
        self.max_name = max;
        self
    }

    /// A reader that also reads a sequence number (a non-negative integer, or a string
    /// of decimal digits) at `seq_pointer`, in the same parse; see [`seq`](Self::seq).
    pub fn with_seq(pointer: JsonPointer, seq_pointer: Option<JsonPointer>) -> Self {
        TopicReader {
            pointer,
            max_name: 256,
            seq_pointer,
            seq: None,
            scanner: Scanner::default(),
            unescaped: Vec::new(),
        }
    }

    /// Finds the topic of `payload`.
    pub fn lookup(&mut self, payload: &[u8]) -> TopicLookup {
        let seq_path = self.seq_pointer.as_ref().map(JsonPointer::path);
        let scanned = self.scanner.scan(payload, self.pointer.path(), seq_path);
        if payload.len() > RETAIN_INPUT_BYTES {
            // One oversized message: give its stack back rather than keep the peak.
            self.scanner = Scanner::default();
        }
        let [topic, seq] = match scanned {
            Ok(hits) => hits,
            Err(json_scan::NotJson) => {
                self.seq = None;
                return TopicLookup::NotJson;
            }
        };
        self.seq = as_seq(payload, &seq, &mut self.unescaped);
        let (range, escaped) = match topic {
            Hit::Missing => return TopicLookup::Missing,
            Hit::Duplicate => return TopicLookup::BadName(BadName::DuplicateKey),
            Hit::Number(_) | Hit::Other => return TopicLookup::BadName(BadName::NotAString),
            Hit::String { range, escaped } => (range, escaped),
        };
        let raw = &payload[range.clone()];
        if !escaped {
            return match check_name(raw, self.max_name) {
                Ok(()) => TopicLookup::InPayload(range),
                Err(bad) => TopicLookup::BadName(bad),
            };
        }
        let mut name = Vec::with_capacity(raw.len());
        if json_scan::unescape(raw, &mut name).is_err() {
            return TopicLookup::NotJson;
        }
        if let Err(bad) = check_name(&name, self.max_name) {
            return TopicLookup::BadName(bad);
        }
        match String::from_utf8(name) {
            Ok(name) => TopicLookup::Unescaped(name),
            Err(_) => TopicLookup::NotJson,
        }
    }

    /// Bytes the scan holds on to between lookups (its stack).
    pub fn retained_input_bytes(&self) -> usize {
        self.scanner.retained_bytes()
    }

    /// The sequence number found by the last [`lookup`](Self::lookup), if any.
    pub fn seq(&self) -> Option<u64> {
        self.seq
    }
}

/// A sequence number: a non-negative integer literal (`-0` is 0) that fits in 64 bits,
/// or a string of 1 to 19 decimal digits.
fn as_seq(payload: &[u8], hit: &Hit, scratch: &mut Vec<u8>) -> Option<u64> {
    let digits: &[u8] = match hit {
        Hit::Number(range) => {
            let literal = &payload[range.clone()];
            if literal == b"-0" {
                return Some(0);
            }
            literal
        }
        Hit::String { range, escaped } => {
            let raw = &payload[range.clone()];
            let digits = if *escaped {
                scratch.clear();
                json_scan::unescape(raw, scratch).ok()?;
                &scratch[..]
            } else {
                raw
            };
            if digits.is_empty() || digits.len() > 19 {
                return None;
            }
            digits
        }
        Hit::Missing | Hit::Duplicate | Hit::Other => return None,
    };
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
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

    /// One reading of a message: a topic key twice on the pointer's path (simd-json
    /// reads the first, JavaScript and Python the last) is refused, not routed.
    #[test]
    fn a_key_twice_on_the_path_is_refused() {
        let dup = TopicLookup::BadName(BadName::DuplicateKey);
        assert_eq!(lookup("/s", r#"{"s":"BTC-USD","s":"ETH-USD","px":1}"#), dup);
        assert_eq!(lookup("/d/s", r#"{"d":{"s":"A"},"d":{"s":"B"}}"#), dup);
        assert_eq!(lookup("/d/s", r#"{"d":{"s":"A","s":"B"}}"#), dup);
        // Twice elsewhere is none of the relay's business.
        assert_eq!(
            lookup("/s", r#"{"s":"A","px":1,"px":2}"#),
            TopicLookup::InPayload(6..7)
        );
        assert_eq!(
            lookup("/d/s", r#"{"e":1,"d":{"s":"A"},"e":2}"#),
            TopicLookup::InPayload(17..18)
        );
    }

    #[test]
    fn escapes_missing_and_garbage() {
        assert_eq!(
            lookup("/s", r#"{"s":"A\u0042"}"#),
            TopicLookup::Unescaped("AB".into())
        );
        assert_eq!(lookup("/s", r#"{"t":"x"}"#), TopicLookup::Missing);
        assert_eq!(
            lookup("/s", r#"{"s":7}"#),
            TopicLookup::BadName(BadName::NotAString)
        );
        assert_eq!(lookup("/s", r#"[1,2]"#), TopicLookup::Missing);
        assert_eq!(lookup("/s", r#"{"s":"x""#), TopicLookup::NotJson);
        assert_eq!(lookup("/s", "\u{0}\u{1}binary"), TopicLookup::NotJson);
        // Where the scan reads differently from simd-json: numbers beyond 64 bits are
        // JSON, and a lone surrogate has no UTF-8 form.
        assert_eq!(
            lookup(
                "/s",
                r#"{"s":"A","n":123456789012345678901234567890,"f":1e400}"#
            ),
            TopicLookup::InPayload(6..7)
        );
        assert_eq!(lookup("/s", r#"{"s":"\ud800"}"#), TopicLookup::NotJson);
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
            (r#"{"data":{"s":"A","u":18446744073709551616}}"#, None),
            (r#"{"data":{"s":"A","u":-0}}"#, Some(0)),
            (r#"{"data":{"s":"A","u":"\u0034\u0032"}}"#, Some(42)),
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

    #[test]
    fn names_are_bounded_and_printable() {
        assert_eq!(check_name(b"BTC-USD", 256), Ok(()));
        assert_eq!(check_name(b"", 256), Err(BadName::Empty));
        assert_eq!(check_name(&[b'x'; 257], 256), Err(BadName::TooLong));
        assert_eq!(
            check_name(&[b'x'; 256], 256),
            Ok(()),
            "the limit itself is fine"
        );
        assert_eq!(check_name(b"a\nb", 256), Err(BadName::ControlCharacter));
        assert_eq!(check_name(b"a\x7fb", 256), Err(BadName::ControlCharacter));
        assert_eq!(check_name("caf\u{e9}".as_bytes(), 256), Ok(()));
        let mut r = TopicReader::new(JsonPointer::parse("/s").unwrap()).max_name_bytes(4);
        assert_eq!(
            r.lookup(br#"{"s":"ABCDE"}"#),
            TopicLookup::BadName(BadName::TooLong)
        );
        assert_eq!(r.lookup(br#"{"s":"ABCD"}"#), TopicLookup::InPayload(6..10));
        assert_eq!(
            r.lookup(br#"{"s":"A\u0000"}"#),
            TopicLookup::BadName(BadName::ControlCharacter)
        );
        assert_eq!(
            r.lookup(br#"{"s":""}"#),
            TopicLookup::BadName(BadName::Empty)
        );
    }

    #[test]
    fn an_oversized_message_does_not_pin_its_buffers() {
        let mut r = TopicReader::new(JsonPointer::parse("/s").unwrap());
        let nested = |depth: usize| {
            format!(
                r#"{{"s":"A","d":{}{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            )
        };
        // A deep message under the limit keeps its stack: the next one reuses it.
        let deep = nested(1000);
        assert!(matches!(
            r.lookup(deep.as_bytes()),
            TopicLookup::InPayload(_)
        ));
        let kept = r.retained_input_bytes();
        assert!(kept >= 1000, "{kept}");
        assert!(matches!(
            r.lookup(deep.as_bytes()),
            TopicLookup::InPayload(_)
        ));
        assert_eq!(r.retained_input_bytes(), kept, "no allocation per message");
        // One over the limit gives its stack back, valid or not.
        let huge = nested(RETAIN_INPUT_BYTES);
        assert!(matches!(
            r.lookup(huge.as_bytes()),
            TopicLookup::InPayload(_)
        ));
        assert_eq!(r.retained_input_bytes(), 0, "given back after the big one");
        let unclosed = "[".repeat(RETAIN_INPUT_BYTES * 4);
        assert_eq!(r.lookup(unclosed.as_bytes()), TopicLookup::NotJson);
        assert_eq!(r.retained_input_bytes(), 0);
    }

    mod against_simd_json;
}
