//! permessage-deflate in the relay: which messages are compressed, and compressing each
//! one once for every subscriber that can take it.
//!
//! The relay answers every deflate offer with `server_no_context_takeover`: each
//! message is compressed on its own, so one compressed frame is valid for every
//! subscriber whose window is at least the relay's (`window_bits`). The worker that
//! ingests a message compresses it then, if any subscriber anywhere negotiated deflate
//! (a count shared by the workers), the message is at least `min_bytes` and its topic
//! matches `topics`; the compressed frame travels beside the plain one, and each
//! subscriber's queue takes the one it can read. A subscriber that asked for a smaller
//! window, or did not negotiate deflate, gets the plain frame.
//!
//! `per_subscriber = true` is the design this replaces, kept to measure against:
//! each deflate subscriber's writer compresses every frame it writes with its own
//! compressor and context takeover (better ratio, one compression per delivery, and
//! an allocation per frame).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::ws::deflate::{DEFAULT_LEVEL, MAX_WINDOW_BITS, MIN_DEFLATE_WINDOW_BITS};
use crate::ws::{
    encode_frame_rsv, DeflateParams, DeflateServerConfig, Deflater, FrameHeader, OpCode, Role, RSV1,
};

/// `[compression]` in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionConfig {
    /// Accept permessage-deflate offers from publishers and subscribers.
    pub enabled: bool,
    /// zlib level, 0 (store) to 9 (smallest); 1 is the fastest that compresses.
    pub level: u32,
    /// The window relayed messages are compressed with (9-15 bits).
    pub window_bits: u8,
    /// Messages shorter than this go out uncompressed (deflate's framing costs more
    /// than it saves on a few dozen bytes).
    pub min_bytes: usize,
    /// Topics whose messages are compressed (glob patterns; empty: every topic).
    pub topics: Vec<String>,
    /// Compress per subscriber, with context takeover, instead of once per message
    /// (for comparison; see the module docs).
    pub per_subscriber: bool,
    /// Ask every client for `client_no_context_takeover`: a publisher's compressed
    /// messages then stand alone and are relayed as they came (no compression on the
    /// relay for them), at the cost of the publisher's ratio.
    pub reuse_publisher_frames: bool,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig {
            enabled: false,
            level: DEFAULT_LEVEL,
            window_bits: MAX_WINDOW_BITS,
            min_bytes: 64,
            topics: Vec::new(),
            per_subscriber: false,
            reuse_publisher_frames: false,
        }
    }
}

impl CompressionConfig {
    /// Why the section cannot be used, naming the field.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.level > 9 {
            return Err(("compression.level", format!("{} is not 0-9", self.level)));
        }
        if !(MIN_DEFLATE_WINDOW_BITS..=MAX_WINDOW_BITS).contains(&self.window_bits) {
            return Err((
                "compression.window_bits",
                format!("{} is not 9-15", self.window_bits),
            ));
        }
        for t in &self.topics {
            glob::Pattern::new(t).map_err(|e| ("compression.topics", format!("{t:?}: {e}")))?;
        }
        Ok(())
    }

    /// What the handshake negotiates, if compression is on.
    pub fn server(&self) -> Option<DeflateServerConfig> {
        self.enabled.then_some(DeflateServerConfig {
            window_bits: self.window_bits,
            server_no_context_takeover: !self.per_subscriber,
            client_no_context_takeover: self.reuse_publisher_frames,
            level: self.level,
        })
    }

    /// Whether a publisher that negotiated `params` sends compressed messages the
    /// relay can pass on as they came: each compressed on its own, with a window no
    /// larger than the shared frames' (so every subscriber that takes those takes
    /// these).
    pub fn reuses(&self, params: Option<DeflateParams>) -> bool {
        self.enabled
            && !self.per_subscriber
            && params.is_some_and(|p| {
                p.client_no_context_takeover && p.client_max_window_bits <= self.window_bits
            })
    }

    /// Whether a subscriber that negotiated `params` can read the shared frames
    /// (compressed with `window_bits`, no context takeover).
    pub fn takes_shared(&self, params: Option<DeflateParams>) -> bool {
        !self.per_subscriber
            && params
                .and_then(|p| p.sending(Role::Server))
                .is_some_and(|(bits, _)| bits >= self.window_bits)
    }
}

/// Counters of one worker's compression, merged off the hot path.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CompressionStats {
    /// Messages (shared mode) or frames (per subscriber) compressed.
    pub compressed: u64,
    /// Their payload bytes before compression.
    pub bytes_in: u64,
    /// Their payload bytes after.
    pub bytes_out: u64,
    /// Eligible by size and topic but sent plain: no subscriber could take them.
    pub skipped_no_demand: u64,
    /// Of `compressed`, relayed as the publisher compressed them (not compressed here).
    pub reused: u64,
}

