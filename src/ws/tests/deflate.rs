//! permessage-deflate on a [`Connection`] (RFC 7692 §6-7): compressed messages in one
//! frame, in fragments and streamed, both roles; the RSV1 rules; limits after inflation.

use proptest::prelude::*;

use super::*;
use crate::ws::deflate::{DeflateParams, Deflater};
use crate::ws::frame::{encode_frame_rsv, RSV1};

const MASK: Option<[u8; 4]> = Some([1, 2, 3, 4]);

fn deflate_server(limits: Limits) -> Connection {
    Connection::new(Role::Server, limits, 1).with_deflate(DeflateParams::default(), 6)
}

fn compressed(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Deflater::new(6, 15, true).compress(payload, &mut out);
    out
}

/// A masked client message, compressed, cut into frames of `piece` compressed bytes.
fn client_frames(kind: MessageKind, payload: &[u8], piece: usize) -> Vec<u8> {
    let body = compressed(payload);
    let mut out = Vec::new();
    let pieces: Vec<&[u8]> = if body.is_empty() {
        vec![&[]]
    } else {
        body.chunks(piece.max(1)).collect()
    };
    for (i, p) in pieces.iter().enumerate() {
        let (op, rsv) = if i == 0 {
            (kind.opcode(), RSV1)
        } else {
            (OpCode::Continuation, 0)
        };
        encode_frame_rsv(&mut out, op, i + 1 == pieces.len(), rsv, p, MASK);
    }
    out
}

#[test]
fn compressed_messages_arrive_inflated_in_any_framing() {
    let text = "{\"topic\":\"BTC-USD\",\"px\":\"101.5\",\"note\":\"naïve ✓\"}".repeat(40);
    let limits = Limits {
        inline_frame_bytes: 256,
        ..Limits::default()
    };
    for piece in [1, 7, 100, 1 << 20] {
        let mut s = deflate_server(limits);
        let wire = [
            client_frames(MessageKind::Text, text.as_bytes(), piece),
            client_frames(MessageKind::Binary, &[0u8; 3000], piece),
            // An uncompressed message is still fine (RSV1 is per message).
            raw(0x81, b"plain", MASK),
        ]
        .concat();
        let (got, _, err) = drive(&mut s, &[&wire]);
        assert_eq!(err, None, "piece {piece}");
        assert_eq!(
            got,
            vec![
                Got::Message(MessageKind::Text, text.as_bytes().to_vec()),
                Got::Message(MessageKind::Binary, vec![0u8; 3000]),
                Got::Message(MessageKind::Text, b"plain".to_vec()),
            ],
            "piece {piece}"
        );
    }
}

#[test]
fn both_roles_send_compressed_and_read_each_other() {
    let params = DeflateParams {
        client_no_context_takeover: true,
        ..DeflateParams::default()
    };
    let mut c = Connection::new(Role::Client, Limits::default(), 7).with_deflate(params, 1);
    let mut s = Connection::new(Role::Server, Limits::default(), 1).with_deflate(params, 9);
    let msg = b"{\"topic\":\"A\",\"seq\":1}".repeat(50);
    let mut wire = Vec::new();
    c.send(MessageKind::Text, &msg, &mut wire).unwrap();
    assert_eq!(wire[0] & 0x40, 0x40, "RSV1 set");
    assert!(
        wire.len() < msg.len() / 4,
        "{} of {}",
        wire.len(),
        msg.len()
    );
    let (got, _, err) = drive(&mut s, &[&wire]);
    assert_eq!(
        (got, err),
        (vec![Got::Message(MessageKind::Text, msg.clone())], None)
    );
    let mut back = Vec::new();
    s.send(MessageKind::Binary, &msg, &mut back).unwrap();
    s.send(MessageKind::Binary, &msg, &mut back).unwrap();
    let (got, _, err) = drive(&mut c, &[&back]);
    assert_eq!(err, None);
    assert_eq!(got.len(), 2);
    // Control frames are never compressed.
    let mut ping = Vec::new();
    c.send_ping(b"p", &mut ping).unwrap();
    assert_eq!(ping[0] & 0x70, 0);
}

