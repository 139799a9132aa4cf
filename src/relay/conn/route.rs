//! Which side a handshake asks for, and whether it may take it: the path, the origin,
//! the publisher token, the subscriber's topics and JWT. Everything but the JWT is
//! decided on the worker at once; a JWT's signature is checked on a helper thread
//! ([`offload`](crate::io::offload)), so a burst of logins does not delay the worker's
//! other sockets by tens of µs each.

use std::sync::Arc;

use crate::relay::access::jwt::SubscriberGrant;
use crate::relay::access::revocation::{Credential, Held};
use crate::relay::access::rules::{Access, Denied, Refusal};
use crate::relay::conn::subscriber::Joining;
use crate::relay::core::control::{self, Control};
use crate::relay::worker::state::WorkerCtx;
use crate::ws::handshake::Request;

/// Which side of the relay a connection is on, decided by its path.
pub(super) enum Side {
    /// A publisher, with the access rules it was admitted under and its token's grant
    /// among them (`None`: no tokens are configured), and what it was admitted with.
    Publisher(Option<(Arc<Access>, usize)>, Held),
    /// A subscriber, with what its URL asked for and what its token allows (`None`:
    /// no `[jwt]`), and what it was admitted with.
    Subscriber(Joining, Option<SubscriberGrant>, Held),
}

/// What the worker decided at once.
pub(super) enum Routed {
    /// The side, decided.
    Ready(Side),
    /// A subscriber whose token must be verified first ([`verify`]).
    Verify(PendingSubscriber),
}

/// A subscriber whose JWT is still to be checked.
pub(super) struct PendingSubscriber {
    access: Arc<Access>,
    token: String,
    joining: Joining,
    origin: Option<String>,
}

/// Decides at the handshake what can be decided at once: `Err((status, reason))`
/// refuses. The origin is checked first, so a page in a browser learns nothing else
/// about the relay.
pub(super) fn route(req: &Request, ctx: &WorkerCtx) -> Result<Routed, Refusal> {
    let counted = |refusal: Refusal, kind: Denied| {
        ctx.access_counts.borrow_mut().count(kind);
        refusal
    };
    let access = ctx.settings.access();
    access
        .check_origin(req)
        .map_err(|r| counted(r, Denied::Origin))?;
    let origin = req.origin.clone();
    match req.path.as_str() {
        "/pub" => match access.publisher(req) {
            Ok(grant) => {
                let token = grant.and_then(|i| access.grant_token(i).cloned());
                let held = Held {
                    origin,
                    credential: Credential::Publisher(token),
                };
                Ok(Routed::Ready(Side::Publisher(
                    grant.map(|i| (Arc::clone(&access), i)),
                    held,
                )))
            }
            Err(r) => Err(counted(r, Denied::Token)),
        },
        "/ws" => {
            let topics =
                control::parse_query_topics(req.query_param("topics").unwrap_or(""), ctx.control)
                    .map_err(|e| (400, format!("topics: {e}")))?;
            let token = access
                .subscriber_token(req)
                .map_err(|r| counted(r, Denied::Token))?;
            let joining = Joining {
                first: Control::Subscribe(
                    topics,
                    matches!(req.query_param("snapshot"), Some("1" | "true")),
                ),
                events: !matches!(req.query_param("events"), Some("0" | "false")),
                sequenced: matches!(req.query_param("seq"), Some("1" | "true")),
            };
            Ok(match token {
                None => Routed::Ready(Side::Subscriber(
                    joining,
                    None,
                    Held {
                        origin,
                        credential: Credential::Subscriber(None),
                    },
                )),
                Some(token) => Routed::Verify(PendingSubscriber {
                    access,
                    token,
                    joining,
                    origin,
                }),
            })
        }
        other => Err((
            404,
            format!("no such path {other:?}: publishers use /pub, subscribers /ws?topics=A,B"),
        )),
    }
}

/// Checks a subscriber's JWT on a helper thread, then its initial topics against the
/// claim: 401 for a bad token, 403 for a topic outside it, 503 when the helpers are
/// too far behind to take the check.
pub(super) async fn verify(ctx: &WorkerCtx, p: PendingSubscriber) -> Result<Side, Refusal> {
    let PendingSubscriber {
        access,
        token,
        joining,
        origin,
    } = p;
    let counted = |refusal: Refusal, kind: Denied| {
        ctx.access_counts.borrow_mut().count(kind);
        refusal
    };
    let checked = ctx
        .offload
        .run(move || {
            let grant = access.verify_subscriber_token(&token);
            (grant, token)
        })
        .map_err(|_| (503, "too many logins being checked; try again".to_owned()))?;
    let (grant, token) = checked.await;
    let grant = grant.map_err(|why| counted((401, why), Denied::Token))?;
    if let Control::Subscribe(topics, _) = &joining.first {
        if let Some(t) = grant.first_refused(topics.iter().map(String::as_str)) {
            let reason = format!("topic {t:?} is outside your token's topics");
            return Err(counted((403, reason), Denied::Topic));
        }
    }
    let held = Held {
        origin,
        credential: Credential::Subscriber(Some(token)),
    };
    Ok(Side::Subscriber(joining, Some(grant), held))
}
