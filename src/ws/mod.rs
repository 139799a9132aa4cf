//! RFC 6455 without IO: handshake, frames, masking, message assembly, UTF-8, close.
//!
//! This module turns bytes into events and events into bytes. It never sees a socket, a
//! clock, a thread or a channel: the caller passes in bytes and the current `Instant`,
//! and gets back events and bytes to send. So every rule here can be driven by a test,
//! byte by byte, and the same core serves the relay's server side, the feed dialler and
//! the load generator's client side.
//!
//! - [`handshake`]: the opening handshake, server and client side.
//! - [`frame`]: the frame header codec.
//! - [`mask`]: SIMD unmasking in place (the only `unsafe` in this module).
//! - [`utf8`]: incremental UTF-8 validation.
//! - [`close_code`]: close status codes; [`close`]: the close payload and frame.
//! - [`deflate`]: permessage-deflate (RFC 7692): negotiation, compressing and inflating.
//! - [`Connection`]: one connection's state machine after the handshake; [`types`],
//!   what it is configured with and hands out (role, limits, state, events).
//!
//! Next to every check, a comment names the section of RFC 6455 it enforces. What this
//! module does not do: extensions other than permessage-deflate.

pub mod assembler;
pub mod close;
pub mod close_code;
pub mod connection;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod types;
pub mod utf8;

pub use close::encode_close;
pub use close_code::CloseCode;
pub use connection::{Closing, Connection};
pub use deflate::{DeflateParams, DeflateServerConfig, Deflater, Inflater};
pub use error::{HandshakeError, WsError};
pub use frame::{
    encode_frame, encode_frame_rsv, encode_ping, encode_server_frame, server_frame, FrameHeader,
    OpCode, RSV1,
};
pub use types::{Event, Limits, MessageKind, Role, State};

#[cfg(test)]
mod tests;
