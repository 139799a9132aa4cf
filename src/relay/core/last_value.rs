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
//! Recency is a queue of (update number, topic) with lazy removal: each update pushes
//! one record (a reference count, no allocation once the queue has grown to its
//! working size), stale records are skipped when evicting and swept out when the queue
//! holds more than twice the topics.

use std::collections::{HashMap, VecDeque};

use bytes::{Bytes, BytesMut};

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
    /// The update number of its last update (its record in the recency queue).
    updated: u64,
    /// Its topic (the map's key, shared), for the recency record.
    key: Bytes,
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
    /// messages when given), as update number `updated`; its place in the sequence.
    fn take(&mut self, frame: &[u8], next: Next, history: Option<usize>, updated: u64) -> Numbered {
        // Drop our reference first, so the spare reclaims its memory when no queue
        // holds the old frame any more.
        self.frame = Bytes::new();
        if !self.spare.try_reclaim(frame.len()) {
            self.spare = BytesMut::with_capacity(room_for(frame.len()));
        }
        self.spare.extend_from_slice(frame);
        self.frame = self.spare.split().freeze();
        self.updated = updated;
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

/// One worker's last-value cache.
#[derive(Debug)]
pub struct LastValues {
    by_topic: HashMap<Bytes, Entry>,
    /// (update number, topic) in update order; a record is stale when the topic's
    /// entry has a later number (or is gone).
    recency: VecDeque<(u64, Bytes)>,
    updates: u64,
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
            recency: VecDeque::new(),
            updates: 0,
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
        self.by_topic
            .get(topic)
            .is_some_and(|e| e.number.epoch == at.epoch && at.seq <= e.number.seq)
    }

    fn record(&mut self, topic: &Bytes, frame: &[u8], next: Next) -> Option<Numbered> {
        let counted = u64::from(is_text(frame));
        if !self.enabled() {
            return None;
        }
        if frame.len() > self.max_bytes {
            // Can never fit: the older message must not stay to be served as the latest.
            self.refused += 1;
            if let Some(e) = self.by_topic.remove(&topic[..]) {
                self.bytes -= e.bytes();
            }
            return None;
        }
        let (k, keep) = (self.history_max, counted == 1 && self.history_max > 0);
        let history = keep.then_some(k);
        // The common case, a known topic whose update fits: one lookup.
        if let Some(e) = self.by_topic.get_mut(&topic[..]) {
            own_count(e, next, &mut self.next_epoch, &mut self.bytes);
            let grows = history.map_or(0, |k| e.history.growth(frame.len(), k));
            let need = (self.bytes - e.frame.len() + frame.len()) as isize + grows;
            if need <= self.max_bytes as isize {
                self.updates += 1;
                let before = e.bytes();
                let number = e.take(frame, next, history, self.updates);
                self.bytes = self.bytes - before + e.bytes();
                self.recency.push_back((self.updates, e.key.clone()));
                self.sweep_recency();
                return Some(number);
            }
        }
        let (old, grows) = match self.by_topic.get(&topic[..]) {
            Some(e) => (
                Some(e.frame.len()),
                history.map_or(0, |k| e.history.growth(frame.len(), k)),
            ),
            None => (None, history.map_or(0, |_| frame.len() as isize)),
        };
        let new_topic = old.is_none();
        let need = |bytes: usize| (bytes - old.unwrap_or(0) + frame.len()) as isize + grows;
        while need(self.bytes) > self.max_bytes as isize
            || (new_topic && self.by_topic.len() >= self.max_topics)
        {
            if !self.evict_oldest(topic) {
                break;
            }
        }
        self.updates += 1;
        let updated = self.updates;
        match self.by_topic.get_mut(&topic[..]) {
            Some(e) => {
                own_count(e, next, &mut self.next_epoch, &mut self.bytes);
                let before = e.bytes();
                let number = e.take(frame, next, history, updated);
                self.bytes = self.bytes - before + e.bytes();
                self.recency.push_back((updated, e.key.clone()));
                self.sweep_recency();
                Some(number)
            }
            None => {
                let mut spare = BytesMut::with_capacity(room_for(frame.len()));
                spare.extend_from_slice(frame);
                let frame = spare.split().freeze();
                self.bytes += frame.len();
                // The key is a copy too: a topic slice of a frame would pin its chunk.
                let key = Bytes::copy_from_slice(topic);
                self.recency.push_back((updated, key.clone()));
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
                self.by_topic.insert(
                    key.clone(),
                    Entry {
                        frame,
                        spare,
                        updated,
                        key,
                        number,
                        history: kept,
                        adopted: matches!(next, Next::At(_)),
                    },
                );
                self.sweep_recency();
                Some(number)
            }
        }
    }

    /// Drops stale recency records once they are more than the live ones.
    fn sweep_recency(&mut self) {
        if self.recency.len() > 2 * self.by_topic.len() + 64 {
            let by_topic = &self.by_topic;
            self.recency
                .retain(|(n, t)| by_topic.get(t).is_some_and(|e| e.updated == *n));
        }
    }

    /// Evicts the least recently updated topic other than `keep`; false if there is
    /// none to evict.
    fn evict_oldest(&mut self, keep: &[u8]) -> bool {
        while let Some((n, t)) = self.recency.pop_front() {
            let current = self.by_topic.get(&t).is_some_and(|e| e.updated == n);
            if !current {
                continue;
            }
            if &t[..] == keep {
                // The topic being updated keeps its place (its record comes back).
                self.recency.push_back((n, t));
                if self.recency.len() == 1 {
                    return false;
                }
                continue;
            }
            if let Some(e) = self.by_topic.remove(&t) {
                self.bytes -= e.bytes();
                self.evicted += 1;
                return true;
            }
        }
        false
    }

    /// The last frame of `topic`, if cached.
    pub fn get(&self, topic: &[u8]) -> Option<Bytes> {
        self.by_topic.get(topic).map(|e| e.frame.clone())
    }

    /// The last frame of `topic` with its place in the sequence, if cached.
    pub fn get_numbered(&self, topic: &[u8]) -> Option<(Bytes, Numbered)> {
        self.by_topic
            .get(topic)
            .map(|e| (e.frame.clone(), e.number))
    }

    /// Where a subscriber at `from` (a position it was given before) picks up.
    pub fn since(&self, topic: &[u8], from: Numbered) -> Since {
        let Some(e) = self.by_topic.get(topic) else {
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
        self.by_topic
            .iter()
            .map(|(k, e)| (k, e.frame.clone(), e.number))
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

    /// Many updates over a few topics keep the recency queue near their number (stale
    /// records are swept), and eviction follows update order.
    #[test]
    fn recency_stays_bounded_and_evicts_in_update_order() {
        let mut c = LastValues::new(3, 1 << 20);
        for i in 0..10_000u32 {
            c.update(&t(["A", "B", "C"][(i % 3) as usize]), &i.to_le_bytes());
        }
        assert!(c.recency.len() <= 2 * 3 + 64 + 1, "{}", c.recency.len());
        c.update(&t("A"), b"a");
        c.update(&t("D"), b"d");
        assert_eq!(c.get(b"B"), None, "B was updated least recently");
        assert!(c.get(b"A").is_some() && c.get(b"C").is_some() && c.get(b"D").is_some());
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
