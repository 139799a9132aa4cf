//! permessage-deflate (RFC 7692): what the two ends agree to, and the codec.
//!
//! Negotiation is text in, text out: [`negotiate_server`] reads a client's
//! `Sec-WebSocket-Extensions` offers and answers the first one it can accept;
//! [`ClientOffer`] writes a client's offer and checks the server's answer. Both give the
//! [`DeflateParams`] the connection then runs under.
//!
//! The codec: [`Deflater`] compresses one message (raw DEFLATE, flushed with a sync
//! flush whose trailing `00 00 ff ff` is cut off, §7.2.1); [`Inflater`] puts the
//! trailer back and inflates (§7.2.2), never producing more than the caller's limit, so
//! a small compressed message that would inflate to gigabytes (a deflate bomb) fails
//! with [`WsError::MessageTooLarge`] having used at most the limit in memory.
//!
//! A window of 8 bits (256 bytes) cannot be produced by zlib's deflate (it uses 9), so
//! a side that may compress only with 8 bits sends its messages uncompressed, which the
//! extension always allows (the RSV1 bit is per message, §6).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::connection::Role;
use super::error::{HandshakeError, WsError};

/// The extension's registered name.
pub const EXTENSION: &str = "permessage-deflate";

/// Smallest window (bits) a peer may ask for (§7.1.2).
pub const MIN_WINDOW_BITS: u8 = 8;
/// Smallest window our deflater can produce (zlib turns 8 into 9).
pub const MIN_DEFLATE_WINDOW_BITS: u8 = 9;
/// Largest and default window (32 KiB).
pub const MAX_WINDOW_BITS: u8 = 15;

/// The four octets a sync flush ends with, cut from every compressed message (§7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What a connection's two ends agreed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server starts every message with an empty window.
    pub server_no_context_takeover: bool,
    /// The client starts every message with an empty window.
    pub client_no_context_takeover: bool,
    /// The largest window the server may compress with (8-15).
    pub server_max_window_bits: u8,
    /// The largest window the client may compress with (8-15).
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    fn default() -> Self {
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
        }
    }
}

impl DeflateParams {
    /// How `role` compresses what it sends: the window and whether every message
    /// starts afresh. `None`: it may not use a window our deflater can make (8 bits),
    /// so it sends uncompressed.
    pub fn sending(&self, role: Role) -> Option<(u8, bool)> {
        let (bits, fresh) = match role {
            Role::Server => (self.server_max_window_bits, self.server_no_context_takeover),
            Role::Client => (self.client_max_window_bits, self.client_no_context_takeover),
        };
        (bits >= MIN_DEFLATE_WINDOW_BITS).then_some((bits, fresh))
    }

    /// Whether the peer of `role` starts every message afresh (our inflater may then
    /// reset between messages).
    pub fn peer_no_context_takeover(&self, role: Role) -> bool {
        match role {
            Role::Server => self.client_no_context_takeover,
            Role::Client => self.server_no_context_takeover,
        }
    }
}

/// What a server accepts and asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateServerConfig {
    /// The window the server compresses with (9-15); a client asking for a smaller one
    /// gets that smaller one.
    pub window_bits: u8,
    /// Always answer `server_no_context_takeover`: every message is compressed on its
    /// own (what lets the relay compress a message once for every subscriber).
    pub server_no_context_takeover: bool,
    /// Always ask the client for `client_no_context_takeover`.
    pub client_no_context_takeover: bool,
    /// Compression level (0-9) of what the server sends.
    pub level: u32,
}

/// The compression level used unless configured: zlib's fastest (level 1), since a
/// relay's messages are small and its users pay for latency before bandwidth.
pub const DEFAULT_LEVEL: u32 = 1;

impl Default for DeflateServerConfig {
    fn default() -> Self {
        DeflateServerConfig {
            window_bits: MAX_WINDOW_BITS,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            level: DEFAULT_LEVEL,
        }
    }
}

/// One extension of an `Sec-WebSocket-Extensions` list: its name and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// The extension token, as sent.
    pub name: String,
    /// Parameters (name, value if any), in order; quoted values are unquoted.
    pub params: Vec<(String, Option<String>)>,
}

