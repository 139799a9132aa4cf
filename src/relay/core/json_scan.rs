//! One pass over a JSON text that checks it is JSON (RFC 8259) and finds where two JSON
//! pointers lead, without building a tape, converting a number or allocating.
//!
//! Why by hand: the relay needs one string (the topic) and maybe one number (a sequence)
//! from each message, and nothing else from it. A full parse (simd-json's tape) also
//! converts every number and string it passes: for the bench's 256 B message, 193 ns
//! against this scan's 106 (`benches/topic_lookup.rs`, side by side), and about 8% of the
//! relay's user CPU at 20k msg/s x 10 subscribers (`perf`). This scan only classifies
//! bytes: strings are skipped eight bytes at a time, numbers and literals checked
//! against the grammar, and the pointers followed on the way.
//!
//! What it holds to:
//! - The whole text must be JSON: one value, whitespace around it, UTF-8 (checked with
//!   `simdutf8`), no raw control character in a string, escapes as the RFC lists them,
//!   and `\u` surrogates in pairs (a lone one has no UTF-8 form, so it is refused).
//! - Numbers of any length are accepted, as the RFC allows; nothing converts them.
//! - A key twice in an object on a pointer's path is [`Hit::Duplicate`]: readers differ
//!   on which one counts. Keys twice elsewhere are not looked at.
//! - Nesting depth is bounded only by the input's length; the stack is a reused vector
//!   (one byte per open container, more only for the few on a pointer's path), never
//!   recursion.
//!
//! Where it reads differently from simd-json (the reading before it): simd-json refuses
//! integers beyond 64 bits and numbers beyond `f64`, which are JSON, and reads a lone
//! high surrogate at a string's end as a control character; the scan accepts the
//! numbers and refuses the surrogate. `topic`'s tests compare the two on everything
//! else.

/// Where a pointer led.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hit {
    /// Nowhere: a key or index that is not there, or a scalar on the way.
    Missing,
    /// Through a key its object holds twice.
    Duplicate,
    /// To a string: `range` is what lies between its quotes, `escaped` whether that
    /// holds a backslash escape (then it must be unescaped with [`unescape`]).
    String {
        /// The bytes between the quotes.
        range: std::ops::Range<usize>,
        /// Whether they hold an escape.
        escaped: bool,
    },
    /// To a number: `range` is its literal text.
    Number(std::ops::Range<usize>),
    /// To an object, an array, `true`, `false` or `null`.
    Other,
}

/// The input is not JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotJson;

/// A pointer as the scan follows it: each token, and the token as an array index
/// (RFC 6901 allows a decimal index; the token is parsed the way Rust parses `usize`).
#[derive(Debug, Clone, Copy)]
pub struct Path<'a> {
    /// The reference tokens, unescaped (`~1` is already `/`).
    pub tokens: &'a [String],
    /// `tokens[i]` as an index into an array, if it is one.
    pub indices: &'a [Option<usize>],
}

/// What the scan keeps of an open object or array that may lie on a path (one no
/// deeper than the longer pointer).
#[derive(Debug, Clone, Copy, Default)]
struct Level {
    /// The next element's index (arrays).
    index: usize,
    /// Whether a member already matched each path's token here.
    matched: [bool; 2],
}

/// A reusable scanner: its stack keeps its capacity between texts.
#[derive(Debug, Default)]
pub struct Scanner {
    /// Each open container: whether it is an object.
    stack: Vec<bool>,
    /// The bottom of the stack, as deep as the longer pointer reaches.
    levels: Vec<Level>,
    key: Vec<u8>,
}

impl Scanner {
    /// Capacity the stack and key buffer hold, in bytes (to give it back after a
    /// deep text).
    pub fn retained_bytes(&self) -> usize {
        self.stack.capacity()
            + self.levels.capacity() * std::mem::size_of::<Level>()
            + self.key.capacity()
    }

