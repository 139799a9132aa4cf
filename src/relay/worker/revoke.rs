//! After a reload, the worker's open connections are checked against the new access
//! rules ([`Access::recheck`](crate::relay::access::rules::Access)); those no longer
//! allowed are closed with 1008 and the reason, counted (`feedrelay_revoked_total`)
//! and logged; the rest carry on untouched. Subscribers are found through their
//! writers; publishers register here for the life of their connection
//! ([`HeldPublisher`]).

use std::rc::Rc;

use crate::io::driver::Driver;
use crate::relay::access::revocation::{Held, Revoked};
use crate::relay::worker::state::WorkerCtx;
use crate::ws::CloseCode;

/// A publisher's entry among the worker's open publishers, removed when dropped.
pub(in crate::relay) struct HeldPublisher {
    ctx: Rc<WorkerCtx>,
    key: usize,
}

impl HeldPublisher {
    /// Registers a publisher admitted with `held`, whose connection is `driver`.
    pub(in crate::relay) fn enter(ctx: &Rc<WorkerCtx>, held: Held, driver: Rc<Driver>) -> Self {
        let key = ctx.held_publishers.borrow_mut().insert((held, driver));
        HeldPublisher {
            ctx: Rc::clone(ctx),
            key,
        }
    }
}

impl Drop for HeldPublisher {
    fn drop(&mut self) {
        if let Ok(mut held) = self.ctx.held_publishers.try_borrow_mut() {
            held.try_remove(self.key);
        }
    }
}

/// Closes every connection on this worker that the access rules now in force no
/// longer allow; returns how many.
pub(in crate::relay) fn revoke_disallowed(ctx: &Rc<WorkerCtx>) -> usize {
    let access = ctx.settings.access();
    let mut closed: Vec<(std::net::SocketAddr, &'static str, Revoked)> = Vec::new();
    for (_, (held, driver)) in ctx.held_publishers.borrow().iter() {
        if let Err(why) = access.recheck(held) {
            driver.close(CloseCode::POLICY_VIOLATION, why.reason());
            closed.push((driver.peer(), "publisher", why));
        }
    }
    let writers: Vec<_> = ctx.writers.borrow().iter().flatten().cloned().collect();
    for writer in writers {
        let verdict = access.recheck(&writer.held.borrow());
        if let Err(why) = verdict {
            writer.close(CloseCode::POLICY_VIOLATION, why.reason(), ctx.server.linger);
            closed.push((writer.peer(), "subscriber", why));
        }
    }
    let mut counts = ctx.access_counts.borrow_mut();
    for (peer, side, why) in &closed {
        counts.count_revoked(*why);
        tracing::info!(%peer, side, reason = why.reason(), "closed after the reload: no longer allowed");
    }
    closed.len()
}
