//! Imported messages ingested on a worker: taken off the worker's hand-off in
//! batches, arbitrated across exporting relays when `seq_pointer` is set, and
//! ingested as a publisher's would be (never exported again).

use crate::io::nats::{Imported, Position};
use crate::metrics::{now_ns, Hop};
use crate::relay::core::sequence::Numbered;
use crate::relay::core::topic::TopicLookup;
use crate::relay::feed::arbiter::Verdict;
use crate::relay::worker::ingest::Arrival;
use crate::relay::worker::state::WorkerCtx;
use crate::ws::MessageKind;

/// Imported messages a worker takes before its other tasks get a turn.
const IMPORT_BATCH: usize = 256;

impl WorkerCtx {
    /// Ingests up to [`IMPORT_BATCH`] messages imported from NATS as a publisher's
    /// would be (never exported again); returns how many.
    pub(in crate::relay) fn drain_imports(&self) -> usize {
        let Some(queue) = &self.nats_imports else {
            return 0;
        };
        let mut n = 0;
        while n < IMPORT_BATCH {
            let Ok(m) = queue.try_recv() else { break };
            n += 1;
            // The hand-off is its own hop; `ingress` then covers parse, frame, route.
            let read_ns = now_ns();
            self.record(Hop::Import, m.received.elapsed().as_nanos() as u64);
            let kind = kind_of(&m);
            let lookup = self.import_topics.borrow_mut().lookup(&m.payload);
            if self.is_copy(&m, &lookup) {
                continue;
            }
            let at = self.position_of(&m);
            self.ingest_with(kind, &m.payload, lookup, read_ns, Arrival::Imported { at });
        }
        if n > 0 {
            self.flush();
        }
        n
    }

    /// Whether `m` is a copy another exporting relay delivered first (`seq_pointer`
    /// set); counted. Messages without an origin, a topic or a number pass.
    fn is_copy(&self, m: &Imported, lookup: &TopicLookup) -> bool {
        let Some(arbiter) = &self.import_arbiter else {
            return false;
        };
        let seq = self.import_topics.borrow().seq();
        let (Some(topic), Some(line), Some(seq)) = (lookup.name(&m.payload), m.origin, seq) else {
            return false;
        };
        let (verdict, _) = arbiter.borrow_mut().check(line, topic, seq);
        let copy = verdict == Verdict::Duplicate;
        if copy {
            if let Some(c) = &self.nats_counters {
                c.count_import_duplicate();
            }
        }
        copy
    }

    /// Messages read back from the stream's history at start, oldest first: recorded
    /// as their topics' last values and history at their origin's places, not relayed
    /// (no one is connected yet). Returns how many were taken.
    pub(in crate::relay) fn replay_history(&self, history: Vec<Imported>) -> usize {
        let mut taken = 0;
        for m in history {
            let kind = kind_of(&m);
            let lookup = self.import_topics.borrow_mut().lookup(&m.payload);
            let at = self.position_of(&m);
            taken += usize::from(at.is_some());
            self.ingest_with(kind, &m.payload, lookup, now_ns(), Arrival::Replayed { at });
        }
        taken
    }

    /// The place `m` had in its topic's count at its origin, taken as this relay's
    /// unless imports are arbitrated across exporting relays (each has its own count:
    /// the topic is then counted here).
    fn position_of(&self, m: &Imported) -> Option<Numbered> {
        m.position
            .filter(|_| self.import_arbiter.is_none())
            .map(Numbered::from)
    }

    /// Whether imported messages wait for this worker.
    pub(in crate::relay) fn imports_waiting(&self) -> bool {
        self.nats_imports.as_ref().is_some_and(|q| !q.is_empty())
    }
}

/// How an imported message goes out: as its publisher sent it.
fn kind_of(m: &Imported) -> MessageKind {
    match m.binary {
        true => MessageKind::Binary,
        false => MessageKind::Text,
    }
}

/// A place carried over NATS is the relay's own numbering, and back: the two types
/// are one, split only because `io` knows nothing of the relay's core.
impl From<Position> for Numbered {
    fn from(p: Position) -> Numbered {
        Numbered {
            epoch: p.epoch,
            seq: p.seq,
        }
    }
}

impl From<Numbered> for Position {
    fn from(n: Numbered) -> Position {
        Position {
            epoch: n.epoch,
            seq: n.seq,
        }
    }
}