    /// Checks that `text` is JSON and follows `first` and, if given, `second` through
    /// it; the hits come back in that order (the second is [`Hit::Missing`] if none).
    pub fn scan(
        &mut self,
        text: &[u8],
        first: Path<'_>,
        second: Option<Path<'_>>,
    ) -> Result<[Hit; 2], NotJson> {
        if simdutf8::basic::from_utf8(text).is_err() {
            return Err(NotJson);
        }
        self.stack.clear();
        self.levels.clear();
        let path_levels = first.tokens.len().max(second.map_or(0, |p| p.tokens.len()));
        let mut walk = Walk {
            text,
            // Without a second path, the first stands in and is never started.
            paths: [first, second.unwrap_or(first)],
            on_path: [0; 2],
            hits: [Hit::Missing, Hit::Missing],
            stack: &mut self.stack,
            levels: &mut self.levels,
            path_levels,
            key: &mut self.key,
        };
        walk.run([Some(0), second.map(|_| 0)])?;
        Ok(walk.hits)
    }
}

/// The state of one scan.
struct Walk<'t, 's, 'p> {
    text: &'t [u8],
    paths: [Path<'p>; 2],
    /// How many levels of the stack, from the bottom, lie on each path.
    on_path: [usize; 2],
    hits: [Hit; 2],
    stack: &'s mut Vec<bool>,
    levels: &'s mut Vec<Level>,
    /// How deep `levels` goes: the longer pointer's length.
    path_levels: usize,
    key: &'s mut Vec<u8>,
}

