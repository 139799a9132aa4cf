//! Protocol tests for [`Connection`]: one per MUST of RFC 6455 §5-7, driven in memory.
//!
//! `pair::Pair` holds a client and a server connection and carries bytes between them the
//! way the IO layer does (unconsumed bytes stay at the front of the buffer), on a fake
//! clock, so every test is deterministic.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

mod deflate;
mod pair;

/// An event with owned payloads, to compare across runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Message(MessageKind, Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

/// Feeds `chunks` to `conn` as successive reads; returns the events, the bytes the
/// connection wanted to send, and the first error.
fn drive(conn: &mut Connection, chunks: &[&[u8]]) -> (Vec<Got>, Vec<u8>, Option<WsError>) {
    let mut buf = Vec::new();
    let mut got = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let mut consumed = 0;
            match conn.handle_input(&mut buf) {
                Ok(Some((event, used))) => {
                    consumed = used;
                    match event {
                        Event::Message { kind, payload, .. } => {
                            got.push(Got::Message(kind, payload.to_vec()))
                        }
                        Event::Ping(p) => got.push(Got::Ping(p.to_vec())),
                        Event::Pong(p) => got.push(Got::Pong(p.to_vec())),
                        Event::Close(c) => {
                            got.push(Got::Close(c.map(|(code, r)| (code.0, r.to_owned()))))
                        }
                        Event::Progress => {}
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    conn.poll_transmit(&mut out);
                    return (got, out, Some(e));
                }
            }
            conn.poll_transmit(&mut out);
            if consumed == 0 {
                break;
            }
            buf.drain(..consumed);
        }
    }
    (got, out, None)
}

fn server() -> Connection {
    Connection::new(Role::Server, Limits::default(), 1)
}

fn client() -> Connection {
    Connection::new(Role::Client, Limits::default(), 7)
}

/// A masked client frame with any header bits, built by hand.
fn raw(first_byte: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, OpCode::Binary, true, payload, mask);
    out[0] = first_byte;
    out
}

const KEY: Option<[u8; 4]> = Some([1, 2, 3, 4]);

/// The close frame in `out`, as (code, reason), as a client would read it.
fn close_sent(out: &[u8]) -> Option<(u16, String)> {
    let mut c = Connection::new(Role::Client, Limits::default(), 3);
    let (got, _, _) = drive(&mut c, &[out]);
    got.into_iter().find_map(|g| match g {
        Got::Close(c) => c,
        _ => None,
    })
}

fn fails_with(bytes: &[u8], expected: WsError, code: u16) {
    let mut s = server();
    let (_, out, err) = drive(&mut s, &[bytes]);
    assert_eq!(err, Some(expected));
    assert_eq!(close_sent(&out).map(|c| c.0), Some(code));
    assert_eq!(s.state(), State::Closed);
}

#[test]
fn single_frame_messages_come_in_place() {
    let mut c = client();
    let mut wire = Vec::new();
    c.send(MessageKind::Text, "héllo".as_bytes(), &mut wire)
        .unwrap();
    c.send(MessageKind::Binary, &[0, 255], &mut wire).unwrap();
    c.send(MessageKind::Text, b"", &mut wire).unwrap();
    let (got, out, err) = drive(&mut server(), &[&wire]);
    assert_eq!(err, None);
    assert!(out.is_empty());
    assert_eq!(
        got,
        vec![
            Got::Message(MessageKind::Text, "héllo".as_bytes().to_vec()),
            Got::Message(MessageKind::Binary, vec![0, 255]),
            Got::Message(MessageKind::Text, vec![]),
        ]
    );
}

#[test]
fn ping_gets_pong_with_same_payload_between_fragments() {
    // §5.5.2 (pong with identical data) and §5.4 (control frames may be injected
    // in the middle of a fragmented message).
    let mut c = client();
    let mut wire = Vec::new();
    c.send_frame(OpCode::Text, false, b"frag", &mut wire)
        .unwrap();
    c.send_ping(b"are you there", &mut wire).unwrap();
    c.send_frame(OpCode::Continuation, false, b"men", &mut wire)
        .unwrap();
    c.send_frame(OpCode::Continuation, true, b"ted", &mut wire)
        .unwrap();
    let mut s = server();
    let (got, out, err) = drive(&mut s, &[&wire]);
    assert_eq!(err, None);
    assert_eq!(
        got,
        vec![
            Got::Ping(b"are you there".to_vec()),
            Got::Message(MessageKind::Text, b"fragmented".to_vec())
        ]
    );
    let (back, _, _) = drive(&mut client(), &[&out]);
    assert_eq!(back, vec![Got::Pong(b"are you there".to_vec())]);
}

