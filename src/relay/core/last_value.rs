//! The last message of each topic a worker ingested: what a subscriber that asks for a
//! snapshot receives before the live stream.
//!
//! Bounded in topics and bytes (`last_value_max_topics`, `last_value_max_bytes`): a
//! new topic that does not fit is not cached, and counted. Each entry is a copy of the
//! frame, never the frame itself (a relayed frame is a slice of a 64 KiB arena chunk
//! that it would keep alive); the copy's memory is reused in place when no queue still
//! holds the previous one, so updating a topic's entry allocates nothing.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

/// The memory an entry takes for a frame of `len` bytes: the next power of two, so a
/// topic whose messages grow by a byte now and then (a counter gaining a digit) does
/// not allocate each time. The byte bound counts frames, so memory is at most twice it.
fn room_for(len: usize) -> usize {
    len.next_power_of_two().max(64)
}

/// One topic's entry.
#[derive(Debug)]
struct Entry {
    /// The last frame, shared with the queues a snapshot put it in.
    frame: Bytes,
    /// The memory the next copy goes into (reclaimed once `frame`'s clones are gone).
    spare: BytesMut,
}

/// One worker's last-value cache.
#[derive(Debug)]
pub struct LastValues {
    by_topic: HashMap<Bytes, Entry>,
    bytes: usize,
    max_topics: usize,
    max_bytes: usize,
    /// Updates not cached because the cache was full (a new topic, or a larger frame).
    pub refused: u64,
}

impl LastValues {
    /// A cache of at most `max_topics` topics and `max_bytes` bytes of frames (0: off).
    pub fn new(max_topics: usize, max_bytes: usize) -> Self {
        LastValues {
            by_topic: HashMap::new(),
            bytes: 0,
            max_topics,
            max_bytes,
            refused: 0,
        }
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

    /// Records `frame` as the last of `topic`.
    pub fn update(&mut self, topic: &Bytes, frame: &[u8]) {
        if !self.enabled() {
            return;
        }
        match self.by_topic.get_mut(topic) {
            Some(e) => {
                let old = e.frame.len();
                if self.bytes - old + frame.len() > self.max_bytes {
                    self.refused += 1;
                    return;
                }
                // Drop our reference first, so the spare reclaims its memory when no
                // queue holds the old frame any more.
                e.frame = Bytes::new();
                if !e.spare.try_reclaim(frame.len()) {
                    e.spare = BytesMut::with_capacity(room_for(frame.len()));
                }
                e.spare.extend_from_slice(frame);
                e.frame = e.spare.split().freeze();
                self.bytes = self.bytes - old + frame.len();
            }
            None => {
                if self.by_topic.len() >= self.max_topics
                    || self.bytes + frame.len() > self.max_bytes
                {
                    self.refused += 1;
                    return;
                }
                let mut spare = BytesMut::with_capacity(room_for(frame.len()));
                spare.extend_from_slice(frame);
                let frame = spare.split().freeze();
                self.bytes += frame.len();
                // The key is a copy too: a topic slice of a frame would pin its chunk.
                let key = Bytes::copy_from_slice(topic);
                self.by_topic.insert(key, Entry { frame, spare });
            }
        }
    }

    /// The last frame of `topic`, if cached.
    pub fn get(&self, topic: &[u8]) -> Option<Bytes> {
        self.by_topic.get(topic).map(|e| e.frame.clone())
    }

    /// Every cached frame (for a `*` snapshot), in no particular order.
    pub fn all(&self) -> impl Iterator<Item = Bytes> + '_ {
        self.by_topic.values().map(|e| e.frame.clone())
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
        assert_eq!(c.get(b"A").as_deref(), Some(&b"a2"[..]));
        assert_eq!(c.get(b"B").as_deref(), Some(&b"b1"[..]));
        assert_eq!(c.get(b"C"), None, "a third topic does not fit");
        assert_eq!(c.refused, 1);
        c.update(&t("B"), &[7u8; 99]);
        assert_eq!(c.refused, 2, "over the byte bound: the old entry stays");
        assert_eq!(c.get(b"B").as_deref(), Some(&b"b1"[..]));
        c.update(&t("B"), &[7u8; 98]);
        assert_eq!(c.get(b"B").map(|f| f.len()), Some(98));
        let mut all: Vec<Bytes> = c.all().collect();
        all.sort();
        assert_eq!(all.len(), 2);
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
}