/// Parses the extension list of one or more `Sec-WebSocket-Extensions` values (RFC
/// 6455 §9.1: `extension *( "," extension )`, each `token *( ";" param )`, a param
/// `token [ "=" ( token | quoted-string ) ]`). `Err` on anything else.
pub fn parse_extensions<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<Extension>, HandshakeError> {
    let bad = || HandshakeError::BadHeader("Sec-WebSocket-Extensions");
    let mut out = Vec::new();
    for value in values {
        let mut p = Tokens {
            s: value.as_bytes(),
            at: 0,
        };
        loop {
            p.skip_space();
            if p.eat(b',') {
                continue; // empty list elements are allowed (RFC 7230 §7)
            }
            if p.done() {
                break;
            }
            let name = p.token().ok_or_else(bad)?;
            let mut params = Vec::new();
            loop {
                p.skip_space();
                if p.done() || p.eat(b',') {
                    break;
                }
                if !p.eat(b';') {
                    return Err(bad());
                }
                p.skip_space();
                let key = p.token().ok_or_else(bad)?;
                p.skip_space();
                let value = if p.eat(b'=') {
                    p.skip_space();
                    Some(p.token().or_else(|| p.quoted()).ok_or_else(bad)?)
                } else {
                    None
                };
                params.push((key, value));
            }
            out.push(Extension { name, params });
        }
    }
    Ok(out)
}

/// A cursor over a header value.
struct Tokens<'a> {
    s: &'a [u8],
    at: usize,
}

