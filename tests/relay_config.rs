//! `feedrelay run` configuration at the command line: the effective config printed as
//! TOML, flags over the file, and errors that name the file, line and field.

use std::process::{Command, Output};

fn feedrelay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_feedrelay"))
        .args(args)
        .output()
        .expect("run feedrelay")
}

fn write_config(name: &str, text: &str) -> String {
    let path = std::env::temp_dir().join(format!("feedrelay-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn print_config_shows_defaults_and_flags_win_over_the_file() {
    let out = feedrelay(&["run", "--print-config"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for key in [
        "listen = \"127.0.0.1:9001\"",
        "idle = \"park\"",
        "topic_pointer = \"/s\"",
        "slow_consumer = \"drop\"",
        "queue_max_messages = 4096",
    ] {
        assert!(text.contains(key), "{key} missing from:\n{text}");
    }
    let file = write_config(
        "flags",
        "idle = \"spin\"\nworkers = 2\nslow_consumer = \"conflate\"\n",
    );
    let out = feedrelay(&[
        "run",
        "--config",
        &file,
        "--idle",
        "yield",
        "--workers",
        "1",
        "--print-config",
    ]);
    let _ = std::fs::remove_file(&file);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("idle = \"yield\"") && text.contains("workers = 1"),
        "{text}"
    );
    assert!(
        text.contains("slow_consumer = \"conflate\""),
        "file values stay: {text}"
    );
}

#[test]
fn config_errors_name_file_line_and_field_and_exit_2() {
    let file = write_config("typo", "listen = \"127.0.0.1:0\"\nqueue_max_mesages = 10\n");
    let out = feedrelay(&["run", "--config", &file]);
    let _ = std::fs::remove_file(&file);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&file) && err.contains("line 2") && err.contains("queue_max_mesages"),
        "{err}"
    );
    let out = feedrelay(&["run", "--config", "/nonexistent/relay.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/relay.toml"));
    let file = write_config("range", "max_frame_bytes = 100\nmax_message_bytes = 10\n");
    let out = feedrelay(&["run", "--config", &file]);
    let _ = std::fs::remove_file(&file);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("max_frame_bytes") && err.contains("must not exceed"),
        "{err}"
    );
}

#[test]
fn feed_and_ring_settings_are_checked_with_clear_errors() {
    let feed =
        |extra: &str| format!("[[feeds]]\nname = \"a\"\nurl = \"ws://127.0.0.1:1/\"\n{extra}\n");
    let cases = [
        ("feedurl", "[[feeds]]\nname = \"a\"\nurl = \"http://x/\"\n".to_owned(), "the scheme must be ws:// or wss://"),
        ("feedkey", feed("stale_ms = 5"), "stale_ms"),
        (
            "feedgroup",
            format!("{}{}", feed("group = \"g\""), feed("group = \"g\"").replace("\"a\"", "\"b\"")),
            "A/B arbitration needs one on every line",
        ),
        ("feedheader", feed("headers = { \"X-Key\" = \"a\\r\\nEvil: 1\" }"), "CR, LF or NUL"),
        ("ring", "ring_entries = 100\n".to_owned(), "must be a power of two"),
        (
            "files",
            "ring_registered_files = 65537\n".to_owned(),
            "field `ring_registered_files`: must be at most 65536",
        ),
        ("sqpoll", "sqpoll = true\nsqpoll_idle_ms = 0\n".to_owned(), "sqpoll_idle_ms"),
        (
            "hold",
            "saturated_write_hold_us = 10001\n".to_owned(),
            "field `saturated_write_hold_us`: must be at most 10000 µs",
        ),
        ("buffers", "socket_send_buffer_bytes = 10\n".to_owned(), "socket_send_buffer_bytes"),
        (
            "cafile",
            "[[feeds]]\nname = \"a\"\nurl = \"wss://localhost:1/\"\nca_file = \"/nonexistent/ca.pem\"\n".to_owned(),
            "/nonexistent/ca.pem",
        ),
    ];
    for (name, text, want) in cases {
        let file = write_config(name, &text);
        let out = feedrelay(&["run", "--listen", "127.0.0.1:0", "--config", &file]);
        let _ = std::fs::remove_file(&file);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(want), "{name}: {want:?} not in {err}");
        assert!(
            out.stdout.is_empty(),
            "{name}: refused before listening: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
