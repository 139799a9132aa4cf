//! Where a feed message enters the relay, from a `/pub` publisher or an exchange feed
//! line alike: its topic is looked up, it is framed once into a shared `Bytes`, and it
//! is published to the worker's shard (which queues it for local subscribers and names
//! the other workers that want it).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use crate::io::nats::Position;
use crate::metrics::{now_ns, Hop};
use crate::relay::core::events::Notice;
use crate::relay::core::sequence::{envelope_frame, Numbered};
use crate::relay::core::shard::{Handoff, Relayed};
use crate::relay::core::topic::TopicLookup;
use crate::relay::feed::line::{FeedEvent, FeedSink};
use crate::relay::worker::state::WorkerCtx;
use crate::ws::{FrameHeader, MessageKind, RSV1};

impl FeedSink for WorkerCtx {
    fn ingest(&self, kind: MessageKind, payload: &[u8], lookup: TopicLookup, read_ns: u64) {
        let local = Arrival::Local { compressed: None };
        self.ingest_with(kind, payload, lookup, read_ns, local);
    }

    fn end_batch(&self) {
        self.flush();
    }

    fn feed_event(&self, event: FeedEvent) {
        let notice = Arc::new(match event {
            FeedEvent::Health {
                change,
                feed,
                topics,
            } => Notice::health(change.name(), feed, topics),
            FeedEvent::Gap { topic, from, to } => Notice::gap(topic, from, to),
        });
        let mut shard = self.shard.borrow_mut();
        shard.notify(&notice);
        shard.broadcast(|| Handoff::Event(Arc::clone(&notice)));
        drop(shard);
        self.flush();
    }
}

/// Where an ingested message came from, and what that makes of it.
#[derive(Debug, Clone, Copy)]
pub(in crate::relay) enum Arrival<'a> {
    /// From a publisher or a feed line on this worker: offered to NATS when exporting.
    /// `compressed`: as its sender compressed it, when that can be relayed as it came
    /// (each message compressed on its own, with a window the subscribers take).
    Local { compressed: Option<&'a [u8]> },
    /// From NATS (never exported again), at the place its origin gave it in the
    /// topic's count when it carried one: numbered so here too, and not relayed if
    /// this worker already has it.
    Imported { at: Option<Numbered> },
    /// Read back from the stream's history at start: recorded as the topic's last
    /// value and history (at its origin's place), not relayed.
    Replayed { at: Option<Numbered> },
}

impl WorkerCtx {
    /// A message entering the relay: framed once, recorded as its topic's last value
    /// (numbered), offered to NATS, published to the shard; as `arrival` says.
    pub(in crate::relay) fn ingest_with(
        &self,
        kind: MessageKind,
        payload: &[u8],
        lookup: TopicLookup,
        read_ns: u64,
        arrival: Arrival<'_>,
    ) {
        let header_len = FrameHeader::server_header_len(payload.len());
        // The topic is a slice of the shared frame when it appears verbatim in the
        // payload (the common case); otherwise (escapes, default topic) its own bytes.
        let topic = match lookup {
            TopicLookup::InPayload(r) => Ok(header_len + r.start..header_len + r.end),
            TopicLookup::Unescaped(t) => Err(Bytes::from(t)),
            TopicLookup::BadName(_) => {
                self.shard.borrow_mut().drop_bad_topic();
                return;
            }
            TopicLookup::Missing | TopicLookup::NotJson => match &self.default_topic {
                Some(t) => Err(t.clone()),
                None => {
                    self.shard.borrow_mut().drop_no_topic();
                    return;
                }
            },
        };
        // A place is taken as given only for text (binary messages are not counted).
        let at = match arrival {
            Arrival::Imported { at } | Arrival::Replayed { at } if kind == MessageKind::Text => at,
            _ => None,
        };
        // Framed once, into the worker's arena: a shared slice, no allocation.
        let frame = self.frames.borrow_mut().frame(kind.opcode(), payload);
        let topic = match topic {
            Ok(range) => frame.slice(range),
            Err(t) => t,
        };
        if at.is_some_and(|at| self.shard.borrow().last_value_is_behind(&topic, at)) {
            self.count_repeat(arrival);
            return;
        }
        let numbered = self
            .shard
            .borrow_mut()
            .record_last_value(&topic, &frame, at);
        let compressed = match arrival {
            Arrival::Local { compressed } => compressed,
            Arrival::Imported { .. } => None,
            Arrival::Replayed { .. } => return,
        };
        if let Some(exporter) = self
            .nats_export
            .as_ref()
            .filter(|_| matches!(arrival, Arrival::Local { .. }))
        {
            // Two reference counts, no copy: the payload is the frame's tail.
            let binary = matches!(kind, MessageKind::Binary);
            let position = numbered.filter(|_| !binary).map(Position::from);
            exporter.offer(topic.clone(), frame.slice(header_len..), binary, position);
            self.nats_offered.set(true);
        }
        let deflated = self.deflate(kind, &topic, payload, compressed);
        let sequenced = match numbered {
            Some(n) if kind == MessageKind::Text && self.seq_demand.load(Ordering::Relaxed) > 0 => {
                Some(envelope_frame(
                    &mut self.frames.borrow_mut(),
                    &mut self.seq_scratch.borrow_mut(),
                    &topic,
                    n,
                    payload,
                ))
            }
            _ => None,
        };
        let now = now_ns();
        self.record(Hop::Ingress, now.saturating_sub(read_ns));
        self.shard.borrow_mut().publish_recorded(
            Relayed {
                topic,
                frame,
                deflated,
                sequenced,
                number: numbered,
                routed_ns: now,
                origin: self.id,
            },
            now,
        );
    }

    /// Counts a message not taken because this worker already had it at its place.
    fn count_repeat(&self, arrival: Arrival<'_>) {
        if let (Arrival::Imported { .. }, Some(c)) = (arrival, &self.nats_counters) {
            c.count_import_late();
        }
    }

    /// The message compressed once for every subscriber that can take it (or as its
    /// sender compressed it, `given`), framed into the arena, if compression is on and
    /// the message qualifies (see [`compression`](crate::relay::core::compression)).
    fn deflate(
        &self,
        kind: MessageKind,
        topic: &[u8],
        payload: &[u8],
        given: Option<&[u8]>,
    ) -> Option<Bytes> {
        let mut compressor = self.compressor.as_ref()?.borrow_mut();
        // Cheapest first: most messages that go out plain are short.
        if !compressor.long_enough(payload.len()) || !self.shard.borrow().is_wanted(topic) {
            return None;
        }
        let mut stats = self.deflate_stats.borrow_mut();
        if !compressor.qualifies(topic, payload.len(), &mut stats) {
            return None;
        }
        let compressed = match given {
            Some(z) => {
                stats.count_reused(payload.len(), z.len());
                z
            }
            None => {
                let start = now_ns();
                let z = compressor.compress_qualified(payload, &mut stats);
                self.record(Hop::Deflate, now_ns().saturating_sub(start));
                z
            }
        };
        Some(
            self.frames
                .borrow_mut()
                .frame_rsv(kind.opcode(), RSV1, compressed),
        )
    }
}
