//! Reading a message's topic from a JSON pointer, with `simd-json`, without allocating.
//!
//! The relay does not otherwise look inside messages. The pointer (RFC 6901, default
//! `/s`) is resolved on a simd-json tape; the parse buffers and the tape are kept per
//! connection and reused, and the payload is copied once into a scratch buffer because
//! simd-json parses in place. The topic comes back as a range into the original payload
//! when the JSON string had no escapes (the common case), so the caller can slice the
//! shared frame instead of copying the name.
//!
//! Topic names are bounded ([`check_name`]): a publisher's message with a name that
//! breaks the rules is dropped and counted rather than creating a routing key. The
//! parse buffers grow to the largest message parsed; after one larger than
//! [`RETAIN_INPUT_BYTES`] they are given back, so one deep or huge message cannot pin
//! tens of MiB for the rest of a connection's life.

use simd_json::prelude::ValueIntoString;
use simd_json::tape::{Tape, Value};
use simd_json::Buffers;

/// Input size above which the parse buffers are freed after use instead of kept.
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

/// Per-connection state for topic lookups: scratch copy, parse buffers, tape.
pub struct TopicReader {
    pointer: JsonPointer,
    max_name: usize,
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
                    self.seq = match resolve(tape.as_value(), p) {
                        Resolved::Found(v) => as_seq(v),
                        Resolved::Missing | Resolved::Duplicate => None,
                    };
                }
                let topic = match resolve(tape.as_value(), &self.pointer) {
                    Resolved::Missing => Err(TopicLookup::Missing),
                    Resolved::Duplicate => Err(TopicLookup::BadName(BadName::DuplicateKey)),
                    Resolved::Found(v) => v
                        .into_string()
                        .ok_or(TopicLookup::BadName(BadName::NotAString)),
                };
                match topic {
                    Err(refused) => refused,
                    Ok(s) => match check_name(s.as_bytes(), self.max_name) {
                        Err(bad) => TopicLookup::BadName(bad),
                        Ok(()) => {
                            let at = (s.as_ptr() as usize).wrapping_sub(base);
                            match payload.get(at..at + s.len()) {
                                Some(raw) if raw == s.as_bytes() => {
                                    TopicLookup::InPayload(at..at + s.len())
                                }
                                _ => TopicLookup::Unescaped(s.to_owned()),
                            }
                        }
                    },
                }
            }
        };
        if payload.len() > RETAIN_INPUT_BYTES {
            // One oversized message: give its buffers back rather than keep the peak.
            self.scratch = Vec::new();
            self.buffers = Buffers::default();
            self.tape = Some(Tape::null());
        } else {
            self.tape = Some(tape.reset());
        }
        result
    }

    /// Bytes of input the scratch buffer holds room for now.
    pub fn retained_input_bytes(&self) -> usize {
        self.scratch.capacity()
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

/// Where a pointer leads.
enum Resolved<'t, 'i> {
    /// To this value.
    Found(Value<'t, 'i>),
    /// Nowhere (a key or index that is not there, or a scalar on the way).
    Missing,
    /// Through a key its object holds twice: no single reading.
    Duplicate,
}

fn resolve<'t, 'i>(mut v: Value<'t, 'i>, pointer: &JsonPointer) -> Resolved<'t, 'i> {
    for token in &pointer.tokens {
        let next = if v.is_array() {
            token.parse().ok().and_then(|i| v.get_idx(i))
        } else if let Some(object) = v.as_object() {
            let mut found = None;
            for (key, value) in &object {
                if key == token {
                    if found.is_some() {
                        return Resolved::Duplicate;
                    }
                    found = Some(value);
                }
            }
            found
        } else {
            None
        };
        match next {
            Some(n) => v = n,
            None => return Resolved::Missing,
        }
    }
    Resolved::Found(v)
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
        r.lookup(br#"{"s":"A"}"#);
        let deep = "[".repeat(RETAIN_INPUT_BYTES * 4);
        assert_eq!(r.lookup(deep.as_bytes()), TopicLookup::NotJson);
        assert_eq!(r.retained_input_bytes(), 0, "given back after the big one");
        let big = format!(r#"{{"s":"B","pad":"{}"}}"#, "x".repeat(RETAIN_INPUT_BYTES));
        assert!(matches!(
            r.lookup(big.as_bytes()),
            TopicLookup::InPayload(_)
        ));
        assert_eq!(r.retained_input_bytes(), 0);
        let small = format!(r#"{{"s":"C","pad":"{}"}}"#, "x".repeat(1000));
        assert!(matches!(
            r.lookup(small.as_bytes()),
            TopicLookup::InPayload(_)
        ));
        assert!(
            (1000..RETAIN_INPUT_BYTES).contains(&r.retained_input_bytes()),
            "ordinary messages keep theirs (no allocation per message)"
        );
    }
}
