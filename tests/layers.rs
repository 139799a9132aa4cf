//! The tree keeps the design's shape: every `crate::` and `super::` path in `src/` is
//! resolved to the top-level module it reaches, and each layer may reach only the
//! layers below it (docs/ARCHITECTURE.md draws the arrows). The ring runtime is named
//! only inside `io`; no source file or function grows past what a reader can hold.

#[path = "layers/graph.rs"]
mod graph;
#[path = "layers/source.rs"]
mod source;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use graph::{circles, file_graph, named_paths, without_tests, Graph};
use source::{code_only, module_of, rust_files};

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

#[test]
fn no_file_imports_itself_round_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = file_graph(&src);
    let shown: Vec<String> = circles(&graph)
        .iter()
        .map(|scc| {
            let mut lines = Vec::new();
            for a in scc {
                for (b, why) in graph[a].iter().filter(|(b, _)| scc.contains(b)) {
                    lines.push(format!("  {} -> {} ({why})", a.join("::"), b.join("::")));
                }
            }
            lines.join("\n")
        })
        .collect();
    assert!(
        shown.is_empty(),
        "files that import each other:\n{}",
        shown.join("\n\n")
    );
}

#[test]
fn the_relay_core_touches_no_socket_and_reads_no_clock() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let core = ["relay".to_owned(), "core".to_owned()];
    let mut wrong = Vec::new();
    for (module, to) in file_graph(&src)
        .iter()
        .filter(|(m, _)| m.starts_with(&core))
    {
        for (target, why) in to {
            let outside = target.first().is_some_and(|t| t == "io")
                || (target.first().is_some_and(|t| t == "relay") && !target.starts_with(&core));
            if outside {
                wrong.push(format!(
                    "{} reaches {} ({why})",
                    module.join("::"),
                    target.join("::")
                ));
            }
        }
    }
    let mut files = Vec::new();
    rust_files(&src.join("relay").join("core"), &mut files);
    for file in files.iter().filter(|f| !f.ends_with("tests.rs")) {
        let code = without_tests(&code_only(&std::fs::read_to_string(file).unwrap()));
        for clock in ["Instant::now", "SystemTime::now", "now_ns(", "realtime_ns("] {
            if code.contains(clock) {
                wrong.push(format!("{} reads the clock ({clock})", file.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "relay::core must stay socket-free and clock-free:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_graph_sees_circles_and_core_escapes() {
    let graph: Graph = [
        (
            vec!["a".to_owned()],
            [(vec!["b".to_owned()], "a::b".to_owned())].into(),
        ),
        (
            vec!["b".to_owned()],
            [(vec!["a".to_owned()], "b::a".to_owned())].into(),
        ),
        (vec!["c".to_owned()], BTreeMap::new()),
    ]
    .into();
    assert_eq!(
        circles(&graph),
        vec![vec![vec!["a".to_owned()], vec!["b".to_owned()]]]
    );
    let code = code_only("use crate::relay::{core::x, conn::{self, y as z}};\nfn f() { super::w::q(); }\nmod tests { use crate::io::ring; }");
    let modules: BTreeMap<Vec<String>, PathBuf> =
        [(vec!["relay".to_owned()], PathBuf::new())].into();
    let m = vec!["relay".to_owned(), "core".to_owned(), "shard".to_owned()];
    let named: Vec<(String, String)> = named_paths(&m, &code, &modules)
        .into_iter()
        .map(|n| (n.path.join("::"), n.name))
        .collect();
    assert_eq!(
        named,
        [
            ("relay::core::x".to_owned(), "x".to_owned()),
            ("relay::conn".to_owned(), "conn".to_owned()),
            ("relay::conn::y".to_owned(), "z".to_owned()),
            ("relay::core::w::q".to_owned(), "q".to_owned()),
        ]
    );
    assert!(!without_tests(&code).contains("io::ring"));
}
