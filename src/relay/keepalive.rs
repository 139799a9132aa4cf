//! Keepalive: every half keepalive interval one sweep over the worker's subscribers
//! pings them (every `keepalive_interval_ms`) and closes those silent for longer than
//! the idle timeout.
//!
//! One sweep instead of a timer per subscriber: a timer per wait would cost a clock
//! read and a timer-wheel update per subscriber per message.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::routing::SubId;
use super::subscriber::SubWriter;
use super::worker::WorkerCtx;
use crate::io::rt;
use crate::ws::CloseCode;

/// Runs until the worker is done.
pub(super) async fn sweep(ctx: Rc<WorkerCtx>) {
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
        let now = Instant::now();
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
            if now.duration_since(w.last_rx.get()) >= ctx.idle_timeout {
                w.close(CloseCode::GOING_AWAY, "idle timeout", ctx.server.linger);
            } else if ping_now {
                ctx.shard.borrow_mut().reply(id, ping.clone());
            }
        }
        ctx.flush();
    }
}
