//! A topic's recent messages, for subscribers that resume where they left off: the
//! last `max` text messages of the topic with their sequence numbers, kept in the
//! topic's last-value cache entry (so it is bounded by the cache's bytes, and lost
//! with the entry, which starts a new epoch). Each slot's memory is reused in place
//! once no queue still holds its old message, so keeping history allocates nothing per
//! message once it has filled (only when a slow subscriber still holds the old one).

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

/// One kept message.
#[derive(Debug)]
struct Slot {
    seq: u64,
    frame: Bytes,
    spare: BytesMut,
}

/// A topic's last messages, oldest first.
#[derive(Debug, Default)]
pub struct History {
    slots: VecDeque<Slot>,
    bytes: usize,
}

impl History {
    /// Bytes of messages kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// How `bytes` would change if a frame of `len` bytes were kept, at most `max`.
    pub fn growth(&self, len: usize, max: usize) -> isize {
        let dropped = match self.slots.front() {
            Some(s) if self.slots.len() >= max => s.frame.len(),
            _ => 0,
        };
        len as isize - dropped as isize
    }

    /// Forgets every kept message (their memory goes with them).
    pub fn clear(&mut self) {
        self.slots.clear();
        self.bytes = 0;
    }

    /// Keeps `frame` as message `seq`, dropping the oldest beyond `max`.
    pub fn push(&mut self, seq: u64, frame: &[u8], max: usize) {
        if max == 0 {
            return;
        }
        let mut slot = if self.slots.len() >= max {
            match self.slots.pop_front() {
                Some(mut s) => {
                    self.bytes -= s.frame.len();
                    s.frame = Bytes::new();
                    if !s.spare.try_reclaim(frame.len()) {
                        s.spare = BytesMut::with_capacity(frame.len().next_power_of_two().max(64));
                    }
                    s
                }
                None => return,
            }
        } else {
            Slot {
                seq,
                frame: Bytes::new(),
                spare: BytesMut::with_capacity(frame.len().next_power_of_two().max(64)),
            }
        };
        slot.spare.extend_from_slice(frame);
        slot.frame = slot.spare.split().freeze();
        slot.seq = seq;
        self.bytes += frame.len();
        self.slots.push_back(slot);
    }

    /// The messages after `seq` (oldest first), if the history still holds every one
    /// of them: `None` when it no longer reaches back that far.
    pub fn since(&self, seq: u64, last: u64) -> Option<Vec<(u64, Bytes)>> {
        if seq >= last {
            return Some(Vec::new());
        }
        let first = self.slots.front()?.seq;
        if first > seq + 1 {
            return None;
        }
        Some(
            self.slots
                .iter()
                .filter(|s| s.seq > seq)
                .map(|s| (s.seq, s.frame.clone()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_messages_and_says_when_it_no_longer_reaches_back() {
        let mut h = History::default();
        for seq in 1..=10u64 {
            h.push(seq, format!("m{seq}").as_bytes(), 4);
        }
        assert_eq!(h.bytes(), 3 * 2 + 3);
        let after = |s| {
            h.since(s, 10)
                .map(|v| v.iter().map(|(n, _)| *n).collect::<Vec<_>>())
        };
        assert_eq!(after(7), Some(vec![8, 9, 10]));
        assert_eq!(after(6), Some(vec![7, 8, 9, 10]), "7 is the oldest kept");
        assert_eq!(after(5), None, "6 is gone");
        assert_eq!(after(10), Some(vec![]), "up to date");
        assert_eq!(h.growth(3, 4), 3 - 2, "a new one pushes m7 out");
        let held = h.since(8, 10).unwrap();
        for seq in 11..=20 {
            h.push(seq, b"later", 4);
        }
        assert_eq!(&held[0].1[..], b"m9", "a message handed out stays intact");
    }
}
