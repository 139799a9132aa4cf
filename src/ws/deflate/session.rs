//! One connection's permessage-deflate state: the parameters agreed, a compressor for
//! what it sends and an inflater for what it receives, each made on first use (a
//! subscriber that never sends a compressed message never holds an inflater's 32 KiB
//! window), and the buffers they fill.

use super::codec::{Deflater, Inflater};
use super::negotiate::DeflateParams;
use crate::ws::assembler::shrink_between_messages;
use crate::ws::error::WsError;
use crate::ws::types::{MessageKind, Role};

/// See the module docs.
#[derive(Debug)]
pub(crate) struct DeflateSession {
    pub(crate) params: DeflateParams,
    /// Which end we are.
    role: Role,
    /// Compression level (0-9) of what we send.
    level: u32,
    deflater: Option<Deflater>,
    inflater: Option<Inflater>,
    /// The last compressed message, inflated.
    inflated: Vec<u8>,
    /// The last message we compressed.
    compressed: Vec<u8>,
    /// The data message in progress is compressed (its first frame had RSV1).
    pub(crate) message: bool,
}

impl DeflateSession {
    /// The state of a connection in `role` that agreed to `params`, compressing at
    /// `level`.
    pub(crate) fn new(params: DeflateParams, role: Role, level: u32) -> Self {
        DeflateSession {
            params,
            role,
            level,
            deflater: None,
            inflater: None,
            inflated: Vec::new(),
            compressed: Vec::new(),
            message: false,
        }
    }

    /// `payload` compressed as one message, if our side may compress at all (not with
    /// an 8-bit window); borrowed until the next call.
    pub(crate) fn compress(&mut self, payload: &[u8]) -> Option<&[u8]> {
        let (bits, fresh) = self.params.sending(self.role)?;
        let level = self.level;
        let deflater = self
            .deflater
            .get_or_insert_with(|| Deflater::new(level, bits, fresh));
        self.compressed.clear();
        shrink_between_messages(&mut self.compressed);
        deflater.compress(payload, &mut self.compressed);
        Some(&self.compressed)
    }

    /// Inflates the compressed message that just ended (at most `limit` bytes) and
    /// checks a text message's UTF-8 (RFC 6455 §8.1, on the inflated text).
    pub(crate) fn inflate(
        &mut self,
        kind: MessageKind,
        compressed: &[u8],
        limit: usize,
    ) -> Result<(), WsError> {
        self.message = false;
        let fresh = self.params.peer_no_context_takeover(self.role);
        let inflater = self.inflater.get_or_insert_with(|| Inflater::new(fresh));
        // After a large message, its buffer goes back to a bounded size.
        self.inflated.clear();
        shrink_between_messages(&mut self.inflated);
        inflater.inflate(compressed, &mut self.inflated, limit)?;
        if kind == MessageKind::Text && simdutf8::basic::from_utf8(&self.inflated).is_err() {
            return Err(WsError::InvalidUtf8);
        }
        Ok(())
    }

    /// The last message inflated.
    pub(crate) fn inflated(&self) -> &[u8] {
        &self.inflated
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::types::KEEP_BUFFER_BYTES;

    /// After a large message, the inflate and compress buffers go back to a bounded
    /// size with the next message, instead of pinning the large one's memory.
    #[test]
    fn buffers_shrink_back_after_a_large_message() {
        let mut client = DeflateSession::new(DeflateParams::default(), Role::Client, 6);
        let mut server = DeflateSession::new(DeflateParams::default(), Role::Server, 6);
        let big = vec![7u8; 4 << 20];
        let wire = client.compress(&big).unwrap().to_vec();
        assert!(client.compressed.capacity() > 0);
        server.inflate(MessageKind::Binary, &wire, 8 << 20).unwrap();
        assert_eq!(server.inflated(), &big[..]);
        assert!(server.inflated.capacity() >= 4 << 20);
        let small = client.compress(b"small").unwrap().to_vec();
        server
            .inflate(MessageKind::Binary, &small, 8 << 20)
            .unwrap();
        assert_eq!(server.inflated(), b"small");
        assert!(
            server.inflated.capacity() <= KEEP_BUFFER_BYTES,
            "{}",
            server.inflated.capacity()
        );
        assert!(client.compressed.capacity() <= KEEP_BUFFER_BYTES);
    }
}
