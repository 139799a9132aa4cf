//! What RFC 7692 fixes on the wire (the extension's name, window sizes, the tail a sync
//! flush ends with) and the level we compress at unless configured.

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
pub(super) const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
