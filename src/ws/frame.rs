//! Frame header codec (RFC 6455 §5.2): parse from any partial buffer, encode into ours.
//!
//! ```text
//!  0               1               2               3
//!  0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! ```
//!
//! [`FrameHeader::parse`] returns `Ok(None)` and consumes nothing while the header is
//! incomplete, so the caller can feed it whatever a read returned. Which side may mask
//! is the connection's business ([`Connection`](super::Connection)), not the header's.

use super::error::WsError;
use super::mask::apply_mask;

/// Largest payload of a control frame (§5.5: "All control frames MUST have a payload
/// length of 125 bytes or less").
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// The frame opcode (§5.2). Reserved values are rejected when parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: a UTF-8 text message (or its first fragment).
    Text,
    /// 0x2: a binary message (or its first fragment).
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    /// Decodes the low nibble of the first header byte.
    pub fn from_u8(v: u8) -> Result<OpCode, WsError> {
        Ok(match v {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => return Err(WsError::ReservedOpCode(other)),
        })
    }

    /// The wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, ping and pong (§5.5): opcodes with the high bit set.
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Final fragment of a message.
    pub fin: bool,
    /// RSV1-3 in the low three bits.
    pub rsv: u8,
    /// What the frame carries.
    pub opcode: OpCode,
    /// The masking key, if the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub payload_len: u64,
}

impl FrameHeader {
    /// The largest header: 2 bytes, a 64-bit length and a 4-byte key.
    pub const MAX_SIZE: usize = 14;

    /// Parses a header from the start of `buf`. `Ok(None)`: need more bytes, nothing
    /// consumed. Otherwise the header and its length in bytes.
    ///
    /// Checks everything a header alone can break: reserved bits (no extension is
    /// negotiated), reserved opcodes, fragmented or oversized control frames, and the
    /// 64-bit length's top bit.
    pub fn parse(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, WsError> {
        FrameHeader::parse_with(buf, 0)
    }

    /// [`parse`](Self::parse), letting through the reserved bits in `allowed_rsv` (RSV1
    /// is `0b100`) that a negotiated extension defines; which frames may carry them is
    /// the extension's rule, checked by the caller.
    pub fn parse_with(
        buf: &[u8],
        allowed_rsv: u8,
    ) -> Result<Option<(FrameHeader, usize)>, WsError> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        let fin = b0 & 0x80 != 0;
        let rsv = (b0 >> 4) & 0x7;
        // §5.2: "MUST be 0 unless an extension is negotiated that defines meanings for
        // non-zero values. If a nonzero value is received and none of the negotiated
        // extensions defines the meaning of such a nonzero value, the receiving endpoint
        // MUST _Fail the WebSocket Connection_."
        if rsv & !allowed_rsv != 0 {
            return Err(WsError::ReservedBitsSet(rsv));
        }
        // §5.2: "If an unknown opcode is received, the receiving endpoint MUST _Fail the
        // WebSocket Connection_."
        let opcode = OpCode::from_u8(b0 & 0x0f)?;
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7f;
        if opcode.is_control() {
            // §5.5: "All control frames MUST have a payload length of 125 bytes or less
            // and MUST NOT be fragmented."
            if !fin {
                return Err(WsError::FragmentedControl);
            }
            if len7 > 125 {
                return Err(WsError::ControlFrameTooLong(len7 as u64));
            }
        }
        let (payload_len, mut at) = match len7 {
            126 => match buf.get(2..4) {
                Some(b) => (u16::from_be_bytes([b[0], b[1]]) as u64, 4),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(b) => {
                    let mut be = [0u8; 8];
                    be.copy_from_slice(b);
                    let len = u64::from_be_bytes(be);
                    // §5.2: "the most significant bit MUST be 0".
                    if len >> 63 != 0 {
                        return Err(WsError::InvalidLength);
                    }
                    (len, 10)
                }
                None => return Ok(None),
            },
            n => (n as u64, 2),
        };
        let mask = if masked {
            match buf.get(at..at + 4) {
                Some(k) => {
                    at += 4;
                    Some([k[0], k[1], k[2], k[3]])
                }
                None => return Ok(None),
            }
        } else {
            None
        };
        let header = FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            payload_len,
        };
        Ok(Some((header, at)))
    }

    /// The encoded size of this header.
    pub fn encoded_len(&self) -> usize {
        let len = FrameHeader::server_header_len(self.payload_len as usize);
        len + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Writes the header into `out` and returns its length; lengths use the minimal
    /// encoding (§5.2: "the minimal number of bytes MUST be used").
    pub fn encode(&self, out: &mut [u8; Self::MAX_SIZE]) -> usize {
        out[0] = (self.fin as u8) << 7 | (self.rsv & 7) << 4 | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut at = match self.payload_len {
            n @ 0..=125 => {
                out[1] = mask_bit | n as u8;
                2
            }
            n @ 126..=0xffff => {
                out[1] = mask_bit | 126;
                out[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                4
            }
            n => {
                out[1] = mask_bit | 127;
                out[2..10].copy_from_slice(&n.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            out[at..at + 4].copy_from_slice(&key);
            at += 4;
        }
        at
    }
}

/// The RSV1 bit in [`FrameHeader::rsv`]: "Per-Message Compressed" (RFC 7692 §6).
pub const RSV1: u8 = 0b100;

/// Appends one whole frame to `out`: header, then the payload, masked with `mask` if
/// given (a client's frames) or as is (a server's frames, encoded once for everyone).
pub fn encode_frame(
    out: &mut Vec<u8>,
    opcode: OpCode,
    fin: bool,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    encode_frame_rsv(out, opcode, fin, 0, payload, mask);
}

/// [`encode_frame`] with reserved bits `rsv` set (RSV1 marks a compressed message).
pub fn encode_frame_rsv(
    out: &mut Vec<u8>,
    opcode: OpCode,
    fin: bool,
    rsv: u8,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    let header = FrameHeader {
        fin,
        rsv,
        opcode,
        mask,
        payload_len: payload.len() as u64,
    };
    let mut head = [0u8; FrameHeader::MAX_SIZE];
    let n = header.encode(&mut head);
    out.reserve(n + payload.len());
    out.extend_from_slice(&head[..n]);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key, 0);
    }
}

/// Appends a ping frame; a payload over 125 bytes is cut (§5.5: control frames carry at
/// most 125 bytes).
pub fn encode_ping(out: &mut Vec<u8>, payload: &[u8], mask: Option<[u8; 4]>) {
    let payload = &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)];
    encode_frame(out, OpCode::Ping, true, payload, mask);
}