impl Tokens<'_> {
    fn done(&self) -> bool {
        self.at >= self.s.len()
    }

    fn skip_space(&mut self) {
        while self
            .s
            .get(self.at)
            .is_some_and(|&b| b == b' ' || b == b'\t')
        {
            self.at += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.s.get(self.at) == Some(&b);
        self.at += hit as usize;
        hit
    }

    /// An HTTP token (RFC 7230 §3.2.6).
    fn token(&mut self) -> Option<String> {
        let start = self.at;
        while self
            .s
            .get(self.at)
            .is_some_and(|&b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
        {
            self.at += 1;
        }
        (self.at > start).then(|| String::from_utf8_lossy(&self.s[start..self.at]).into_owned())
    }

    /// A quoted-string, unquoted (`\x` stands for `x`).
    fn quoted(&mut self) -> Option<String> {
        if !self.eat(b'"') {
            return None;
        }
        let mut v = Vec::new();
        loop {
            match *self.s.get(self.at)? {
                b'"' => {
                    self.at += 1;
                    return Some(String::from_utf8_lossy(&v).into_owned());
                }
                b'\\' => {
                    v.push(*self.s.get(self.at + 1)?);
                    self.at += 2;
                }
                b => {
                    v.push(b);
                    self.at += 1;
                }
            }
        }
    }
}

/// A window size value: `8` to `15`, no leading zero (§7.1.2.1: "a decimal integer
/// value without leading zeroes between 8 to 15").
fn window_bits(v: &str) -> Option<u8> {
    if v.starts_with('0') {
        return None;
    }
    v.parse::<u8>()
        .ok()
        .filter(|b| (MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(b))
}

/// A permessage-deflate offer, checked: which parameters it carries.
#[derive(Debug, Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: the parameter without a value (the client supports it).
    client_max_window_bits: Option<Option<u8>>,
}

impl Offer {
    /// `None` if the parameters break §7.1: an unknown or repeated one, or a bad value.
    fn read(params: &[(String, Option<String>)]) -> Option<Offer> {
        let mut o = Offer::default();
        let mut seen: Vec<&str> = Vec::new();
        for (key, value) in params {
            let key = key.as_str();
            if seen.contains(&key) {
                return None; // §7.1: "the same parameter name more than once" is invalid
            }
            seen.push(key);
            match (key, value.as_deref()) {
                ("server_no_context_takeover", None) => o.server_no_context_takeover = true,
                ("client_no_context_takeover", None) => o.client_no_context_takeover = true,
                ("server_max_window_bits", Some(v)) => {
                    o.server_max_window_bits = Some(window_bits(v)?);
                }
                ("client_max_window_bits", None) => o.client_max_window_bits = Some(None),
                ("client_max_window_bits", Some(v)) => {
                    o.client_max_window_bits = Some(Some(window_bits(v)?));
                }
                _ => return None,
            }
        }
        Some(o)
    }
}

/// The server's side of §7.1: the first permessage-deflate offer among `extensions`
/// that can be accepted, as the parameters to run under and the response's
/// `Sec-WebSocket-Extensions` value. `None`: no offer, or none acceptable (the
/// connection then runs uncompressed; declining is never an error).
///
/// Accepting: `server_max_window_bits=N` is answered with `min(N, window_bits)`; the
/// no-context-takeover parameters are answered when offered or when `config` asks for
/// them; `client_max_window_bits` is left out of the answer (our inflater takes any
/// window, so the client keeps what it offered).
pub fn negotiate_server(
    extensions: &[Extension],
    config: &DeflateServerConfig,
) -> Option<(DeflateParams, String)> {
    let offer = extensions
        .iter()
        .filter(|e| e.name.eq_ignore_ascii_case(EXTENSION))
        .find_map(|e| Offer::read(&e.params))?;
    let ours = config
        .window_bits
        .clamp(MIN_DEFLATE_WINDOW_BITS, MAX_WINDOW_BITS);
    let params = DeflateParams {
        server_no_context_takeover: offer.server_no_context_takeover
            || config.server_no_context_takeover,
        client_no_context_takeover: offer.client_no_context_takeover
            || config.client_no_context_takeover,
        server_max_window_bits: offer.server_max_window_bits.map_or(ours, |n| n.min(ours)),
        client_max_window_bits: match offer.client_max_window_bits {
            Some(Some(n)) => n,
            _ => MAX_WINDOW_BITS,
        },
    };
    let mut response = EXTENSION.to_owned();
    if params.server_no_context_takeover {
        response.push_str("; server_no_context_takeover");
    }
    if params.client_no_context_takeover {
        response.push_str("; client_no_context_takeover");
    }
    // §7.1.2.1: the server may always name the window it will use.
    if offer.server_max_window_bits.is_some() || ours < MAX_WINDOW_BITS {
        response.push_str(&format!(
            "; server_max_window_bits={}",
            params.server_max_window_bits
        ));
    }
    Some((params, response))
}

/// The client's side of §7.1: the offer it sends and the check of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOffer {
    /// Ask the server for `server_no_context_takeover` (its messages then stand alone).
    pub server_no_context_takeover: bool,
    /// Compression level (0-9) of what the client sends.
    pub level: u32,
}

impl Default for ClientOffer {
    fn default() -> Self {
        ClientOffer {
            server_no_context_takeover: false,
            level: DEFAULT_LEVEL,
        }
    }
}

impl ClientOffer {
    /// The `Sec-WebSocket-Extensions` value to send. It always says
    /// `client_max_window_bits` (we can compress with any window the server names).
    pub fn header_value(&self) -> String {
        let mut v = format!("{EXTENSION}; client_max_window_bits");
        if self.server_no_context_takeover {
            v.push_str("; server_no_context_takeover");
        }
        v
    }

