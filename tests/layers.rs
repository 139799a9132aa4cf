//! The tree keeps the design's shape: every `crate::` and `super::` path in `src/` is
//! resolved to the top-level module it reaches, and each layer may reach only the
//! layers below it (docs/ARCHITECTURE.md draws the arrows). The ring runtime is named
//! only inside `io`; no source file or function grows past what a reader can hold.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What each top-level module may import, besides itself.
fn allowed(module: &[String]) -> Option<&'static [&'static str]> {
    let top = module.first().map(String::as_str).unwrap_or("");
    let second = module.get(1).map(String::as_str);
    Some(match (top, second) {
        ("ws", _) | ("metrics", _) | ("host", _) => &[],
        // The connection driver is the only part of io that knows WebSocket rules.
        ("io", Some("driver")) => &["ws"],
        ("io", _) => &[],
        ("relay", _) => &["ws", "io", "metrics"],
        ("echo", _) => &["ws", "io", "relay"],
        // The binaries and the modules behind their commands sit on top.
        ("main", _) | ("lib", _) | ("bench", _) | ("demo", _) | ("mock_exchange", _) => {
            return None
        }
        _ => &[],
    })
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/io/driver/server.rs` → `[io, driver, server]`; a `mod.rs` is its directory.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The source without comments and string or char literals (so paths and braces in
/// them do not count).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'r' if matches!(b.get(i + 1), Some(b'"') | Some(b'#'))
                && !b[..i]
                    .last()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') =>
            {
                let mut hashes = 0;
                let mut j = i + 1;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat(b'#').take(hashes))
                    .collect();
                while j < b.len() && !b[j..].starts_with(&close) {
                    if b[j] == b'\n' {
                        out.push('\n');
                    }
                    j += 1;
                }
                out.push_str("\"\"");
                i = j + close.len();
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    } else if b[i] == b'\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
                out.push_str("\"\"");
                i += 1;
            }
            // A char literal ('x', '\n', '\u{..}'), not a lifetime ('a).
            b'\'' if b.get(i + 2) == Some(&b'\'') || b.get(i + 1) == Some(&b'\\') => {
                i += 1;
                while i < b.len() && b[i] != b'\'' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                out.push_str("' '");
                i += 1;
            }
            c => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    out
}

/// The top-level modules `code` (in `module`) reaches through `crate::` and `super::`.
fn reached(module: &[String], code: &str) -> BTreeSet<String> {
    let mut tops = BTreeSet::new();
    let word = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices("crate::") {
        if code[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let name = word(&code[at + "crate::".len()..]);
        if !name.is_empty() {
            tops.insert(name);
        }
    }
    for (at, _) in code.match_indices("super::") {
        if code[..at].ends_with("::") || code[..at].ends_with(|c: char| c.is_alphanumeric()) {
            continue;
        }
        // `super` of module `a::b` is `a`, whether `b` is `b.rs` or `b/mod.rs`.
        let mut base: Vec<String> = module.to_vec();
        let mut rest = &code[at..];
        while let Some(r) = rest.strip_prefix("super::") {
            base.pop();
            rest = r;
        }
        let next = word(rest);
        match base.first() {
            Some(top) => {
                tops.insert(top.clone());
            }
            None if !next.is_empty() => {
                tops.insert(next);
            }
            None => {}
        }
    }
    tops
}

#[test]
fn each_layer_imports_only_what_is_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        let Some(may) = allowed(&module) else {
            continue;
        };
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        for top in reached(&module, &code) {
            if top != module[0] && !may.contains(&top.as_str()) {
                wrong.push(format!("{} imports crate::{top}", file.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "upward or sideways imports:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_ring_runtime_is_named_only_in_io() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in files.iter().filter(|f| !f.starts_with(src.join("io"))) {
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        for name in ["tokio::", "tokio_uring::", "io_uring::"] {
            if code.contains(name) {
                wrong.push(format!("{} uses {name}", file.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "runtime outside io:\n{}",
        wrong.join("\n")
    );
}

/// Longest source file, in lines (declarative tables excepted).
const MAX_FILE_LINES: usize = 700;
/// Longest function body, in lines.
const MAX_FN_LINES: usize = 120;

#[test]
fn files_and_functions_stay_readable() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "benches", "tests"] {
        rust_files(&root.join(dir), &mut files);
    }
    let mut long = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let lines = text.lines().count();
        if lines > MAX_FILE_LINES {
            long.push(format!("{}: {lines} lines", file.display()));
        }
        let code = code_only(&text);
        for (name, start, len) in functions(&code) {
            if len > MAX_FN_LINES {
                long.push(format!(
                    "{}:{start}: fn {name} is {len} lines",
                    file.display()
                ));
            }
        }
    }
    assert!(long.is_empty(), "too long:\n{}", long.join("\n"));
}

/// Every `fn` with a body: (name, first line, lines from signature to closing brace).
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let Some(at) = t.find("fn ") else { continue };
        let before = &t[..at];
        let is_item = before.split_whitespace().all(|w| {
            matches!(w, "pub" | "async" | "unsafe" | "const" | "extern") || w.starts_with("pub(")
        });
        if !is_item {
            continue;
        }
        let name: String = t[at + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // Find the body's opening brace (the signature may span lines; a `;` first
        // means no body), then its matching close.
        let mut depth = 0i32;
        let mut opened = false;
        let mut end = None;
        'scan: for (j, l) in lines.iter().enumerate().skip(i) {
            for c in l.chars() {
                match c {
                    ';' if !opened && depth == 0 => break 'scan,
                    '{' => {
                        opened = true;
                        depth += 1;
                    }
                    '}' => {
                        depth -= 1;
                        if opened && depth == 0 {
                            end = Some(j);
                            break 'scan;
                        }
                    }
                    _ => {}
                }
            }
        }
        if let Some(end) = end {
            out.push((name, i + 1, end - i + 1));
        }
    }
    out
}

#[test]
fn the_checks_themselves_catch_what_they_look_for() {
    let code = code_only("use crate::relay::x; // crate::bench\nlet s = \"crate::demo\";\n");
    let m = vec!["io".to_owned(), "ring".to_owned()];
    assert_eq!(
        reached(&m, &code).into_iter().collect::<Vec<_>>(),
        ["relay"]
    );
    let m = vec!["io".to_owned(), "driver".to_owned(), "server".to_owned()];
    let code = code_only("use super::super::super::ws::Event; use super::Driver;");
    assert!(reached(&m, &code).contains("ws"));
    let f = functions(&code_only(
        "fn a() {\n  if x { y }\n}\nfn b();\npub async fn c(\n) -> u8 {\n 1\n}\n",
    ));
    assert_eq!(f, vec![("a".to_owned(), 1, 3), ("c".to_owned(), 5, 4)]);
}
