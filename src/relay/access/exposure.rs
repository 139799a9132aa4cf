//! What a relay leaves open to the network: the roles a client can take
//! ([`AccessRole`]), those `allow_anonymous` opens on purpose ([`AnonymousRoles`]),
//! and where each is reachable ([`Exposure`]), for the check that start-up and every
//! reload make.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// What a client can do once connected, each authenticated its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessRole {
    /// `/pub` (publisher tokens).
    Publish,
    /// `/ws`, snapshots included (subscriber JWTs).
    Subscribe,
    /// `/metrics`, `/subscribers` and the status page (`metrics_token`).
    Metrics,
}

impl AccessRole {
    /// The word configuration uses.
    pub fn name(self) -> &'static str {
        match self {
            AccessRole::Publish => "publish",
            AccessRole::Subscribe => "subscribe",
            AccessRole::Metrics => "metrics",
        }
    }
}

/// `allow_anonymous`: the roles anyone who reaches a non-loopback address may take
/// without credentials: `true` (all of them), `false` (none: the default), or a list
/// (`["subscribe", "metrics"]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AnonymousRoles {
    /// Every role (`true`) or none (`false`).
    All(bool),
    /// These roles.
    Roles(Vec<AccessRole>),
}

impl Default for AnonymousRoles {
    fn default() -> Self {
        AnonymousRoles::All(false)
    }
}

impl AnonymousRoles {
    /// Whether `role` may be taken without credentials.
    pub fn allows(&self, role: AccessRole) -> bool {
        match self {
            AnonymousRoles::All(all) => *all,
            AnonymousRoles::Roles(roles) => roles.contains(&role),
        }
    }
}

/// Where a relay can be reached, for the check that no role is open by accident.
#[derive(Debug, Clone, Copy)]
pub struct Exposure {
    /// The data port (`listen`, flags applied).
    pub listen: SocketAddr,
    /// Where `/metrics` and `/subscribers` are served: the data port
    /// (`metrics_on_data_port`) and `metrics_listen`, when metrics are on.
    pub metrics: [Option<SocketAddr>; 2],
}

impl Exposure {
    /// The roles anyone on the network could take without credentials, and why, given
    /// whether publisher tokens, subscriber JWTs and a metrics token are configured.
    pub(super) fn open_roles(
        &self,
        tokens: bool,
        jwt: bool,
        metrics_token: bool,
    ) -> Vec<(AccessRole, String)> {
        let mut open = Vec::new();
        if !self.listen.ip().is_loopback() {
            if !tokens {
                let why = format!("/pub on {} needs no [[publisher_tokens]]", self.listen);
                open.push((AccessRole::Publish, why));
            }
            if !jwt {
                let why = format!("/ws on {} needs no [jwt] token", self.listen);
                open.push((AccessRole::Subscribe, why));
            }
        }
        let exposed = self
            .metrics
            .iter()
            .flatten()
            .find(|a| !a.ip().is_loopback());
        if let (Some(at), false) = (exposed, metrics_token) {
            let why = format!("/metrics and /subscribers are served on {at} with no metrics_token");
            open.push((AccessRole::Metrics, why));
        }
        open
    }
}
