//! The file graph: which source file reaches which, through every `crate::`,
//! `super::`, `self::` and child-module path, resolved through `use` re-exports to the
//! file that defines the item; and its circles.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::source::{code_only, module_of, rust_files};

/// Module path → its file, for every file under `src/` (the library's tree; `main.rs`
/// is the binary's root and sits above everything).
pub fn module_files(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
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

pub fn ident_at(code: &str, at: usize) -> &str {
    let rest = &code[at..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    &rest[..end]
}

/// Parses the path (or `use` tree) that starts at `at`: every full path it names,
/// each with the name it is bound to (the last segment, or the `as` alias).
pub fn path_tree(
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
pub fn inline_modules(code: &str) -> Vec<(String, usize, usize)> {
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
pub struct Named {
    pub path: Vec<String>,
    pub name: String,
    pub is_use: bool,
}

pub fn named_paths(
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
pub fn node_of(module: &[String]) -> Vec<String> {
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
pub type Graph = BTreeMap<Vec<String>, BTreeMap<Vec<String>, String>>;

/// The file graph: for each module, the modules its paths resolve to (through `use`
/// re-exports, to the file that defines the item).
pub fn file_graph(src: &Path) -> Graph {
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
pub fn circles(graph: &Graph) -> Vec<Vec<Vec<String>>> {
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

/// The code of a file outside its inline `mod tests { … }` blocks.
pub fn without_tests(code: &str) -> String {
    let mut out = code.to_owned();
    for (_, open, close) in inline_modules(code)
        .into_iter()
        .filter(|(n, _, _)| n == "tests")
    {
        out.replace_range(open..=close, &" ".repeat(close + 1 - open));
    }
    out
}
