//! A subscriber's `{"op":"refresh","token":".."}`: a newer JWT for an open connection.
//! The signature is checked on a helper thread ([`offload`](crate::io::offload)), not
//! on the worker, and the outcome applied when it comes back: a valid token that
//! expires later and allows every topic the connection holds replaces the old one
//! (`{"event":"refreshed","exp":N}`); anything else gets an error event and the old
//! token stays in force. At most [`MAX_REFRESHES_PER_SECOND`] a second per
//! connection (more are refused unverified); each is judged against the state when its
//! check comes back, so two in flight cannot install an older token over a newer one.

use std::cell::RefCell;
use std::rc::Rc;

use super::sub_writer::SubWriter;
use crate::io::rt;
use crate::relay::access::jwt::SubscriberGrant;
use crate::relay::access::revocation::Credential;
use crate::relay::core::control::{self, control_frame};
use crate::relay::core::routing::SubId;
use crate::relay::worker::state::WorkerCtx;

/// `refresh` requests a subscriber may send per second; more get an error without
/// being verified.
pub const MAX_REFRESHES_PER_SECOND: u32 = 4;

/// What a subscriber's token allows now, shared between its reader and the refreshes
/// being verified.
#[derive(Debug, Default)]
pub(super) struct GrantCell {
    /// What its token allows (`None`: no `[jwt]`, any topic).
    pub(super) grant: RefCell<Option<SubscriberGrant>>,
}

impl GrantCell {
    /// A connection admitted with `grant`.
    pub(super) fn new(grant: Option<SubscriberGrant>) -> GrantCell {
        GrantCell {
            grant: RefCell::new(grant),
        }
    }
}

/// Answers a control request of `id` with `{"event":"error"}` (the connection stays).
pub(super) fn reply_error(ctx: &WorkerCtx, id: SubId, reason: &str) {
    let mut shard = ctx.shard.borrow_mut();
    shard.stats.control_errors += 1;
    shard.reply(id, control_frame(&control::reply_error(reason)));
}

/// Starts verifying `token` for subscriber `id` (its budget already counted).
pub(super) fn start(
    ctx: &Rc<WorkerCtx>,
    id: SubId,
    writer: &Rc<SubWriter>,
    cell: &Rc<GrantCell>,
    token: &str,
) {
    let access = ctx.settings.access();
    let token = token.to_owned();
    let checked = ctx.offload.run(move || {
        let outcome = access.verify_subscriber_token(&token);
        (outcome, token)
    });
    let Ok(checked) = checked else {
        return reply_error(ctx, id, "refresh: too many tokens being checked; try again");
    };
    let (ctx, writer, cell) = (Rc::clone(ctx), Rc::clone(writer), Rc::clone(cell));
    rt::spawn(async move {
        let (outcome, token) = checked.await;
        // Gone meanwhile: its id may already be another subscriber's.
        if !writer.gone.get() {
            apply(&ctx, id, &writer, &cell, outcome, token);
        }
    });
}

/// Applies a verified (or refused) refresh.
fn apply(
    ctx: &WorkerCtx,
    id: SubId,
    writer: &SubWriter,
    cell: &GrantCell,
    outcome: Result<SubscriberGrant, String>,
    token: String,
) {
    let outcome = outcome.and_then(|new| {
        if cell
            .grant
            .borrow()
            .as_ref()
            .is_some_and(|old| new.expires <= old.expires)
        {
            return Err("the new token does not expire later than the current one".into());
        }
        let held = ctx.shard.borrow().subscriber_topics(id);
        match new.first_refused(held.iter().map(String::as_str)) {
            Some(t) => Err(format!(
                "the new token does not allow {t:?}; unsubscribe from it first"
            )),
            None => Ok(new),
        }
    });
    match outcome {
        Ok(new) => {
            writer.held.borrow_mut().credential = Credential::Subscriber(Some(token));
            writer.expires.set(Some(new.expires));
            writer.expiry.raise();
            let secs = new
                .expires
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            *cell.grant.borrow_mut() = Some(new);
            let reply = control_frame(&control::reply_refreshed(secs));
            ctx.shard.borrow_mut().reply(id, reply);
        }
        Err(reason) => reply_error(ctx, id, &reason),
    }
    ctx.flush();
}
