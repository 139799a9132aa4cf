//! The close frame (RFC 6455 §5.5.1): its payload, written and parsed, and the frame.

use super::close_code::CloseCode;
use super::error::WsError;
use super::frame::{encode_frame, OpCode, MAX_CONTROL_PAYLOAD};

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

/// Appends a close frame: `code` and `reason` (cut to fit at a character boundary, see
/// [`write_close_payload`]), or an empty close frame when `close` is `None`.
pub fn encode_close(out: &mut Vec<u8>, close: Option<(CloseCode, &str)>, mask: Option<[u8; 4]>) {
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    let len = match close {
        None => 0,
        Some((code, reason)) => write_close_payload(code, reason, &mut payload),
    };
    encode_frame(out, OpCode::Close, true, &payload[..len], mask);
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
