//! Keepalive: every half keepalive interval one sweep over the worker's subscribers
//! pings them (every `keepalive_interval_ms`), closes those silent for longer than
//! the idle timeout, and logs once those whose oldest queued message has waited longer
//! than `slow_subscriber_log_ms` (again only after they caught up).
//!
//! One sweep instead of a timer per subscriber: a timer per wait would cost a clock
//! read and a timer-wheel update per subscriber per message.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::io::rt;
use crate::metrics::now_ns;
use crate::relay::conn::sub_writer::SubWriter;
use crate::relay::core::routing::SubId;
use crate::relay::worker::state::WorkerCtx;
use crate::ws::CloseCode;

/// Runs until the worker is done.
pub(in crate::relay) async fn sweep(ctx: Rc<WorkerCtx>) {
    let period = (ctx.keepalive / 2).max(Duration::from_millis(10));
    let mut ticker = rt::Interval::new(period);
    let mut ping = Vec::new();
    crate::ws::encode_ping(&mut ping, b"", None);
    let ping = Bytes::from(ping);
    let mut last_ping = Instant::now();
    loop {
        ticker.tick().await;
        if ctx.done.get() {
            break;
        }
        let (now, now_ns) = (Instant::now(), now_ns());
        let ping_now = now.duration_since(last_ping) >= ctx.keepalive;
        if ping_now {
            last_ping = now;
        }
        let writers: Vec<(SubId, Rc<SubWriter>)> = ctx
            .writers
            .borrow()
            .iter()
            .enumerate()
            .filter_map(|(id, w)| Some((id, Rc::clone(w.as_ref()?))))
            .collect();
        for (id, w) in writers {
            log_if_behind(&ctx, id, &w, now_ns);
            if now.duration_since(w.last_rx.get()) >= ctx.idle_timeout {
                w.close(CloseCode::GOING_AWAY, "idle timeout", ctx.server.linger);
            } else if ping_now {
                ctx.shard.borrow_mut().reply(id, ping.clone());
            }
        }
        ctx.flush();
    }
}

/// Logs subscriber `id` once when its oldest queued message is older than the
/// configured bound; it may be logged again once it has caught up (half the bound).
fn log_if_behind(ctx: &WorkerCtx, id: SubId, w: &SubWriter, now_ns: u64) {
    let bound_us = ctx.slow_subscriber_log.as_micros() as u64;
    if bound_us == 0 {
        return;
    }
    let Some(lag) = ctx.shard.borrow().lag(id, now_ns) else {
        return;
    };
    if lag.oldest_us >= bound_us && !w.behind.replace(true) {
        tracing::warn!(
            peer = %w.peer(),
            worker = ctx.id,
            queued = lag.queued,
            queued_bytes = lag.queued_bytes,
            oldest_ms = lag.oldest_us / 1_000,
            drops = lag.drops,
            "subscriber behind"
        );
    } else if lag.oldest_us < bound_us / 2 {
        w.behind.set(false);
    }
}
