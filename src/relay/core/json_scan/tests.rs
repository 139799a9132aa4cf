//! The scan against the grammar, case by case; `topic`'s tests compare it with
//! simd-json over generated documents.

use super::*;

fn path(tokens: &[&str]) -> (Vec<String>, Vec<Option<usize>>) {
    let tokens: Vec<String> = tokens.iter().map(|t| t.to_string()).collect();
    let indices = tokens.iter().map(|t| t.parse().ok()).collect();
    (tokens, indices)
}

fn scan(text: &str, first: &[&str], second: &[&str]) -> Result<[Hit; 2], NotJson> {
    let (t1, i1) = path(first);
    let (t2, i2) = path(second);
    let p1 = Path {
        tokens: &t1,
        indices: &i1,
    };
    let p2 = Path {
        tokens: &t2,
        indices: &i2,
    };
    Scanner::default().scan(text.as_bytes(), p1, Some(p2))
}

fn valid(text: &str) -> bool {
    scan(text, &["s"], &[]).is_ok()
}

#[test]
fn accepts_what_the_grammar_allows() {
    for text in [
        "0",
        "-0",
        "-0.0e-0",
        "1E+2",
        "123456789012345678901234567890",
        "1e400",
        "\"\"",
        " true ",
        "false",
        "null",
        "[]",
        "{}",
        "[ ]",
        "{ }",
        "\t\r\n[1 , 2 ,\"x\" ]\n",
        r#"{"a":{"b":[{}, [], null]}}"#,
        r#""\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00""#,
        "\"caf\u{e9} \u{1f600}\"",
        r#"{"":""}"#,
    ] {
        assert!(valid(text), "{text:?}");
    }
}

#[test]
fn refuses_what_it_does_not() {
    for text in [
        "",
        " ",
        "01",
        "1.",
        ".5",
        "-",
        "+1",
        "1e",
        "1e+",
        "0x10",
        "tru",
        "nulll",
        "True",
        "[1,]",
        "[,1]",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{a:1}",
        "{\"a\":}",
        "[1 2]",
        "[1",
        "{\"a\":1",
        "\"abc",
        "\"a\tb\"",
        "\"a\u{1}b\"",
        r#""\q""#,
        r#""\u12""#,
        r#""\u12g4""#,
        r#""\ud800""#,
        r#""\udc00""#,
        r#""\ud800\u0041""#,
        r#""\ud800x""#,
        "{} {}",
        "{}x",
        "[]]",
        "{]",
        "[}",
    ] {
        assert!(!valid(text), "{text:?}");
    }
    // Not UTF-8, inside a string or out of one.
    let (t, i) = path(&["s"]);
    let p = Path {
        tokens: &t,
        indices: &i,
    };
    for bytes in [&b"\"\xff\""[..], b"[\"a\xc3\"]", b"\xef\xbb\xbf{}"] {
        assert_eq!(Scanner::default().scan(bytes, p, None), Err(NotJson));
    }
}

/// A string is skipped eight bytes at a time: every special byte is found wherever it
/// falls in a word, and a string that ends inside the last word is not read past.
#[test]
fn finds_the_quote_at_every_offset() {
    for len in 0..40 {
        for special in ["\"", "\\n", "\u{1}"] {
            let mut text = String::from("[\"");
            text.push_str(&"x".repeat(len));
            text.push_str(special);
            text.push_str("y\"]");
            let ok = special != "\u{1}";
            assert_eq!(valid(&text), ok && special != "\"", "{text:?}");
            let closed = format!("[\"{}\"]", "é".repeat(len));
            assert!(valid(&closed));
            assert!(!valid(&closed[..closed.len() - 1]));
        }
    }
}

#[test]
fn follows_both_paths() {
    let text = r#"{"d":{"s":"BTC","u":[5,{"n":-1.5e3}]},"s":true}"#;
    let [a, b] = scan(text, &["d", "s"], &["d", "u", "1", "n"]).unwrap();
    assert_eq!(
        a,
        Hit::String {
            range: 11..14,
            escaped: false
        }
    );
    assert_eq!(b, Hit::Number(28..34));
    assert_eq!(&text[28..34], "-1.5e3");
    let [a, b] = scan(text, &["s"], &["d", "u"]).unwrap();
    assert_eq!((a, b), (Hit::Other, Hit::Other));
    let [a, b] = scan(text, &["d", "u", "2"], &["d", "s", "x"]).unwrap();
    assert_eq!((a, b), (Hit::Missing, Hit::Missing));
    // The empty pointer is the whole text.
    let [a, _] = scan("\"x\\ty\"", &[], &[]).unwrap();
    assert_eq!(
        a,
        Hit::String {
            range: 1..5,
            escaped: true
        }
    );
}

