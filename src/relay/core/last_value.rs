//! The last message of each topic a worker ingested: what a subscriber that asks for a
//! snapshot receives before the live stream.
//!
//! Bounded in topics and bytes (`last_value_max_topics`, `last_value_max_bytes`): an
//! update that does not fit evicts the least recently updated topics until it does
//! (counted), so the cache never serves an older message of a topic as its latest. A
//! frame larger than the whole byte bound is not cached, and the topic's older entry
//! is dropped with it (counted). Each entry is a copy of the
//! frame, never the frame itself (a relayed frame is a slice of a 64 KiB arena chunk
//! that it would keep alive); the copy's memory is reused in place when no queue still
//! holds the previous one, so updating a topic's entry allocates nothing.
//!
//! Recency is a list through the entries themselves: each entry names the entry
//! updated just before it and the one just after, by its place in a slab. An update
//! moves its entry to the newest end (four links rewritten, no lookup, no reference
//! count); eviction takes the oldest end. Why not a queue of (update, topic) records
//! with stale ones skipped: keeping that queue short meant a hash lookup per record,
//! about a third of an update's cost (issue #24, twelfth pass).

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use slab::Slab;

use super::history::History;
use super::sequence::Numbered;

/// The memory an entry takes for a frame of `len` bytes: the next power of two, so a
/// topic whose messages grow by a byte now and then (a counter gaining a digit) does
/// not allocate each time. The byte bound counts frames, so memory is at most twice it.
fn room_for(len: usize) -> usize {
    len.next_power_of_two().max(64)
}

/// Whether `frame` (a whole server frame) is a text message.
fn is_text(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 0x0f == 0x1)
}

/// One topic's entry.
#[derive(Debug)]
struct Entry {
    /// The last frame, shared with the queues a snapshot put it in.
    frame: Bytes,
    /// The memory the next copy goes into (reclaimed once `frame`'s clones are gone).
    spare: BytesMut,
    /// Its topic (the map's key, shared), to drop it from the map when evicted.
    key: Bytes,
    /// The entry updated just before it and the one just after ([`NONE`] at the ends).
    older: usize,
    newer: usize,
    /// The topic's relay sequence: this entry's count ([`sequence`](super::sequence)).
    number: Numbered,
    /// Its last text messages, to resume from ([`history`](super::history)).
    history: History,
    /// Its count is its origin's (the last update came with a place).
    adopted: bool,
}

impl Entry {
    /// The bytes it counts against the bound: its frame and its history.
    fn bytes(&self) -> usize {
        self.frame.len() + self.history.bytes()
    }

    /// Takes `frame` as the topic's last (and into its history, kept to `history`
    /// messages when given); its place in the sequence.
    fn take(&mut self, frame: &[u8], next: Next, history: Option<usize>) -> Numbered {
        // Drop our reference first, so the spare reclaims its memory when no queue
        // holds the old frame any more.
        self.frame = Bytes::new();
        if !self.spare.try_reclaim(frame.len()) {
            self.spare = BytesMut::with_capacity(room_for(frame.len()));
        }
        self.spare.extend_from_slice(frame);
        self.frame = self.spare.split().freeze();
        match next {
            Next::Count(counted) => self.number.seq += counted,
            Next::At(at) => {
                // Another count, or a hole in this one: what is kept no longer runs
                // without a gap up to `at`, so a resume from before it must be a reset.
                if at.epoch != self.number.epoch || at.seq != self.number.seq + 1 {
                    self.history.clear();
                }
                self.number = at;
                self.adopted = true;
            }
        }
        if let Some(k) = history {
            self.history.push(self.number.seq, frame, k);
        }
        self.number
    }
}

/// Before a message counted here goes into `e`: an entry whose count was its origin's
/// starts a count of this worker's own, in a new epoch (`epoch`, then advanced), its
/// history forgotten (`bytes`: the cache's total, kept). Counting on in the origin's
/// epoch would give numbers the origin gives too, and its next message would be taken
/// for a copy already held.
fn own_count(e: &mut Entry, next: Next, epoch: &mut u64, bytes: &mut usize) {
    if e.adopted && matches!(next, Next::Count(_)) {
        *bytes -= e.history.bytes();
        e.history.clear();
        e.number = Numbered {
            epoch: *epoch,
            seq: 0,
        };
        *epoch = epoch.wrapping_add(1);
        e.adopted = false;
    }
}

