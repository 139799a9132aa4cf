//! Who may connect, over real sockets: the Origin allow-list (403), publisher tokens
//! (401 without one; by header or query; topics outside the token not relayed and
//! counted per token), `/metrics` on the data port only when asked for, the refusal
//! to start open to the network, and secrets kept out of `--print-config`.

mod common;

use common::{metric, wait_metric, Raw, Server, TempDir};

const BTC: &str = "btc-desk-0123456789abcdef";
const ALL: &str = "all-desk-0123456789abcdef";

fn access_toml() -> String {
    format!(
        r#"metrics_on_data_port = true
allowed_origins = ["https://desk.example.com"]

[[publisher_tokens]]
name = "btc"
token = "{BTC}"
topics = ["BTC-*"]

[[publisher_tokens]]
token = "{ALL}"
topics = ["*"]
"#
    )
}

fn status(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn origins_outside_the_list_get_403_and_others_pass() {
    let server = Server::relay(&["--workers", "1"], Some(&access_toml()));
    let addr = server.addr;
    let (_, head) = Raw::handshake(addr, "/ws?topics=A", "Origin: https://evil.example\r\n");
    assert_eq!(status(&head), 403, "{head}");
    let (_, head) = Raw::handshake(addr, "/ws?topics=A", "Origin: https://desk.example.com\r\n");
    assert_eq!(status(&head), 101, "{head}");
    let (_, head) = Raw::handshake(addr, "/ws?topics=A", "");
    assert_eq!(status(&head), 101, "no Origin: not a browser\n{head}");
    // The origin is checked before the publisher's token: a page learns nothing more.
    let auth = format!("Authorization: Bearer {ALL}\r\nOrigin: https://evil.example\r\n");
    let (_, head) = Raw::handshake(addr, "/pub", &auth);
    assert_eq!(status(&head), 403, "{head}");
    wait_metric(
        addr,
        None,
        "feedrelay_handshake_refused_total{reason=\"forbidden_origin\"}",
        |n| n == 2,
    );
}

#[test]
fn publishers_need_a_token_and_publish_only_its_topics() {
    let mut server = Server::relay(&["--workers", "1"], Some(&access_toml()));
    let addr = server.addr;
    for (extra, why) in [
        (String::new(), "no token"),
        (
            "Authorization: Bearer wrong-0123456789abcdef\r\n".into(),
            "unknown token",
        ),
        (
            format!("Authorization: Basic {BTC}\r\n"),
            "not a bearer token",
        ),
    ] {
        let (_, head) = Raw::handshake(addr, "/pub", &extra);
        assert_eq!(status(&head), 401, "{why}: {head}");
        assert!(head.contains("WWW-Authenticate: Bearer"), "{why}: {head}");
    }
    let (_, head) = Raw::handshake(addr, &format!("/pub?token={BTC}x"), "");
    assert_eq!(status(&head), 401, "a token with one byte more: {head}");

    let mut sub = Raw::subscribe(addr, "*");
    let (mut btc, head) = Raw::handshake(addr, "/pub", &format!("Authorization: Bearer {BTC}\r\n"));
    assert_eq!(status(&head), 101, "{head}");
    let (mut all, head) = Raw::handshake(addr, &format!("/pub?token={ALL}"), "");
    assert_eq!(status(&head), 101, "token in the query: {head}");
    for n in 0..3 {
        btc.send(0x81, format!(r#"{{"s":"ETH-USD","n":{n}}}"#).as_bytes());
    }
    btc.send(0x81, br#"{"s":"BTC-USD","n":3}"#);
    all.send(0x81, br#"{"s":"ETH-USD","n":4}"#);
    // Two publishers: their messages may arrive in either order.
    let mut got = Vec::new();
    while got.len() < 2 {
        let (_, m) = sub.recv().expect("a relayed message");
        got.push(String::from_utf8(m).unwrap());
    }
    got.sort();
    assert_eq!(
        got,
        [r#"{"s":"BTC-USD","n":3}"#, r#"{"s":"ETH-USD","n":4}"#],
        "the ETH messages of `btc` are not relayed"
    );
    wait_metric(
        addr,
        None,
        "feedrelay_off_grant_messages_total{token=\"btc\"}",
        |n| n == 3,
    );
    wait_metric(
        addr,
        None,
        "feedrelay_handshake_refused_total{reason=\"unauthorized\"}",
        |n| n == 4,
    );
    drop((btc, all, sub));
    assert_eq!(server.terminate().code(), Some(0));
    let out = server.output();
    assert!(
        out.contains("publisher token btc: 3 messages outside its topics, not relayed"),
        "{out}"
    );
    assert!(out.contains("no or bad token 4"), "{out}");
}

#[test]
fn metrics_are_on_the_data_port_only_when_configured() {
    let server = Server::relay(&["--workers", "1", "--metrics", "127.0.0.1:0"], None);
    let text = common::http_get(server.addr, "/metrics");
    assert!(!text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        metric(&text, "feedrelay_messages_in_total").is_none(),
        "{text}"
    );
    let on = Server::relay(&["--workers", "1"], Some("metrics_on_data_port = true\n"));
    let text = common::http_get(on.addr, "/metrics");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

/// No half-authenticated relay: subscribers with JWTs but publishers with no tokens on
/// a non-loopback address refuses to start and names the open role; so do tokens
/// without JWTs, and metrics served beyond loopback; each opens when named.
#[test]
fn a_relay_open_in_one_role_refuses_to_start_and_names_it() {
    let dir = common::TempDir::new("half-open");
    std::fs::write(
        dir.join("jwt.secret"),
        "a-shared-secret-of-at-least-32-bytes!\n",
    )
    .unwrap();
    let jwt = format!(
        "[jwt]\nalgorithm = \"HS256\"\nkey_file = \"{}\"\n",
        dir.join("jwt.secret").display()
    );
    let tokens = "[[publisher_tokens]]\ntoken = \"0123456789abcdef0123\"\ntopics = [\"*\"]\n";
    let cases = [
        (jwt.clone(), "\"publish\""),
        (tokens.to_owned(), "\"subscribe\""),
        (
            format!("metrics_on_data_port = true\n{tokens}{jwt}"),
            "\"metrics\"",
        ),
    ];
    // --print-config: the checks run, nothing is bound.
    let print = |path: &std::path::Path| {
        common::feedrelay([
            "run",
            "--listen",
            "0.0.0.0:0",
            "--print-config",
            "--config",
            path.to_str().unwrap(),
        ])
    };
    for (i, (text, role)) in cases.iter().enumerate() {
        let path = dir.join(&format!("relay{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = print(&path);
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(role) && err.contains("allow_anonymous"),
            "{err}"
        );
        // Named, it starts (printing its config here, binding nothing).
        let opened = format!("allow_anonymous = [{role}]\n{text}");
        std::fs::write(&path, opened).unwrap();
        common::succeeded(&print(&path));
    }
    // Metrics on a non-loopback --metrics address count too.
    let path = dir.join("both.toml");
    std::fs::write(&path, format!("{tokens}{jwt}")).unwrap();
    let out = print_open_config(&path);
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"metrics\""));
}

#[test]
fn an_open_listener_without_tokens_refuses_to_start() {
    let out = common::feedrelay(["run", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("allow_anonymous") && err.contains("publisher tokens"),
        "{err}"
    );
    assert!(
        err.contains("\"publish\"") && err.contains("\"subscribe\""),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn token_files_load_and_secrets_never_print() {
    let dir = TempDir::new("access");
    std::fs::write(dir.join("btc.token"), format!("{BTC}\n")).unwrap();
    let config = dir.join("relay.toml");
    std::fs::write(
        &config,
        format!(
            "[[publisher_tokens]]\nname = \"btc\"\ntoken_file = \"btc.token\"\ntopics = [\"BTC-*\"]\n\n[[publisher_tokens]]\ntoken = \"{ALL}\"\ntopics = [\"*\"]\n"
        ),
    )
    .unwrap();
    let out = common::feedrelay([
        "run".as_ref(),
        "--print-config".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(!text.contains(BTC) && !text.contains(ALL), "{text}");
    assert!(text.contains("<redacted>"), "{text}");

    let server = Server::relay(
        &["--workers", "1", "--config", config.to_str().unwrap()],
        None,
    );
    let (_, head) = Raw::handshake(
        server.addr,
        "/pub",
        &format!("Authorization: Bearer {BTC}\r\n"),
    );
    assert_eq!(status(&head), 101, "the token from its file: {head}");

    std::fs::write(dir.join("btc.token"), "").unwrap();
    let (code, err) = common::run_with_config(&config);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("btc") && err.contains("16-1024"), "{err}");
}

#[test]
fn sighup_rereads_tokens_and_origins_and_keeps_the_old_on_a_bad_file() {
    let dir = TempDir::new("access-reload");
    let config = dir.join("relay.toml");
    let write = |token: &str, origin: &str| {
        std::fs::write(
            &config,
            format!(
                "allowed_origins = [\"{origin}\"]\n[[publisher_tokens]]\ntoken = \"{token}\"\ntopics = [\"*\"]\n"
            ),
        )
        .unwrap();
    };
    write(BTC, "https://a.example");
    let server = Server::relay(
        &["--workers", "1", "--config", config.to_str().unwrap()],
        None,
    );
    let addr = server.addr;
    let (mut held, head) =
        Raw::handshake(addr, "/pub", &format!("Authorization: Bearer {BTC}\r\n"));
    assert_eq!(status(&head), 101, "{head}");
    write(ALL, "https://b.example");
    server.hangup();
    assert!(server.wait_for_log("reloaded on SIGHUP", std::time::Duration::from_secs(5)));
    let bearer = |t: &str| format!("Authorization: Bearer {t}\r\n");
    assert_eq!(
        status(&Raw::handshake(addr, "/pub", &bearer(BTC)).1),
        401,
        "old token gone"
    );
    assert_eq!(
        status(&Raw::handshake(addr, "/pub", &bearer(ALL)).1),
        101,
        "new token"
    );
    let origin = |o: &str| format!("{}Origin: {o}\r\n", bearer(ALL));
    assert_eq!(
        status(&Raw::handshake(addr, "/pub", &origin("https://a.example")).1),
        403
    );
    assert_eq!(
        status(&Raw::handshake(addr, "/pub", &origin("https://b.example")).1),
        101
    );
    // A bad file: one log line, and the rules in force stay.
    write("short", "https://c.example");
    server.hangup();
    assert!(server.wait_for_log("reload on SIGHUP failed", std::time::Duration::from_secs(5)));
    assert!(!server.log().contains("short\""), "no secret in the log");
    assert_eq!(status(&Raw::handshake(addr, "/pub", &bearer(ALL)).1), 101);
    // The publisher admitted under the first token was closed by the first reload:
    // its token is gone (1008, with the reason).
    assert_eq!(
        held.close_frame(),
        (1008, "publisher token revoked".to_owned())
    );
}

/// A reload re-checks the connections that are open: a publisher whose token was
/// removed, and a subscriber whose Origin is no longer listed, are closed (1008, with
/// the reason); a publisher whose token was narrowed stays, and is judged by its new
/// topics from then on; the others carry on. Counted in the exit summary.
#[test]
fn a_reload_closes_the_connections_it_no_longer_allows() {
    let dir = TempDir::new("access-revoke");
    let config = dir.join("relay.toml");
    let write = |tokens: &[(&str, &str)], origins: &[&str]| {
        let mut text = format!("allowed_origins = {origins:?}\n");
        for (token, topics) in tokens {
            text.push_str(&format!(
                "[[publisher_tokens]]\ntoken = \"{token}\"\ntopics = [\"{topics}\"]\n"
            ));
        }
        std::fs::write(&config, text).unwrap();
    };
    write(
        &[(BTC, "*"), (ALL, "*")],
        &["https://a.example", "https://b.example"],
    );
    let server = Server::relay(
        &["--workers", "1", "--config", config.to_str().unwrap()],
        None,
    );
    let addr = server.addr;
    let bearer = |t: &str| format!("Authorization: Bearer {t}\r\n");
    let (mut removed, head) = Raw::handshake(addr, "/pub", &bearer(BTC));
    assert_eq!(status(&head), 101, "{head}");
    let (mut narrowed, head) = Raw::handshake(addr, "/pub", &bearer(ALL));
    assert_eq!(status(&head), 101, "{head}");
    let (mut from_a, head) = Raw::handshake(addr, "/ws?topics=*", "Origin: https://a.example\r\n");
    assert_eq!(status(&head), 101, "{head}");
    let (mut from_b, head) = Raw::handshake(addr, "/ws?topics=*", "Origin: https://b.example\r\n");
    assert_eq!(status(&head), 101, "{head}");
    for sub in [&mut from_a, &mut from_b] {
        let (_, reply) = sub.recv().expect("subscribed");
        assert!(String::from_utf8_lossy(&reply).contains("subscribed"));
    }

    // BTC's token removed, ALL's narrowed to BTC-*, origin a no longer listed.
    write(&[(ALL, "BTC-*")], &["https://b.example"]);
    server.hangup();
    assert!(server.wait_for_log("reloaded on SIGHUP", std::time::Duration::from_secs(5)));
    assert_eq!(
        removed.close_frame(),
        (1008, "publisher token revoked".to_owned())
    );
    assert_eq!(
        from_a.close_frame(),
        (1008, "origin no longer allowed".to_owned())
    );
    // The narrowed publisher stays, and only its BTC-* messages are relayed now.
    narrowed.send(0x81, br#"{"s":"ETH-USD","n":1}"#);
    narrowed.send(0x81, br#"{"s":"BTC-USD","n":2}"#);
    let (_, m) = from_b.recv().expect("relayed to the subscriber that stays");
    assert_eq!(
        m, br#"{"s":"BTC-USD","n":2}"#,
        "ETH-USD is outside the narrowed token"
    );
    drop((removed, from_a, narrowed, from_b));
    let mut server = server;
    assert_eq!(server.terminate().code(), Some(0));
    let out = server.output();
    assert!(
        out.contains("closed by a reload's access rules: origin 1, publisher_token 1"),
        "{out}"
    );
    let log = server.log();
    assert!(
        log.contains("closed after the reload: no longer allowed"),
        "{log}"
    );
    assert!(log.contains("reason=\"publisher token revoked\""), "{log}");
    assert!(
        !log.contains(BTC) && !log.contains(ALL),
        "no token in the log: {log}"
    );
}

/// Refused logins are logged at info with the source and the reason, never the token,
/// and at most ten a second per worker: a flood of bad tokens gets one more line
/// saying how many were left out, not a line each.
#[test]
fn refused_handshakes_are_logged_but_a_flood_is_not() {
    let dir = TempDir::new("access-refusal-log");
    let config = dir.join("relay.toml");
    std::fs::write(
        &config,
        format!("[[publisher_tokens]]\ntoken = \"{BTC}\"\ntopics = [\"*\"]\n"),
    )
    .unwrap();
    let server = Server::relay(
        &["--workers", "1", "--config", config.to_str().unwrap()],
        None,
    );
    const GUESS: &str = "guessed-token-0123456789";
    let bad = format!("Authorization: Bearer {GUESS}\r\n");
    let (_, head) = Raw::handshake(server.addr, "/pub", &bad);
    assert_eq!(status(&head), 401, "{head}");
    assert!(server.wait_for_log("handshake refused", std::time::Duration::from_secs(5)));
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("handshake refused"))
        .unwrap();
    assert!(line.contains("INFO"), "{line}");
    assert!(
        line.contains("peer=127.0.0.1:") && line.contains("status=401"),
        "{line}"
    );
    assert!(line.contains("unknown publisher token"), "{line}");
    // A flood: 200 bad logins as fast as they go.
    let start = std::time::Instant::now();
    for _ in 0..200 {
        let (_, head) = Raw::handshake(server.addr, "/pub", &bad);
        assert_eq!(status(&head), 401);
    }
    let seconds = start.elapsed().as_secs() + 2;
    // One more refusal after the window, so the count of those left out is told.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let _ = Raw::handshake(server.addr, "/pub", &bad);
    assert!(server.wait_for_log(
        "more handshakes were refused in the last second",
        std::time::Duration::from_secs(5)
    ));
    let log = server.log();
    let lines = log
        .lines()
        .filter(|l| l.contains("handshake refused"))
        .count() as u64;
    assert!(
        lines <= 10 * seconds + 1,
        "{lines} lines for 202 refusals in about {seconds} s"
    );
    assert!(!log.contains(GUESS), "no token in the log");
}

/// `metrics_token`: `/metrics`, `/subscribers` and the status page need it (bearer
/// header or `?token=`), on the metrics listener and on the data port; the probes
/// need none; a reload replaces it; with it, metrics beyond loopback may start.
#[test]
fn the_metrics_paths_need_the_metrics_token_when_one_is_set() {
    const TOKEN: &str = "metrics-token-0123456789";
    let config = format!("metrics_on_data_port = true\nmetrics_token = \"{TOKEN}\"\n");
    let server = Server::relay(
        &["--workers", "1", "--metrics", "127.0.0.1:0"],
        Some(&config),
    );
    let metrics = common::printed_addr(&server, "metrics on http://");
    let get = |addr, path: &str, header: &str| {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        std::io::Write::write_fmt(
            &mut s,
            format_args!("GET {path} HTTP/1.1\r\nHost: x\r\n{header}Connection: close\r\n\r\n"),
        )
        .unwrap();
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut s, &mut out);
        out
    };
    let status = |r: String| r.split(' ').nth(1).unwrap_or("").to_owned();
    let bearer = |t: &str| format!("Authorization: Bearer {t}\r\n");
    for addr in [metrics, server.addr] {
        assert_eq!(status(get(addr, "/metrics", "")), "401");
        assert_eq!(
            status(get(addr, "/metrics", &bearer("wrong-token-0123456789"))),
            "401"
        );
        assert_eq!(status(get(addr, "/metrics", &bearer(TOKEN))), "200");
        assert_eq!(
            status(get(addr, &format!("/metrics?token={TOKEN}"), "")),
            "200"
        );
    }
    for path in ["/subscribers", "/status", "/status.json"] {
        assert_eq!(status(get(metrics, path, "")), "401", "{path}");
        assert_eq!(status(get(metrics, path, &bearer(TOKEN))), "200", "{path}");
    }
    assert_eq!(status(get(metrics, "/healthz", "")), "200");
    // A reload replaces it.
    const NEW: &str = "rotated-metrics-token-987";
    let path = server.config_file().unwrap().to_owned();
    std::fs::write(&path, config.replace(TOKEN, NEW)).unwrap();
    server.hangup();
    assert!(server.wait_for_log("reloaded on SIGHUP", std::time::Duration::from_secs(5)));
    assert_eq!(status(get(metrics, "/metrics", &bearer(TOKEN))), "401");
    assert_eq!(status(get(metrics, "/metrics", &bearer(NEW))), "200");
    // Beyond loopback, the token closes the metrics role: it starts.
    let dir = common::TempDir::new("metrics-token");
    let open = dir.join("open.toml");
    std::fs::write(
        &open,
        format!("allow_anonymous = [\"publish\", \"subscribe\"]\nmetrics_token = \"{TOKEN}\"\n"),
    )
    .unwrap();
    let args = print_open_config;
    common::succeeded(&args(&open));
    std::fs::write(&open, "allow_anonymous = [\"publish\", \"subscribe\"]\n").unwrap();
    let out = args(&open);
    assert!(String::from_utf8_lossy(&out.stderr).contains("metrics_token"));
    std::fs::write(&open, "allow_anonymous = true\nmetrics_token = \"short\"\n").unwrap();
    let out = args(&open);
    assert_eq!(out.status.code(), Some(2), "a short token is refused");
}

/// `run --print-config` with the data port and metrics on every address: the start-up
/// checks run, nothing is bound.
fn print_open_config(config: &std::path::Path) -> std::process::Output {
    common::feedrelay([
        "run",
        "--listen",
        "0.0.0.0:0",
        "--metrics",
        "0.0.0.0:0",
        "--print-config",
        "--config",
        config.to_str().unwrap(),
    ])
}