impl CompressionStats {
    /// Counts one compression of `before` bytes into `after`.
    pub fn count(&mut self, before: usize, after: usize) {
        self.compressed += 1;
        self.bytes_in += before as u64;
        self.bytes_out += after as u64;
    }

    /// Counts one message relayed as its publisher compressed it.
    pub fn count_reused(&mut self, before: usize, after: usize) {
        self.count(before, after);
        self.reused += 1;
    }

    /// Adds another worker's counters.
    pub fn merge(&mut self, o: &CompressionStats) {
        self.reused += o.reused;
        self.compressed += o.compressed;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.skipped_no_demand += o.skipped_no_demand;
    }
}

/// Which topics are compressed.
#[derive(Debug)]
enum Topics {
    All,
    Matching(Vec<glob::Pattern>),
}

/// One worker's compressor of relayed messages (shared mode).
#[derive(Debug)]
pub struct MessageCompressor {
    deflater: Deflater,
    /// The last compressed payload.
    out: Vec<u8>,
    min_bytes: usize,
    topics: Topics,
    /// Subscribers, over all workers, that take shared compressed frames.
    demand: Arc<AtomicUsize>,
}

impl MessageCompressor {
    /// A compressor for `config` (checked), with the relay-wide `demand` count.
    pub fn new(config: &CompressionConfig, demand: Arc<AtomicUsize>) -> Self {
        let topics = if config.topics.is_empty() {
            Topics::All
        } else {
            Topics::Matching(
                config
                    .topics
                    .iter()
                    .filter_map(|t| glob::Pattern::new(t).ok())
                    .collect(),
            )
        };
        MessageCompressor {
            deflater: Deflater::new(config.level, config.window_bits, true),
            out: Vec::new(),
            min_bytes: config.min_bytes,
            topics,
            demand,
        }
    }

    /// Compresses `payload` of `topic` if it qualifies and someone can take it,
    /// counting it in `stats`; the compressed payload (RFC 7692 §7.2.1) is borrowed
    /// until the next call.
    pub fn compress(
        &mut self,
        topic: &[u8],
        payload: &[u8],
        stats: &mut CompressionStats,
    ) -> Option<&[u8]> {
        if !self.qualifies(topic, payload.len(), stats) {
            return None;
        }
        Some(self.compress_qualified(payload, stats))
    }

    /// Compresses `payload`, which [`qualifies`](Self::qualifies) said goes out
    /// compressed, counting it in `stats`; borrowed until the next call.
    pub fn compress_qualified(&mut self, payload: &[u8], stats: &mut CompressionStats) -> &[u8] {
        self.out.clear();
        self.deflater.compress(payload, &mut self.out);
        stats.count(payload.len(), self.out.len());
        &self.out
    }

    /// Whether a message of `len` bytes is long enough to be compressed at all (the
    /// cheapest test, made before anything else).
    pub fn long_enough(&self, len: usize) -> bool {
        len >= self.min_bytes
    }
}

impl MessageCompressor {
    /// Whether a message of `topic` and `len` bytes goes out compressed: long enough,
    /// a topic that is compressed, and a subscriber somewhere to take it (counted in
    /// `stats` when only that is missing).
    pub fn qualifies(&self, topic: &[u8], len: usize, stats: &mut CompressionStats) -> bool {
        if !self.long_enough(len) {
            return false;
        }
        if let Topics::Matching(patterns) = &self.topics {
            let name = std::str::from_utf8(topic).unwrap_or("");
            if !patterns.iter().any(|p| p.matches(name)) {
                return false;
            }
        }
        if self.demand.load(Ordering::Relaxed) == 0 {
            stats.skipped_no_demand += 1;
            return false;
        }
        true
    }
}

/// One subscriber counted in the relay-wide demand for shared compressed frames while
/// it lives.
#[derive(Debug)]
pub struct Demand(Arc<AtomicUsize>);

impl Demand {
    /// Counts one more subscriber in `count`.
    pub fn enter(count: &Arc<AtomicUsize>) -> Demand {
        count.fetch_add(1, Ordering::Relaxed);
        Demand(Arc::clone(count))
    }
}

impl Drop for Demand {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A subscriber's own compressor (`per_subscriber = true`): each whole, uncompressed
/// data frame of at least `min_bytes` payload is replaced by its compressed form;
/// control frames and anything else pass unchanged.
#[derive(Debug)]
pub struct FrameCompressor {
    deflater: Deflater,
    scratch: Vec<u8>,
    min_bytes: usize,
}

impl FrameCompressor {
    /// A compressor at `window_bits` (a subscriber's window), with context takeover
    /// unless the subscriber asked for `server_no_context_takeover` (`fresh`).
    pub fn new(config: &CompressionConfig, window_bits: u8, fresh: bool) -> Self {
        FrameCompressor {
            deflater: Deflater::new(config.level, window_bits.min(config.window_bits), fresh),
            scratch: Vec::new(),
            min_bytes: config.min_bytes,
        }
    }