#[test]
fn unmasked_client_frame_fails_1002() {
    // §5.1: a server MUST close the connection upon an unmasked frame.
    fails_with(&raw(0x81, b"hi", None), WsError::UnmaskedClientFrame, 1002);
}

#[test]
fn masked_server_frame_fails_1002() {
    // §5.1: a client MUST close the connection if it detects a masked frame.
    let mut c = client();
    let (_, out, err) = drive(&mut c, &[&raw(0x81, b"hi", KEY)]);
    assert_eq!(err, Some(WsError::MaskedServerFrame));
    assert!(!out.is_empty());
}

#[test]
fn reserved_bits_and_opcodes_fail_1002() {
    // §5.2: nonzero RSV without an extension, unknown opcodes.
    fails_with(&raw(0xc1, b"x", KEY), WsError::ReservedBitsSet(4), 1002);
    fails_with(&raw(0x83, b"x", KEY), WsError::ReservedOpCode(3), 1002);
    fails_with(&raw(0x8b, b"x", KEY), WsError::ReservedOpCode(0xb), 1002);
}

#[test]
fn bad_control_frames_fail_1002() {
    // §5.5: control frames are not fragmented and carry at most 125 bytes.
    fails_with(&raw(0x09, b"x", KEY), WsError::FragmentedControl, 1002);
    fails_with(
        &raw(0x89, &[0; 126], KEY),
        WsError::ControlFrameTooLong(126),
        1002,
    );
}

#[test]
fn fragment_sequence_errors_fail_1002() {
    // §5.4: a continuation needs a message to continue; no new message inside one.
    fails_with(&raw(0x80, b"x", KEY), WsError::NothingToContinue, 1002);
    let mut wire = raw(0x01, b"a", KEY);
    wire.extend(raw(0x81, b"b", KEY));
    fails_with(&wire, WsError::ExpectedContinuation, 1002);
}

#[test]
fn invalid_utf8_fails_1007_and_fast() {
    // §8.1: invalid UTF-8 in a text message fails the connection with 1007.
    fails_with(
        &raw(0x81, &[0xce, 0xba, 0xff], KEY),
        WsError::InvalidUtf8,
        1007,
    );
    // Fragmented: fail on the fragment that breaks it, before the message ends.
    let mut s = server();
    let first = raw(0x01, "κό".as_bytes(), KEY);
    let bad = raw(0x00, &[0xed, 0xa0, 0x80], KEY);
    let (_, _, err) = drive(&mut s, &[&first, &bad]);
    assert_eq!(err, Some(WsError::InvalidUtf8));
    // One frame arriving in chops: fail on the chop that breaks it (Autobahn 6.4.3).
    let mut s = server();
    let mut frame = raw(
        0x81,
        &[b"ok".as_slice(), &[0xf4, 0x90, 0x80, 0x80], b"rest of it"].concat(),
        KEY,
    );
    let tail = frame.split_off(10);
    let (_, _, err) = drive(&mut s, &[&frame]);
    assert_eq!(
        err,
        Some(WsError::InvalidUtf8),
        "failed before the tail {tail:?}"
    );
    // A code point split across fragments is fine.
    let euro = "€".as_bytes();
    let mut wire = raw(0x01, &euro[..1], KEY);
    wire.extend(raw(0x00, &euro[1..2], KEY));
    wire.extend(raw(0x80, &euro[2..], KEY));
    let (got, _, err) = drive(&mut server(), &[&wire]);
    assert_eq!(
        (got, err),
        (vec![Got::Message(MessageKind::Text, euro.to_vec())], None)
    );
}