/// How an update takes its place in the topic's sequence.
#[derive(Debug, Clone, Copy)]
enum Next {
    /// The next of this worker's own count (by 1 for text, 0 for binary).
    Count(u64),
    /// The place its origin gave it (an import that carried its exporter's position).
    At(Numbered),
}

/// Where a subscriber that resumes from a position picks up, from one worker's cache.
#[derive(Debug, PartialEq, Eq)]
pub enum Since {
    /// The messages after the position (none if it is up to date), oldest first.
    Messages(Vec<(u64, Bytes)>),
    /// The history does not reach back, or the epoch is another: the count now, and the
    /// last message (to be sent after a `reset` event).
    Reset(Numbered, Bytes),
    /// This worker does not hold the topic.
    Unknown,
}

/// The end of the recency list: no entry.
const NONE: usize = usize::MAX;

/// One worker's last-value cache.
#[derive(Debug)]
pub struct LastValues {
    /// Each topic's place in `entries`.
    by_topic: HashMap<Bytes, usize>,
    entries: Slab<Entry>,
    /// The least and the most recently updated entries ([`NONE`] when empty).
    oldest: usize,
    newest: usize,
    bytes: usize,
    max_topics: usize,
    max_bytes: usize,
    /// Updates not cached: a frame larger than the whole byte bound.
    pub refused: u64,
    /// Topics evicted to make room for an update.
    pub evicted: u64,
    /// The next entry's epoch (each new entry takes one; random per worker at start).
    next_epoch: u64,
    /// Text messages each topic keeps to resume from (0: none).
    history_max: usize,
}

impl LastValues {
    /// A cache of at most `max_topics` topics and `max_bytes` bytes of frames (0: off).
    pub fn new(max_topics: usize, max_bytes: usize) -> Self {
        LastValues {
            by_topic: HashMap::new(),
            entries: Slab::new(),
            oldest: NONE,
            newest: NONE,
            bytes: 0,
            max_topics,
            max_bytes,
            refused: 0,
            evicted: 0,
            next_epoch: 0,
            history_max: 0,
        }
    }

    /// These bounds, each topic also keeping its last `max` text messages to resume
    /// from (counted against the byte bound).
    pub fn with_history(mut self, max: usize) -> Self {
        self.history_max = max;
        self
    }

    /// These bounds, with entries' epochs counted from `base` (random per worker and
    /// start, so a restarted relay's epochs differ from the last one's).
    pub fn with_epoch_base(mut self, base: u64) -> Self {
        self.next_epoch = base;
        self
    }

    /// Whether it caches anything at all.
    pub fn enabled(&self) -> bool {
        self.max_topics > 0 && self.max_bytes > 0
    }

    /// Topics cached.
    pub fn len(&self) -> usize {
        self.by_topic.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.by_topic.is_empty()
    }

    /// Records `frame` as the last of `topic`, evicting the least recently updated
    /// topics if it does not fit; returns the message's place in the topic's sequence
    /// (`None`: not cached, so not numbered). Only text frames are counted (a binary
    /// message cannot carry its number, so it must not take one).
    pub fn update(&mut self, topic: &Bytes, frame: &[u8]) -> Option<Numbered> {
        let counted = u64::from(is_text(frame));
        self.record(topic, frame, Next::Count(counted))
    }

    /// Records text `frame` as the last of `topic` at the place `at` its origin gave
    /// it (an exporting relay's count, carried over NATS or kept in a stream), so this
    /// relay numbers the topic as its origin does. A new epoch, or a number that skips
    /// some, empties the topic's history first (what it kept does not lead up to `at`
    /// without a gap). Call [`is_behind`](Self::is_behind) first: a message at or
    /// behind the topic's place is not to be recorded (nor relayed) again.
    pub fn update_at(&mut self, topic: &Bytes, frame: &[u8], at: Numbered) -> Option<Numbered> {
        self.record(topic, frame, Next::At(at))
    }

