//! A shard's side of snapshots (see [`snapshot`](crate::relay::core::snapshot)): a
//! subscription that starts with the last values, this worker's at once and the other
//! workers' on their answers; the answers this worker gives them; and a complete
//! snapshot queued, streamed when it is larger than the queue ([`backlog`](super::backlog)).

use bytes::Bytes;

use super::backlog::Backlog;
use super::{Handoff, Shard};
use crate::relay::core::last_value::Since;
use crate::relay::core::routing::{Interest, SubId, WorkerMask};
use crate::relay::core::sequence::{enveloped_frame, reset_event, Numbered, Positions};
use crate::relay::core::snapshot::PendingSnapshot;

impl Shard {
    /// [`subscribe`](Self::subscribe) with a snapshot of `new` (see
    /// [`snapshot`](crate::relay::core::snapshot)): this worker's last values now, the others' on
    /// their answers; the reply, the snapshot and the held messages once all are in.
    pub(super) fn subscribe_with_snapshot(
        &mut self,
        id: SubId,
        new: Vec<Interest>,
        generation: u64,
        reply: Bytes,
        positions: Positions,
    ) {
        let sequenced = self
            .subs
            .get(id)
            .and_then(Option::as_ref)
            .is_some_and(|s| s.sequenced);
        let frames = self.cached(&new, sequenced, &positions);
        let others: WorkerMask = (0..self.workers)
            .filter(|&w| w != self.worker)
            .fold(0, |m, w| m | 1 << w);
        for interest in &new {
            if self.routing.subscribe(id, interest) {
                self.outbox_interest(interest.clone(), true, None);
            }
        }
        for w in (0..self.workers).filter(|&w| w != self.worker) {
            self.outbox.push((
                w,
                Handoff::SnapshotRequest {
                    from: self.worker,
                    sub: id,
                    generation,
                    interests: new.clone(),
                    sequenced,
                    positions: Positions::clone(&positions),
                },
            ));
        }
        let max_held = self.settings.queue.max_messages;
        let pending = PendingSnapshot::new(generation, others, &new, frames, reply, max_held);
        self.stats.snapshots += 1;
        if others == 0 {
            self.finish_snapshot(id, pending);
        } else if let Some(sub) = self.subs.get_mut(id).and_then(Option::as_mut) {
            sub.snapshot = Some(Box::new(pending));
        }
    }

    /// The last values this worker has for `interests` (every topic for `*`).
    /// In sequence envelopes for a `seq=1` subscriber (text messages; binary ones as
    /// they are), so the snapshot tells it where each topic's count stands.
    /// A topic in `positions` resumes from there: what came after, or a `reset` event
    /// and the last message.
    fn cached(&self, interests: &[Interest], sequenced: bool, positions: &Positions) -> Vec<Bytes> {
        if !positions.is_empty() {
            return self.resumed(interests, positions);
        }
        // As the subscriber takes it: in its envelope for `seq=1`, as it came otherwise.
        let taken = |t: &Bytes, f: Bytes, n| match sequenced {
            true => enveloped_frame(t, &f, Some(n)),
            false => f,
        };
        if interests.contains(&Interest::All) {
            return self
                .cache
                .all_numbered()
                .map(|(t, f, n)| taken(t, f, n))
                .collect();
        }
        interests
            .iter()
            .filter_map(|i| match i {
                Interest::Topic(t) => self.cache.get_numbered(t).map(|(f, n)| taken(t, f, n)),
                Interest::All => None,
            })
            .collect()
    }

    /// Queues a complete snapshot: the reply, the last values, what was held. What
    /// does not fit in the queue is streamed ([`backlog`]) as the writer drains it.
    fn finish_snapshot(&mut self, id: SubId, pending: PendingSnapshot) {
        let max_live = self.settings.queue.max_messages;
        let Some(sub) = self.subs.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        let was_empty = sub.queue.is_empty();
        let mut frames = pending.into_frames();
        if let Some(b) = sub.backlog.as_mut() {
            // Still streaming an earlier one: this one goes behind it.
            frames.for_each(|f| b.push_control(f));
            return;
        }
        for frame in frames.by_ref() {
            if !sub.queue.push_control(frame.clone()) {
                let rest = std::iter::once(frame).chain(frames);
                sub.backlog = Some(Box::new(Backlog::new(rest, max_live)));
                sub.refill();
                break;
            }
        }
        if was_empty {
            self.dirty.push(id);
        }
    }

    /// Another worker asks for this one's last values of `interests`.
    pub(super) fn answer_snapshot_request(
        &mut self,
        from: usize,
        sub: SubId,
        generation: u64,
        interests: &[Interest],
        sequenced: bool,
        positions: &Positions,
    ) {
        let frames = self.cached(interests, sequenced, positions);
        let origin = self.worker;
        self.outbox.push((
            from,
            Handoff::Snapshot {
                sub,
                generation,
                origin,
                frames,
            },
        ));
    }

    /// Worker `origin`'s answer to `sub`'s snapshot of `generation`.
    pub(super) fn snapshot_answered(
        &mut self,
        sub: SubId,
        generation: u64,
        origin: usize,
        frames: Vec<Bytes>,
    ) {
        let Some(s) = self.subs.get_mut(sub).and_then(Option::as_mut) else {
            return;
        };
        let complete = match s.snapshot.as_mut() {
            Some(p) if p.generation == generation => p.answered(origin, frames),
            _ => return,
        };
        if complete {
            if let Some(p) = s.snapshot.take() {
                self.finish_snapshot(sub, *p);
            }
        }
    }

    /// [`cached`](Self::cached) for a resuming subscriber (always `seq=1`).
    fn resumed(&self, interests: &[Interest], positions: &Positions) -> Vec<Bytes> {
        let mut frames = Vec::new();
        // `*`: every topic this worker holds (named ones among them), each resumed where
        // the positions say.
        let all: Vec<Interest>;
        let topics = if interests.contains(&Interest::All) {
            all = self
                .cache
                .all_numbered()
                .map(|(t, _, _)| Interest::Topic(t.clone()))
                .collect();
            &all[..]
        } else {
            interests
        };
        for i in topics {
            let Interest::Topic(t) = i else { continue };
            let Some(&from) = positions.get(t) else {
                if let Some((f, n)) = self.cache.get_numbered(t) {
                    frames.push(enveloped_frame(t, &f, Some(n)));
                }
                continue;
            };
            match self.cache.since(t, from) {
                Since::Messages(after) => frames.extend(after.into_iter().map(|(seq, f)| {
                    let n = Numbered {
                        epoch: from.epoch,
                        seq,
                    };
                    enveloped_frame(t, &f, Some(n))
                })),
                Since::Reset(now, last) => {
                    frames.push(reset_event(t, now));
                    frames.push(enveloped_frame(t, &last, Some(now)));
                }
                Since::Unknown => {}
            }
        }
        frames
    }
}
