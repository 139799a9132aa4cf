//! Where relayed frames live: chunks of memory the worker encodes frames into, each
//! frame a shared `Bytes` slice of its chunk, so relaying a message allocates nothing.
//!
//! A frame is encoded once at the end of the current chunk and split off; every
//! subscriber queue and every channel to another worker holds a reference to it. When
//! a chunk is full the arena moves to a spare one whose frames have all been written and
//! dropped (its memory is reclaimed in place), and only if none is free allocates a
//! new one. In steady state, with queues bounded, the chunks go round and nothing is
//! allocated per message. The cost: a slow subscriber holding one frame keeps its whole
//! chunk; the bound is [`MAX_SPARE_CHUNKS`] chunks kept per worker, beyond which old
//! chunks are simply let go (freed by their last frame).

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::ws::{encode_server_frame, FrameHeader, OpCode};

/// Bytes per chunk: 256 frames of 256 B.
pub const CHUNK_BYTES: usize = 64 << 10;

/// Spare chunks a worker keeps for reuse (so at most this many, plus the current one,
/// are held by the arena itself: 1.1 MiB).
pub const MAX_SPARE_CHUNKS: usize = 16;

/// One worker's frame memory.
#[derive(Debug)]
pub struct FrameArena {
    current: BytesMut,
    spare: VecDeque<BytesMut>,
    /// Chunks allocated so far (for tests and metrics).
    allocated: u64,
}

impl Default for FrameArena {
    fn default() -> Self {
        FrameArena::new()
    }
}

impl FrameArena {
    /// An empty arena; the first frame allocates the first chunk.
    pub fn new() -> Self {
        FrameArena {
            current: BytesMut::new(),
            spare: VecDeque::new(),
            allocated: 0,
        }
    }

    /// The server frame for `payload`, as a shared slice of a chunk. A frame larger
    /// than a quarter chunk gets memory of its own.
    pub fn frame(&mut self, opcode: OpCode, payload: &[u8]) -> Bytes {
        self.frame_rsv(opcode, 0, payload)
    }

    /// [`frame`](Self::frame) with reserved bits `rsv` ([`crate::ws::RSV1`]: the payload
    /// is a compressed message).
    pub fn frame_rsv(&mut self, opcode: OpCode, rsv: u8, payload: &[u8]) -> Bytes {
        let n = FrameHeader::server_header_len(payload.len()) + payload.len();
        if n > CHUNK_BYTES / 4 {
            let mut own = BytesMut::with_capacity(n);
            encode_server_frame(&mut own, opcode, rsv, payload);
            return own.freeze();
        }
        if self.current.capacity() < n {
            self.next_chunk(n);
        }
        encode_server_frame(&mut self.current, opcode, rsv, payload);
        self.current.split().freeze()
    }

    /// The frame whose payload is `parts` one after the other (an envelope around a
    /// message), framed like [`frame`](Self::frame) without assembling the payload first.
    pub fn frame_parts(&mut self, opcode: OpCode, parts: &[&[u8]]) -> Bytes {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let header = crate::ws::FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask: None,
            payload_len: len as u64,
        };
        let mut head = [0u8; crate::ws::FrameHeader::MAX_SIZE];
        let h = header.encode(&mut head);
        let n = h + len;
        let out = if n > CHUNK_BYTES / 4 {
            let mut own = BytesMut::with_capacity(n);
            own.extend_from_slice(&head[..h]);
            parts.iter().for_each(|p| own.extend_from_slice(p));
            return own.freeze();
        } else {
            if self.current.capacity() < n {
                self.next_chunk(n);
            }
            &mut self.current
        };
        out.extend_from_slice(&head[..h]);
        parts.iter().for_each(|p| out.extend_from_slice(p));
        self.current.split().freeze()
    }

    /// Moves to a chunk with room for `n` bytes: a spare one all of whose frames are
    /// gone, or a new one.
    fn next_chunk(&mut self, n: usize) {
        let full = std::mem::take(&mut self.current);
        if full.capacity() > 0 || self.allocated > 0 {
            self.spare.push_back(full);
        }
        for _ in 0..self.spare.len() {
            let Some(mut chunk) = self.spare.pop_front() else {
                break;
            };
            if chunk.try_reclaim(n) {
                self.current = chunk;
                return;
            }
            self.spare.push_back(chunk);
        }
        while self.spare.len() >= MAX_SPARE_CHUNKS {
            self.spare.pop_front();
        }
        self.allocated += 1;
        self.current = BytesMut::with_capacity(CHUNK_BYTES);
    }

    /// Chunks allocated since the arena was made.
    pub fn chunks_allocated(&self) -> u64 {
        self.allocated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_whole_and_chunks_come_back_once_their_frames_are_gone() {
        let mut arena = FrameArena::new();
        let payload = [7u8; 250];
        let mut expected = Vec::new();
        crate::ws::encode_frame(&mut expected, OpCode::Text, true, &payload, None);
        // Keep the last 50 frames alive, as subscriber queues would.
        let mut live = VecDeque::new();
        for _ in 0..100_000 {
            let f = arena.frame(OpCode::Text, &payload);
            assert_eq!(&f[..], &expected[..]);
            live.push_back(f);
            if live.len() > 50 {
                live.pop_front();
            }
        }
        assert!(
            arena.chunks_allocated() <= 3,
            "{} chunks for 100,000 frames",
            arena.chunks_allocated()
        );
    }

    #[test]
    fn a_frame_held_forever_costs_its_chunk_not_more() {
        let mut arena = FrameArena::new();
        let held = arena.frame(OpCode::Binary, b"held by a slow subscriber");
        for _ in 0..100_000 {
            drop(arena.frame(OpCode::Binary, &[1u8; 200]));
        }
        assert!(
            arena.chunks_allocated() <= 2,
            "{}",
            arena.chunks_allocated()
        );
        assert_eq!(&held[2..], b"held by a slow subscriber");
        let big = arena.frame(OpCode::Binary, &vec![9u8; CHUNK_BYTES]);
        assert_eq!(big.len(), CHUNK_BYTES + 10);
    }

    #[test]
    fn spare_chunks_are_bounded_when_every_frame_is_kept() {
        let mut arena = FrameArena::new();
        let mut all = Vec::new();
        for _ in 0..(MAX_SPARE_CHUNKS + 4) * 300 {
            all.push(arena.frame(OpCode::Text, &[b'x'; 250]));
        }
        assert!(arena.spare.len() <= MAX_SPARE_CHUNKS);
    }
}
