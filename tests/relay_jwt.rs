//! Subscriber JWTs over real sockets: 401 for a missing, badly signed, expired or
//! foreign token; the `topics` claim bounds the initial topics (403) and later
//! subscriptions (an error event, nothing else changes); an expired token closes the
//! connection with 1008 unless a newer token was sent with `refresh`; HS256, RS256 and
//! ES256 keys.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{wait_metric, Raw, Server, TempDir};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

const SECRET: &str = "shared-secret-for-the-desk-feed-0123456789";

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256(exp: u64, topics: &[&str], iss: &str, secret: &str) -> String {
    encode(
        &Header::default(),
        &serde_json::json!({"exp": exp, "topics": topics, "iss": iss}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn status(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A relay with `[jwt]` HS256, issuer `desk-auth`.
fn relay(dir: &TempDir) -> Server {
    std::fs::write(dir.join("jwt.secret"), format!("{SECRET}\n")).unwrap();
    let toml = format!(
        "metrics_on_data_port = true\n[jwt]\nalgorithm = \"HS256\"\nkey_file = \"{}\"\nissuer = \"desk-auth\"\n",
        dir.join("jwt.secret").display()
    );
    Server::relay(&["--workers", "1"], Some(&toml))
}

fn subscribe(addr: std::net::SocketAddr, topics: &str, token: &str) -> (Raw, String) {
    Raw::handshake(
        addr,
        &format!("/ws?topics={topics}"),
        &format!("Authorization: Bearer {token}\r\n"),
    )
}

/// Reads frames until a text one contains `want`.
fn until(raw: &mut Raw, want: &str) -> String {
    loop {
        let (_, m) = raw.recv().unwrap_or_else(|| panic!("EOF before {want:?}"));
        let text = String::from_utf8_lossy(&m).into_owned();
        if text.contains(want) {
            return text;
        }
    }
}

#[test]
fn tokens_are_checked_at_the_handshake() {
    let dir = TempDir::new("jwt-handshake");
    let server = relay(&dir);
    let addr = server.addr;
    let exp = now_s() + 60;
    let refused = [
        (String::new(), "no token"),
        (
            hs256(
                exp,
                &["*"],
                "desk-auth",
                "not-the-secret-but-32-bytes-long!!",
            ),
            "bad signature",
        ),
        (hs256(now_s() - 5, &["*"], "desk-auth", SECRET), "expired"),
        (hs256(exp, &["*"], "mallory", SECRET), "wrong issuer"),
        ("a.b.c".into(), "not a JWT"),
    ];
    for (token, why) in &refused {
        let extra = match token.is_empty() {
            true => String::new(),
            false => format!("Authorization: Bearer {token}\r\n"),
        };
        let (_, head) = Raw::handshake(addr, "/ws?topics=BTC-USD", &extra);
        assert_eq!(status(&head), 401, "{why}: {head}");
    }
    let btc = hs256(exp, &["BTC-*"], "desk-auth", SECRET);
    for topics in ["ETH-USD", "*", "BTC-USD,ETH-USD"] {
        let (_, head) = subscribe(addr, topics, &btc);
        assert_eq!(status(&head), 403, "{topics}: {head}");
    }
    let (mut raw, head) = Raw::handshake(addr, &format!("/ws?topics=BTC-USD&token={btc}"), "");
    assert_eq!(status(&head), 101, "token in the query: {head}");
    until(&mut raw, "\"subscribed\"");
    wait_metric(
        addr,
        None,
        "feedrelay_handshake_refused_total{reason=\"unauthorized\"}",
        |n| n == 5,
    );
    wait_metric(
        addr,
        None,
        "feedrelay_handshake_refused_total{reason=\"forbidden_topic\"}",
        |n| n == 3,
    );
}

#[test]
fn the_claim_bounds_later_subscriptions() {
    let dir = TempDir::new("jwt-claim");
    let server = relay(&dir);
    let addr = server.addr;
    let btc = hs256(now_s() + 60, &["BTC-*"], "desk-auth", SECRET);
    let (mut sub, head) = subscribe(addr, "BTC-USD", &btc);
    assert_eq!(status(&head), 101, "{head}");
    until(&mut sub, "\"subscribed\"");
    sub.send(
        0x81,
        br#"{"op":"subscribe","topics":["BTC-EUR","ETH-USD"]}"#,
    );
    let error = until(&mut sub, "\"error\"");
    assert!(error.contains("ETH-USD"), "{error}");
    sub.send(0x81, br#"{"op":"subscribe","topics":["*"]}"#);
    until(&mut sub, "\"error\"");
    // Nothing else changed: still subscribed to BTC-USD only (BTC-EUR was refused
    // with ETH-USD, the request as a whole).
    let mut publisher = Raw::publish(addr);
    for topic in ["BTC-EUR", "ETH-USD", "BTC-USD"] {
        publisher.send(0x81, format!(r#"{{"s":"{topic}"}}"#).as_bytes());
    }
    let (_, m) = sub.recv().expect("a message");
    assert_eq!(m, br#"{"s":"BTC-USD"}"#);
}

#[test]
fn an_expired_token_closes_with_1008_unless_refreshed() {
    let dir = TempDir::new("jwt-expiry");
    let server = relay(&dir);
    let addr = server.addr;
    let soon = hs256(now_s() + 2, &["BTC-*"], "desk-auth", SECRET);
    let (mut lapses, head) = subscribe(addr, "BTC-USD", &soon);
    assert_eq!(status(&head), 101, "{head}");
    until(&mut lapses, "\"subscribed\"");
    let (mut refreshes, head) = subscribe(addr, "BTC-USD", &soon);
    assert_eq!(status(&head), 101, "{head}");
    until(&mut refreshes, "\"subscribed\"");

    // A refresh must expire later, and allow what is held.
    let narrower = hs256(now_s() + 60, &["ETH-*"], "desk-auth", SECRET);
    refreshes.send(
        0x81,
        format!(r#"{{"op":"refresh","token":"{narrower}"}}"#).as_bytes(),
    );
    let error = until(&mut refreshes, "\"error\"");
    assert!(error.contains("BTC-USD"), "{error}");
    let forged = hs256(
        now_s() + 60,
        &["*"],
        "desk-auth",
        "forged-secret-that-is-32-bytes-long",
    );
    refreshes.send(
        0x81,
        format!(r#"{{"op":"refresh","token":"{forged}"}}"#).as_bytes(),
    );
    until(&mut refreshes, "bad token signature");
    let later = hs256(now_s() + 60, &["BTC-*", "ETH-*"], "desk-auth", SECRET);
    refreshes.send(
        0x81,
        format!(r#"{{"op":"refresh","token":"{later}"}}"#).as_bytes(),
    );
    until(&mut refreshes, "\"refreshed\"");

    let started = std::time::Instant::now();
    lapses.expect_close(Some(1008));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed at its exp"
    );
    // The refreshed one stays, and its new claim applies.
    std::thread::sleep(Duration::from_millis(500));
    refreshes.send(0x81, br#"{"op":"subscribe","topics":["ETH-USD"]}"#);
    until(&mut refreshes, "\"subscribed\"");
    let mut publisher = Raw::publish(addr);
    publisher.send(0x81, br#"{"s":"ETH-USD"}"#);
    let (_, m) = refreshes
        .recv()
        .expect("still served after the first token's exp");
    assert_eq!(m, br#"{"s":"ETH-USD"}"#);
}

#[test]
fn rs256_and_es256_keys_verify_their_own_tokens_only() {
    let dir = TempDir::new("jwt-keys");
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt");
    let rsa_private = std::fs::read(fixtures.join("rs256-private.pem")).unwrap();
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let other_ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    std::fs::write(dir.join("es256.pem"), ec.public_key_pem()).unwrap();
    let claims = serde_json::json!({"exp": now_s() + 60, "topics": ["*"]});
    let sign = |alg, key: EncodingKey| encode(&Header::new(alg), &claims, &key).unwrap();
    let cases = [
        (
            "RS256",
            fixtures.join("rs256-public.pem"),
            sign(
                Algorithm::RS256,
                EncodingKey::from_rsa_pem(&rsa_private).unwrap(),
            ),
            sign(
                Algorithm::ES256,
                EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).unwrap(),
            ),
        ),
        (
            "ES256",
            dir.join("es256.pem"),
            sign(
                Algorithm::ES256,
                EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).unwrap(),
            ),
            sign(
                Algorithm::ES256,
                EncodingKey::from_ec_pem(other_ec.serialize_pem().as_bytes()).unwrap(),
            ),
        ),
    ];
    for (alg, key_file, good, foreign) in cases {
        let toml = format!(
            "[jwt]\nalgorithm = \"{alg}\"\nkey_file = \"{}\"\n",
            key_file.display()
        );
        let server = Server::relay(&["--workers", "1"], Some(&toml));
        let (mut raw, head) = subscribe(server.addr, "*", &good);
        assert_eq!(status(&head), 101, "{alg}: {head}");
        until(&mut raw, "\"subscribed\"");
        let (_, head) = subscribe(server.addr, "*", &foreign);
        assert_eq!(
            status(&head),
            401,
            "{alg}, a token it cannot verify: {head}"
        );
    }
}

#[test]
fn a_bad_key_file_stops_the_start_with_one_line() {
    let dir = TempDir::new("jwt-badkey");
    std::fs::write(dir.join("short.secret"), "too short").unwrap();
    for (toml, want) in [
        (
            format!(
                "[jwt]\nalgorithm = \"HS256\"\nkey_file = \"{}\"\n",
                dir.join("short.secret").display()
            ),
            "32 bytes",
        ),
        (
            format!(
                "[jwt]\nalgorithm = \"ES256\"\nkey_file = \"{}\"\n",
                dir.join("short.secret").display()
            ),
            "ES256",
        ),
        (
            format!(
                "[jwt]\nalgorithm = \"RS256\"\nkey_file = \"{}\"\n",
                dir.join("missing.pem").display()
            ),
            "missing.pem",
        ),
        (
            "[jwt]\nalgorithm = \"none\"\nkey_file = \"k\"\n".to_owned(),
            "algorithm",
        ),
    ] {
        let path = dir.join("relay.toml");
        std::fs::write(&path, &toml).unwrap();
        let (code, err) = common::run_with_config(&path);
        assert_eq!(code, Some(2), "{toml}: {err}");
        assert!(err.contains(want), "{toml}: {err}");
        // A key error is one line; toml's own parse errors quote the line they are on.
        if !toml.contains("\"none\"") {
            assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        }
    }
}

/// A new key on reload re-checks the subscribers that are open: a token the new key
/// does not verify closes its connection (1008, with the reason); tokens of the new
/// key are admitted from then on.
#[test]
fn a_reload_with_a_new_key_closes_the_subscribers_it_no_longer_verifies() {
    let dir = TempDir::new("jwt-rotate");
    let server = relay(&dir);
    let old = hs256(now_s() + 600, &["*"], "desk-auth", SECRET);
    let (mut sub, head) = subscribe(server.addr, "BTC-USD", &old);
    assert_eq!(status(&head), 101, "{head}");
    until(&mut sub, "subscribed");
    const NEW: &str = "the-next-shared-secret-for-the-desk-feed-42";
    std::fs::write(dir.join("jwt.secret"), format!("{NEW}\n")).unwrap();
    server.hangup();
    assert!(server.wait_for_log("reloaded on SIGHUP", Duration::from_secs(5)));
    assert_eq!(
        sub.close_frame(),
        (1008, "token no longer valid".to_owned())
    );
    let new = hs256(now_s() + 600, &["*"], "desk-auth", NEW);
    assert_eq!(status(&subscribe(server.addr, "BTC-USD", &new).1), 101);
    assert_eq!(status(&subscribe(server.addr, "BTC-USD", &old).1), 401);
    assert!(!server.log().contains(&old), "no token in the log");
}

/// A JWK Set file: a token's `kid` chooses the key, so the issuer can rotate keys
/// without dropping every desk. With keys k1 and k2, tokens of either verify (and one
/// naming k3 is refused); the set reloaded as k2 and k3 closes only the connection
/// holding a k1 token, and k3 tokens verify from then on.
#[test]
fn a_key_set_rotates_keys_by_kid_without_dropping_the_others() {
    use base64::Engine;
    let dir = TempDir::new("jwt-jwks");
    let secret = |kid: &str| format!("secret-of-{kid}-for-the-desk-feed-0123456789");
    let jwks = |kids: &[&str]| {
        let keys: Vec<_> = kids
            .iter()
            .map(|kid| {
                let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret(kid));
                serde_json::json!({"kty": "oct", "kid": kid, "alg": "HS256", "k": k})
            })
            .collect();
        serde_json::json!({ "keys": keys }).to_string()
    };
    let token = |kid: &str| {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(kid.to_owned());
        let claims = serde_json::json!({"exp": now_s() + 600, "topics": ["*"]});
        encode(
            &h,
            &claims,
            &EncodingKey::from_secret(secret(kid).as_bytes()),
        )
        .unwrap()
    };
    let set = dir.join("keys.json");
    std::fs::write(&set, jwks(&["k1", "k2"])).unwrap();
    let toml = format!(
        "[jwt]\nalgorithm = \"HS256\"\njwks_file = \"{}\"\n",
        set.display()
    );
    let server = Server::relay(&["--workers", "1"], Some(&toml));
    let (mut on_k1, head) = subscribe(server.addr, "T", &token("k1"));
    assert_eq!(status(&head), 101, "{head}");
    let (mut on_k2, head) = subscribe(server.addr, "T", &token("k2"));
    assert_eq!(status(&head), 101, "{head}");
    let (_, refused) = subscribe(server.addr, "T", &token("k3"));
    assert_eq!(status(&refused), 401);
    assert!(server.wait_for_log("unknown token key (kid)", Duration::from_secs(5)));
    until(&mut on_k1, "subscribed");
    until(&mut on_k2, "subscribed");
    std::fs::write(&set, jwks(&["k2", "k3"])).unwrap();
    server.hangup();
    assert!(server.wait_for_log("reloaded on SIGHUP", Duration::from_secs(5)));
    assert_eq!(
        on_k1.close_frame(),
        (1008, "token no longer valid".to_owned())
    );
    assert_eq!(status(&subscribe(server.addr, "T", &token("k3")).1), 101);
    // The k2 connection carries on.
    let mut publ = Raw::publish(server.addr);
    publ.send(0x81, br#"{"s":"T","n":1}"#);
    assert_eq!(until(&mut on_k2, "\"n\""), r#"{"s":"T","n":1}"#);
}

/// `refresh` is limited per connection: past four a second the requests are refused
/// without being verified (each verification costs a helper thread), and counted; the next
/// second a refresh goes through again.
#[test]
fn refreshes_past_four_a_second_are_refused_unverified() {
    let dir = TempDir::new("jwt-refresh-rate");
    let server = relay(&dir);
    let token = hs256(now_s() + 600, &["*"], "desk-auth", SECRET);
    let (mut sub, head) = subscribe(server.addr, "BTC-USD", &token);
    assert_eq!(status(&head), 101, "{head}");
    until(&mut sub, "subscribed");
    let forged = hs256(
        now_s() + 900,
        &["*"],
        "desk-auth",
        "not-the-relays-secret-0123456789ab",
    );
    let refresh = |t: &str| format!(r#"{{"op":"refresh","token":"{t}"}}"#);
    for _ in 0..6 {
        sub.send(0x81, refresh(&forged).as_bytes());
    }
    let mut replies = Vec::new();
    while replies.len() < 6 {
        replies.push(until(&mut sub, "\"error\""));
    }
    let verified = replies
        .iter()
        .filter(|r| r.contains("bad token signature"))
        .count();
    let limited = replies
        .iter()
        .filter(|r| r.contains("at most 4 a second"))
        .count();
    assert_eq!((verified, limited), (4, 2), "{replies:?}");
    std::thread::sleep(Duration::from_millis(1100));
    let later = hs256(now_s() + 1200, &["*"], "desk-auth", SECRET);
    sub.send(0x81, refresh(&later).as_bytes());
    until(&mut sub, "\"refreshed\"");
    wait_metric(
        server.addr,
        None,
        "feedrelay_limit_hits_total{limit=\"max_refreshes_per_second\"}",
        |n| n == 2,
    );
}