    /// Whether `at` is at or behind `topic`'s place in the same epoch: a copy of a
    /// message already recorded (a stream's history overlapping the live import).
    pub fn is_behind(&self, topic: &[u8], at: Numbered) -> bool {
        self.entry(topic)
            .is_some_and(|e| e.number.epoch == at.epoch && at.seq <= e.number.seq)
    }

    fn entry(&self, topic: &[u8]) -> Option<&Entry> {
        self.by_topic.get(topic).map(|&i| &self.entries[i])
    }

    fn record(&mut self, topic: &Bytes, frame: &[u8], next: Next) -> Option<Numbered> {
        let counted = u64::from(is_text(frame));
        if !self.enabled() {
            return None;
        }
        if frame.len() > self.max_bytes {
            // Can never fit: the older message must not stay to be served as the latest.
            self.refused += 1;
            if let Some(&i) = self.by_topic.get(&topic[..]) {
                self.remove(i);
            }
            return None;
        }
        let (k, keep) = (self.history_max, counted == 1 && self.history_max > 0);
        let history = keep.then_some(k);
        if let Some(&i) = self.by_topic.get(&topic[..]) {
            // A known topic: one lookup, and in the common case nothing to evict.
            let e = &mut self.entries[i];
            own_count(e, next, &mut self.next_epoch, &mut self.bytes);
            let grows = history.map_or(0, |k| e.history.growth(frame.len(), k));
            let old = e.frame.len();
            let need = |bytes: usize| (bytes - old + frame.len()) as isize + grows;
            while need(self.bytes) > self.max_bytes as isize && self.evict_oldest(Some(i)) {}
            let e = &mut self.entries[i];
            let before = e.bytes();
            let number = e.take(frame, next, history);
            self.bytes = self.bytes - before + e.bytes();
            self.touch(i);
            return Some(number);
        }
        let grows = history.map_or(0, |_| frame.len() as isize);
        while ((self.bytes + frame.len()) as isize + grows > self.max_bytes as isize
            || self.by_topic.len() >= self.max_topics)
            && self.evict_oldest(None)
        {}
        let mut spare = BytesMut::with_capacity(room_for(frame.len()));
        spare.extend_from_slice(frame);
        let frame = spare.split().freeze();
        self.bytes += frame.len();
        // The key is a copy too: a topic slice of a frame would pin its chunk.
        let key = Bytes::copy_from_slice(topic);
        let number = match next {
            Next::At(at) => at,
            Next::Count(counted) => {
                self.next_epoch = self.next_epoch.wrapping_add(1);
                Numbered {
                    epoch: self.next_epoch.wrapping_sub(1),
                    seq: counted,
                }
            }
        };
        let mut kept = History::default();
        if let Some(k) = history {
            kept.push(number.seq, &frame, k);
        }
        self.bytes += kept.bytes();
        let i = self.entries.insert(Entry {
            frame,
            spare,
            key: key.clone(),
            older: NONE,
            newer: NONE,
            number,
            history: kept,
            adopted: matches!(next, Next::At(_)),
        });
        self.link_newest(i);
        self.by_topic.insert(key, i);
        Some(number)
    }

    /// Takes entry `i` out of the recency list.
    fn unlink(&mut self, i: usize) {
        let (older, newer) = (self.entries[i].older, self.entries[i].newer);
        match older {
            NONE => self.oldest = newer,
            o => self.entries[o].newer = newer,
        }
        match newer {
            NONE => self.newest = older,
            n => self.entries[n].older = older,
        }
    }

    /// Puts entry `i` (not in the list) at its newest end.
    fn link_newest(&mut self, i: usize) {
        let last = self.newest;
        let e = &mut self.entries[i];
        (e.older, e.newer) = (last, NONE);
        match last {
            NONE => self.oldest = i,
            l => self.entries[l].newer = i,
        }
        self.newest = i;
    }