    /// The frame to write in place of `frame`, counted in `stats`.
    pub fn frame(&mut self, frame: &Bytes, stats: &mut CompressionStats) -> Option<Bytes> {
        let (h, n) = FrameHeader::parse(frame).ok()??;
        let data = matches!(h.opcode, OpCode::Text | OpCode::Binary);
        let payload = frame.get(n..)?;
        if !data || !h.fin || h.mask.is_some() || payload.len() < self.min_bytes {
            return None;
        }
        self.scratch.clear();
        self.deflater.compress(payload, &mut self.scratch);
        stats.count(payload.len(), self.scratch.len());
        let mut out = Vec::with_capacity(self.scratch.len() + 10);
        encode_frame_rsv(&mut out, h.opcode, true, RSV1, &self.scratch, None);
        Some(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::{server_frame, Inflater};

    fn config() -> CompressionConfig {
        CompressionConfig {
            enabled: true,
            min_bytes: 10,
            topics: vec!["md.*".into()],
            ..CompressionConfig::default()
        }
    }

    #[test]
    fn only_wanted_topics_and_sizes_with_demand_are_compressed() {
        let demand = Arc::new(AtomicUsize::new(0));
        let mut c = MessageCompressor::new(&config(), Arc::clone(&demand));
        let mut stats = CompressionStats::default();
        let msg = br#"{"topic":"md.BTC","px":"101.50","qty":"3"}"#;
        assert_eq!(
            c.compress(b"md.BTC", msg, &mut stats),
            None,
            "nobody can take it"
        );
        assert_eq!(stats.skipped_no_demand, 1);
        let sub = Demand::enter(&demand);
        assert_eq!(
            c.compress(b"other", msg, &mut stats),
            None,
            "topic not listed"
        );
        assert_eq!(
            c.compress(b"md.BTC", b"short", &mut stats),
            None,
            "under min_bytes"
        );
        let z = c.compress(b"md.BTC", msg, &mut stats).unwrap().to_vec();
        let mut out = Vec::new();
        Inflater::new(true).inflate(&z, &mut out, 1 << 10).unwrap();
        assert_eq!(out, msg);
        assert_eq!((stats.compressed, stats.bytes_in), (1, msg.len() as u64));
        drop(sub);
        assert_eq!(demand.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn shared_frames_go_to_subscribers_with_a_window_as_large() {
        let c = config();
        let p = |bits| {
            Some(DeflateParams {
                server_max_window_bits: bits,
                ..DeflateParams::default()
            })
        };
        assert!(c.takes_shared(p(15)));
        assert!(!c.takes_shared(p(12)));
        assert!(!c.takes_shared(None));
        let per = CompressionConfig {
            per_subscriber: true,
            ..c.clone()
        };
        assert!(!per.takes_shared(p(15)));
        // Pass-through needs the publisher's messages to stand alone in a window the
        // shared frames' readers have.
        let publisher = |fresh, bits| {
            Some(DeflateParams {
                client_no_context_takeover: fresh,
                client_max_window_bits: bits,
                ..DeflateParams::default()
            })
        };
        assert!(c.reuses(publisher(true, 15)));
        assert!(!c.reuses(publisher(false, 15)));
        let narrow = CompressionConfig {
            window_bits: 12,
            ..config()
        };
        assert!(!narrow.reuses(publisher(true, 15)));
        assert!(narrow.reuses(publisher(true, 12)));
        assert!(!per.reuses(publisher(true, 15)));
        assert!(CompressionConfig {
            level: 10,
            ..CompressionConfig::default()
        }
        .check()
        .is_err());
        assert!(CompressionConfig {
            window_bits: 8,
            ..CompressionConfig::default()
        }
        .check()
        .is_err());
        assert!(CompressionConfig {
            topics: vec!["[".into()],
            ..CompressionConfig::default()
        }
        .check()
        .is_err());
    }

    #[test]
    fn a_subscribers_own_compressor_keeps_its_context_across_frames() {
        let mut c = FrameCompressor::new(&config(), 15, false);
        let mut stats = CompressionStats::default();
        let mut inflate = Inflater::new(false);
        let msg = br#"{"topic":"md.BTC","px":"101.50","qty":"3"}"#;
        let mut sizes = Vec::new();
        for _ in 0..3 {
            let f = c
                .frame(&Bytes::from(server_frame(OpCode::Text, msg)), &mut stats)
                .unwrap();
            assert_eq!(f[0], 0x80 | 0x40 | 0x1, "FIN, RSV1, text");
            let mut out = Vec::new();
            inflate.inflate(&f[2..], &mut out, 1 << 10).unwrap();
            assert_eq!(out, msg);
            sizes.push(f.len());
        }
        assert!(sizes[1] < sizes[0], "{sizes:?}");
        let pong = Bytes::from(server_frame(OpCode::Pong, b"0123456789ab"));
        assert_eq!(c.frame(&pong, &mut stats), None, "control frames pass");
        assert_eq!(stats.compressed, 3);
    }
}
