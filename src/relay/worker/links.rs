//! The channels between workers: two `crossbeam-channel`s per ordered pair of workers,
//! and each worker's [`Parker`] so a sender can wake a parked receiver.
//!
//! - Data: relayed messages, bounded ([`CHANNEL_CAPACITY`]). A full one drops, and
//!   counts, rather than stall the publisher.
//! - Control: interest updates and their acknowledgements, unbounded, so they are never
//!   lost however full the data channel is (a lost one would leave a subscriber
//!   without its reply or its data). They are few: one per topic a worker starts or
//!   stops wanting, bounded by the subscription limits, never one per message.
//!
//! A receiver takes control hand-offs before data hand-offs, except a snapshot answer
//! ([`Handoff::Snapshot`]), which must arrive in order with the data its sender sent around
//! it (what came before is older than the snapshot, what came after is live). Every handoff
//! on a link carries the link's sequence number, and the receiver merges a worker's two
//! channels by it for snapshot answers. Lock-free on the hot path: a send is one
//! array-slot write, a wake is one relaxed load unless the receiver is parked.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender, TrySendError};

use crate::io::idle::Parker;
use crate::relay::core::shard::Handoff;

/// Hand-offs a channel between two workers holds; a full channel drops (and counts) rather
/// than stall the publisher. Not yet tuned by a benchmark.
pub const CHANNEL_CAPACITY: usize = 65_536;

/// Hand-offs taken from the inbox before the worker's other tasks get a turn.
pub const INBOX_BATCH: usize = 256;

/// A handoff and its link sequence number.
type Numbered = (u64, Handoff);

/// One worker's ends of the channels between workers.
#[derive(Debug)]
pub struct WorkerLinks {
    /// From each other worker: (control, data).
    incoming: Vec<(Receiver<Numbered>, Receiver<Numbered>)>,
    /// Per incoming link, a handoff taken off each channel and not handled yet (the merge's
    /// look-ahead).
    held: RefCell<Vec<(Option<Numbered>, Option<Numbered>)>>,
    /// To each worker (none to itself): (control, data).
    outgoing: Vec<Option<(Sender<Numbered>, Sender<Numbered>)>>,
    /// The next sequence number on each outgoing link.
    sent: Vec<Cell<u64>>,
    parkers: Arc<Vec<Parker>>,
}

/// Builds the channels for `workers` workers, data channels of [`CHANNEL_CAPACITY`].
pub fn links(workers: usize) -> Vec<WorkerLinks> {
    links_with_capacity(workers, CHANNEL_CAPACITY)
}

/// [`links`] with data channels of `capacity` hand-offs.
pub fn links_with_capacity(workers: usize, capacity: usize) -> Vec<WorkerLinks> {
    let parkers: Arc<Vec<Parker>> = Arc::new((0..workers).map(|_| Parker::default()).collect());
    let mut incoming: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
    let mut outgoing: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
    for (from, out) in outgoing.iter_mut().enumerate() {
        for (to, inc) in incoming.iter_mut().enumerate() {
            if from == to {
                out.push(None);
            } else {
                let (control_tx, control_rx) = unbounded();
                let (data_tx, data_rx) = bounded(capacity);
                out.push(Some((control_tx, data_tx)));
                inc.push((control_rx, data_rx));
            }
        }
    }
    incoming
        .into_iter()
        .zip(outgoing)
        .map(|(incoming, outgoing)| WorkerLinks {
            held: RefCell::new(incoming.iter().map(|_| (None, None)).collect()),
            incoming,
            sent: outgoing.iter().map(|_| Cell::new(0)).collect(),
            outgoing,
            parkers: Arc::clone(&parkers),
        })
        .collect()
}

/// Why a handoff was not sent.
#[derive(Debug)]
pub enum SendFailed {
    /// The receiver's channel is full; the handoff comes back.
    Full(Handoff),
    /// The receiver has stopped.
    Gone,
}