#[test]
fn a_key_twice_on_a_path_is_a_duplicate_and_elsewhere_is_not() {
    let dup = |text: &str, p: &[&str]| scan(text, p, &[]).map(|[h, _]| h);
    assert_eq!(dup(r#"{"s":"A","s":"B"}"#, &["s"]), Ok(Hit::Duplicate));
    // Escaped keys are compared unescaped.
    assert_eq!(dup(r#"{"s":"A","\u0073":"B"}"#, &["s"]), Ok(Hit::Duplicate));
    assert_eq!(
        dup(r#"{"d":{},"d":{"s":"A"}}"#, &["d", "s"]),
        Ok(Hit::Duplicate)
    );
    assert_eq!(
        dup(r#"{"d":{"s":1,"s":2}}"#, &["d", "s"]),
        Ok(Hit::Duplicate)
    );
    // The second "d" is not on the path, so what it holds twice does not count.
    assert_eq!(
        dup(r#"{"d":{"s":"A"},"e":{"s":1,"s":2}}"#, &["d", "s"]),
        Ok(Hit::String {
            range: 11..12,
            escaped: false
        })
    );
    // Nor does a key twice beside the path.
    assert_eq!(
        dup(r#"{"x":1,"s":"A","x":2}"#, &["s"]),
        Ok(Hit::String {
            range: 12..13,
            escaped: false
        })
    );
}

#[test]
fn array_tokens_are_indices() {
    let [a, b] = scan(r#"[["a","b"],"c"]"#, &["0", "1"], &["+1"]).unwrap();
    assert_eq!(
        a,
        Hit::String {
            range: 7..8,
            escaped: false
        }
    );
    assert_eq!(
        b,
        Hit::String {
            range: 12..13,
            escaped: false
        },
        "an index reads as Rust reads a usize"
    );
    let [a, _] = scan(r#"{"0":"k"}"#, &["0"], &[]).unwrap();
    assert_eq!(
        a,
        Hit::String {
            range: 6..7,
            escaped: false
        }
    );
}

#[test]
fn unescapes_what_the_scan_accepted() {
    let mut out = Vec::new();
    unescape(br#"a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00z"#, &mut out).unwrap();
    assert_eq!(out, "a\"\\/\u{8}\u{c}\n\r\té\u{1f600}z".as_bytes());
}

/// Nesting is bounded by the input, not by a recursion limit: a deep text neither
/// overflows the stack nor is refused, and costs about a byte per level.
#[test]
fn deep_nesting_is_scanned_without_recursion() {
    let depth = 200_000;
    let text = format!("{{\"s\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
    let mut scanner = Scanner::default();
    let (t, i) = path(&["s"]);
    let p = Path {
        tokens: &t,
        indices: &i,
    };
    assert_eq!(
        scanner.scan(text.as_bytes(), p, None),
        Ok([Hit::Other, Hit::Missing])
    );
    let kept = scanner.retained_bytes();
    assert!(
        (depth..depth * 3).contains(&kept),
        "about a byte per level: {kept} for {depth}"
    );
    let unclosed = "[".repeat(depth);
    assert_eq!(scanner.scan(unclosed.as_bytes(), p, None), Err(NotJson));
}

proptest::proptest! {
    /// The word search finds what the byte loop finds, for any special byte at any
    /// place among any others.
    #[test]
    fn the_block_search_agrees_with_the_byte_loop(
        mut block in proptest::array::uniform8(proptest::num::u8::ANY),
        at in 0usize..8,
        special in proptest::sample::select(&b"\"\\\x00\x1f\x20\x7f\x80\xff"[..]),
    ) {
        proptest::prop_assert_eq!(first_special(block), first_special_scalar(block));
        block[at] = special;
        proptest::prop_assert_eq!(first_special(block), first_special_scalar(block));
    }
}