impl FrameHeader {
    /// The length of an unmasked (server) header for a payload of `payload_len` bytes.
    pub fn server_header_len(payload_len: usize) -> usize {
        match payload_len as u64 {
            0..=125 => 2,
            126..=0xffff => 4,
            _ => 10,
        }
    }
}

/// Appends a whole unfragmented server frame (unmasked) for `payload` to `out`; `rsv`
/// is [`RSV1`] for a compressed message, else 0.
pub fn encode_server_frame(out: &mut bytes::BytesMut, opcode: OpCode, rsv: u8, payload: &[u8]) {
    let header = FrameHeader {
        fin: true,
        rsv,
        opcode,
        mask: None,
        payload_len: payload.len() as u64,
    };
    let mut head = [0u8; FrameHeader::MAX_SIZE];
    let n = header.encode(&mut head);
    out.reserve(n + payload.len());
    out.extend_from_slice(&head[..n]);
    out.extend_from_slice(payload);
}

/// A whole unfragmented server frame (unmasked) for `payload`, exactly sized: what the
/// relay encodes once and shares with every subscriber.
pub fn server_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let header = FrameHeader {
        fin: true,
        rsv: 0,
        opcode,
        mask: None,
        payload_len: payload.len() as u64,
    };
    let mut frame = Vec::with_capacity(header.encoded_len() + payload.len());
    encode_frame(&mut frame, opcode, true, payload, None);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_examples() {
        // §5.7: a single-frame unmasked text message "Hello".
        let (h, n) = FrameHeader::parse(&[0x81, 0x05, 0x48]).unwrap().unwrap();
        assert_eq!(
            (h.fin, h.opcode, h.mask, h.payload_len, n),
            (true, OpCode::Text, None, 5, 2)
        );
        // §5.7: a fragmented unmasked text message, first and last fragments.
        let (h, _) = FrameHeader::parse(&[0x01, 0x03]).unwrap().unwrap();
        assert_eq!((h.fin, h.opcode), (false, OpCode::Text));
        let (h, _) = FrameHeader::parse(&[0x80, 0x02]).unwrap().unwrap();
        assert_eq!((h.fin, h.opcode), (true, OpCode::Continuation));
        // §5.7: 256 bytes binary in a single unmasked frame; 64 KiB likewise.
        let (h, n) = FrameHeader::parse(&[0x82, 0x7e, 0x01, 0x00])
            .unwrap()
            .unwrap();
        assert_eq!((h.payload_len, n), (256, 4));
        let (h, n) = FrameHeader::parse(&[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0])
            .unwrap()
            .unwrap();
        assert_eq!((h.payload_len, n), (65536, 10));
        // §5.7: masked "Hello".
        let (h, n) = FrameHeader::parse(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d])
            .unwrap()
            .unwrap();
        assert_eq!((h.mask, n), (Some([0x37, 0xfa, 0x21, 0x3d]), 6));
    }

    #[test]
    fn incomplete_headers_need_more() {
        let full = [0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4];
        for cut in 0..full.len() {
            assert_eq!(FrameHeader::parse(&full[..cut]), Ok(None), "cut {cut}");
        }
        assert!(FrameHeader::parse(&full).unwrap().is_some());
    }

    #[test]
    fn protocol_violations() {
        for rsv in 1..8u8 {
            assert_eq!(
                FrameHeader::parse(&[0x81 | rsv << 4, 0]),
                Err(WsError::ReservedBitsSet(rsv))
            );
        }
        for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
            assert_eq!(
                FrameHeader::parse(&[0x80 | op, 0]),
                Err(WsError::ReservedOpCode(op))
            );
        }
        for op in [0x8u8, 0x9, 0xa] {
            assert_eq!(
                FrameHeader::parse(&[op, 0]),
                Err(WsError::FragmentedControl)
            );
            assert_eq!(
                FrameHeader::parse(&[0x80 | op, 126, 0, 126]),
                Err(WsError::ControlFrameTooLong(126))
            );
            assert!(FrameHeader::parse(&[0x80 | op, 125]).unwrap().is_some());
        }
        assert_eq!(
            FrameHeader::parse(&[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Err(WsError::InvalidLength)
        );
    }

    proptest! {
        #[test]
        fn encode_then_parse_round_trips(
            fin in any::<bool>(),
            op in prop::sample::select(vec![OpCode::Continuation, OpCode::Text, OpCode::Binary]),
            len in prop_oneof![0u64..130, 65_000u64..70_000, 0u64..(1 << 40)],
            mask in any::<Option<[u8; 4]>>(),
        ) {
            let h = FrameHeader { fin, rsv: 0, opcode: op, mask, payload_len: len };
            let mut buf = [0u8; FrameHeader::MAX_SIZE];
            let n = h.encode(&mut buf);
            prop_assert_eq!(n, h.encoded_len());
            prop_assert_eq!(FrameHeader::parse(&buf[..n]), Ok(Some((h, n))));
        }
    }
}