impl Walk<'_, '_, '_> {
    /// Scans the text; `start` says which paths begin at the root.
    fn run(&mut self, start: [Option<usize>; 2]) -> Result<(), NotJson> {
        let text = self.text;
        let mut at = skip_space(text, 0);
        // The depth along each path of the value about to be read, if it is on it.
        let mut next = start;
        loop {
            // A value.
            let c = *text.get(at).ok_or(NotJson)?;
            match c {
                b'{' | b'[' => {
                    let object = c == b'{';
                    self.open(object, next);
                    at = skip_space(text, at + 1);
                    let close = if object { b'}' } else { b']' };
                    if text.get(at) == Some(&close) {
                        self.close();
                        at += 1;
                    } else {
                        (at, next) = self.member(at, object)?;
                        continue;
                    }
                }
                b'"' => {
                    let (end, escaped) = skip_string(text, at + 1)?;
                    self.hit(next, || Hit::String {
                        range: at + 1..end,
                        escaped,
                    });
                    at = end + 1;
                }
                b'-' | b'0'..=b'9' => {
                    let end = skip_number(text, at)?;
                    self.hit(next, || Hit::Number(at..end));
                    at = end;
                }
                b't' | b'f' | b'n' => {
                    let word: &[u8] = match c {
                        b't' => b"true",
                        b'f' => b"false",
                        _ => b"null",
                    };
                    if !text[at..].starts_with(word) {
                        return Err(NotJson);
                    }
                    self.hit(next, || Hit::Other);
                    at += word.len();
                }
                _ => return Err(NotJson),
            }
            // After a value: a comma, a close, or the end.
            loop {
                at = skip_space(text, at);
                let Some(&object) = self.stack.last() else {
                    return if at == text.len() {
                        Ok(())
                    } else {
                        Err(NotJson)
                    };
                };
                match text.get(at) {
                    Some(b',') => {
                        at = skip_space(text, at + 1);
                        if let Some(level) = self.levels.get_mut(self.stack.len() - 1) {
                            level.index += 1;
                        }
                        (at, next) = self.member(at, object)?;
                        break;
                    }
                    Some(b'}') if object => {}
                    Some(b']') if !object => {}
                    _ => return Err(NotJson),
                }
                self.close();
                at += 1;
            }
        }
    }

    /// Records a value at depth `next[p]` that ends path `p`.
    fn hit(&mut self, next: [Option<usize>; 2], value: impl Fn() -> Hit) {
        for (p, depth) in next.iter().enumerate() {
            if *depth == Some(self.paths[p].tokens.len()) {
                self.hits[p] = value();
            }
        }
    }

    fn open(&mut self, object: bool, next: [Option<usize>; 2]) {
        self.hit(next, || Hit::Other);
        let depth = self.stack.len();
        self.stack.push(object);
        if depth < self.path_levels {
            self.levels.push(Level::default());
        }
        for (p, d) in next.iter().enumerate() {
            if *d == Some(depth) && depth < self.paths[p].tokens.len() {
                self.on_path[p] = depth + 1;
            }
        }
    }

    fn close(&mut self) {
        self.stack.pop();
        let depth = self.stack.len();
        self.levels.truncate(depth);
        for on in &mut self.on_path {
            *on = (*on).min(depth);
        }
    }

    /// Reads an object member's key and colon (or nothing, in an array) at `at`, and
    /// says where the member's value starts and which paths it is on.
    fn member(&mut self, at: usize, object: bool) -> Result<(usize, [Option<usize>; 2]), NotJson> {
        let text = self.text;
        let depth = self.stack.len();
        let mut next = [None; 2];
        let on = [self.on_path[0] == depth, self.on_path[1] == depth];
        if !object {
            let index = self.levels.get(depth - 1).map_or(0, |l| l.index);
            for p in 0..2 {
                if on[p] && self.paths[p].indices[depth - 1] == Some(index) {
                    next[p] = Some(depth);
                }
            }
            return Ok((at, next));
        }
        if text.get(at) != Some(&b'"') {
            return Err(NotJson);
        }
        let (end, escaped) = skip_string(text, at + 1)?;
        if on[0] || on[1] {
            let raw = &text[at + 1..end];
            let key: &[u8] = if escaped {
                self.key.clear();
                unescape(raw, self.key)?;
                self.key
            } else {
                raw
            };
            let mut matched = [false; 2];
            for p in 0..2 {
                matched[p] = on[p] && key == self.paths[p].tokens[depth - 1].as_bytes();
            }
            if let Some(top) = self.levels.get_mut(depth - 1) {
                for p in 0..2 {
                    if !matched[p] {
                        continue;
                    }
                    if top.matched[p] {
                        self.hits[p] = Hit::Duplicate;
                        // The path ends here: nothing below counts any more.
                        self.on_path[p] = 0;
                    } else {
                        top.matched[p] = true;
                        next[p] = Some(depth);
                    }
                }
            }
        }
        let colon = skip_space(text, end + 1);
        if text.get(colon) != Some(&b':') {
            return Err(NotJson);
        }
        Ok((skip_space(text, colon + 1), next))
    }
}