    /// Entry `i` was just updated: it becomes the newest.
    fn touch(&mut self, i: usize) {
        if self.newest != i {
            self.unlink(i);
            self.link_newest(i);
        }
    }

    /// Drops entry `i` from the map, the list and the byte count.
    fn remove(&mut self, i: usize) {
        self.unlink(i);
        let e = self.entries.remove(i);
        self.by_topic.remove(&e.key);
        self.bytes -= e.bytes();
    }

    /// Evicts the least recently updated entry other than `keep` (the one being
    /// updated, which keeps its place); false if there is none to evict.
    fn evict_oldest(&mut self, keep: Option<usize>) -> bool {
        let mut i = self.oldest;
        if i != NONE && Some(i) == keep {
            i = self.entries[i].newer;
        }
        if i == NONE {
            return false;
        }
        self.remove(i);
        self.evicted += 1;
        true
    }

    /// The last frame of `topic`, if cached.
    pub fn get(&self, topic: &[u8]) -> Option<Bytes> {
        self.entry(topic).map(|e| e.frame.clone())
    }

    /// The last frame of `topic` with its place in the sequence, if cached.
    pub fn get_numbered(&self, topic: &[u8]) -> Option<(Bytes, Numbered)> {
        self.entry(topic).map(|e| (e.frame.clone(), e.number))
    }

    /// Where a subscriber at `from` (a position it was given before) picks up.
    pub fn since(&self, topic: &[u8], from: Numbered) -> Since {
        let Some(e) = self.entry(topic) else {
            return Since::Unknown;
        };
        let resumed = (e.number.epoch == from.epoch)
            .then(|| e.history.since(from.seq, e.number.seq))
            .flatten();
        match resumed {
            Some(messages) if from.seq <= e.number.seq => Since::Messages(messages),
            _ => Since::Reset(e.number, e.frame.clone()),
        }
    }

    /// Every cached frame with its topic and place, in no particular order.
    pub fn all_numbered(&self) -> impl Iterator<Item = (&Bytes, Bytes, Numbered)> + '_ {
        self.entries
            .iter()
            .map(|(_, e)| (&e.key, e.frame.clone(), e.number))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn keeps_the_last_frame_of_each_topic_within_its_bounds() {
        let mut c = LastValues::new(2, 100);
        c.update(&t("A"), b"a1");
        c.update(&t("A"), b"a2");
        c.update(&t("B"), b"b1");
        c.update(&t("C"), b"c1");
        assert_eq!(c.get(b"A"), None, "the least recently updated made room");
        assert_eq!(c.get(b"B").as_deref(), Some(&b"b1"[..]));
        assert_eq!(c.get(b"C").as_deref(), Some(&b"c1"[..]));
        assert_eq!((c.evicted, c.refused), (1, 0));
        c.update(&t("B"), &[7u8; 99]);
        assert_eq!(c.get(b"C"), None, "C evicted so B's larger frame fits");
        assert_eq!(
            c.get(b"B").map(|f| f.len()),
            Some(99),
            "never the older one"
        );
        c.update(&t("B"), &[7u8; 101]);
        assert_eq!(c.refused, 1);
        assert_eq!(
            c.get(b"B"),
            None,
            "larger than the bound: the old entry goes too"
        );
        c.update(&t("B"), &[7u8; 98]);
        assert_eq!(c.get(b"B").map(|f| f.len()), Some(98));
        assert_eq!(c.all_numbered().count(), 1);
        assert!(!LastValues::new(0, 100).enabled());
    }

    #[test]
    fn a_snapshot_held_in_a_queue_stays_intact_while_the_topic_moves_on() {
        let mut c = LastValues::new(10, 1 << 20);
        c.update(&t("A"), b"first");
        let held = c.get(b"A").unwrap();
        for i in 0..1000u32 {
            c.update(&t("A"), format!("update {i}").as_bytes());
        }
        assert_eq!(&held[..], b"first");
        assert_eq!(c.get(b"A").as_deref(), Some(&b"update 999"[..]));
    }

