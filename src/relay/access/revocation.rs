//! Revocation: what an open connection was admitted with ([`Held`]), and whether the
//! access rules a reload put in force still allow it ([`Access::recheck`]).
//!
//! A reload that removes a publisher token, changes the JWT key (or starts requiring
//! tokens), or narrows `allowed_origins` must not leave connections admitted under
//! the old rules running: each worker re-checks its open connections when it sees the
//! reload and closes those no longer allowed (1008, with the reason); the others carry
//! on untouched. A token narrowed to fewer topics keeps its connection, and the
//! publisher's messages are judged by the new patterns from its next message on.

use super::rules::Access;
use super::secret::Secret;

/// What a connection was admitted with: its `Origin` and its credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The handshake's `Origin` header, if it sent one.
    pub origin: Option<String>,
    /// Its token, by side.
    pub credential: Credential,
}

/// A connection's credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A publisher's token (`None`: no publisher tokens were configured).
    Publisher(Option<Secret>),
    /// A subscriber's JWT, the one it presented or last refreshed to (`None`: no
    /// `[jwt]` was configured).
    Subscriber(Option<String>),
}

/// Why an open connection is no longer allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// Its `Origin` is no longer listed.
    Origin,
    /// Its publisher token was removed (or tokens are now required).
    PublisherToken,
    /// Its JWT no longer verifies (another key, or tokens are now required).
    SubscriberToken,
}

impl Revoked {
    /// The close frame's reason.
    pub fn reason(self) -> &'static str {
        match self {
            Revoked::Origin => "origin no longer allowed",
            Revoked::PublisherToken => "publisher token revoked",
            Revoked::SubscriberToken => "token no longer valid",
        }
    }

    /// Its label in `feedrelay_revoked_total`.
    pub fn name(self) -> &'static str {
        match self {
            Revoked::Origin => "origin",
            Revoked::PublisherToken => "publisher_token",
            Revoked::SubscriberToken => "subscriber_token",
        }
    }

    /// Every reason, in the order metrics list them.
    pub const ALL: [Revoked; 3] = [
        Revoked::Origin,
        Revoked::PublisherToken,
        Revoked::SubscriberToken,
    ];
}

impl Access {
    /// Whether a connection admitted with `held` is still allowed by these rules.
    pub fn recheck(&self, held: &Held) -> Result<(), Revoked> {
        if let Some(o) = &held.origin {
            if !self.origin_allowed(o) {
                return Err(Revoked::Origin);
            }
        }
        match &held.credential {
            Credential::Publisher(token) => {
                if !self.publishers_need_tokens() {
                    return Ok(());
                }
                match token {
                    Some(t) if self.grant_of(t).is_some() => Ok(()),
                    _ => Err(Revoked::PublisherToken),
                }
            }
            Credential::Subscriber(token) => {
                if !self.subscribers_need_tokens() {
                    return Ok(());
                }
                match token {
                    Some(t) if self.verify_subscriber_token(t).is_ok() => Ok(()),
                    _ => Err(Revoked::SubscriberToken),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::access::rules::PublisherTokenConfig;

    fn token(name: &str, secret: &str, topics: &[&str]) -> PublisherTokenConfig {
        PublisherTokenConfig {
            name: Some(name.into()),
            token: Some(Secret::new(secret)),
            token_file: None,
            topics: topics.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn publisher(secret: Option<&str>, origin: Option<&str>) -> Held {
        Held {
            origin: origin.map(str::to_owned),
            credential: Credential::Publisher(secret.map(Secret::new)),
        }
    }

    const A: &str = "aaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn a_removed_token_is_revoked_and_a_kept_one_is_not() {
        let before = Access::new(&[], &[token("a", A, &["*"]), token("b", B, &["*"])], None);
        let after = Access::new(&[], &[token("b", B, &["BTC-*"])], None);
        assert_eq!(before.recheck(&publisher(Some(A), None)), Ok(()));
        assert_eq!(
            after.recheck(&publisher(Some(A), None)),
            Err(Revoked::PublisherToken)
        );
        assert_eq!(
            after.recheck(&publisher(Some(B), None)),
            Ok(()),
            "narrowed, kept"
        );
        // Tokens required now, where none were: a publisher admitted without one goes.
        assert_eq!(
            after.recheck(&publisher(None, None)),
            Err(Revoked::PublisherToken)
        );
        // No tokens any more: everyone may publish.
        let open = Access::new(&[], &[], None);
        assert_eq!(open.recheck(&publisher(Some(A), None)), Ok(()));
    }

    #[test]
    fn an_origin_no_longer_listed_is_revoked() {
        let after = Access::new(&["https://desk.example".into()], &[], None);
        assert_eq!(
            after.recheck(&publisher(None, Some("https://other.example"))),
            Err(Revoked::Origin)
        );
        assert_eq!(
            after.recheck(&publisher(None, Some("HTTPS://DESK.EXAMPLE"))),
            Ok(())
        );
        assert_eq!(
            after.recheck(&publisher(None, None)),
            Ok(()),
            "no Origin sent"
        );
    }

    #[test]
    fn a_subscriber_without_a_token_goes_when_tokens_become_required() {
        let held = Held {
            origin: None,
            credential: Credential::Subscriber(None),
        };
        assert_eq!(Access::new(&[], &[], None).recheck(&held), Ok(()));
        let garbage = Held {
            origin: None,
            credential: Credential::Subscriber(Some("not.a.jwt".into())),
        };
        assert_eq!(Access::new(&[], &[], None).recheck(&garbage), Ok(()));
    }
}
