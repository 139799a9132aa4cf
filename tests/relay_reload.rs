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
