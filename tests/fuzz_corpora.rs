//! Replays every committed fuzz corpus (`fuzz/corpus/TARGET/*`) through its target's
//! harness on the stable toolchain, so inputs the fuzzers found interesting (and any
//! crash they found, once fixed) keep being checked by the normal suite.
//! `scripts/test.sh` also runs each target under libFuzzer for a short while.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()));
    let mut n = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{target} panics on {}", path.display());
        n += 1;
    }
    assert!(n > 0, "corpus {} is empty", dir.display());
}

#[test]
fn ws_connection_corpus() {
    replay("ws_connection", harness::ws_connection);
}

#[test]
fn handshake_corpus() {
    replay("handshake", harness::handshake);
}

#[test]
fn control_corpus() {
    replay("control", harness::control);
}

#[test]
fn topic_reader_corpus() {
    replay("topic_reader", harness::topic_reader);
}

#[test]
fn config_corpus() {
    replay("config", harness::config);
}

#[test]
fn arbiter_corpus() {
    replay("arbiter", harness::arbiter);
}
