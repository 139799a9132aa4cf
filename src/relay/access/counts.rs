//! What the access rules refused and revoked on one worker, counted for metrics and
//! the exit summary ([`AccessCounts`]).

use super::revocation::Revoked;
use super::rules::Denied;

/// What access refused on one worker (totals since start).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessCounts {
    /// Handshakes refused with 401 (no, unknown or invalid token).
    pub unauthorized: u64,
    /// Handshakes refused with 403 for an `Origin` not allowed.
    pub forbidden_origin: u64,
    /// Handshakes refused with 403 for topics outside the subscriber's token.
    pub forbidden_topic: u64,
    /// Open connections closed after a reload no longer allowed them, by reason (in
    /// the order of [`Revoked::ALL`]).
    pub revoked: [u64; 3],
    /// Messages not relayed because their topic is outside the publisher's token, by
    /// the token's name (a reload may change the tokens; names stay).
    pub off_grant: Vec<(String, u64)>,
}

impl AccessCounts {
    /// Counts a refused handshake.
    pub fn count(&mut self, why: Denied) {
        match why {
            Denied::Token => self.unauthorized += 1,
            Denied::Origin => self.forbidden_origin += 1,
            Denied::Topic => self.forbidden_topic += 1,
        }
    }

    /// The refusals by reason, as metrics name them.
    pub fn by_reason(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("unauthorized", self.unauthorized),
            ("forbidden_origin", self.forbidden_origin),
            ("forbidden_topic", self.forbidden_topic),
        ]
    }

    /// Counts an open connection closed by a reload's rules.
    pub fn count_revoked(&mut self, why: Revoked) {
        if let Some(at) = Revoked::ALL.iter().position(|&r| r == why) {
            self.revoked[at] += 1;
        }
    }

    /// The revocations by reason, as metrics name them.
    pub fn revoked_by_reason(&self) -> Vec<(&'static str, u64)> {
        Revoked::ALL
            .iter()
            .zip(self.revoked)
            .map(|(r, n)| (r.name(), n))
            .collect()
    }

    /// Counts a message of the token named `name` outside its topics.
    pub fn count_off_grant(&mut self, name: &str) {
        self.add_off_grant(name, 1);
    }

    /// Adds another worker's counts (for the exit summary).
    pub fn merge(&mut self, other: &AccessCounts) {
        self.unauthorized += other.unauthorized;
        self.forbidden_origin += other.forbidden_origin;
        self.forbidden_topic += other.forbidden_topic;
        for (mine, theirs) in self.revoked.iter_mut().zip(other.revoked) {
            *mine += theirs;
        }
        for (name, n) in &other.off_grant {
            self.add_off_grant(name, *n);
        }
    }

    fn add_off_grant(&mut self, name: &str, n: u64) {
        match self.off_grant.iter_mut().find(|(t, _)| t == name) {
            Some((_, count)) => *count += n,
            None => self.off_grant.push((name.to_owned(), n)),
        }
    }
}