#[test]
fn size_limits_fail_1009() {
    let limits = Limits {
        max_frame_bytes: 100,
        max_message_bytes: 150,
        ..Limits::default()
    };
    let mut s = Connection::new(Role::Server, limits, 1);
    let (_, out, err) = drive(&mut s, &[&raw(0x82, &[0; 101], KEY)]);
    assert_eq!(
        err,
        Some(WsError::FrameTooLarge {
            size: 101,
            limit: 100
        })
    );
    assert_eq!(close_sent(&out).map(|c| c.0), Some(1009));
    // The frame limit is checked from the header alone, before the payload arrives.
    let mut s = Connection::new(Role::Server, limits, 1);
    let big = raw(0x82, &[0; 5000], KEY);
    let (_, _, err) = drive(&mut s, &[&big[..8]]);
    assert_eq!(
        err,
        Some(WsError::FrameTooLarge {
            size: 5000,
            limit: 100
        })
    );
    // A message over the limit across fragments.
    let mut s = Connection::new(Role::Server, limits, 1);
    let mut wire = raw(0x02, &[0; 100], KEY);
    wire.extend(raw(0x80, &[0; 51], KEY));
    let (_, _, err) = drive(&mut s, &[&wire]);
    assert_eq!(
        err,
        Some(WsError::MessageTooLarge {
            size: 151,
            limit: 150
        })
    );
}

#[test]
fn close_codes_on_the_wire() {
    // §7.4: valid codes are echoed; reserved and unassigned ones fail with 1002.
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
        4000, 4999,
    ] {
        let mut s = server();
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        let (got, out, err) = drive(&mut s, &[&raw(0x88, &payload, KEY)]);
        assert_eq!(err, None, "code {code}");
        assert_eq!(got, vec![Got::Close(Some((code, "bye".into())))]);
        assert_eq!(close_sent(&out), Some((code, String::new())));
        assert_eq!(s.state(), State::Closed);
    }
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535,
    ] {
        fails_with(
            &raw(0x88, &code.to_be_bytes(), KEY),
            WsError::InvalidCloseCode(code),
            1002,
        );
    }
    // §5.5.1: a 1-byte body is half a status code.
    fails_with(&raw(0x88, &[3], KEY), WsError::CloseTooShort, 1002);
    // §5.5.1: the reason is UTF-8.
    fails_with(
        &raw(0x88, &[3, 0xe8, 0xff], KEY),
        WsError::InvalidUtf8,
        1007,
    );
}

#[test]
fn empty_close_gets_empty_close_and_nothing_after() {
    let mut s = server();
    let mut wire = raw(0x88, b"", KEY);
    wire.extend(raw(0x81, b"late", KEY));
    let (got, out, err) = drive(&mut s, &[&wire]);
    assert_eq!((got, err), (vec![Got::Close(None)], None));
    assert_eq!(out, vec![0x88, 0x00]);
    assert_eq!(s.state(), State::Closed);
}

#[test]
fn close_handshake_we_start_completes_or_times_out() {
    let t0 = Instant::now();
    let mut s = server();
    s.close(CloseCode::GOING_AWAY, "shutting down", t0);
    let mut out = Vec::new();
    assert!(s.poll_transmit(&mut out));
    assert_eq!(close_sent(&out), Some((1001, "shutting down".into())));
    assert!(matches!(s.state(), State::CloseSent { .. }));
    assert!(s.send(MessageKind::Text, b"x", &mut out).is_err());
    // Data may still arrive before the peer's close; then the peer closes.
    let mut wire = raw(0x81, b"in flight", KEY);
    wire.extend(raw(0x88, &1001u16.to_be_bytes(), KEY));
    let (got, out2, _) = drive(&mut s, &[&wire]);
    assert_eq!(got.len(), 2);
    assert!(out2.is_empty(), "no second close frame");
    assert_eq!(s.state(), State::Closed);
    // A peer that never answers: the deadline closes it.
    let mut s = server();
    s.close(CloseCode::NORMAL, "", t0);
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(5)));
    s.handle_timeout(t0 + Duration::from_secs(4));
    assert!(matches!(s.state(), State::CloseSent { .. }));
    s.handle_timeout(t0 + Duration::from_secs(5));
    assert_eq!(s.state(), State::Closed);
}

#[test]
fn close_reason_is_cut_at_a_char_boundary() {
    let mut s = server();
    s.close(CloseCode::NORMAL, &"é".repeat(100), Instant::now());
    let mut out = Vec::new();
    s.poll_transmit(&mut out);
    let (_, reason) = close_sent(&out).unwrap();
    assert_eq!(reason.len(), 122);
}

