//! Reassembly of fragmented messages (RFC 6455 §5.4), bounded by a size limit.
//!
//! Only messages that do not arrive as one frame in the caller's buffer are copied here:
//! fragmented messages, and single frames too large to wait for in the read buffer. The
//! buffer's capacity is kept between messages, so a connection that regularly gets
//! fragmented messages stops allocating after the first few.

use super::error::WsError;

/// Accumulates the payload of one message at a time.
#[derive(Debug, Default)]
pub struct Assembler {
    buf: Vec<u8>,
    limit: usize,
}

impl Assembler {
    /// An empty assembler that refuses messages over `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Assembler {
            buf: Vec::new(),
            limit,
        }
    }

    /// Appends payload bytes; fails (close 1009) once the message is over the limit.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), WsError> {
        let size = self.buf.len() + bytes.len();
        if size > self.limit {
            return Err(WsError::MessageTooLarge {
                size: size as u64,
                limit: self.limit,
            });
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// Bytes held so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no bytes are held.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The message so far.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// Empties the buffer for the next message, keeping its capacity up to a bound so
    /// one huge message does not pin its memory for the connection's whole life.
    pub fn clear(&mut self) {
        self.buf.clear();
        shrink_between_messages(&mut self.buf);
    }
}

/// Gives back what an empty `buf` holds beyond
/// [`KEEP_BUFFER_BYTES`](crate::ws::types::KEEP_BUFFER_BYTES).
pub(crate) fn shrink_between_messages(buf: &mut Vec<u8>) {
    if buf.is_empty() && buf.capacity() > crate::ws::types::KEEP_BUFFER_BYTES {
        buf.shrink_to(crate::ws::types::KEEP_BUFFER_BYTES);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enforces_limit_across_pushes() {
        let mut a = Assembler::new(10);
        a.push(b"hello").unwrap();
        a.push(b"world").unwrap();
        assert_eq!(
            a.push(b"!"),
            Err(WsError::MessageTooLarge {
                size: 11,
                limit: 10
            })
        );
        assert_eq!(a.as_slice(), b"helloworld");
        a.clear();
        assert!(a.is_empty());
    }
}
