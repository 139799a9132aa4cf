//! Negotiating permessage-deflate (RFC 7692 §7.1): which parameters a side may offer,
//! how a server answers the first offer it can accept, how a client checks the answer.

use super::extensions::{parse_extensions, Extension};
use super::{DEFAULT_LEVEL, EXTENSION, MAX_WINDOW_BITS, MIN_DEFLATE_WINDOW_BITS, MIN_WINDOW_BITS};
use crate::ws::error::HandshakeError;
use crate::ws::types::Role;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(s: &str) -> Vec<Extension> {
        parse_extensions([s]).unwrap()
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
}
