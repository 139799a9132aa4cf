//! permessage-deflate (RFC 7692): what the two ends agree to, and the codec.
//!
//! - [`extensions`]: the `Sec-WebSocket-Extensions` header grammar (RFC 6455 §9.1).
//! - [`negotiate`]: the offer and the answer (§7.1): [`negotiate_server`] reads a
//!   client's offers and answers the first it can accept; [`ClientOffer`] writes a
//!   client's offer and checks the server's answer. Both give the [`DeflateParams`] the
//!   connection then runs under.
//! - [`codec`]: [`Deflater`] compresses one message (raw DEFLATE, flushed with a sync
//!   flush whose trailing `00 00 ff ff` is cut off, §7.2.1); [`Inflater`] puts the
//!   trailer back and inflates (§7.2.2), never producing more than the caller's limit,
//!   so a small compressed message that would inflate to gigabytes (a deflate bomb)
//!   fails with [`WsError::MessageTooLarge`](super::WsError) having used at most the
//!   limit in memory.
//! - `session`: one connection's compressor and inflater, made on first use.
//!
//! A window of 8 bits (256 bytes) cannot be produced by zlib's deflate (it uses 9), so
//! a side that may compress only with 8 bits sends its messages uncompressed, which the
//! extension always allows (the RSV1 bit is per message, §6).

pub mod codec;
pub mod extensions;
pub mod negotiate;
pub(super) mod session;
pub mod wire;

pub use codec::{Deflater, Inflater};
pub use extensions::{parse_extensions, Extension};
pub use negotiate::{negotiate_server, ClientOffer, DeflateParams, DeflateServerConfig};
pub use wire::{
    DEFAULT_LEVEL, EXTENSION, MAX_WINDOW_BITS, MIN_DEFLATE_WINDOW_BITS, MIN_WINDOW_BITS,
};
