//! The relay's own sequence per topic, for subscribers that ask for it (`seq=1`):
//! each text message of a topic goes to them inside an envelope
//!
//! ```text
//! {"topic":"BTC-USD","epoch":"5f1c0a9e3b7d2c41","seq":1042,"msg":<the message as sent>}
//! ```
//!
//! `seq` counts the topic's text messages from 1, with no gap, on the relay's worker
//! the topic enters on; `epoch` names that count: it changes when the relay loses it (a
//! restart, the topic evicted from the last-value cache, which holds the count), and
//! `seq` starts again at 1. So a client that sees `seq` jump, or `epoch` change, knows
//! it missed messages of that topic. Built once per message, into the worker's arena
//! like the frame itself, and only while some subscriber anywhere asked for it; other
//! subscribers get the message's bytes unchanged. Binary messages are not wrapped (a
//! JSON envelope cannot hold them) and not counted: they go out as they are.
//!
//! Limits: the count lives in the last-value cache's entry, so a topic the cache does
//! not hold (`last_value_max_topics = 0`, or a message larger than
//! `last_value_max_bytes`) goes out unwrapped; and a topic published through more than
//! one worker (publishers that landed on different workers) is counted per worker, each
//! count with its own epoch. A desk that needs one count per topic publishes each
//! topic from one connection (a feed line is one). A topic imported over NATS takes
//! the place its exporter gave each message (`LastValues::update_at`), so relays
//! behind one exporter count it alike. What came after a position is in the topic's
//! [`history`](super::history), when kept.

use bytes::Bytes;

use crate::relay::core::arena::FrameArena;
use crate::ws::OpCode;

/// Where a resuming subscriber left each topic (`{"T":["<epoch>",seq]}`), shared
/// with the workers asked for what came after.
pub type Positions = std::sync::Arc<std::collections::HashMap<Bytes, Numbered>>;

/// Reads an epoch as the envelope writes it (16 hex digits).
pub fn parse_epoch(hex: &str) -> Option<u64> {
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

/// `{"event":"reset","topic":..,"epoch":..,"seq":N}`: a resuming subscriber's position
/// cannot be resumed from (another epoch, or the history no longer reaches back);
/// the topic's last message follows, in its envelope, and the stream after it.
pub fn reset_event(topic: &[u8], now: Numbered) -> Bytes {
    let mut text = b"{\"event\":\"reset\",".to_vec();
    named_position(topic, now, &mut text);
    text.push(b'}');
    Bytes::from(crate::ws::server_frame(OpCode::Text, &text))
}

/// A message's place in its topic's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numbered {
    /// Names the count (see the module docs).
    pub epoch: u64,
    /// From 1.
    pub seq: u64,
}

/// Writes the envelope's head (`{"topic":..,"epoch":..,"seq":..,"msg":`) into `out`
/// (cleared first); the message and a closing `}` follow it.
pub fn envelope_head(topic: &[u8], n: Numbered, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(b"{");
    named_position(topic, n, out);
    out.extend_from_slice(b",\"msg\":");
}

/// `"topic":"..","epoch":"..","seq":N` (the topic escaped; the numbers written into
/// `out` as they are, no allocation once `out` has grown).
fn named_position(topic: &[u8], n: Numbered, out: &mut Vec<u8>) {
    use std::io::Write;
    out.extend_from_slice(b"\"topic\":\"");
    for &b in topic {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            // Topics with control characters are refused before this.
            _ => out.push(b),
        }
    }
    // Writing into a Vec cannot fail.
    let _ = write!(out, "\",\"epoch\":\"{:016x}\",\"seq\":{}", n.epoch, n.seq);
}

/// The envelope frame of a text message `payload` of `topic`, framed into `arena`;
/// `scratch` holds the head (kept by the caller, so no allocation once it has grown).
pub fn envelope_frame(
    arena: &mut FrameArena,
    scratch: &mut Vec<u8>,
    topic: &[u8],
    n: Numbered,
    payload: &[u8],
) -> Bytes {
    envelope_head(topic, n, scratch);
    arena.frame_parts(OpCode::Text, &[scratch, payload, b"}"])
}

/// The envelope frame of a message, allocated (for snapshots, not per message).
pub fn envelope_owned(topic: &[u8], n: Numbered, payload: &[u8]) -> Bytes {
    let mut text = Vec::with_capacity(payload.len() + topic.len() + 64);
    envelope_head(topic, n, &mut text);
    text.extend_from_slice(payload);
    text.push(b'}');
    Bytes::from(crate::ws::server_frame(OpCode::Text, &text))
}

/// `frame` (a whole server frame of `topic`) in its envelope if it is a text message
/// with a number; otherwise `frame` itself. Allocated: for snapshots and the messages
/// ingested before a worker knew of a `seq=1` subscriber, not per message.
pub fn enveloped_frame(topic: &[u8], frame: &Bytes, number: Option<Numbered>) -> Bytes {
    match (crate::ws::FrameHeader::parse(frame), number) {
        (Ok(Some((h, header_len))), Some(n)) if h.opcode == OpCode::Text => {
            envelope_owned(topic, n, &frame[header_len..])
        }
        _ => frame.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_is_json_around_the_message_as_sent() {
        let n = Numbered {
            epoch: 0x5f1c_0a9e_3b7d_2c41,
            seq: 1042,
        };
        let f = envelope_owned(br#"a"b\c"#, n, br#"{"px":1}"#);
        let text = std::str::from_utf8(&f[2..]).unwrap();
        assert_eq!(
            text,
            r#"{"topic":"a\"b\\c","epoch":"5f1c0a9e3b7d2c41","seq":1042,"msg":{"px":1}}"#
        );
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["topic"], "a\"b\\c");
        let mut arena = FrameArena::new();
        let mut scratch = Vec::new();
        let g = envelope_frame(&mut arena, &mut scratch, br#"a"b\c"#, n, br#"{"px":1}"#);
        assert_eq!(
            f, g,
            "the arena's frame and the owned one are the same bytes"
        );
        let zero = envelope_owned(b"T", Numbered { epoch: 0, seq: 0 }, b"1");
        assert!(std::str::from_utf8(&zero[2..])
            .unwrap()
            .contains(r#""epoch":"0000000000000000","seq":0,"#));
        let max = envelope_owned(
            b"T",
            Numbered {
                epoch: u64::MAX,
                seq: u64::MAX,
            },
            b"1",
        );
        assert!(std::str::from_utf8(&max[2..])
            .unwrap()
            .contains("18446744073709551615"));
    }
}