    /// Many updates over a few topics keep one entry each, and eviction follows
    /// update order.
    #[test]
    fn evicts_in_update_order_after_many_updates() {
        let mut c = LastValues::new(3, 1 << 20);
        for i in 0..10_000u32 {
            c.update(&t(["A", "B", "C"][(i % 3) as usize]), &i.to_le_bytes());
        }
        assert_eq!(c.entries.len(), 3);
        c.update(&t("A"), b"a");
        c.update(&t("D"), b"d");
        assert_eq!(c.get(b"B"), None, "B was updated least recently");
        assert!(c.get(b"A").is_some() && c.get(b"C").is_some() && c.get(b"D").is_some());
    }

    /// The cache against a model of itself (a list of topics in update order, least
    /// recent first), over random updates that make it evict and refuse: the same
    /// topics kept, the same frames, the same counts.
    mod model {
        use proptest::prelude::*;

        use super::*;

        const MAX_TOPICS: usize = 4;
        const MAX_BYTES: usize = 40;

        #[derive(Default)]
        struct Model {
            /// (topic, frame), least recently updated first.
            kept: Vec<(u8, Vec<u8>)>,
            evicted: u64,
            refused: u64,
        }

        impl Model {
            fn update(&mut self, topic: u8, frame: Vec<u8>) {
                let at = self.kept.iter().position(|(k, _)| *k == topic);
                if frame.len() > MAX_BYTES {
                    self.refused += 1;
                    if let Some(at) = at {
                        self.kept.remove(at);
                    }
                    return;
                }
                let old = at.map(|at| self.kept.remove(at));
                let bytes =
                    |kept: &[(u8, Vec<u8>)]| kept.iter().map(|(_, f)| f.len()).sum::<usize>();
                while !self.kept.is_empty()
                    && (bytes(&self.kept) + frame.len() > MAX_BYTES
                        || (old.is_none() && self.kept.len() >= MAX_TOPICS))
                {
                    self.kept.remove(0);
                    self.evicted += 1;
                }
                self.kept.push((topic, frame));
            }
        }

        proptest! {
            #[test]
            fn the_cache_keeps_what_its_model_keeps(
                updates in prop::collection::vec((0u8..7, 0usize..30), 1..200),
            ) {
                let mut c = LastValues::new(MAX_TOPICS, MAX_BYTES);
                let mut m = Model::default();
                for (n, (topic, len)) in updates.into_iter().enumerate() {
                    // A text frame's first byte, then the update's number; one
                    // length in 30 too large for the whole cache.
                    let len = if len == 29 { MAX_BYTES + 1 } else { len.max(2) };
                    let mut frame = vec![b'x'; len];
                    (frame[0], frame[1]) = (0x81, n as u8);
                    c.update(&Bytes::copy_from_slice(&[topic]), &frame);
                    m.update(topic, frame);
                    for t in 0u8..7 {
                        let want = m.kept.iter().find(|(k, _)| *k == t).map(|(_, f)| &f[..]);
                        let got = c.get(&[t]);
                        prop_assert_eq!(got.as_deref(), want, "topic {}", t);
                    }
                    prop_assert_eq!((c.evicted, c.refused), (m.evicted, m.refused));
                    prop_assert_eq!(c.len(), m.kept.len());
                    let total: usize = m.kept.iter().map(|(_, f)| f.len()).sum();
                    prop_assert_eq!(c.bytes, total);
                    // The list runs through every entry, oldest first, both ways.
                    let mut order = Vec::new();
                    let mut i = c.oldest;
                    while i != NONE {
                        order.push(c.entries[i].key[0]);
                        i = c.entries[i].newer;
                    }
                    let want: Vec<u8> = m.kept.iter().map(|(k, _)| *k).collect();
                    prop_assert_eq!(&order, &want);
                    let mut back = Vec::new();
                    let mut i = c.newest;
                    while i != NONE {
                        back.push(c.entries[i].key[0]);
                        i = c.entries[i].older;
                    }
                    back.reverse();
                    prop_assert_eq!(back, want);
                }
            }
        }
    }

