//! Payload masking (RFC 6455 §5.3): XOR with a 4-byte key, in place, resumable.
//!
//! Every client frame's payload is masked, so a server unmasks every byte it receives.
//! This module does it in place in the caller's buffer, with the widest kernel the CPU
//! has, chosen once at run time: AVX2 or SSE2 on x86_64, NEON on aarch64, and a
//! 64-bit-word loop everywhere else. (An AVX-512 kernel was measured on this project's
//! Zen 4 machine and was no faster than AVX2 at any length, so it is not offered.)
//!
//! A frame's payload may arrive split across reads, so every function takes a `phase`:
//! the index into the key of the first byte of `buf` (the payload offset modulo 4).
//! Unmasking bytes `k..n` of a payload with `phase = k % 4` gives the same result as
//! unmasking `0..n` in one go.
//!
//! [`apply_mask_byte`] is the reference: one XOR per byte, no cleverness. Every other
//! kernel is proven equal to it by property tests over lengths, start offsets, keys and
//! phases (bottom of this file). The SIMD kernels are the only `unsafe` in `ws`.
#![allow(unsafe_code)]

use std::sync::OnceLock;

/// Which kernel [`apply_mask`] uses on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskKernel {
    /// 32 bytes per instruction (x86_64 with AVX2).
    Avx2,
    /// 16 bytes per instruction (every x86_64 CPU).
    Sse2,
    /// 16 bytes per instruction (every aarch64 CPU).
    Neon,
    /// 8 bytes per step, portable.
    Word,
}

impl MaskKernel {
    /// The kernel this CPU supports best, detected once.
    #[inline]
    pub fn detected() -> MaskKernel {
        static KERNEL: OnceLock<MaskKernel> = OnceLock::new();
        *KERNEL.get_or_init(|| MaskKernel::available()[0])
    }

    /// Lower-case name, as printed by `feedrelay` and the benches.
    pub fn name(self) -> &'static str {
        match self {
            MaskKernel::Avx2 => "avx2",
            MaskKernel::Sse2 => "sse2",
            MaskKernel::Neon => "neon",
            MaskKernel::Word => "word",
        }
    }

    /// Every kernel this CPU can run, widest first (never empty: `Word` is last).
    pub fn available() -> Vec<MaskKernel> {
        use MaskKernel::*;
        [Avx2, Sse2, Neon, Word]
            .into_iter()
            .filter(|k| k.supported())
            .collect()
    }

    /// Whether this CPU has the kernel's features (cached by std after the first call).
    pub fn supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            MaskKernel::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            MaskKernel::Sse2 => true,
            #[cfg(target_arch = "aarch64")]
            MaskKernel::Neon => true,
            MaskKernel::Word => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Applies the mask with this kernel. A kernel this CPU cannot run falls back to
    /// the word loop, so a wrong choice is slow, never unsound.
    pub fn apply(self, buf: &mut [u8], key: [u8; 4], phase: usize) {
        if self.supported() {
            // SAFETY: the kernel's CPU features were detected just above.
            unsafe { self.apply_unchecked(buf, key, phase) }
        } else {
            apply_mask_word(buf, key, phase)
        }
    }

    /// # Safety
    /// The CPU must have this kernel's features: `self` is [`MaskKernel::detected`] or
    /// in [`MaskKernel::available`].
    #[inline]
    unsafe fn apply_unchecked(self, buf: &mut [u8], key: [u8; 4], phase: usize) {
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the caller guarantees this CPU has AVX2.
            MaskKernel::Avx2 => unsafe { x86::apply_avx2(buf, key, phase) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: SSE2 is part of the x86_64 baseline.
            MaskKernel::Sse2 => unsafe { x86::apply_sse2(buf, key, phase) },
            #[cfg(target_arch = "aarch64")]
            MaskKernel::Neon => neon::apply_neon(buf, key, phase),
            _ => apply_mask_word(buf, key, phase),
        }
    }
}

