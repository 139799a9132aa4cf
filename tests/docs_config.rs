//! `docs/configuration.md` and the configuration agree: every key `--print-config`
//! prints (with every section present) has a row in the page's tables, and every key
//! the page lists is one the configuration accepts (the parser, which refuses unknown
//! keys, does not call it unknown).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use feedrelay::relay::config::Config;

/// (section, key): section "" is the top level; `[x]` and `[[x]]` are both "x".
type Key = (String, String);

fn doc_keys() -> BTreeSet<Key> {
    let page = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
    )
    .unwrap();
    let mut keys = BTreeSet::new();
    let mut section: Option<String> = None;
    for line in page.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            section = if h == "Top level" {
                Some(String::new())
            } else {
                h.strip_prefix("`[").map(|r| {
                    r.trim_start_matches('[')
                        .trim_end_matches(['`', ']'])
                        .to_owned()
                })
            };
            continue;
        }
        let (Some(s), Some(row)) = (&section, line.strip_prefix("| `")) else {
            continue;
        };
        if let Some(key) = row.split('`').next() {
            keys.insert((s.clone(), key.to_owned()));
        }
    }
    keys
}

/// Every key `--print-config` prints for a config with every section present.
fn printed_keys() -> BTreeSet<Key> {
    let dir = std::env::temp_dir().join(format!("feedrelay-docs-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("jwt.key"),
        "a shared secret of at least 32 bytes!!",
    )
    .unwrap();
    let toml = r#"
[compression]
enabled = true

[[publisher_tokens]]
token = "0123456789abcdef0123"
topics = ["A*"]

[jwt]
algorithm = "HS256"
key_file = "jwt.key"

[[feeds]]
name = "a"
url = "ws://127.0.0.1:1/"

[nats]
urls = ["nats://127.0.0.1:4222"]
export = true
"#;
    let path = dir.join("relay.toml");
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_feedrelay"))
        .args(["run", "--print-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let value: toml::Table = text.parse().unwrap_or_else(|e| panic!("{e}: {text}"));
    let mut keys = BTreeSet::new();
    for (k, v) in &value {
        let tables: Vec<&toml::Table> = match v {
            toml::Value::Table(t) => vec![t],
            toml::Value::Array(a) if a.iter().all(|x| x.is_table()) && !a.is_empty() => {
                a.iter().filter_map(|x| x.as_table()).collect()
            }
            _ => {
                keys.insert((String::new(), k.clone()));
                continue;
            }
        };
        if k == "topic_policies" {
            continue; // its keys are topic names
        }
        for t in tables {
            for sub in t.keys() {
                keys.insert((k.clone(), sub.clone()));
            }
        }
    }
    keys
}

#[test]
fn every_printed_key_is_documented() {
    let documented = doc_keys();
    let printed = printed_keys();
    assert!(printed.len() > 60, "{printed:?}");
    let missing: Vec<_> = printed.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md lacks {missing:?}"
    );
}

#[test]
fn every_documented_key_is_known() {
    let documented = doc_keys();
    assert!(documented.len() > 80, "{documented:?}");
    let arrays = ["feeds", "publisher_tokens"];
    for (section, key) in &documented {
        let toml = match section.as_str() {
            "" => format!("{key} = 0\n"),
            s if arrays.contains(&s) => format!("[[{s}]]\n{key} = 0\n"),
            s => format!("[{s}]\n{key} = 0\n"),
        };
        if let Err(e) = Config::parse(&toml, "doc.toml") {
            let e = e.to_string();
            assert!(
                !e.contains("unknown field"),
                "docs/configuration.md names `{key}` in [{section}], which the config does not know: {e}"
            );
        }
    }
    // The check itself can fail: a key nobody defines is unknown.
    let e = Config::parse("[nats]\nno_such_key = 0\n", "doc.toml").unwrap_err();
    assert!(e.to_string().contains("unknown field"), "{e}");
}

/// Every test `docs/security.md` names for a probe exists: a renamed or removed test
/// fails here instead of leaving the page pointing at nothing.
#[test]
fn the_security_page_names_tests_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let page = std::fs::read_to_string(root.join("docs/security.md")).unwrap();
    let table = page
        .split("## The probes and the tests that hold them")
        .nth(1)
        .expect("the probes section");
    let mut named = 0;
    for row in table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| probe"))
    {
        let cells: Vec<&str> = row.split('`').collect();
        // `path` `fn` pairs: a path ends in .rs, the backticked word after it is a fn.
        for pair in cells.windows(3) {
            let (path, fun) = (pair[0], pair[2]);
            if !path.ends_with(".rs") || fun.contains(' ') || fun.is_empty() || fun.contains('/') {
                continue;
            }
            let text =
                std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(
                text.contains(&format!("fn {fun}(")),
                "{path} has no fn {fun}"
            );
            named += 1;
        }
    }
    assert!(named >= 15, "only {named} tests named");
}