#[test]
fn rsv1_is_only_for_the_first_frame_of_a_data_message() {
    let ping = raw(0x80 | 0x40 | 0x9, b"", MASK);
    let mut s = deflate_server(Limits::default());
    let (_, out, err) = drive(&mut s, &[&ping]);
    assert_eq!(err, Some(WsError::ReservedBitsSet(RSV1)));
    assert_eq!(close_sent(&out).map(|c| c.0), Some(1002));

    let mut cont = Vec::new();
    encode_frame_rsv(
        &mut cont,
        OpCode::Text,
        false,
        RSV1,
        &compressed(b"ab")[..1],
        MASK,
    );
    encode_frame_rsv(&mut cont, OpCode::Continuation, true, RSV1, b"x", MASK);
    let mut s = deflate_server(Limits::default());
    assert_eq!(
        drive(&mut s, &[&cont]).2,
        Some(WsError::ReservedBitsSet(RSV1))
    );

    // Without the extension, RSV1 fails as before; RSV2/3 fail either way.
    let mut plain = server();
    let frame = client_frames(MessageKind::Text, b"hi", 100);
    assert_eq!(
        drive(&mut plain, &[&frame]).2,
        Some(WsError::ReservedBitsSet(RSV1))
    );
    let mut s = deflate_server(Limits::default());
    assert_eq!(
        drive(&mut s, &[&raw(0x80 | 0x20 | 0x1, b"x", MASK)]).2,
        Some(WsError::ReservedBitsSet(2))
    );
}

#[test]
fn limits_count_inflated_bytes_and_bad_data_fails_1007() {
    let limits = Limits {
        max_message_bytes: 64 << 10,
        max_frame_bytes: 64 << 10,
        ..Limits::default()
    };
    // 16 MiB of zeros compress to ~16 KiB: under every wire limit, far over the message limit.
    let bomb = client_frames(MessageKind::Binary, &vec![0u8; 16 << 20], 1 << 20);
    assert!(bomb.len() < 32 << 10, "{}", bomb.len());
    let mut s = deflate_server(limits);
    let (got, out, err) = drive(&mut s, &[&bomb]);
    assert!(got.is_empty());
    assert!(
        matches!(err, Some(WsError::MessageTooLarge { .. })),
        "{err:?}"
    );
    assert_eq!(close_sent(&out).map(|c| c.0), Some(1009));

    let mut s = deflate_server(limits);
    let exact = client_frames(MessageKind::Binary, &vec![1u8; 64 << 10], 1 << 20);
    assert_eq!(drive(&mut s, &[&exact]).2, None, "exactly at the limit");

    let mut corrupt = Vec::new();
    encode_frame_rsv(
        &mut corrupt,
        OpCode::Binary,
        true,
        RSV1,
        &[0xff, 0xff, 0xff],
        MASK,
    );
    let mut s = deflate_server(limits);
    let (_, out, err) = drive(&mut s, &[&corrupt]);
    assert_eq!(err, Some(WsError::BadCompressedData));
    assert_eq!(close_sent(&out).map(|c| c.0), Some(1007));

    let bad_text = client_frames(MessageKind::Text, &[b'a', 0xff, b'b'], 100);
    let mut s = deflate_server(limits);
    let (_, out, err) = drive(&mut s, &[&bad_text]);
    assert_eq!(err, Some(WsError::InvalidUtf8));
    assert_eq!(close_sent(&out).map(|c| c.0), Some(1007));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Cut anywhere, in frames of any size: the same messages come out.
    #[test]
    fn compressed_input_split_anywhere_gives_the_same_messages(
        messages in proptest::collection::vec((any::<bool>(), proptest::collection::vec(0u8..4, 0..3000)), 1..6),
        piece in 1usize..600,
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for (text, body) in &messages {
            let body: Vec<u8> = body.iter().map(|b| b'a' + b).collect();
            let kind = if *text { MessageKind::Text } else { MessageKind::Binary };
            wire.extend(client_frames(kind, &body, piece));
            expected.push(Got::Message(kind, body));
        }
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        at.sort_unstable();
        let mut chunks = Vec::new();
        let mut prev = 0;
        for a in at.into_iter().chain([wire.len()]) {
            chunks.push(&wire[prev..a]);
            prev = a;
        }
        let limits = Limits { inline_frame_bytes: 512, ..Limits::default() };
        let mut s = deflate_server(limits);
        let (got, _, err) = drive(&mut s, &chunks);
        prop_assert_eq!(err, None);
        prop_assert_eq!(got, expected);
    }
}