    /// Each topic is numbered from 1 with no gap; a topic evicted and cached again
    /// starts a new epoch.
    #[test]
    fn topics_are_numbered_and_a_new_entry_is_a_new_epoch() {
        let mut c = LastValues::new(2, 1 << 20).with_epoch_base(100);
        let a1 = c.update(&t("A"), b"\x81a").unwrap();
        let a2 = c.update(&t("A"), b"\x81a").unwrap();
        let b1 = c.update(&t("B"), b"\x81b").unwrap();
        assert_eq!((a1.epoch, a1.seq, a2.epoch, a2.seq), (100, 1, 100, 2));
        assert_eq!((b1.epoch, b1.seq), (101, 1));
        c.update(&t("C"), b"\x81c"); // evicts A
        let a = c.update(&t("A"), b"\x81a").unwrap();
        assert_eq!(
            (a.seq, a.epoch != 100),
            (1, true),
            "history lost: a new epoch"
        );
        assert_eq!(c.get_numbered(b"A").unwrap().1, a);
        assert_eq!(LastValues::new(0, 1).update(&t("A"), b"\x81a"), None);
        let bin = c.update(&t("A"), b"\x82bin").unwrap();
        assert_eq!(bin.seq, 1, "a binary message takes no number");
        assert_eq!(c.update(&t("A"), b"\x81a").unwrap().seq, 2);
    }

    /// A topic numbered by its origin: the place is taken as given, copies at or behind
    /// it are recognised, and a hole or a new epoch empties the history, so a resume
    /// from before it is a reset, never a silent gap.
    #[test]
    fn a_place_given_by_the_origin_is_kept_and_a_hole_forgets_the_history() {
        let mut c = LastValues::new(10, 1 << 20).with_history(8);
        let at = |epoch, seq| Numbered { epoch, seq };
        for seq in 5..=7 {
            assert!(!c.is_behind(b"A", at(9, seq)));
            assert_eq!(c.update_at(&t("A"), b"\x81a", at(9, seq)), Some(at(9, seq)));
        }
        assert!(c.is_behind(b"A", at(9, 7)) && c.is_behind(b"A", at(9, 1)));
        assert!(!c.is_behind(b"A", at(8, 7)), "another epoch is not behind");
        let seqs = |s: Since| match s {
            Since::Messages(m) => Some(m.iter().map(|(n, _)| *n).collect::<Vec<_>>()),
            _ => None,
        };
        assert_eq!(seqs(c.since(b"A", at(9, 4))), Some(vec![5, 6, 7]));
        assert_eq!(seqs(c.since(b"A", at(9, 3))), None, "4 was never held");
        // 8 and 9 never arrived: what is kept does not lead up to 10.
        c.update_at(&t("A"), b"\x81a", at(9, 10));
        assert_eq!(seqs(c.since(b"A", at(9, 6))), None);
        assert_eq!(seqs(c.since(b"A", at(9, 9))), Some(vec![10]));
        // The origin started again: its new epoch replaces the old.
        c.update_at(&t("A"), b"\x81a", at(3, 1));
        assert!(matches!(c.since(b"A", at(9, 10)), Since::Reset(n, _) if n == at(3, 1)));
        assert_eq!(c.get_numbered(b"A").unwrap().1, at(3, 1));
        // A message counted here (a publisher on this relay) starts a count of its
        // own, so the origin's next message is not taken for a copy.
        let own = c.update(&t("A"), b"\x81a").unwrap();
        assert!(own.epoch != 3 && own.seq == 1, "{own:?}");
        assert!(!c.is_behind(b"A", at(3, 2)));
        assert_eq!(c.update_at(&t("A"), b"\x81a", at(3, 2)), Some(at(3, 2)));
        assert_eq!(seqs(c.since(b"A", at(3, 1))), Some(vec![2]));
        assert_eq!(
            seqs(c.since(b"A", at(3, 0))),
            None,
            "1 was forgotten with the switch"
        );
    }
}
