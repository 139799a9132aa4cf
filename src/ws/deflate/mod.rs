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
//! - [`session`]: one connection's compressor and inflater, made on first use.
//!
//! A window of 8 bits (256 bytes) cannot be produced by zlib's deflate (it uses 9), so
//! a side that may compress only with 8 bits sends its messages uncompressed, which the
//! extension always allows (the RSV1 bit is per message, §6).

pub mod codec;
pub mod extensions;
pub mod negotiate;
pub(super) mod session;

pub use codec::{Deflater, Inflater};
pub use extensions::{parse_extensions, Extension};
pub use negotiate::{negotiate_server, ClientOffer, DeflateParams, DeflateServerConfig};

/// The extension's registered name.
pub const EXTENSION: &str = "permessage-deflate";

/// Smallest window (bits) a peer may ask for (§7.1.2).
pub const MIN_WINDOW_BITS: u8 = 8;
/// Smallest window our deflater can produce (zlib turns 8 into 9).
pub const MIN_DEFLATE_WINDOW_BITS: u8 = 9;
/// Largest and default window (32 KiB).
pub const MAX_WINDOW_BITS: u8 = 15;

/// The compression level used unless configured: zlib's fastest (level 1), since a
/// relay's messages are small and its users pay for latency before bandwidth.
pub const DEFAULT_LEVEL: u32 = 1;

/// The four octets a sync flush ends with, cut from every compressed message (§7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