impl WorkerLinks {
    /// Sends `handoff` to worker `to` without waiting; the receiver is not woken yet (see
    /// [`wake`](Self::wake)). Only a message can come back `Full`.
    // The hop comes back whole to be counted by topic; boxing it would allocate on the
    // overload path, when the channel is full.
    #[allow(clippy::result_large_err)]
    pub fn send(&self, to: usize, handoff: Handoff) -> Result<(), SendFailed> {
        let Some(Some((control, data))) = self.outgoing.get(to) else {
            return Err(SendFailed::Gone);
        };
        let tx = match handoff {
            Handoff::Message(_) => data,
            Handoff::Interest { .. }
            | Handoff::InterestAck { .. }
            | Handoff::SnapshotRequest { .. }
            | Handoff::Event(_)
            | Handoff::Snapshot { .. } => control,
        };
        let seq = &self.sent[to];
        let n = seq.get();
        match tx.try_send((n, handoff)) {
            Ok(()) => {
                seq.set(n + 1);
                Ok(())
            }
            Err(TrySendError::Full((_, handoff))) => Err(SendFailed::Full(handoff)),
            Err(TrySendError::Disconnected(_)) => Err(SendFailed::Gone),
        }
    }

    /// Wakes worker `to` if it is parked.
    pub fn wake(&self, to: usize) {
        if let Some(p) = self.parkers.get(to) {
            p.unpark();
        }
    }

    /// Takes up to `max` hand-offs from the other workers, handing each to `each`; returns
    /// how many. From each worker, control hand-offs come before data hand-offs, except that a
    /// snapshot answer waits for the data hand-offs sent before it.
    pub fn drain(&self, max: usize, mut each: impl FnMut(Handoff)) -> usize {
        let mut n = 0;
        let mut held = self.held.borrow_mut();
        for ((control, data), (c, d)) in self.incoming.iter().zip(held.iter_mut()) {
            while n < max {
                let Some(handoff) = next_in_order(control, data, c, d) else {
                    break;
                };
                each(handoff);
                n += 1;
            }
        }
        n
    }

    /// Whether every incoming channel is empty and nothing is held.
    pub fn inbox_empty(&self) -> bool {
        let held = self.held.borrow();
        self.incoming
            .iter()
            .all(|(c, d)| c.is_empty() && d.is_empty())
            && held.iter().all(|(c, d)| c.is_none() && d.is_none())
    }

    /// Worker `id`'s own parker (for its idle strategy).
    pub fn parker(&self, id: usize) -> &Parker {
        &self.parkers[id]
    }

    /// Every worker's parker, for a thread that hands work to the workers (NATS).
    pub fn parkers(&self) -> Arc<Vec<Parker>> {
        Arc::clone(&self.parkers)
    }
}