fn skip_space(text: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = text.get(at) {
        at += 1;
    }
    at
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Flags (the high bit of a byte) the bytes of `w` that are `"`, `\` or below 0x20.
/// A flag can be wrong only above a right one (a borrow runs upwards), so the lowest
/// flag is exact. Plain integer code: the relay has no `unsafe`.
fn specials(w: u64) -> u64 {
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let quote = zero(w ^ (ONES * u64::from(b'"')));
    let slash = zero(w ^ (ONES * u64::from(b'\\')));
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
    quote | slash | control
}

/// Where the first `"`, `\` or byte below 0x20 is in an 8-byte block, if any.
fn first_special(block: [u8; 8]) -> Option<usize> {
    let found = specials(u64::from_le_bytes(block));
    (found != 0).then(|| (found.trailing_zeros() / 8) as usize)
}

/// The same, a byte at a time: what the word version is tested against.
#[cfg(test)]
fn first_special_scalar(block: [u8; 8]) -> Option<usize> {
    block
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
}

/// Skips a string's contents from `at` (just past its opening quote): returns where
/// its closing quote is, and whether it held an escape.
fn skip_string(text: &[u8], mut at: usize) -> Result<(usize, bool), NotJson> {
    let mut escaped = false;
    loop {
        // A word at a time to the next special byte.
        while let Some(block) = text.get(at..at + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(block);
            if let Some(i) = first_special(word) {
                at += i;
                break;
            }
            at += 8;
        }
        match *text.get(at).ok_or(NotJson)? {
            b'"' => return Ok((at, escaped)),
            b'\\' => {
                escaped = true;
                at = skip_escape(text, at + 1)?;
            }
            c if c < 0x20 => return Err(NotJson),
            _ => at += 1,
        }
    }
}

/// Checks the escape after a backslash at `at`; returns where the string goes on.
fn skip_escape(text: &[u8], at: usize) -> Result<usize, NotJson> {
    match *text.get(at).ok_or(NotJson)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Ok(at + 1),
        b'u' => {
            let unit = hex4(text, at + 1)?;
            match unit {
                0xD800..=0xDBFF => {
                    if text.get(at + 5..at + 7) != Some(b"\\u") {
                        return Err(NotJson);
                    }
                    match hex4(text, at + 7)? {
                        0xDC00..=0xDFFF => Ok(at + 11),
                        _ => Err(NotJson),
                    }
                }
                0xDC00..=0xDFFF => Err(NotJson),
                _ => Ok(at + 5),
            }
        }
        _ => Err(NotJson),
    }
}

fn hex4(text: &[u8], at: usize) -> Result<u32, NotJson> {
    let digits = text.get(at..at + 4).ok_or(NotJson)?;
    let mut unit = 0;
    for &d in digits {
        let v = char::from(d).to_digit(16).ok_or(NotJson)?;
        unit = unit * 16 + v;
    }
    Ok(unit)
}

/// Skips a number starting at `at`; returns where it ends. What follows is left to the
/// caller (only whitespace, `,`, `]`, `}` or the end may).
fn skip_number(text: &[u8], mut at: usize) -> Result<usize, NotJson> {
    let digits = |mut at: usize| {
        let start = at;
        while text.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        (at, at - start)
    };
    if text.get(at) == Some(&b'-') {
        at += 1;
    }
    match text.get(at) {
        Some(b'0') => at += 1,
        Some(b'1'..=b'9') => at = digits(at).0,
        _ => return Err(NotJson),
    }
    if text.get(at) == Some(&b'.') {
        let (end, n) = digits(at + 1);
        if n == 0 {
            return Err(NotJson);
        }
        at = end;
    }
    if let Some(b'e' | b'E') = text.get(at) {
        at += 1;
        if let Some(b'+' | b'-') = text.get(at) {
            at += 1;
        }
        let (end, n) = digits(at);
        if n == 0 {
            return Err(NotJson);
        }
        at = end;
    }
    Ok(at)
}

/// Appends what the string contents `raw` (as [`Hit::String`] gives them) stand for.
pub fn unescape(raw: &[u8], out: &mut Vec<u8>) -> Result<(), NotJson> {
    let mut at = 0;
    while let Some(rel) = raw[at..].iter().position(|&b| b == b'\\') {
        out.extend_from_slice(&raw[at..at + rel]);
        at += rel + 1;
        let c = *raw.get(at).ok_or(NotJson)?;
        let byte = match c {
            b'"' | b'\\' | b'/' => c,
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let mut unit = hex4(raw, at + 1)?;
                at += 5;
                if (0xD800..=0xDBFF).contains(&unit) {
                    let low = hex4(raw, at + 2)?;
                    unit = 0x10000 + ((unit - 0xD800) << 10) + (low.wrapping_sub(0xDC00) & 0x3FF);
                    at += 6;
                }
                let ch = char::from_u32(unit).ok_or(NotJson)?;
                out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                continue;
            }
            _ => return Err(NotJson),
        };
        out.push(byte);
        at += 1;
    }
    out.extend_from_slice(&raw[at..]);
    Ok(())
}

#[cfg(test)]
mod tests;
