//! A snapshot larger than the subscriber's queue, streamed: what does not fit waits
//! here and moves into the queue as the writer drains it, so a `*` snapshot of 100,000
//! topics reaches a subscriber with a queue of 4,096 instead of closing it 1008. Live
//! messages (and replies) that come meanwhile wait behind it, in order; live ones at
//! most the queue's bound in number (more are dropped and counted, as a full queue
//! would). Live messages that waited here are not timed on the egress hop.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::relay::core::queue::SubscriberQueue;

/// Frames waiting for room in a subscriber's queue, in the order they go out.
#[derive(Debug)]
pub(super) struct Backlog {
    /// Each frame, and whether it is a live message (bounded) or snapshot/reply.
    frames: VecDeque<(Bytes, bool)>,
    live: usize,
    max_live: usize,
}

impl Backlog {
    /// The frames `rest` (a snapshot's tail), with room for `max_live` live ones after.
    pub(super) fn new(rest: impl IntoIterator<Item = Bytes>, max_live: usize) -> Backlog {
        Backlog {
            frames: rest.into_iter().map(|f| (f, false)).collect(),
            live: 0,
            max_live,
        }
    }

    /// A live message after what waits; false: over the bound, dropped.
    pub(super) fn push_live(&mut self, frame: Bytes) -> bool {
        if self.live >= self.max_live {
            return false;
        }
        self.live += 1;
        self.frames.push_back((frame, true));
        true
    }

    /// A reply or event of ours, after what waits.
    pub(super) fn push_control(&mut self, frame: Bytes) {
        self.frames.push_back((frame, false));
    }

    /// Moves what fits into `queue`; returns how many frames were dropped because one
    /// would not fit even in the empty queue (larger than its byte bound).
    pub(super) fn refill(&mut self, queue: &mut SubscriberQueue) -> u64 {
        let mut dropped = 0;
        while let Some((frame, live)) = self.frames.pop_front() {
            if !queue.push_control(frame.clone()) {
                if queue.is_empty() {
                    dropped += 1;
                    self.live -= usize::from(live);
                    continue;
                }
                self.frames.push_front((frame, live));
                break;
            }
            self.live -= usize::from(live);
        }
        dropped
    }

    /// Whether nothing waits.
    pub(super) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}