/// The next handoff of one link: a control handoff first, unless it is a snapshot answer and a
/// data handoff sent before it is there. `c` and `d` hold what was taken off each channel
/// and not handed out yet.
///
/// Why one look at each channel is enough: a handoff visible on one channel means every handoff
/// its sender sent before it, on either channel, is visible too (the channels order
/// the sender's writes before the receiver's read); so control is looked at again after
/// data is, and data after control.
fn next_in_order(
    control: &Receiver<Numbered>,
    data: &Receiver<Numbered>,
    c: &mut Option<Numbered>,
    d: &mut Option<Numbered>,
) -> Option<Handoff> {
    if c.is_none() {
        *c = control.try_recv().ok();
    }
    if d.is_none() {
        *d = data.try_recv().ok();
        if d.is_some() && c.is_none() {
            *c = control.try_recv().ok();
        }
    }
    let control_first = match (&*c, &*d) {
        (None, None) => return None,
        (Some(_), None) => true,
        (None, Some(_)) => false,
        (Some((cs, Handoff::Snapshot { .. })), Some((ds, _))) => cs < ds,
        (Some(_), Some(_)) => true,
    };
    let taken = if control_first { c.take() } else { d.take() };
    taken.map(|(_, handoff)| handoff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::core::queue::{QueueLimits, SlowConsumerPolicy};
    use crate::relay::core::shard::{Relayed, Shard, ShardSettings};
    use bytes::Bytes;

    fn shard(worker: usize) -> Shard {
        Shard::new(
            worker,
            2,
            ShardSettings {
                queue: QueueLimits {
                    max_messages: 16,
                    max_bytes: 1 << 20,
                },
                policy: SlowConsumerPolicy::Drop,
                topic_policies: Default::default(),
                max_subscriptions: 8,
                subscription_budget: crate::relay::core::budget::SubscriptionBudget::new(1 << 20),
                max_drop_topics: 8,
                last_value_max_topics: 8,
                last_value_max_bytes: 1 << 16,
                epoch_base: 0,
                history_per_topic: 0,
            },
        )
    }

    fn message(topic: &'static str) -> Relayed {
        Relayed {
            deflated: None,
            sequenced: None,
            number: None,
            origin: 0,
            topic: Bytes::from_static(topic.as_bytes()),
            frame: Bytes::from_static(b"\x81\x01x"),
            routed_ns: 0,
        }
    }

    /// Moves each shard's outbox over the links, then lets each take its inbox.
    fn exchange(shards: &mut [Shard; 2], links: &[WorkerLinks]) -> (usize, usize) {
        let mut full = 0;
        let mut out = Vec::new();
        for (from, s) in shards.iter_mut().enumerate() {
            s.take_outbox(&mut out);
            for (to, handoff) in out.drain(..) {
                if let Err(SendFailed::Full(handoff)) = links[from].send(to, handoff) {
                    s.count_channel_full(&handoff);
                    full += 1;
                }
            }
        }
        let mut taken = 0;
        for (to, s) in shards.iter_mut().enumerate() {
            taken += links[to].drain(usize::MAX, |handoff| s.handle_handoff(handoff, 0));
        }
        (full, taken)
    }

    #[test]
    fn interest_gets_through_full_data_channels_and_is_answered() {
        let links = links_with_capacity(2, 4);
        let mut shards = [shard(0), shard(1)];
        // Fill both data channels.
        for (from, to) in [(0, 1), (1, 0)] {
            for _ in 0..4 {
                links[from]
                    .send(to, Handoff::Message(message("noise")))
                    .unwrap();
            }
            assert!(matches!(
                links[from].send(to, Handoff::Message(message("noise"))),
                Err(SendFailed::Full(_))
            ));
        }
        // A subscriber on worker 0 subscribes; its reply waits for worker 1's ack.
        let sub = shards[0].add_subscriber(false, true);
        let reply = Bytes::from_static(b"subscribed");
        shards[0]
            .subscribe(sub, &["T".into()], reply.clone(), false)
            .unwrap();
        assert!(shards[0].subscriber(sub).unwrap().queue.is_empty());
        let (full, _) = exchange(&mut shards, &links); // interest 0 -> 1
        assert_eq!(full, 0, "interest is never refused");
        let (full, _) = exchange(&mut shards, &links); // ack 1 -> 0
        assert_eq!(full, 0);
        let queued = shards[0].subscriber(sub).unwrap().queue.len();
        assert_eq!(queued, 1, "the reply arrived: every worker routes T to us");
        // And it is served: worker 1 now hands T to worker 0.
        shards[1].publish(message("T"), 0);
        exchange(&mut shards, &links);
        assert_eq!(shards[0].subscriber(sub).unwrap().queue.len(), 2);
    }

    #[test]
    fn a_snapshot_answer_keeps_its_place_among_data_other_control_hops_go_first() {
        let links = links(2);
        let m = |body: &'static str| {
            Handoff::Message(Relayed {
                origin: 1,
                ..message(body)
            })
        };
        let snapshot = Handoff::Snapshot {
            sub: 0,
            generation: 1,
            origin: 1,
            frames: vec![],
        };
        let ack = Handoff::InterestAck {
            sub: 0,
            generation: 1,
        };
        for handoff in [m("d1"), snapshot, m("d2"), ack, m("d3")] {
            links[1].send(0, handoff).unwrap();
        }
        let mut order = Vec::new();
        links[0].drain(usize::MAX, |handoff| {
            order.push(match handoff {
                Handoff::Message(r) => String::from_utf8_lossy(&r.topic).into_owned(),
                Handoff::Snapshot { .. } => "snapshot".into(),
                Handoff::InterestAck { .. } => "ack".into(),
                _ => "other".into(),
            })
        });
        assert_eq!(order, ["d1", "snapshot", "ack", "d2", "d3"]);
        assert!(links[0].inbox_empty());
    }
}
