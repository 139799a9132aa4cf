//! What a shard hands between workers: a relayed message, interest and its
//! acknowledgements, snapshot requests and answers, the relay's events.

use bytes::Bytes;

use crate::relay::core::routing::{Interest, SubId};

/// A relayed message: its topic (a slice of the frame when possible) and the server
/// frame encoded once, shared by every subscriber's queue.
#[derive(Debug, Clone)]
pub struct Relayed {
    /// Topic name.
    pub topic: Bytes,
    /// The whole frame, header included.
    pub frame: Bytes,
    /// The same message compressed (RSV1 set), for subscribers that negotiated
    /// permessage-deflate with a window as large as the relay's; `None`: not compressed.
    pub deflated: Option<Bytes>,
    /// The same message in its sequence envelope, for `seq=1` subscribers; `None`: no
    /// such subscriber, a binary message, or not numbered.
    pub sequenced: Option<Bytes>,
    /// Its place in its topic's sequence (`None`: not numbered), so a worker can wrap it
    /// for a `seq=1` subscriber when the ingesting worker did not (it had none yet).
    pub number: Option<crate::relay::core::sequence::Numbered>,
    /// When it was routed (metrics clock, ns): the start of the `queue` handoff.
    pub routed_ns: u64,
    /// The worker that ingested it.
    pub origin: usize,
}

/// What travels between workers, on bounded channels.
#[derive(Debug)]
pub enum Handoff {
    /// A message for the receiving worker's subscribers.
    Message(Relayed),
    /// Worker `from` gained (`on`) or lost interest. With `ack`, the receiver answers
    /// with [`Handoff::InterestAck`] so the subscriber's reply waits until every worker
    /// routes the topic to it.
    Interest {
        /// The worker whose interest changed.
        from: usize,
        /// In what.
        interest: Interest,
        /// Gained or lost.
        on: bool,
        /// Acknowledge to subscriber `.0` on worker `from`, generation `.1`.
        ack: Option<(SubId, u64)>,
    },
    /// Answers an `Interest` with `ack`.
    InterestAck {
        /// The subscriber waiting.
        sub: SubId,
        /// Its subscription generation (stale acks are ignored).
        generation: u64,
    },
    /// Worker `from`'s subscriber `sub` wants a snapshot of `interests`: answered with
    /// [`Handoff::Snapshot`] (sent after the `Interest` hand-offs that route them there).
    SnapshotRequest {
        /// The subscriber's worker.
        from: usize,
        /// The subscriber.
        sub: SubId,
        /// Its subscription generation.
        generation: u64,
        /// The topics.
        interests: Vec<Interest>,
        /// The subscriber takes sequence envelopes (`seq=1`).
        sequenced: bool,
        /// Where it resumes from, per topic (empty: a plain snapshot).
        positions: crate::relay::core::sequence::Positions,
    },
    /// An event of the relay's own for the subscribers of `topics` (see
    /// [`events`](crate::relay::core::events)): each gets `frame` once.
    Event(std::sync::Arc<crate::relay::core::events::Notice>),
    /// Worker `origin`'s last values for a [`Handoff::SnapshotRequest`].
    Snapshot {
        /// The subscriber.
        sub: SubId,
        /// Its subscription generation.
        generation: u64,
        /// The answering worker.
        origin: usize,
        /// Its last frame of each topic asked for that it has.
        frames: Vec<Bytes>,
    },
}
