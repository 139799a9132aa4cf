//! The channels between workers: one bounded `crossbeam-channel` per ordered pair of
//! workers, carrying [`Hop`]s (relayed messages and interest updates), and each
//! worker's [`Parker`] so a sender can wake a parked receiver.
//!
//! Lock-free on the hot path: a send is one array-slot write, a wake is one relaxed load
//! unless the receiver is parked.

use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

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
    incoming: Vec<Receiver<Hop>>,
    outgoing: Vec<Option<Sender<Hop>>>,
    parkers: Arc<Vec<Parker>>,
}

/// Builds the channels for `workers` workers: one bounded channel per ordered pair.
pub fn links(workers: usize) -> Vec<WorkerLinks> {
    let parkers: Arc<Vec<Parker>> = Arc::new((0..workers).map(|_| Parker::default()).collect());
    let mut incoming: Vec<Vec<Receiver<Hop>>> = (0..workers).map(|_| Vec::new()).collect();
    let mut outgoing: Vec<Vec<Option<Sender<Hop>>>> = (0..workers).map(|_| Vec::new()).collect();
    for (from, out) in outgoing.iter_mut().enumerate() {
        for (to, inc) in incoming.iter_mut().enumerate() {
            if from == to {
                out.push(None);
            } else {
                let (tx, rx) = bounded(CHANNEL_CAPACITY);
                out.push(Some(tx));
                inc.push(rx);
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
    /// [`wake`](Self::wake)).
    pub fn send(&self, to: usize, hop: Hop) -> Result<(), SendFailed> {
        let Some(Some(tx)) = self.outgoing.get(to) else {
            return Err(SendFailed::Gone);
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

    /// Takes up to `max` hops from the other workers, in channel order, handing each to
    /// `each`; returns how many.
    pub fn drain(&self, max: usize, mut each: impl FnMut(Hop)) -> usize {
        let mut n = 0;
        for rx in &self.incoming {
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
        self.incoming.iter().all(|rx| rx.is_empty())
    }

    /// Worker `id`'s own parker (for its idle strategy).
    pub fn parker(&self, id: usize) -> &Parker {
        &self.parkers[id]
    }
}