#[test]
fn frames_larger_than_inline_stream_through() {
    let limits = Limits {
        inline_frame_bytes: 64,
        ..Limits::default()
    };
    let payload: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let mut c = client();
    let mut wire = Vec::new();
    c.send(MessageKind::Binary, &payload, &mut wire).unwrap();
    c.send(MessageKind::Text, b"small", &mut wire).unwrap();
    let chunks: Vec<&[u8]> = wire.chunks(7).collect();
    let mut s = Connection::new(Role::Server, limits, 1);
    let (got, _, err) = drive(&mut s, &chunks);
    assert_eq!(err, None);
    assert_eq!(
        got,
        vec![
            Got::Message(MessageKind::Binary, payload),
            Got::Message(MessageKind::Text, b"small".to_vec())
        ]
    );
}

/// One step of a random but valid client conversation.
#[derive(Debug, Clone)]
enum Op {
    Message(bool, Vec<u8>),
    Fragmented(bool, Vec<Vec<u8>>),
    Ping(Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    let payload = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40),
        proptest::collection::vec(any::<u8>(), 100..300),
        proptest::collection::vec(any::<u8>(), 65530..65545),
    ];
    let text = "\\PC{0,30}".prop_map(String::into_bytes);
    prop_oneof![
        4 => (any::<bool>(), payload.clone(), text.clone())
            .prop_map(|(t, b, s)| if t { Op::Message(true, s) } else { Op::Message(false, b) }),
        2 => (any::<bool>(), proptest::collection::vec(text, 1..4), proptest::collection::vec(payload, 1..4))
            .prop_map(|(t, s, b)| if t { Op::Fragmented(true, s) } else { Op::Fragmented(false, b) }),
        1 => proptest::collection::vec(any::<u8>(), 0..126).prop_map(Op::Ping),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any valid byte stream, split at arbitrary points (down to 1-byte reads), gives
    /// the same messages as the unsplit stream, in order, with the small inline
    /// threshold forcing the streaming path too.
    #[test]
    fn any_split_gives_the_same_messages(
        ops in proptest::collection::vec(op(), 1..12),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..40),
        one_byte_reads in any::<bool>(),
        inline in prop_oneof![Just(14usize), Just(200), Just(64 << 10)],
    ) {
        let mut c = client();
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for op in &ops {
            match op {
                Op::Message(text, p) => {
                    let kind = if *text { MessageKind::Text } else { MessageKind::Binary };
                    c.send(kind, p, &mut wire).unwrap();
                    expected.push(Got::Message(kind, p.clone()));
                }
                Op::Fragmented(text, parts) => {
                    let kind = if *text { MessageKind::Text } else { MessageKind::Binary };
                    for (i, part) in parts.iter().enumerate() {
                        let opcode = if i == 0 { kind.opcode() } else { OpCode::Continuation };
                        c.send_frame(opcode, i + 1 == parts.len(), part, &mut wire).unwrap();
                    }
                    expected.push(Got::Message(kind, parts.concat()));
                }
                Op::Ping(p) => {
                    c.send_ping(p, &mut wire).unwrap();
                    expected.push(Got::Ping(p.clone()));
                }
            }
        }
        let mut points: Vec<usize> = if one_byte_reads && wire.len() < 5000 {
            (0..=wire.len()).collect()
        } else {
            cuts.iter().map(|i| i.index(wire.len() + 1)).chain([0, wire.len()]).collect()
        };
        points.sort_unstable();
        points.dedup();
        let chunks: Vec<&[u8]> = points.windows(2).map(|w| &wire[w[0]..w[1]]).collect();
        let limits = Limits { inline_frame_bytes: inline, ..Limits::default() };
        let mut s = Connection::new(Role::Server, limits, 1);
        let (got, _, err) = drive(&mut s, &chunks);
        prop_assert_eq!(err, None);
        prop_assert_eq!(got, expected);
    }

    /// Arbitrary bytes never panic the server; they give events or one error.
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), cut in any::<prop::sample::Index>()) {
        let split = cut.index(bytes.len() + 1);
        let mut s = server();
        let _ = drive(&mut s, &[&bytes[..split], &bytes[split..]]);
    }
}
