//! What a [`Connection`](super::Connection) is configured with and hands out: its
//! role, its limits, the state of its close handshake, and the events its input makes.

use std::time::{Duration, Instant};

use super::close_code::CloseCode;
use super::frame::OpCode;

/// Which end of the connection we are; it decides who masks (§5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepted the connection: expects masked frames, sends unmasked ones.
    Server,
    /// Dialled the connection: expects unmasked frames, masks what it sends.
    Client,
}

/// The two kinds of data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// UTF-8 text (opcode 0x1).
    Text,
    /// Arbitrary bytes (opcode 0x2).
    Binary,
}

impl MessageKind {
    /// The opcode of the first frame of such a message.
    pub fn opcode(self) -> OpCode {
        match self {
            MessageKind::Text => OpCode::Text,
            MessageKind::Binary => OpCode::Binary,
        }
    }
}

/// Capacity a message buffer (reassembly, inflate, compress) keeps between messages:
/// one huge message does not pin its memory for the connection's whole life.
pub(crate) const KEEP_BUFFER_BYTES: usize = 256 * 1024;

/// Sizes and times a connection enforces. Every limit is named so operators can set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame payload accepted; larger → close 1009.
    pub max_frame_bytes: usize,
    /// Largest message (all fragments together) accepted; larger → close 1009.
    pub max_message_bytes: usize,
    /// Most frames one message may come in; more → close 1009. Each frame costs a
    /// header parse and a copy into the reassembly buffer whatever its size, so a
    /// message of one-byte fragments is bounded by this as well as by its size.
    pub max_fragments: usize,
    /// Frames up to this size (header included) are handed out in place from the
    /// caller's buffer once whole; larger frames stream into the reassembly buffer as
    /// they arrive. The caller's read buffer must hold at least this many bytes.
    pub inline_frame_bytes: usize,
    /// Largest opening-handshake header block.
    pub max_header_bytes: usize,
    /// How long to wait for the peer's close frame after sending ours.
    pub close_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 16 << 20,
            max_message_bytes: 16 << 20,
            // Room for a 4 MiB message in 64-byte fragments (Autobahn 9.3.1).
            max_fragments: 1 << 17,
            inline_frame_bytes: 64 << 10,
            max_header_bytes: 8 << 10,
            close_timeout: Duration::from_secs(5),
        }
    }
}

/// Where the close handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// We sent a close frame and wait for the peer's, until the deadline.
    CloseSent {
        /// When to give up waiting and close the TCP connection anyway.
        deadline: Instant,
    },
    /// The close handshake finished, or the connection failed: once
    /// [`Connection::poll_transmit`](super::Connection::poll_transmit) has nothing left, close the TCP connection.
    Closed,
}

/// What [`Connection::handle_input`](super::Connection::handle_input) found in the bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A whole message: in place in the caller's buffer (unmasked) when it came as one
    /// frame, or from the reassembly buffer when it came in fragments.
    Message {
        /// Text (already validated as UTF-8) or binary.
        kind: MessageKind,
        /// The payload (inflated, if it came compressed).
        payload: &'a [u8],
        /// permessage-deflate: the message as it came, compressed (without the
        /// trailing `00 00 ff ff`, RFC 7692 §7.2.1), if it did. A relay can pass these
        /// bytes on when the sender compressed the message on its own.
        compressed: Option<&'a [u8]>,
    },
    /// A ping; the pong is already queued for [`Connection::poll_transmit`](super::Connection::poll_transmit).
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// The peer's close frame (code and reason, if any); our reply, if one is due, is queued.
    Close(Option<(CloseCode, &'a str)>),
    /// Bytes were taken into a message that is not complete yet; nothing to do.
    Progress,
}
