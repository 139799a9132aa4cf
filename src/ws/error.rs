//! What can go wrong in the protocol core, named after the rule that was broken.
//!
//! `ws` does no IO, so nothing here wraps `std::io::Error`. Each [`WsError`] says whose
//! fault a failure is, and [`WsError::close_code`] maps it to the close code that fails
//! the connection (RFC 6455 §7.4.1), the way rustls maps an error to an alert.

use super::close_code::CloseCode;

/// A peer broke RFC 6455, or a message is over one of our [`Limits`](super::Limits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WsError {
    /// §5.2: RSV1-3 must be 0 unless an extension defining them was negotiated.
    #[error("reserved bits set without a negotiated extension (rsv={0:#05b})")]
    ReservedBitsSet(u8),
    /// §5.2: opcodes 0x3-0x7 and 0xB-0xF are reserved.
    #[error("reserved opcode {0:#x}")]
    ReservedOpCode(u8),
    /// §5.5: control frames must not be fragmented.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// §5.5: control frames carry at most 125 bytes of payload.
    #[error("control frame payload of {0} bytes exceeds 125")]
    ControlFrameTooLong(u64),
    /// §5.2: the most significant bit of a 64-bit payload length must be 0.
    #[error("64-bit payload length with the most significant bit set")]
    InvalidLength,
    /// §5.1: a server must close the connection on an unmasked client frame.
    #[error("unmasked frame from a client")]
    UnmaskedClientFrame,
    /// §5.1: a client must close the connection on a masked server frame.
    #[error("masked frame from a server")]
    MaskedServerFrame,
    /// §5.4: a continuation frame arrived with no fragmented message in progress.
    #[error("continuation frame with nothing to continue")]
    NothingToContinue,
    /// §5.4: a new text or binary frame arrived inside a fragmented message.
    #[error("new data frame inside a fragmented message")]
    ExpectedContinuation,
    /// §8.1: a text message, or a close reason, is not valid UTF-8.
    #[error("invalid UTF-8 in a text message or close reason")]
    InvalidUtf8,
    /// §5.5.1: a close payload of one byte (half a status code).
    #[error("close frame with a 1-byte payload")]
    CloseTooShort,
    /// §7.4: a close code that must not appear on the wire.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// A frame's payload is larger than [`Limits::max_frame_bytes`](super::Limits).
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    FrameTooLarge {
        /// Declared payload size.
        size: u64,
        /// The configured limit.
        limit: usize,
    },
    /// A message is larger than [`Limits::max_message_bytes`](super::Limits).
    #[error("message of at least {size} bytes exceeds the limit of {limit}")]
    MessageTooLarge {
        /// Bytes seen so far.
        size: u64,
        /// The configured limit.
        limit: usize,
    },
    /// A message came in more frames than [`Limits::max_fragments`](super::Limits).
    #[error("message in more than {limit} fragments")]
    TooManyFragments {
        /// The configured limit.
        limit: usize,
    },
    /// Bytes arrived after the peer's close frame (§5.5.1: nothing follows a close).
    #[error("data after the close frame")]
    DataAfterClose,
    /// RFC 7692 §7.2.2: a compressed message that does not inflate.
    #[error("compressed message does not inflate (corrupt DEFLATE data)")]
    BadCompressedData,
}

impl WsError {
    /// The close code that fails the connection for this error (§7.4.1).
    pub fn close_code(&self) -> CloseCode {
        match self {
            WsError::InvalidUtf8 | WsError::BadCompressedData => CloseCode::INVALID_PAYLOAD,
            WsError::FrameTooLarge { .. }
            | WsError::MessageTooLarge { .. }
            | WsError::TooManyFragments { .. } => CloseCode::MESSAGE_TOO_BIG,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

/// Why an opening handshake failed (RFC 6455 §4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The bytes are not an HTTP/1.1 request or response.
    #[error("malformed HTTP: {0}")]
    MalformedHttp(&'static str),
    /// The header block is over [`Limits::max_header_bytes`](super::Limits) or has too many fields.
    #[error("header block larger than {0} bytes or with too many fields")]
    HeaderTooLarge(usize),
    /// §4.2.1: the method must be GET.
    #[error("method must be GET")]
    MethodNotGet,
    /// §4.2.1: HTTP/1.1 or higher.
    #[error("HTTP version must be 1.1")]
    WrongHttpVersion,
    /// §4.2.1: a required header is missing or has the wrong value.
    #[error("missing or invalid header: {0}")]
    BadHeader(&'static str),
    /// §4.2.1: `Sec-WebSocket-Key` must be the base64 encoding of 16 bytes.
    #[error("Sec-WebSocket-Key is not base64 of 16 bytes")]
    BadKey,
    /// §4.4: only version 13 is spoken here.
    #[error("unsupported Sec-WebSocket-Version (only 13)")]
    UnsupportedVersion,
    /// §4.1: the server did not answer 101.
    #[error("server answered {0} instead of 101")]
    NotSwitching(u16),
    /// §4.1: `Sec-WebSocket-Accept` does not match the key we sent.
    #[error("Sec-WebSocket-Accept does not match the key")]
    AcceptMismatch,
    /// §4.1: the server selected an extension or subprotocol we did not offer.
    #[error("server selected an extension or subprotocol that was not offered: {0}")]
    NotOffered(&'static str),
}

impl HandshakeError {
    /// The HTTP status a server answers with (426 asks for version 13, §4.4).
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::UnsupportedVersion => 426,
            _ => 400,
        }
    }
}