    /// Checks the server's `Sec-WebSocket-Extensions` answer (§7.1: the client fails
    /// the connection on anything it did not offer or an invalid parameter). `None`:
    /// the server declined.
    pub fn accept<'a>(
        &self,
        values: impl IntoIterator<Item = &'a str>,
    ) -> Result<Option<DeflateParams>, HandshakeError> {
        let not_offered = || HandshakeError::NotOffered("Sec-WebSocket-Extensions");
        let extensions = parse_extensions(values)?;
        let [ext] = extensions.as_slice() else {
            return if extensions.is_empty() {
                Ok(None)
            } else {
                Err(not_offered())
            };
        };
        if !ext.name.eq_ignore_ascii_case(EXTENSION) {
            return Err(not_offered());
        }
        let answer = Offer::read(&ext.params).ok_or(HandshakeError::BadHeader(
            "Sec-WebSocket-Extensions: permessage-deflate parameters",
        ))?;
        // §7.1.1.1: a server must answer server_no_context_takeover when asked.
        if self.server_no_context_takeover && !answer.server_no_context_takeover {
            return Err(HandshakeError::BadHeader(
                "Sec-WebSocket-Extensions: server_no_context_takeover",
            ));
        }
        let client_max_window_bits = match answer.client_max_window_bits {
            None => MAX_WINDOW_BITS,
            Some(Some(n)) => n,
            // §7.1.2.2: in an answer the parameter must have a value.
            Some(None) => {
                return Err(HandshakeError::BadHeader(
                    "Sec-WebSocket-Extensions: client_max_window_bits without a value",
                ))
            }
        };
        Ok(Some(DeflateParams {
            server_no_context_takeover: answer.server_no_context_takeover,
            client_no_context_takeover: answer.client_no_context_takeover,
            server_max_window_bits: answer.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS),
            client_max_window_bits,
        }))
    }
}

/// Compresses messages for one sender: with `fresh`, each on its own (no context
/// takeover); otherwise each may refer back to the ones before it.
pub struct Deflater {
    compress: Compress,
    fresh: bool,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("fresh", &self.fresh)
            .finish()
    }
}

impl Deflater {
    /// A deflater with a window of `window_bits` (clamped to 9-15) at `level` (0-9).
    pub fn new(level: u32, window_bits: u8, fresh: bool) -> Self {
        let bits = window_bits.clamp(MIN_DEFLATE_WINDOW_BITS, MAX_WINDOW_BITS);
        Deflater {
            compress: Compress::new_with_window_bits(Compression::new(level.min(9)), false, bits),
            fresh,
        }
    }

    /// Appends `payload`, compressed as one message (§7.2.1: sync flush, trailing
    /// `00 00 ff ff` removed), to `out`.
    pub fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        let mut input = payload;
        loop {
            // Deflate's worst case is a little over the input; a sync flush adds a few.
            out.reserve(input.len() + input.len() / 16 + 64);
            let before = self.compress.total_in();
            let status = self.compress.compress_vec(input, out, FlushCompress::Sync);
            input = &input[(self.compress.total_in() - before) as usize..];
            // With room left over the flush is complete; `Err` cannot happen for a
            // raw stream we feed in order (it means a misuse of zlib's state machine).
            if status.is_err() || (input.is_empty() && out.len() < out.capacity()) {
                break;
            }
        }
        if out.len() >= start + TAIL.len() && out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        if self.fresh {
            self.compress.reset();
        }
    }
}

/// Inflates messages from one sender.
pub struct Inflater {
    decompress: Decompress,
    fresh: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("fresh", &self.fresh)
            .finish()
    }
}

impl Inflater {
    /// An inflater for any window (15 bits); with `fresh`, the sender compresses each
    /// message on its own and the window is dropped between messages.
    pub fn new(fresh: bool) -> Self {
        Inflater {
            decompress: Decompress::new_with_window_bits(false, MAX_WINDOW_BITS),
            fresh,
        }
    }

    /// Inflates one compressed message (without its trailer) into `out` (cleared
    /// first). More than `limit` bytes of output: [`WsError::MessageTooLarge`], with at
    /// most `limit + 1` bytes produced; corrupt data: [`WsError::BadCompressedData`].
    pub fn inflate(
        &mut self,
        message: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), WsError> {
        out.clear();
        let result = self
            .inflate_part(message, out, limit)
            .and_then(|()| self.inflate_part(&TAIL, out, limit));
        if self.fresh || result.is_err() {
            self.decompress.reset(false);
        }
        result
    }