/// XORs `buf` with `key`, starting at key byte `phase % 4`, with the fastest kernel.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], phase: usize) {
    // Short payloads (most control frames, tiny ticks) are not worth a dispatch.
    if buf.len() < 16 {
        apply_mask_byte(buf, key, phase);
    } else {
        // SAFETY: `detected()` only returns a kernel whose features this CPU has.
        unsafe { MaskKernel::detected().apply_unchecked(buf, key, phase) }
    }
}

/// The reference kernel: one byte at a time.
pub fn apply_mask_byte(buf: &mut [u8], key: [u8; 4], phase: usize) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[(i + phase) & 3];
    }
}

/// The key rotated so that its byte 0 applies to the first byte of the buffer.
#[inline]
fn rotate(key: [u8; 4], phase: usize) -> [u8; 4] {
    // Little-endian: shifting right by 8 bits moves key byte 1 to position 0.
    u32::from_le_bytes(key)
        .rotate_right(8 * (phase & 3) as u32)
        .to_le_bytes()
}

/// Portable kernel: eight bytes per step with a 64-bit word.
pub fn apply_mask_word(buf: &mut [u8], key: [u8; 4], phase: usize) {
    let k = rotate(key, phase);
    let word = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    // Eight is a multiple of four: the tail starts at key byte 0 of the rotated key.
    apply_mask_byte(chunks.into_remainder(), k, 0);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! Unaligned loads and stores throughout, and each kernel finishes its own tail
    //! with narrower vectors in the same function. Measured with benches/unmask.rs on
    //! this project's machine: a scalar prologue to align the start, or handing the tail
    //! to another `#[target_feature]` function, cost more at 16-1024 bytes (extra calls
    //! and `vzeroupper`s) than the cache-line splits they avoid. The AVX2 loop is
    //! unrolled four times (128 bytes per pass), which took 1 KiB from 20 ns to 10 ns.
    use super::{apply_mask_word, rotate};
    use std::arch::x86_64::*;

    /// XORs the `$ty`-sized block at `$p + $i` with `$mask`, in place.
    macro_rules! xor_block {
        ($p:expr, $i:expr, $ty:ty, $load:ident, $store:ident, $xor:ident, $mask:expr) => {{
            let q = $p.add($i) as *mut $ty;
            $store(q, $xor($load(q), $mask));
        }};
    }

    /// Masks the rest of the buffer from `p + i` (`i` a multiple of 4): 16-byte SSE
    /// blocks, then the word loop. The SSE2 kernel is this alone; the AVX2 kernel ends
    /// with it for its last < 32 bytes.
    macro_rules! finish_tail {
        ($buf:expr, $p:expr, $i:expr, $len:expr, $k:expr) => {{
            let mut i = $i;
            let mask = _mm_set1_epi32(i32::from_ne_bytes($k));
            while i + 16 <= $len {
                // SAFETY: i + 16 <= len: the block is inside the buffer, borrowed
                // mutably; loadu/storeu need no alignment.
                unsafe {
                    xor_block!(
                        $p,
                        i,
                        __m128i,
                        _mm_loadu_si128,
                        _mm_storeu_si128,
                        _mm_xor_si128,
                        mask
                    )
                };
                i += 16;
            }
            apply_mask_word(&mut $buf[i..], $k, 0);
        }};
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn apply_avx2(buf: &mut [u8], key: [u8; 4], phase: usize) {
        let k = rotate(key, phase);
        let len = buf.len();
        let p = buf.as_mut_ptr();
        let mut i = 0;
        if len >= 32 {
            let mask = _mm256_set1_epi32(i32::from_ne_bytes(k));
            while i + 128 <= len {
                // SAFETY: i + 128 <= len: the four 32-byte blocks are inside `buf`, which
                // we borrow mutably; loadu/storeu need no alignment.
                unsafe {
                    for j in [0, 32, 64, 96] {
                        xor_block!(
                            p,
                            i + j,
                            __m256i,
                            _mm256_loadu_si256,
                            _mm256_storeu_si256,
                            _mm256_xor_si256,
                            mask
                        );
                    }
                }
                i += 128;
            }
            while i + 32 <= len {
                // SAFETY: i + 32 <= len: the block is inside `buf`.
                unsafe {
                    xor_block!(
                        p,
                        i,
                        __m256i,
                        _mm256_loadu_si256,
                        _mm256_storeu_si256,
                        _mm256_xor_si256,
                        mask
                    )
                };
                i += 32;
            }
        }
        finish_tail!(buf, p, i, len, k);
    }

    /// # Safety
    /// The CPU must support SSE2 (every x86_64 CPU does).
    #[target_feature(enable = "sse2")]
    pub(super) unsafe fn apply_sse2(buf: &mut [u8], key: [u8; 4], phase: usize) {
        let k = rotate(key, phase);
        let len = buf.len();
        let p = buf.as_mut_ptr();
        finish_tail!(buf, p, 0, len, k);
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::{apply_mask_word, rotate};
    use std::arch::aarch64::*;

    pub(super) fn apply_neon(buf: &mut [u8], key: [u8; 4], phase: usize) {
        let k = rotate(key, phase);
        let mut pattern = [0u8; 16];
        for (i, b) in pattern.iter_mut().enumerate() {
            *b = k[i & 3];
        }
        // SAFETY: NEON is part of the aarch64 baseline; `pattern` is 16 readable bytes.
        let mask = unsafe { vld1q_u8(pattern.as_ptr()) };
        let mut blocks = buf.chunks_exact_mut(16);
        for block in &mut blocks {
            let p = block.as_mut_ptr();
            // SAFETY: `block` is exactly 16 bytes of `buf`, borrowed mutably; vld1q/vst1q
            // have no alignment requirement beyond that of u8.
            unsafe { vst1q_u8(p, veorq_u8(vld1q_u8(p), mask)) };
        }
        apply_mask_word(blocks.into_remainder(), k, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_example_hello() {
        // RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d.
        let mut masked = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut masked, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&masked, b"Hello");
    }

    #[test]
    fn detected_kernel_is_available() {
        assert!(MaskKernel::available().contains(&MaskKernel::detected()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Every kernel equals the byte loop for any data, key, phase, length and start offset.
        #[test]
        fn kernels_match_byte_loop(
            data in proptest::collection::vec(any::<u8>(), 0..=4096 + 64),
            offset in 0usize..64,
            len in 0usize..=4096,
            key in any::<[u8; 4]>(),
            phase in 0usize..4,
        ) {
            let start = offset.min(data.len());
            let end = (start + len).min(data.len());
            let mut expected = data.clone();
            apply_mask_byte(&mut expected[start..end], key, phase);
            for kernel in MaskKernel::available() {
                let mut got = data.clone();
                kernel.apply(&mut got[start..end], key, phase);
                prop_assert_eq!(&got, &expected, "kernel {}", kernel.name());
            }
            let mut got = data.clone();
            apply_mask_word(&mut got[start..end], key, phase);
            prop_assert_eq!(&got, &expected, "word");
            let mut got = data.clone();
            apply_mask(&mut got[start..end], key, phase);
            prop_assert_eq!(&got, &expected, "dispatch");
        }

        /// Unmasking in two pieces with the right phase equals unmasking in one.
        #[test]
        fn split_with_phase_equals_whole(
            data in proptest::collection::vec(any::<u8>(), 0..2048),
            split in 0usize..2048,
            key in any::<[u8; 4]>(),
        ) {
            let split = split.min(data.len());
            let mut whole = data.clone();
            apply_mask_byte(&mut whole, key, 0);
            for kernel in MaskKernel::available() {
                let mut parts = data.clone();
                let (a, b) = parts.split_at_mut(split);
                kernel.apply(a, key, 0);
                kernel.apply(b, key, split);
                prop_assert_eq!(&parts, &whole, "kernel {}", kernel.name());
            }
        }

        /// Masking twice gives back the input.
        #[test]
        fn mask_is_an_involution(
            data in proptest::collection::vec(any::<u8>(), 0..4096),
            key in any::<[u8; 4]>(),
            phase in 0usize..4,
        ) {
            let mut buf = data.clone();
            apply_mask(&mut buf, key, phase);
            apply_mask(&mut buf, key, phase);
            prop_assert_eq!(buf, data);
        }
    }
}
