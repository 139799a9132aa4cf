//! Compressing and inflating one message (RFC 7692 §7.2) with zlib (flate2 on
//! zlib-rs): raw DEFLATE, a sync flush per message, the trailer cut and put back.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::wire::{MAX_WINDOW_BITS, MIN_DEFLATE_WINDOW_BITS, TAIL};
use crate::ws::error::WsError;

/// Compresses messages for one sender: with `fresh`, each on its own (no context
/// takeover); otherwise each may refer back to the ones before it.
pub struct Deflater {
    compress: Compress,
    fresh: bool,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("fresh", &self.fresh)
            .finish()
    }
}

impl Deflater {
    /// A deflater with a window of `window_bits` (clamped to 9-15) at `level` (0-9).
    pub fn new(level: u32, window_bits: u8, fresh: bool) -> Self {
        let bits = window_bits.clamp(MIN_DEFLATE_WINDOW_BITS, MAX_WINDOW_BITS);
        Deflater {
            compress: Compress::new_with_window_bits(Compression::new(level.min(9)), false, bits),
            fresh,
        }
    }

    /// Appends `payload`, compressed as one message (§7.2.1: sync flush, trailing
    /// `00 00 ff ff` removed), to `out`.
    pub fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        let mut input = payload;
        loop {
            // Deflate's worst case is a little over the input; a sync flush adds a few.
            out.reserve(input.len() + input.len() / 16 + 64);
            let before = self.compress.total_in();
            let status = self.compress.compress_vec(input, out, FlushCompress::Sync);
            input = &input[(self.compress.total_in() - before) as usize..];
            // With room left over the flush is complete; `Err` cannot happen for a
            // raw stream we feed in order (it means a misuse of zlib's state machine).
            if status.is_err() || (input.is_empty() && out.len() < out.capacity()) {
                break;
            }
        }
        if out.len() >= start + TAIL.len() && out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        if self.fresh {
            self.compress.reset();
        }
    }
}

/// Inflates messages from one sender.
pub struct Inflater {
    decompress: Decompress,
    fresh: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("fresh", &self.fresh)
            .finish()
    }
}

impl Inflater {
    /// An inflater for any window (15 bits); with `fresh`, the sender compresses each
    /// message on its own and the window is dropped between messages.
    pub fn new(fresh: bool) -> Self {
        Inflater {
            decompress: Decompress::new_with_window_bits(false, MAX_WINDOW_BITS),
            fresh,
        }
    }

    /// Inflates one compressed message (without its trailer) into `out` (cleared
    /// first). More than `limit` bytes of output: [`WsError::MessageTooLarge`], with at
    /// most `limit + 1` bytes produced; corrupt data: [`WsError::BadCompressedData`].
    pub fn inflate(
        &mut self,
        message: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), WsError> {
        out.clear();
        let result = self
            .inflate_part(message, out, limit)
            .and_then(|()| self.inflate_part(&TAIL, out, limit));
        if self.fresh || result.is_err() {
            self.decompress.reset(false);
        }
        result
    }

    fn inflate_part(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), WsError> {
        let too_large = |size| WsError::MessageTooLarge {
            size: size as u64,
            limit,
        };
        loop {
            if out.len() == out.capacity() {
                if out.len() > limit {
                    return Err(too_large(out.len()));
                }
                // Grow geometrically, never past one byte over the limit.
                let want = (out.len().max(input.len() * 4).max(4096)).min(limit + 1 - out.len());
                out.reserve_exact(want);
            }
            let (in_before, out_before) = (self.decompress.total_in(), out.len());
            let status = self
                .decompress
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|_| WsError::BadCompressedData)?;
            input = &input[(self.decompress.total_in() - in_before) as usize..];
            if out.len() > limit {
                return Err(too_large(out.len()));
            }
            match status {
                // The sender ended the stream (BFINAL): the next message starts anew.
                Status::StreamEnd => {
                    self.decompress.reset(false);
                    return Ok(());
                }
                _ if input.is_empty() && out.len() < out.capacity() => return Ok(()),
                // No progress with room to spare: the data is truncated or corrupt.
                _ if self.decompress.total_in() == in_before
                    && out.len() == out_before
                    && out.len() < out.capacity() =>
                {
                    return Err(WsError::BadCompressedData)
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7692_example_hello() {
        // §7.2.3.1: "Hello" compressed is c2 48 cd c9 c9 07 00 (any valid stream will
        // do for the sender; the receiver must take this one).
        let mut inflater = Inflater::new(false);
        let mut out = Vec::new();
        inflater
            .inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out, 100)
            .unwrap();
        assert_eq!(out, b"Hello");
        // §7.2.3.2: the same message again, referring back to the first (takeover).
        inflater
            .inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], &mut out, 100)
            .unwrap();
        assert_eq!(out, b"Hello");
        // §7.2.3.3: an uncompressed (stored) block.
        let mut fresh = Inflater::new(true);
        fresh
            .inflate(
                &[
                    0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
                ],
                &mut out,
                100,
            )
            .unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn round_trips_with_and_without_context_takeover() {
        for fresh in [true, false] {
            let mut d = Deflater::new(6, 15, fresh);
            let mut i = Inflater::new(fresh);
            let mut wire = Vec::new();
            let mut out = Vec::new();
            let mut sizes = Vec::new();
            for n in [0usize, 1, 100, 5_000, 200_000, 100] {
                let msg: Vec<u8> = (0..n)
                    .map(|k| b"{\"topic\":\"BTC\",\"px\":1}"[k % 22])
                    .collect();
                wire.clear();
                d.compress(&msg, &mut wire);
                assert!(!wire.ends_with(&TAIL) || wire.len() < 4);
                i.inflate(&wire, &mut out, 1 << 20).unwrap();
                assert_eq!(out, msg, "fresh={fresh} n={n}");
                sizes.push(wire.len());
            }
            // The repeated 100-byte message costs less when it may refer back.
            assert_eq!(sizes[5] < sizes[2], !fresh, "{sizes:?}");
        }
    }

    #[test]
    fn a_deflate_bomb_stops_at_the_limit() {
        let mut d = Deflater::new(9, 15, true);
        let mut wire = Vec::new();
        d.compress(&vec![0u8; 16 << 20], &mut wire);
        assert!(wire.len() < 20_000, "{}", wire.len());
        let mut i = Inflater::new(true);
        let mut out = Vec::new();
        let err = i.inflate(&wire, &mut out, 1 << 20).unwrap_err();
        assert!(matches!(err, WsError::MessageTooLarge { limit, .. } if limit == 1 << 20));
        assert!(out.capacity() <= (1 << 20) + 1, "{}", out.capacity());
        // The inflater is usable afterwards.
        wire.clear();
        d.compress(b"after", &mut wire);
        i.inflate(&wire, &mut out, 100).unwrap();
        assert_eq!(out, b"after");
        // Exactly at the limit is fine.
        wire.clear();
        d.compress(&[7u8; 1000], &mut wire);
        i.inflate(&wire, &mut out, 1000).unwrap();
        assert!(i.inflate(&wire, &mut out, 999).is_err());
    }

    #[test]
    fn corrupt_data_is_an_error_not_a_hang() {
        let mut i = Inflater::new(false);
        let mut out = Vec::new();
        // Reserved block type 3.
        assert_eq!(
            i.inflate(&[0xff, 0xff, 0xff], &mut out, 100),
            Err(WsError::BadCompressedData)
        );
        i.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out, 100)
            .unwrap();
        assert_eq!(out, b"Hello");
    }
}
