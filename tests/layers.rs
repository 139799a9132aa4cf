//! The tree keeps the design's shape: every `crate::` and `super::` path in `src/` is
//! resolved to the top-level module it reaches, and each layer may reach only the
//! layers below it (docs/ARCHITECTURE.md draws the arrows). The ring runtime is named
//! only inside `io`; no source file or function grows past what a reader can hold.

use std::collections::{BTreeMap, BTreeSet};
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

// ---- The file graph: which source file reaches which, through every path ----

/// Module path → its file, for every file under `src/` (the library's tree; `main.rs`
/// is the binary's root and sits above everything).
fn module_files(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files
        .into_iter()
        .filter(|f| !f.ends_with("main.rs"))
        .map(|f| {
            let mut m = module_of(src, &f);
            if m == ["lib"] {
                m.clear();
            }
            (m, f)
        })
        .collect()
}

fn ident_at(code: &str, at: usize) -> &str {
    let rest = &code[at..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    &rest[..end]
}

/// Parses the path (or `use` tree) that starts at `at`: every full path it names,
/// each with the name it is bound to (the last segment, or the `as` alias).
fn path_tree(
    code: &str,
    mut at: usize,
    prefix: &[String],
    out: &mut Vec<(Vec<String>, String)>,
) -> usize {
    let b = code.as_bytes();
    let skip_ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let mut path = prefix.to_vec();
    loop {
        at = skip_ws(at);
        if b.get(at) == Some(&b'{') {
            at += 1;
            loop {
                at = skip_ws(at);
                if b.get(at) == Some(&b'}') {
                    return at + 1;
                }
                at = path_tree(code, at, &path, out);
                at = skip_ws(at);
                match b.get(at) {
                    Some(b',') => at += 1,
                    Some(b'}') => return at + 1,
                    _ => return at,
                }
            }
        }
        if b.get(at) == Some(&b'*') {
            out.push((path.clone(), "*".to_owned()));
            return at + 1;
        }
        let word = ident_at(code, at);
        if word.is_empty() {
            break;
        }
        at += word.len();
        if word == "self" && !path.is_empty() && at > 0 && prefix.len() == path.len() {
            // `a::{self, b}` binds `a`.
        } else {
            path.push(word.to_owned());
        }
        let after = skip_ws(at);
        if code[after..].starts_with("::") {
            at = after + 2;
            continue;
        }
        let mut name = path.last().cloned().unwrap_or_default();
        if code[after..].starts_with("as ") {
            let alias_at = skip_ws(after + 3);
            name = ident_at(code, alias_at).to_owned();
            at = alias_at + name.len();
        }
        out.push((path.clone(), name));
        return at;
    }
    if path.len() > prefix.len() {
        let name = path.last().cloned().unwrap_or_default();
        out.push((path, name));
    }
    at
}

/// Inline `mod name { … }` blocks: (name, open brace, close brace).
fn inline_modules(code: &str) -> Vec<(String, usize, usize)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    for (at, _) in code.match_indices("mod ") {
        if code[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let name = ident_at(code, at + 4);
        let mut i = at + 4 + name.len();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if name.is_empty() || b.get(i) != Some(&b'{') {
            continue;
        }
        let open = i;
        let mut depth = 0;
        for (j, c) in b.iter().enumerate().skip(open) {
            match c {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        out.push((name.to_owned(), open, j));
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// Every crate path a file names, absolute, with the name it binds and whether it is
/// a `use` (which other files may reach through).
struct Named {
    path: Vec<String>,
    name: String,
    is_use: bool,
}

fn named_paths(
    module: &[String],
    code: &str,
    modules: &BTreeMap<Vec<String>, PathBuf>,
) -> Vec<Named> {
    let inline = inline_modules(code);
    let mut out = Vec::new();
    let mut at = 0;
    let b = code.as_bytes();
    while at < b.len() {
        let boundary = at == 0 || {
            let p = b[at - 1];
            !(p.is_ascii_alphanumeric() || p == b'_' || p == b':' || p == b'$')
        };
        let word = if boundary { ident_at(code, at) } else { "" };
        if word.is_empty() || !code[at + word.len()..].starts_with("::") {
            at += 1;
            continue;
        }
        // The module this text is in: the file's, plus the inline modules around it.
        let mut here = module.to_vec();
        for (name, open, close) in &inline {
            if *open < at && at < *close {
                here.push(name.clone());
            }
        }
        // Test code (a `tests` module, inline or a file) may reach the runtime and the
        // helpers above what it tests; only what the crate itself runs counts.
        if here.iter().any(|m| m == "tests") {
            at += word.len();
            continue;
        }
        let base: Option<Vec<String>> = match word {
            "crate" => Some(Vec::new()),
            "self" => Some(here.clone()),
            "super" => {
                let mut m = here.clone();
                let mut rest = at;
                while code[rest..].starts_with("super::") {
                    m.pop();
                    rest += "super::".len();
                }
                at = rest - "super::".len();
                Some(m)
            }
            child => {
                let mut m = here.clone();
                m.push(child.to_owned());
                modules.contains_key(&m).then_some(here.clone())
            }
        };
        let Some(base) = base else {
            at += word.len();
            continue;
        };
        let start = if matches!(word, "crate" | "self" | "super") {
            at + word.len() + 2
        } else {
            at
        };
        let is_use = code[..at].trim_end().ends_with("use");
        let mut found = Vec::new();
        let end = path_tree(code, start, &base, &mut found);
        for (path, name) in found {
            out.push(Named { path, name, is_use });
        }
        at = end.max(at + 1);
    }
    out
}

/// Modules whose files are one component and count as one node: the ring's executor
/// (`Inner` holds the tasks, timers and op slots; each of those reaches the thread's
/// ring through `context` to register itself, the way an executor's parts do).
const ONE_NODE: &[&[&str]] = &[&["io", "ring"]];

/// `module`, or the component it is part of.
fn node_of(module: &[String]) -> Vec<String> {
    for one in ONE_NODE {
        if module.len() >= one.len()
            && module[..one.len()]
                .iter()
                .zip(one.iter())
                .all(|(a, b)| a == b)
        {
            return one.iter().map(|s| s.to_string()).collect();
        }
    }
    module.to_vec()
}

/// Module → the modules it reaches, each with the first path that reaches it.
type Graph = BTreeMap<Vec<String>, BTreeMap<Vec<String>, String>>;

/// The file graph: for each module, the modules its paths resolve to (through `use`
/// re-exports, to the file that defines the item).
fn file_graph(src: &Path) -> Graph {
    let modules = module_files(src);
    let mut named = BTreeMap::new();
    for (module, file) in &modules {
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        named.insert(module.clone(), named_paths(module, &code, &modules));
    }
    let resolve = |path: &[String]| -> Vec<String> {
        let mut path = path.to_vec();
        for _ in 0..8 {
            let mut m = Vec::new();
            let mut i = 0;
            while i < path.len() && modules.contains_key(&[m.as_slice(), &path[i..=i]].concat()) {
                m.push(path[i].clone());
                i += 1;
            }
            let Some(item) = path.get(i) else { return m };
            // An item the module imports: follow the import to where it is defined.
            let via = named[&m]
                .iter()
                .find(|n| n.is_use && &n.name == item && n.path != path[..=i]);
            match via {
                Some(n) => path = [n.path.as_slice(), &path[i + 1..]].concat(),
                None => return m,
            }
        }
        path
    };
    let mut graph = BTreeMap::new();
    for (module, paths) in &named {
        let mut to: BTreeMap<Vec<String>, String> = BTreeMap::new();
        for n in paths {
            let target = resolve(&n.path);
            let mut file = target.clone();
            while !modules.contains_key(&file) {
                file.pop();
            }
            let (from, file) = (node_of(module), node_of(&file));
            if file != from {
                to.entry(file).or_insert_with(|| n.path.join("::"));
            }
        }
        graph
            .entry(node_of(module))
            .or_insert_with(BTreeMap::new)
            .extend(to);
    }
    graph
}

/// Strongly connected components of more than one file (Tarjan).
fn circles(graph: &Graph) -> Vec<Vec<Vec<String>>> {
    struct State<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g Vec<String>, (usize, usize)>,
        stack: Vec<&'g Vec<String>>,
        on_stack: BTreeSet<&'g Vec<String>>,
        out: Vec<Vec<Vec<String>>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g Vec<String>) {
        let i = s.index.len();
        s.index.insert(v, (i, i));
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flat_map(|to| to.keys()) {
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.index[w].1.min(s.index[v].1);
                s.index.get_mut(v).unwrap().1 = low;
            } else if s.on_stack.contains(w) {
                let low = s.index[w].0.min(s.index[v].1);
                s.index.get_mut(v).unwrap().1 = low;
            }
        }
        if s.index[v].0 == s.index[v].1 {
            let mut scc = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                scc.push(w.clone());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                s.out.push(scc);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
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
