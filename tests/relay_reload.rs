//! What SIGHUP may replace while the relay runs: all of a reload or none of it.

use bytes::Bytes;
use feedrelay::mock_exchange::certs::write_self_signed;
use feedrelay::relay::config::Config;
use feedrelay::relay::core::queue::SlowConsumerPolicy;
use feedrelay::relay::reload::ReloadableSettings;

fn config(text: &str) -> Config {
    Config::parse(text, "test").unwrap()
}

#[test]
fn a_reload_takes_everything_or_nothing() {
    let live = ReloadableSettings::new(&config(
        "allowed_origins = [\"https://a.example\"]\n[topic_policies]\nT = \"conflate\"\n",
    ))
    .unwrap();
    assert_eq!(live.generation(), 0);
    assert_eq!(
        live.topic_policies().get(&Bytes::from_static(b"T")),
        Some(&SlowConsumerPolicy::Conflate)
    );
    live.reload(&config(
        "[topic_policies]\nT = \"disconnect\"\nU = \"drop\"\n",
    ))
    .unwrap();
    assert_eq!(live.generation(), 1);
    assert_eq!(live.topic_policies().len(), 2);
    assert_eq!(
        live.topic_policies().get(&Bytes::from_static(b"T")),
        Some(&SlowConsumerPolicy::Disconnect)
    );
    // TLS cannot be switched on by a reload: nothing changes, not even the policies.
    let dir = std::env::temp_dir().join(format!("feedrelay-live-{}", std::process::id()));
    let certs = write_self_signed(&dir, &["localhost".into()]).unwrap();
    let mut tls = config("[topic_policies]\nV = \"drop\"\n");
    tls.tls_cert_file = Some(certs.cert.clone());
    tls.tls_key_file = Some(certs.key.clone());
    assert!(live.reload(&tls).is_err());
    assert_eq!(live.generation(), 1);
    assert!(live.tls().is_none());
    assert!(!live
        .topic_policies()
        .contains_key(&Bytes::from_static(b"V")));
    // A relay started with TLS takes a new certificate, but not plain.
    let with_tls = ReloadableSettings::new(&tls).unwrap();
    assert!(with_tls.tls().is_some());
    assert!(with_tls.reload(&config("")).is_err());
    assert!(with_tls.reload(&tls).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A reload is checked as start-up is, against the addresses the relay really listens
/// on (flags included): a file without `listen` cannot pass as loopback and drop the
/// publisher tokens of a relay on 0.0.0.0. Refused, and the old rules stay.
#[test]
fn a_reload_that_would_open_a_role_is_refused() {
    let dir = std::env::temp_dir().join(format!("feedrelay-reload-open-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("relay.toml");
    let tokens = "allow_anonymous = [\"subscribe\"]\n[[publisher_tokens]]\nname = \"desk\"\ntoken = \"0123456789abcdef0123\"\ntopics = [\"*\"]\n";
    let mut running = config(tokens);
    running.listen = "0.0.0.0:9000".parse().unwrap(); // as --listen sets it
    running.validate("flags").unwrap();
    let settings = ReloadableSettings::new(&running).unwrap();
    // The tokens removed from the file (which names no listen: loopback by default).
    std::fs::write(&path, "allow_anonymous = [\"subscribe\"]\n").unwrap();
    let err = feedrelay::relay::reload::reload_from(&path, &running, &settings).unwrap_err();
    assert!(err.to_string().contains("\"publish\""), "{err}");
    assert_eq!(settings.generation(), 0, "nothing taken");
    assert_eq!(
        settings.access().grants().len(),
        1,
        "the token still in force"
    );
    // Narrowing instead of removing is taken.
    std::fs::write(&path, tokens.replace("[\"*\"]", "[\"BTC-*\"]")).unwrap();
    feedrelay::relay::reload::reload_from(&path, &running, &settings).unwrap();
    assert_eq!(settings.generation(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
