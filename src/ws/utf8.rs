//! Incremental UTF-8 validation for text messages that arrive in pieces.
//!
//! RFC 6455 §8.1: an endpoint that receives a text message whose bytes are not valid
//! UTF-8 must fail the connection (close 1007). A fragmented message is checked as its
//! fragments arrive, so a peer cannot make us buffer megabytes of garbage: validation
//! fails at the first byte that no valid continuation could follow, even mid-message.
//! A code point split across fragments (or across reads of one large frame) is fine:
//! up to three bytes of an incomplete code point are carried to the next piece.
//!
//! The bulk of every piece goes through `simdutf8`'s std-compatible validator, whose
//! `error_len() == None` tells an incomplete tail from an invalid one.

/// The bytes seen so far cannot begin a valid UTF-8 string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

/// Validates a UTF-8 string fed in arbitrary pieces.
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    /// Bytes of a code point whose remaining bytes have not arrived yet.
    partial: [u8; 4],
    partial_len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a string.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets any carried bytes, for the next message.
    pub fn reset(&mut self) {
        self.partial_len = 0;
    }

    /// Validates the next piece. Fails as soon as the bytes seen so far cannot be the
    /// start of valid UTF-8.
    pub fn feed(&mut self, mut piece: &[u8]) -> Result<(), InvalidUtf8> {
        if self.partial_len > 0 {
            let have = self.partial_len as usize;
            let take = piece.len().min(4 - have);
            let mut tmp = self.partial;
            tmp[have..have + take].copy_from_slice(&piece[..take]);
            match simdutf8::compat::from_utf8(&tmp[..have + take]) {
                Ok(_) => {
                    self.partial_len = 0;
                    piece = &piece[take..];
                }
                Err(e) if e.valid_up_to() > 0 => {
                    // The carried code point completed inside `tmp`; go on from its end.
                    self.partial_len = 0;
                    piece = &piece[e.valid_up_to() - have..];
                }
                Err(e) => {
                    if e.error_len().is_some() {
                        return Err(InvalidUtf8);
                    }
                    // Still incomplete, and the piece was too short to complete it.
                    self.partial = tmp;
                    self.partial_len = (have + take) as u8;
                    return Ok(());
                }
            }
        }
        match simdutf8::compat::from_utf8(piece) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let tail = &piece[e.valid_up_to()..];
                self.partial[..tail.len()].copy_from_slice(tail);
                self.partial_len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// The string ended: valid only if no code point is left incomplete.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.partial_len == 0;
        self.reset();
        if complete {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }
}

/// Validates a whole string at once (the single-frame fast path).
#[inline]
pub fn validate(bytes: &[u8]) -> Result<(), InvalidUtf8> {
    simdutf8::basic::from_utf8(bytes)
        .map(|_| ())
        .map_err(|_| InvalidUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn feed_all(pieces: &[&[u8]]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        for p in pieces {
            v.feed(p)?;
        }
        v.finish()
    }

    #[test]
    fn split_code_points_are_fine() {
        let s = "κόσμε €𝄞".as_bytes();
        for i in 0..=s.len() {
            for j in i..=s.len() {
                assert_eq!(feed_all(&[&s[..i], &s[i..j], &s[j..]]), Ok(()), "{i} {j}");
            }
        }
    }

    #[test]
    fn fails_fast_mid_message() {
        // Autobahn 6.4.x style: the invalid byte comes early; fail before the end.
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed("κόσμε".as_bytes()), Ok(()));
        assert_eq!(v.feed(&[0xf4, 0x90, 0x80, 0x80]), Err(InvalidUtf8)); // > U+10FFFF
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xed]), Ok(()));
        assert_eq!(v.feed(&[0xa0]), Err(InvalidUtf8)); // surrogate, one byte at a time
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xc0]), Err(InvalidUtf8)); // never valid
    }

    #[test]
    fn incomplete_at_end_is_invalid() {
        assert_eq!(feed_all(&[&[0xe2, 0x82]]), Err(InvalidUtf8));
        assert_eq!(feed_all(&[b"ok", &[0xf0, 0x9d], &[0x84]]), Err(InvalidUtf8));
    }

    proptest! {
        /// For any bytes and any split, the incremental verdict equals std's verdict,
        /// and an invalid string is reported no later than the piece that breaks it.
        #[test]
        fn matches_std_for_any_split(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            text in "\\PC{0,24}",
            cuts in proptest::collection::vec(0usize..100, 0..6),
            use_text in any::<bool>(),
        ) {
            let bytes = if use_text { text.into_bytes() } else { bytes };
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut v = Utf8Validator::new();
            let mut prev = 0;
            let mut failed_at = None;
            for &c in cuts.iter().chain(std::iter::once(&bytes.len())) {
                if v.feed(&bytes[prev..c]).is_err() {
                    failed_at = Some(c);
                    break;
                }
                prev = c;
            }
            let verdict = failed_at.is_none() && v.finish().is_ok();
            prop_assert_eq!(verdict, std::str::from_utf8(&bytes).is_ok());
            if let Some(c) = failed_at {
                // The prefix up to the failing piece cannot be extended to valid UTF-8.
                let e = std::str::from_utf8(&bytes[..c]).unwrap_err();
                prop_assert!(e.error_len().is_some());
            }
        }
    }
}
