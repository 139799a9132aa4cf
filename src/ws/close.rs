//! Close status codes (RFC 6455 §7.4) and the close frame payload (§5.5.1).

use super::error::WsError;
use super::frame::MAX_CONTROL_PAYLOAD;

/// A close status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection was fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1007: data inconsistent with the message type (invalid UTF-8 in text).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a message violates the endpoint's policy (used for slow consumers).
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message is too big to process.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1013: try again later (overloaded).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);

    /// Whether this code may be sent in a close frame (§7.4.1, §7.4.2 and the IANA
    /// registry): 1000-1003 and 1007-1014 are defined, 3000-4999 are for libraries and
    /// applications. 1004-1006 and 1015 are reserved and must never be on the wire;
    /// 0-999, the rest of 1000-2999 and 5000+ are not in use.
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Writes a close payload into `out`: the code, then `reason` cut to fit 125 bytes at a
/// character boundary (§5.5.1: the reason is UTF-8 and a control frame carries at most
/// 125 bytes). Returns the payload length.
pub fn write_close_payload(
    code: CloseCode,
    reason: &str,
    out: &mut [u8; MAX_CONTROL_PAYLOAD],
) -> usize {
    out[..2].copy_from_slice(&code.0.to_be_bytes());
    let mut cut = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    out[2..2 + cut].copy_from_slice(&reason.as_bytes()[..cut]);
    2 + cut
}

/// Parses a received close payload: empty, or a valid code and a UTF-8 reason (§5.5.1).
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<(CloseCode, &str)>, WsError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(WsError::CloseTooShort),
        _ => {
            let code = CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
            if !code.is_valid_on_wire() {
                return Err(WsError::InvalidCloseCode(code.0));
            }
            let reason =
                simdutf8::basic::from_utf8(&payload[2..]).map_err(|_| WsError::InvalidUtf8)?;
            Ok(Some((code, reason)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_codes_match_rfc_and_registry() {
        for code in 0..=u16::MAX {
            let valid = CloseCode(code).is_valid_on_wire();
            let expected = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            assert_eq!(valid, expected, "code {code}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert!(!CloseCode(bad).is_valid_on_wire(), "{bad}");
        }
    }

    #[test]
    fn payload_rules() {
        assert_eq!(parse_close_payload(&[]), Ok(None));
        assert_eq!(parse_close_payload(&[3]), Err(WsError::CloseTooShort));
        assert_eq!(
            parse_close_payload(&[0x03, 0xe8, b'o', b'k']),
            Ok(Some((CloseCode::NORMAL, "ok")))
        );
        assert_eq!(
            parse_close_payload(&[0x03, 0xed]),
            Err(WsError::InvalidCloseCode(1005))
        );
        assert_eq!(
            parse_close_payload(&[0x03, 0xe8, 0xff]),
            Err(WsError::InvalidUtf8)
        );
    }
}
