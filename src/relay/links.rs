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
//! A receiver takes control hops before data hops. Lock-free on the hot path: a send is
//! one array-slot write, a wake is one relaxed load unless the receiver is parked.

use std::sync::Arc;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender, TrySendError};

use super::shard::Hop;
use crate::io::idle::Parker;

/// Hops a channel between two workers holds; a full channel drops (and counts) rather
/// than stall the publisher. Not yet tuned by a benchmark.
pub const CHANNEL_CAPACITY: usize = 65_536;

/// Hops taken from the inbox before the worker's other tasks get a turn.
pub const INBOX_BATCH: usize = 256;

/// One worker's ends of the channels between workers.
#[derive(Debug)]
pub struct WorkerLinks {
    /// From each other worker: (control, data).
    incoming: Vec<(Receiver<Hop>, Receiver<Hop>)>,
    /// To each worker (none to itself): (control, data).
    outgoing: Vec<Option<(Sender<Hop>, Sender<Hop>)>>,
    parkers: Arc<Vec<Parker>>,
}

/// Builds the channels for `workers` workers, data channels of [`CHANNEL_CAPACITY`].
pub fn links(workers: usize) -> Vec<WorkerLinks> {
    links_with_capacity(workers, CHANNEL_CAPACITY)
}

/// [`links`] with data channels of `capacity` hops.
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
            incoming,
            outgoing,
            parkers: Arc::clone(&parkers),
        })
        .collect()
}

/// Why a hop was not sent.
#[derive(Debug)]
pub enum SendFailed {
    /// The receiver's channel is full; the hop comes back.
    Full(Hop),
    /// The receiver has stopped.
    Gone,
}

impl WorkerLinks {
    /// Sends `hop` to worker `to` without waiting; the receiver is not woken yet (see
    /// [`wake`](Self::wake)). Only a message can come back `Full`.
    pub fn send(&self, to: usize, hop: Hop) -> Result<(), SendFailed> {
        let Some(Some((control, data))) = self.outgoing.get(to) else {
            return Err(SendFailed::Gone);
        };
        let tx = match hop {
            Hop::Message(_) => data,
            Hop::Interest { .. } | Hop::InterestAck { .. } => control,
        };
        tx.try_send(hop).map_err(|e| match e {
            TrySendError::Full(hop) => SendFailed::Full(hop),
            TrySendError::Disconnected(_) => SendFailed::Gone,
        })
    }

    /// Wakes worker `to` if it is parked.
    pub fn wake(&self, to: usize) {
        if let Some(p) = self.parkers.get(to) {
            p.unpark();
        }
    }

    /// Takes up to `max` hops from the other workers, control hops first, handing each
    /// to `each`; returns how many.
    pub fn drain(&self, max: usize, mut each: impl FnMut(Hop)) -> usize {
        let mut n = 0;
        let controls = self.incoming.iter().map(|(c, _)| c);
        let datas = self.incoming.iter().map(|(_, d)| d);
        for rx in controls.chain(datas) {
            while n < max {
                match rx.try_recv() {
                    Ok(hop) => {
                        each(hop);
                        n += 1;
                    }
                    Err(_) => break,
                }
            }
        }
        n
    }

    /// Whether every incoming channel is empty.
    pub fn inbox_empty(&self) -> bool {
        self.incoming
            .iter()
            .all(|(c, d)| c.is_empty() && d.is_empty())
    }

    /// Worker `id`'s own parker (for its idle strategy).
    pub fn parker(&self, id: usize) -> &Parker {
        &self.parkers[id]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::queue::{QueueLimits, SlowConsumerPolicy};
    use crate::relay::shard::{Relayed, Shard, ShardSettings};
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
                max_drop_topics: 8,
            },
        )
    }

    fn message(topic: &'static str) -> Relayed {
        Relayed {
            deflated: None,
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
            for (to, hop) in out.drain(..) {
                if let Err(SendFailed::Full(hop)) = links[from].send(to, hop) {
                    s.count_channel_full(&hop);
                    full += 1;
                }
            }
        }
        let mut taken = 0;
        for (to, s) in shards.iter_mut().enumerate() {
            taken += links[to].drain(usize::MAX, |hop| s.handle_hop(hop, 0));
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
                    .send(to, Hop::Message(message("noise")))
                    .unwrap();
            }
            assert!(matches!(
                links[from].send(to, Hop::Message(message("noise"))),
                Err(SendFailed::Full(_))
            ));
        }
        // A subscriber on worker 0 subscribes; its reply waits for worker 1's ack.
        let sub = shards[0].add_subscriber(false);
        let reply = Bytes::from_static(b"subscribed");
        shards[0]
            .subscribe(sub, &["T".into()], reply.clone())
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
}
