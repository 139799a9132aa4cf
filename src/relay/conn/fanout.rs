//! The worker's fan-out: one task writes every parked subscriber's queue, through one
//! completion port ([`Port`](crate::io::ring::port::Port)), with no task of the
//! subscriber's own in the loop.
//!
//! A subscriber's writer task ([`writer`](super::writer)) owns its connection's
//! output: replies, close frames, FIN, TLS, per-subscriber compression. But a relayed
//! message costs, per subscriber, a write and its completion, and through a task that
//! is two wake-ups and two polls of the writer's state machine, its transport's lock
//! and write futures, per write: most of the relay's user CPU per delivery (#24). So
//! when a writer task has nothing to write and its connection is plain TCP, open,
//! with no compressor of its own, it *parks* and lets the fan-out write for it:
//!
//! - the worker's flush offers the subscribers whose queues changed; a parked one goes
//!   on the fan-out's ready list (once: while it is listed or has a write in flight,
//!   new frames just wait in its queue), anything else wakes its writer task as before;
//! - the fan-out is a deferred task: it runs after the pass's input, and makes a
//!   chunk ([`DEFERRED_CHUNK`]) of writes per poll, then lets the ring submit them and
//!   read what arrived meanwhile, as the writer tasks' chunks did;
//! - each write drains the queue then (content chosen late), takes the connection's
//!   write turn and its write deadline, and is submitted through the port; the
//!   completions come back as a list, one wake of the fan-out for all of them;
//! - a completion records the egress hop, and lists the subscriber again if more was
//!   queued meanwhile;
//! - anything else (a close to send, the close handshake, the subscriber gone, a write
//!   that failed) hands the connection back to its writer task, which first waits for
//!   the write in flight.
//!
//! [`DEFERRED_CHUNK`]: crate::io::ring::DEFERRED_CHUNK

use std::rc::Rc;

use super::fanout_list::Writing;
use super::sub_writer::SubWriter;
use super::writer::MAX_WRITE_BATCH;
use crate::io::driver::port_write::Written;
use crate::io::rt;
use crate::metrics::Hop;
use crate::relay::core::routing::SubId;
use crate::relay::worker::state::WorkerCtx;
use crate::ws::State;

/// Runs the worker's fan-out for as long as the worker runs.
pub(in crate::relay) async fn run(ctx: Rc<WorkerCtx>) {
    let fanout = &ctx.fanout;
    let mut done = Vec::new();
    loop {
        fanout.port.ready().await;
        loop {
            fanout.port.take(&mut done);
            if !done.is_empty() {
                // When the ring saw these writes done (one clock conversion for all).
                let now = ctx.ring_ns(rt::recent_now());
                for (token, res) in done.drain(..) {
                    completed(&ctx, token, res, now);
                }
            }
            for _ in 0..rt::DEFERRED_CHUNK {
                let next = fanout.ready.borrow_mut().pop_front();
                let Some((id, writer)) = next else {
                    break;
                };
                start(&ctx, id, writer);
            }
            if fanout.ready.borrow().is_empty() {
                break;
            }
            // A chunk of writes per poll: the ring submits them and reads the input
            // that arrived before the fan-out (at the back of the deferred queue)
            // drains the next queues.
            rt::chunk_full();
            rt::yield_now().await;
        }
    }
}

/// Hands the subscriber's output back to its writer task.
fn hand_back(writer: &SubWriter) {
    writer.direct.listed.set(false);
    writer.notify.raise();
}

/// Drains subscriber `id`'s queue into one write and submits it, if it is still the
/// fan-out's to write.
fn start(ctx: &WorkerCtx, id: SubId, writer: Rc<SubWriter>) {
    let d = &writer.direct;
    let ours = d.parked.get() && !d.task_waiting.get() && !writer.gone.get();
    if !ours || writer.driver.state() != State::Open {
        return hand_back(&writer);
    }
    let Some(mut batch) = d.port.begin() else {
        return hand_back(&writer);
    };
    let drained = {
        let mut shard = ctx.shard.borrow_mut();
        match shard.subscriber(id) {
            Some(sub) if sub.close.is_none() => {
                let batch = &mut *batch;
                sub.queue
                    .drain_timed(&mut batch.frames, Some(&mut batch.times), MAX_WRITE_BATCH);
                // A streamed snapshot's next frames, for the next write.
                sub.refill();
                Some(!batch.frames.is_empty())
            }
            _ => None,
        }
    };
    drop(batch);
    match drained {
        Some(true) => {
            let keep = Writing {
                id,
                writer: Rc::clone(&writer),
            };
            match d.port.submit(&ctx.fanout.port, keep) {
                Ok(_) => writer.writing.set(true),
                Err(_) => {
                    d.port.abandon();
                    hand_back(&writer);
                }
            }
        }
        Some(false) => {
            d.port.abandon();
            d.listed.set(false);
        }
        None => {
            d.port.abandon();
            hand_back(&writer);
        }
    }
}

/// A write of the fan-out's completed with `res`, seen by the ring at `now` (metrics
/// clock).
fn completed(ctx: &WorkerCtx, token: usize, res: i32, now: u64) {
    let port = &ctx.fanout.port;
    let written = match port.keep(token) {
        Some(w) => w.writer.direct.port.completed(port, token, res),
        None => return,
    };
    let res = match written {
        Written::Partly => return,
        Written::Done(res) => res,
    };
    let Some(Writing { id, writer }) = port.release(token) else {
        return;
    };
    let d = &writer.direct;
    writer.writing.set(false);
    let frames = d.port.take_times(|t| {
        if t > 0 && res.is_ok() {
            ctx.record(Hop::Egress, now.saturating_sub(t));
        }
    }) as u64;
    if res.is_err() {
        d.failed.set(true);
        return hand_back(&writer);
    }
    let mine = !d.task_waiting.get() && d.parked.get() && !writer.gone.get();
    let more = {
        let mut shard = ctx.shard.borrow_mut();
        shard.stats.messages_out += frames;
        shard.stats.writes_fanout += 1;
        match shard.subscriber(id) {
            Some(sub) if mine && sub.close.is_none() => Some(!sub.queue.is_empty()),
            // Its writer task wants it back, or there is a close to send.
            _ => None,
        }
    };
    match more {
        Some(true) => ctx.fanout.ready.borrow_mut().push_back((id, writer)),
        Some(false) if writer.driver.state() == State::Open => d.listed.set(false),
        // A close to send, or the close handshake under way: the writer task's.
        _ => hand_back(&writer),
    }
}
