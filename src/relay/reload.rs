//! Settings a running relay can take anew without dropping a connection: the TLS
//! certificate of its listener, the access rules (origins, publisher tokens, the
//! subscriber JWT key) and the per-topic slow-consumer policies. SIGHUP re-reads the
//! config file; a file that fails to load leaves every old setting in force and is
//! logged in one line.
//!
//! Each handshake takes a snapshot (an `Arc`) of what is in force when it starts and
//! keeps it for its connection's life; a reload changes what later handshakes see.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use crate::io::transport::{server_config, TlsSetupError};
use crate::relay::access::rules::Access;
use crate::relay::config::{Config, ConfigError};
use crate::relay::core::queue::SlowConsumerPolicy;

/// Why the live settings could not be (re)built.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The config file does not load.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The certificate or key does not load.
    #[error("tls_cert_file / tls_key_file: {0}")]
    Tls(#[from] TlsSetupError),
    /// A reload would turn TLS on or off.
    #[error("tls_cert_file: TLS cannot be turned on or off without a restart")]
    TlsSwitch,
}

/// What is in force now, shared by the workers.
#[derive(Debug)]
pub struct ReloadableSettings {
    tls: RwLock<Option<Arc<rustls::ServerConfig>>>,
    access: RwLock<Arc<Access>>,
    policies: RwLock<Arc<TopicPolicies>>,
    /// Bumped by every reload that took: workers compare it to pick up the policies.
    generation: AtomicU64,
}

/// Slow-consumer policies by topic.
pub type TopicPolicies = HashMap<Bytes, SlowConsumerPolicy>;

/// The `[topic_policies]` of `config`, keyed as the shard looks them up.
pub fn topic_policies(config: &Config) -> TopicPolicies {
    config
        .topic_policies
        .iter()
        .map(|(t, p)| (Bytes::copy_from_slice(t.as_bytes()), *p))
        .collect()
}

impl ReloadableSettings {
    /// The settings of `config` (the certificate and key read now).
    pub fn new(config: &Config) -> Result<Arc<ReloadableSettings>, ReloadError> {
        Ok(Arc::new(ReloadableSettings {
            tls: RwLock::new(tls_of(config)?),
            access: RwLock::new(Arc::new(config.access())),
            policies: RwLock::new(Arc::new(topic_policies(config))),
            generation: AtomicU64::new(0),
        }))
    }

    /// The TLS configuration of the listener (`None`: plain `ws://`).
    pub fn tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        match self.tls.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The access rules in force.
    pub fn access(&self) -> Arc<Access> {
        match self.access.read() {
            Ok(a) => Arc::clone(&a),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// How many reloads have taken.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The per-topic slow-consumer policies in force.
    pub fn topic_policies(&self) -> Arc<TopicPolicies> {
        match self.policies.read() {
            Ok(p) => Arc::clone(&p),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Takes the certificate, access rules and topic policies of `config`: all of them, or (on an
    /// error) none. A listener started plain stays plain, and one started with TLS
    /// keeps TLS (the scheme clients dial cannot change under them).
    pub fn reload(&self, config: &Config) -> Result<(), ReloadError> {
        let tls = tls_of(config)?;
        if tls.is_some() != self.tls().is_some() {
            return Err(ReloadError::TlsSwitch);
        }
        let access = Arc::new(config.access());
        let policies = Arc::new(topic_policies(config));
        *self.tls.write().unwrap_or_else(|p| p.into_inner()) = tls;
        *self.access.write().unwrap_or_else(|p| p.into_inner()) = access;
        *self.policies.write().unwrap_or_else(|p| p.into_inner()) = policies;
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
}

fn tls_of(config: &Config) -> Result<Option<Arc<rustls::ServerConfig>>, TlsSetupError> {
    match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(cert), Some(key)) => server_config(cert, key).map(Some),
        _ => Ok(None),
    }
}

/// Reloads from `path` on every SIGHUP, on a thread of its own, for the life of the
/// process; `running` is the configuration the relay started with (flags applied).
pub fn reload_on_sighup(
    path: PathBuf,
    running: Config,
    settings: Arc<ReloadableSettings>,
) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])?;
    std::thread::Builder::new()
        .name("feedrelay-sighup".into())
        .spawn(move || {
            for _ in signals.forever() {
                match reload_from(&path, &running, &settings) {
                    Ok(()) => tracing::info!(config = %path.display(), "reloaded on SIGHUP"),
                    Err(e) => tracing::error!(
                        config = %path.display(),
                        "reload on SIGHUP failed, the old settings stay: {e}"
                    ),
                }
            }
        })?;
    Ok(())
}

/// The file at `path`, checked as start-up checks it, then taken. What a reload does
/// not change (the addresses the relay listens on, flags included, and where metrics
/// are served) is what the relay runs with: the access check sees those, so a file
/// without `listen` cannot pass as loopback while the relay listens on 0.0.0.0.
pub fn reload_from(
    path: &Path,
    running: &Config,
    settings: &ReloadableSettings,
) -> Result<(), ReloadError> {
    let mut next = Config::load(path)?;
    next.listen = running.listen;
    next.metrics = running.metrics;
    next.metrics_on_data_port = running.metrics_on_data_port;
    next.metrics_listen = running.metrics_listen;
    next.validate(&path.display().to_string())?;
    settings.reload(&next)
}