    fn inflate_part(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), WsError> {
        let too_large = |size| WsError::MessageTooLarge {
            size: size as u64,
            limit,
        };
        loop {
            if out.len() == out.capacity() {
                if out.len() > limit {
                    return Err(too_large(out.len()));
                }
                // Grow geometrically, never past one byte over the limit.
                let want = (out.len().max(input.len() * 4).max(4096)).min(limit + 1 - out.len());
                out.reserve_exact(want);
            }
            let (in_before, out_before) = (self.decompress.total_in(), out.len());
            let status = self
                .decompress
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|_| WsError::BadCompressedData)?;
            input = &input[(self.decompress.total_in() - in_before) as usize..];
            if out.len() > limit {
                return Err(too_large(out.len()));
            }
            match status {
                // The sender ended the stream (BFINAL): the next message starts anew.
                Status::StreamEnd => {
                    self.decompress.reset(false);
                    return Ok(());
                }
                _ if input.is_empty() && out.len() < out.capacity() => return Ok(()),
                // No progress with room to spare: the data is truncated or corrupt.
                _ if self.decompress.total_in() == in_before
                    && out.len() == out_before
                    && out.len() < out.capacity() =>
                {
                    return Err(WsError::BadCompressedData)
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(s: &str) -> Vec<Extension> {
        parse_extensions([s]).unwrap()
    }

    #[test]
    fn extension_lists_parse_with_quotes_and_several_fields() {
        let e = parse_extensions([
            "permessage-deflate; client_max_window_bits; server_max_window_bits=\"10\", x-foo",
            "permessage-deflate ;server_no_context_takeover",
        ])
        .unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(
            e[0].params,
            vec![
                ("client_max_window_bits".into(), None),
                ("server_max_window_bits".into(), Some("10".into()))
            ]
        );
        assert_eq!(e[1].name, "x-foo");
        assert_eq!(
            e[2].params,
            vec![("server_no_context_takeover".into(), None)]
        );
        for bad in [
            "permessage-deflate; =1",
            "a b",
            "p; x=\"unterminated",
            "p; x=",
        ] {
            assert!(parse_extensions([bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_server_takes_the_first_valid_offer() {
        let cfg = DeflateServerConfig::default();
        // The first offer has an unknown parameter, the second a repeated one.
        let offers = ext(
            "permessage-deflate; foo, permessage-deflate; server_no_context_takeover; server_no_context_takeover, permessage-deflate; server_max_window_bits=10; client_max_window_bits",
        );
        let (p, answer) = negotiate_server(&offers, &cfg).unwrap();
        assert_eq!(answer, "permessage-deflate; server_max_window_bits=10");
        assert_eq!(p.server_max_window_bits, 10);
        assert_eq!(p.sending(Role::Server), Some((10, false)));
        for bad in [
            "server_max_window_bits=16",
            "server_max_window_bits=7",
            "server_max_window_bits=010",
            "server_max_window_bits",
            "client_no_context_takeover=1",
        ] {
            assert_eq!(
                negotiate_server(&ext(&format!("permessage-deflate; {bad}")), &cfg),
                None,
                "{bad}"
            );
        }
        assert_eq!(negotiate_server(&ext("x-webkit-deflate-frame"), &cfg), None);
        assert_eq!(negotiate_server(&[], &cfg), None);
    }

    #[test]
    fn the_server_answers_what_its_config_requires() {
        let cfg = DeflateServerConfig {
            window_bits: 12,
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            level: 1,
        };
        let (p, answer) = negotiate_server(&ext("permessage-deflate"), &cfg).unwrap();
        assert_eq!(
            answer,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12"
        );
        assert_eq!(p.sending(Role::Server), Some((12, true)));
        assert!(p.peer_no_context_takeover(Role::Server));
        // A client asking for an 8-bit window gets it; the server then sends uncompressed.
        let (p, _) =
            negotiate_server(&ext("permessage-deflate; server_max_window_bits=8"), &cfg).unwrap();
        assert_eq!(p.sending(Role::Server), None);
    }

    #[test]
    fn the_client_checks_the_answer() {
        let offer = ClientOffer {
            server_no_context_takeover: true,
            ..ClientOffer::default()
        };
        assert_eq!(
            offer.header_value(),
            "permessage-deflate; client_max_window_bits; server_no_context_takeover"
        );
        let p = offer
            .accept(["permessage-deflate; server_no_context_takeover; client_max_window_bits=9"])
            .unwrap()
            .unwrap();
        assert_eq!(p.sending(Role::Client), Some((9, false)));
        assert!(p.peer_no_context_takeover(Role::Client));
        assert_eq!(offer.accept([]), Ok(None));
        for bad in [
            "permessage-deflate",                                            // ignored our request
            "permessage-deflate; server_no_context_takeover; client_max_window_bits", // no value
            "x-other",
            "permessage-deflate; server_no_context_takeover, permessage-deflate; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; bogus",
        ] {
            assert!(offer.accept([bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc_7692_example_hello() {
        // §7.2.3.1: "Hello" compressed is c2 48 cd c9 c9 07 00 (any valid stream will
        // do for the sender; the receiver must take this one).
        let mut inflater = Inflater::new(false);
        let mut out = Vec::new();
        inflater
            .inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out, 100)
            .unwrap();
        assert_eq!(out, b"Hello");
        // §7.2.3.2: the same message again, referring back to the first (takeover).
        inflater
            .inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], &mut out, 100)
            .unwrap();
        assert_eq!(out, b"Hello");
        // §7.2.3.3: an uncompressed (stored) block.
        let mut fresh = Inflater::new(true);
        fresh
            .inflate(
                &[
                    0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
                ],
                &mut out,
                100,
            )
            .unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn round_trips_with_and_without_context_takeover() {
        for fresh in [true, false] {
            let mut d = Deflater::new(6, 15, fresh);
            let mut i = Inflater::new(fresh);
            let mut wire = Vec::new();
            let mut out = Vec::new();
            let mut sizes = Vec::new();
            for n in [0usize, 1, 100, 5_000, 200_000, 100] {
                let msg: Vec<u8> = (0..n)
                    .map(|k| b"{\"topic\":\"BTC\",\"px\":1}"[k % 22])
                    .collect();
                wire.clear();
                d.compress(&msg, &mut wire);
                assert!(!wire.ends_with(&TAIL) || wire.len() < 4);
                i.inflate(&wire, &mut out, 1 << 20).unwrap();
                assert_eq!(out, msg, "fresh={fresh} n={n}");
                sizes.push(wire.len());
            }
            // The repeated 100-byte message costs less when it may refer back.
            assert_eq!(sizes[5] < sizes[2], !fresh, "{sizes:?}");
        }
    }

    #[test]
    fn a_deflate_bomb_stops_at_the_limit() {
        let mut d = Deflater::new(9, 15, true);
        let mut wire = Vec::new();
        d.compress(&vec![0u8; 16 << 20], &mut wire);
        assert!(wire.len() < 20_000, "{}", wire.len());
        let mut i = Inflater::new(true);
        let mut out = Vec::new();
        let err = i.inflate(&wire, &mut out, 1 << 20).unwrap_err();
        assert!(matches!(err, WsError::MessageTooLarge { limit, .. } if limit == 1 << 20));
        assert!(out.capacity() <= (1 << 20) + 1, "{}", out.capacity());
        // The inflater is usable afterwards.
        wire.clear();
        d.compress(b"after", &mut wire);
        i.inflate(&wire, &mut out, 100).unwrap();
        assert_eq!(out, b"after");
        // Exactly at the limit is fine.
        wire.clear();
        d.compress(&[7u8; 1000], &mut wire);
        i.inflate(&wire, &mut out, 1000).unwrap();
        assert!(i.inflate(&wire, &mut out, 999).is_err());
    }

    #[test]
    fn corrupt_data_is_an_error_not_a_hang() {
        let mut i = Inflater::new(false);
        let mut out = Vec::new();
        // Reserved block type 3.
        assert_eq!(
            i.inflate(&[0xff, 0xff, 0xff], &mut out, 100),
            Err(WsError::BadCompressedData)
        );
        i.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out, 100)
            .unwrap();
        assert_eq!(out, b"Hello");
    }
}
