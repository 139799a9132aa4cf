//! After a reload, the worker's open connections are checked against the new access
//! rules ([`Access::recheck`](crate::relay::access::rules::Access)); those no longer
//! allowed are closed with 1008 and the reason, counted (`feedrelay_revoked_total`)
//! and logged; the rest carry on untouched. Subscribers are found through their
//! writers; publishers register here for the life of their connection
//! (`HeldPublisher`).

use std::rc::Rc;
use std::sync::Arc;

use crate::io::driver::Driver;
use crate::io::rt;
use crate::relay::access::revocation::{Held, Revoked};
use crate::relay::access::rules::Access;
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
/// longer allow; returns how many. Subscribers' JWTs are re-verified on a helper
/// thread, all in one job: 10,000 RS256 checks are half a second of CPU, which must not
/// stall the worker's sockets.
pub(in crate::relay) async fn revoke_disallowed(ctx: &Rc<WorkerCtx>) -> usize {
    let access = ctx.settings.access();
    let mut closed: Vec<(std::net::SocketAddr, &'static str, Revoked)> = Vec::new();
    for (_, (held, driver)) in ctx.held_publishers.borrow().iter() {
        if let Err(why) = access.recheck(held) {
            driver.close(CloseCode::POLICY_VIOLATION, why.reason());
            closed.push((driver.peer(), "publisher", why));
        }
    }
    let writers: Vec<_> = ctx.writers.borrow().iter().flatten().cloned().collect();
    let helds: Arc<Vec<Held>> = Arc::new(writers.iter().map(|w| w.held.borrow().clone()).collect());
    let verdicts = recheck_off_worker(ctx, &access, &helds).await;
    for ((writer, held), verdict) in writers.iter().zip(helds.iter()).zip(verdicts) {
        // Gone meanwhile, or refreshed to another token: not this verdict's to judge.
        if writer.gone.get() || *writer.held.borrow() != *held {
            continue;
        }
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

/// How often a recheck waits for room on the helpers' queue before doing it here.
const RECHECK_TRIES: u32 = 50;

/// [`Access::recheck`] of every one of `helds`, on a helper thread when JWTs are to
/// be verified (on this one when only origins and publisher tokens are: those are
/// string comparisons). If the helpers' queue stays full for a second, here after all.
async fn recheck_off_worker(
    ctx: &WorkerCtx,
    access: &Arc<Access>,
    helds: &Arc<Vec<Held>>,
) -> Vec<Result<(), Revoked>> {
    let here = || helds.iter().map(|h| access.recheck(h)).collect();
    if !access.subscribers_need_tokens() || helds.is_empty() {
        return here();
    }
    for _ in 0..RECHECK_TRIES {
        let (a, h) = (Arc::clone(access), Arc::clone(helds));
        match ctx
            .offload
            .run(move || h.iter().map(|held| a.recheck(held)).collect())
        {
            Ok(pending) => return pending.await,
            Err(_) => rt::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    here()
}
