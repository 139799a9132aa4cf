//! A subscriber's writer: drains the subscriber's queue into one vectored write at a
//! time, sends the relay's close when asked, and ends the connection's writing side
//! (FIN) when the close handshake is done.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use super::sub_writer::SubWriter;
use crate::io::ring::WriteBatch;
use crate::io::rt;
use crate::metrics::{now_ns, Hop};
use crate::relay::core::compression::FrameCompressor;
use crate::relay::core::routing::SubId;
use crate::relay::worker::state::WorkerCtx;
use crate::ws::{CloseCode, State};

/// Frames per vectored write to one subscriber (IOV_MAX is 1024). Not yet tuned by a
/// benchmark.
pub const MAX_WRITE_BATCH: usize = 64;

/// Frames a new subscriber's write batch has room for; it grows (once) under load, so
/// an idle subscriber does not hold room for [`MAX_WRITE_BATCH`].
const INITIAL_WRITE_BATCH: usize = 4;

/// Replaces each frame of `frames` by its compressed form where it has one.
fn compress_each(ctx: &WorkerCtx, compressor: &mut FrameCompressor, frames: &mut [Bytes]) {
    let mut stats = ctx.deflate_stats.borrow_mut();
    for f in frames {
        let start = now_ns();
        if let Some(z) = compressor.frame(f, &mut stats) {
            *f = z;
            ctx.record(Hop::Deflate, now_ns().saturating_sub(start));
        }
    }
}

/// What the writer takes next.
enum Next {
    /// Frames drained from the queue into the batch (maybe none).
    Frames,
    /// The relay closes the subscriber: what was queued is dropped, our close frame
    /// goes out.
    Close(CloseCode, String),
    /// The subscriber is gone.
    Stop,
}

/// After our close frame: FIN, then the peer gets `linger` to close too (its close
/// frame ends the reader's wait); a peer that does not is cut, so the connection never
/// outlives the linger period (RFC 6455 §7.1.1: the server closes TCP first).
async fn finish(writer: &SubWriter, linger: Duration) {
    writer.driver.finish_writing();
    writer.finished_flag.set(true);
    writer.finished.raise();
    let gone = async {
        while !writer.gone.get() {
            writer.notify.wait().await;
        }
    };
    if rt::timeout(linger, gone).await.is_err() {
        writer.driver.transport().shutdown_both_now();
    }
}

/// Waits for the subscriber's queue to fill. On a plain connection whose frames go
/// out as they are (`direct`), the writer parks: the worker's [`fanout`](super::fanout)
/// writes for it until something needs the writer again, which then waits for the
/// fan-out's write in flight. Returns `false` if one of those writes failed.
async fn park(writer: &SubWriter, direct: bool) -> bool {
    let d = &writer.direct;
    d.parked.set(direct && !writer.driver.transport().is_tls());
    writer.notify.wait().await;
    d.parked.set(false);
    if d.port.in_flight() {
        d.task_waiting.set(true);
        while d.port.in_flight() {
            writer.notify.wait().await;
        }
        d.task_waiting.set(false);
    }
    !d.failed.get()
}

/// Writes the subscriber's queue as it fills; with `own_compressor`
/// (`per_subscriber` compression), each data frame is compressed on the way out.
pub(super) async fn write_loop(
    ctx: Rc<WorkerCtx>,
    id: SubId,
    writer: Rc<SubWriter>,
    mut own_compressor: Option<FrameCompressor>,
) {
    let driver = Rc::clone(&writer.driver);
    let mut batch = WriteBatch::with_capacity(INITIAL_WRITE_BATCH);
    loop {
        let next = if writer.gone.get() {
            Next::Stop
        } else if let Some((code, reason)) = writer.close_now.take() {
            Next::Close(code, reason.into())
        } else {
            // What is queued now is taken now: a wake-up raised before this point
            // would find nothing left to write.
            writer.notify.lower();
            let mut shard = ctx.shard.borrow_mut();
            match shard.subscriber(id) {
                None => Next::Stop,
                Some(sub) => match sub.close.take() {
                    Some((code, reason)) => Next::Close(code, reason),
                    None => {
                        sub.queue.drain_timed(
                            &mut batch.frames,
                            Some(&mut batch.times),
                            MAX_WRITE_BATCH,
                        );
                        // A streamed snapshot's next frames, for the next write.
                        sub.refill();
                        Next::Frames
                    }
                },
            }
        };
        match next {
            Next::Stop => break,
            Next::Close(code, reason) => {
                tracing::debug!(sub = id, %code, reason, "closing subscriber");
                if let Some(sub) = ctx.shard.borrow_mut().subscriber(id) {
                    sub.queue.clear();
                    sub.closing = true;
                }
                driver.close(code, &reason);
                let mut close = Vec::new();
                driver.take_transmit(&mut close);
                batch.frames.clear();
                batch.times.clear();
                batch.frames.push(Bytes::from(close));
                let (res, _) = driver.write_frames(batch).await;
                if res.is_ok() {
                    finish(&writer, ctx.server.linger).await;
                }
                break;
            }
            Next::Frames if batch.frames.is_empty() => {
                if driver.state() != State::Open {
                    // The close handshake started and everything before it is out.
                    finish(&writer, ctx.server.linger).await;
                    break;
                }
                if !park(&writer, own_compressor.is_none()).await {
                    // A write of the fan-out's failed.
                    break;
                }
                continue;
            }
            Next::Frames => {}
        }
        if let Some(c) = own_compressor.as_mut() {
            compress_each(&ctx, c, &mut batch.frames);
        }
        let frames = batch.frames.len() as u64;
        writer.writing.set(true);
        // Straight to the transport: only whether the write failed matters here, and
        // the driver's error mapping would be one more future per write.
        let (res, back) = driver.transport().write_frames(batch).await;
        writer.writing.set(false);
        batch = back;
        if res.is_err() {
            break;
        }
        // When the ring saw the write done (no clock read per write).
        let now = ctx.ring_ns(rt::recent_now());
        for &t in batch.times.iter().filter(|&&t| t > 0) {
            ctx.record(Hop::Egress, now.saturating_sub(t));
        }
        batch.times.clear();
        let mut shard = ctx.shard.borrow_mut();
        shard.stats.messages_out += frames;
        shard.stats.writes_writer += 1;
    }
    writer.finished_flag.set(true);
    writer.finished.raise();
    if !writer.gone.get() {
        // A failed write: make sure the reader sees the end too.
        if driver.state() == State::Open {
            driver.transport().shutdown_both_now();
        }
    }
}
