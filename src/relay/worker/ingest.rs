//! Where a feed message enters the relay, from a `/pub` publisher or an exchange feed
//! line alike: its topic is looked up, it is framed once into a shared `Bytes`, and it
//! is published to the worker's shard (which queues it for local subscribers and names
//! the other workers that want it).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use crate::metrics::{now_ns, Hop};
use crate::relay::core::events::Notice;
use crate::relay::core::sequence::envelope_frame;
use crate::relay::core::shard::{Handoff, Relayed};
use crate::relay::core::topic::TopicLookup;
use crate::relay::feed::line::{FeedEvent, FeedSink};
use crate::relay::worker::state::WorkerCtx;
use crate::ws::{FrameHeader, MessageKind, RSV1};

impl FeedSink for WorkerCtx {
    fn ingest(&self, kind: MessageKind, payload: &[u8], lookup: TopicLookup, read_ns: u64) {
        self.ingest_with(kind, payload, lookup, read_ns, None, true);
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

impl WorkerCtx {
    /// A message imported from NATS: ingested as a publisher's, never exported again.
    pub(in crate::relay) fn ingest_imported(
        &self,
        kind: MessageKind,
        payload: &[u8],
        lookup: TopicLookup,
        read_ns: u64,
    ) {
        self.ingest_with(kind, payload, lookup, read_ns, None, false);
    }

    /// [`FeedSink::ingest`], with the message as its sender compressed it when that
    /// can be relayed as it came (`compressed`: the sender compressed each message on
    /// its own, with a window the relay's subscribers take); `export`: offered to NATS
    /// too (when exporting).
    pub(in crate::relay) fn ingest_with(
        &self,
        kind: MessageKind,
        payload: &[u8],
        lookup: TopicLookup,
        read_ns: u64,
        compressed: Option<&[u8]>,
        export: bool,
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
        // Framed once, into the worker's arena: a shared slice, no allocation.
        let frame = self.frames.borrow_mut().frame(kind.opcode(), payload);
        let topic = match topic {
            Ok(range) => frame.slice(range),
            Err(t) => t,
        };
        if let Some(exporter) = self.nats_export.as_ref().filter(|_| export) {
            // Two reference counts, no copy: the payload is the frame's tail.
            let binary = matches!(kind, MessageKind::Binary);
            exporter.offer(topic.clone(), frame.slice(header_len..), binary);
            self.nats_offered.set(true);
        }
        let deflated = self.deflate(kind, &topic, payload, compressed);
        let numbered = self.shard.borrow_mut().record_last_value(&topic, &frame);
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
