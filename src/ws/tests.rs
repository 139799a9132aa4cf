//! Protocol tests for [`Connection`]: one per MUST of RFC 6455 §5-7, driven in memory.
//!
//! [`Pair`] holds a client and a server connection and carries bytes between them the
//! way the IO layer does (unconsumed bytes stay at the front of the buffer), on a fake
//! clock, so every test is deterministic.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

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
                        Event::Message { kind, payload } => {
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

/// Which end of a [`Pair`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

/// One end of a [`Pair`]: its connection, the bytes it has received but not consumed
/// (they stay at the front, as the IO layer keeps them), and what it saw.
struct End {
    conn: Connection,
    inbox: Vec<u8>,
    got: Vec<Got>,
    error: Option<WsError>,
}

impl End {
    fn new(role: Role, limits: Limits) -> End {
        End {
            conn: Connection::new(role, limits, 11),
            inbox: Vec::new(),
            got: Vec::new(),
            error: None,
        }
    }

    /// Handles every whole frame in the inbox; what the connection transmits goes to
    /// `wire` (towards the other end).
    fn receive(&mut self, wire: &mut Vec<u8>) {
        loop {
            let used = match self.conn.handle_input(&mut self.inbox) {
                Ok(Some((event, used))) => {
                    match event {
                        Event::Message { kind, payload } => {
                            self.got.push(Got::Message(kind, payload.to_vec()))
                        }
                        Event::Ping(p) => self.got.push(Got::Ping(p.to_vec())),
                        Event::Pong(p) => self.got.push(Got::Pong(p.to_vec())),
                        Event::Close(c) => self
                            .got
                            .push(Got::Close(c.map(|(code, r)| (code.0, r.to_owned())))),
                        Event::Progress => {}
                    }
                    used
                }
                Ok(None) => 0,
                Err(e) => {
                    self.error = Some(e);
                    0
                }
            };
            self.conn.poll_transmit(wire);
            if used == 0 {
                return;
            }
            self.inbox.drain(..used);
        }
    }
}

/// A client and a server [`Connection`] back to back on a fake clock: what one
/// transmits is what the other reads, in reads of at most `read_size` bytes. Nothing
/// here does IO or reads a clock, so every run is the same.
struct Pair {
    client: End,
    server: End,
    /// Bytes on their way to the client and to the server.
    to_client: Vec<u8>,
    to_server: Vec<u8>,
    read_size: usize,
    now: Instant,
}

impl Pair {
    fn new(limits: Limits, read_size: usize) -> Pair {
        Pair {
            client: End::new(Role::Client, limits),
            server: End::new(Role::Server, limits),
            to_client: Vec::new(),
            to_server: Vec::new(),
            read_size,
            now: Instant::now(),
        }
    }

    /// The end and the wire leading away from it.
    fn end(&mut self, side: Side) -> (&mut Connection, &mut Vec<u8>) {
        match side {
            Side::Client => (&mut self.client.conn, &mut self.to_server),
            Side::Server => (&mut self.server.conn, &mut self.to_client),
        }
    }

    fn send(&mut self, side: Side, kind: MessageKind, payload: &[u8]) {
        let (conn, wire) = self.end(side);
        conn.send(kind, payload, wire).unwrap();
    }

    fn fragment(&mut self, side: Side, opcode: OpCode, fin: bool, payload: &[u8]) {
        let (conn, wire) = self.end(side);
        conn.send_frame(opcode, fin, payload, wire).unwrap();
    }

    fn ping(&mut self, side: Side, payload: &[u8]) {
        let (conn, wire) = self.end(side);
        conn.send_ping(payload, wire).unwrap();
    }

    fn close(&mut self, side: Side, code: CloseCode, reason: &str) {
        let now = self.now;
        let (conn, wire) = self.end(side);
        conn.close(code, reason, now);
        conn.poll_transmit(wire);
    }

    /// Carries bytes both ways, a read at a time, until neither end has more to say.
    fn run(&mut self) {
        while !self.to_client.is_empty() || !self.to_server.is_empty() {
            let n = self.to_server.len().min(self.read_size);
            self.server.inbox.extend(self.to_server.drain(..n));
            self.server.receive(&mut self.to_client);
            let n = self.to_client.len().min(self.read_size);
            self.client.inbox.extend(self.to_client.drain(..n));
            self.client.receive(&mut self.to_server);
        }
    }

    /// The network loses what is in flight to `side` (a peer that went silent).
    fn lose_towards(&mut self, side: Side) {
        match side {
            Side::Client => self.to_client.clear(),
            Side::Server => self.to_server.clear(),
        }
    }

    /// Moves the fake clock on and lets both ends act on their deadlines, as the IO
    /// layer does when `poll_timeout` passes.
    fn advance(&mut self, by: Duration) {
        self.now += by;
        for end in [&mut self.client, &mut self.server] {
            if end.conn.poll_timeout().is_some_and(|t| t <= self.now) {
                end.conn.handle_timeout(self.now);
            }
        }
    }
}

#[test]
fn pair_close_handshake_either_side_starts() {
    for (starts, other) in [(Side::Client, Side::Server), (Side::Server, Side::Client)] {
        let mut p = Pair::new(Limits::default(), 3);
        p.send(starts, MessageKind::Text, b"last words");
        p.close(starts, CloseCode::NORMAL, "done");
        p.run();
        let (start_end, other_end) = match starts {
            Side::Client => (&p.client, &p.server),
            Side::Server => (&p.server, &p.client),
        };
        assert_eq!(
            other_end.got,
            vec![
                Got::Message(MessageKind::Text, b"last words".to_vec()),
                Got::Close(Some((1000, "done".into())))
            ],
            "{starts:?} starts"
        );
        // The other end echoes the code (§5.5.1); both end Closed, nothing else sent.
        assert_eq!(start_end.got, vec![Got::Close(Some((1000, String::new())))]);
        assert_eq!(p.client.conn.state(), State::Closed);
        assert_eq!(p.server.conn.state(), State::Closed);
        assert!(p.end(other).0.send_ping(b"", &mut Vec::new()).is_err());
    }
}

#[test]
fn pair_pings_are_answered_both_ways() {
    let mut p = Pair::new(Limits::default(), 1);
    p.ping(Side::Client, b"from client");
    p.ping(Side::Server, b"from server");
    p.ping(Side::Server, &[7u8; 200]); // cut to 125 bytes (§5.5)
    p.run();
    assert_eq!(
        p.server.got,
        vec![
            Got::Ping(b"from client".to_vec()),
            Got::Pong(b"from server".to_vec()),
            Got::Pong(vec![7u8; 125])
        ]
    );
    assert_eq!(
        p.client.got,
        vec![
            Got::Ping(b"from server".to_vec()),
            Got::Ping(vec![7u8; 125]),
            Got::Pong(b"from client".to_vec())
        ]
    );
}

#[test]
fn pair_fragmented_messages_both_ways_with_pings_between() {
    for side in [Side::Client, Side::Server] {
        let limits = Limits {
            inline_frame_bytes: 16,
            ..Limits::default()
        };
        let mut p = Pair::new(limits, 5);
        p.fragment(side, OpCode::Text, false, "frag".as_bytes());
        p.ping(side, b"mid");
        p.fragment(side, OpCode::Continuation, false, "mé".as_bytes());
        p.fragment(side, OpCode::Continuation, true, &[b'n'; 40]);
        p.fragment(side, OpCode::Binary, false, &[1, 2]);
        p.fragment(side, OpCode::Continuation, true, &[3]);
        p.run();
        let receiver = match side {
            Side::Client => &p.server,
            Side::Server => &p.client,
        };
        let mut text = "fragmé".as_bytes().to_vec();
        text.extend([b'n'; 40]);
        assert_eq!(
            receiver.got,
            vec![
                Got::Ping(b"mid".to_vec()),
                Got::Message(MessageKind::Text, text),
                Got::Message(MessageKind::Binary, vec![1, 2, 3]),
            ],
            "sent by {side:?}"
        );
        assert!(receiver.error.is_none());
    }
}

#[test]
fn pair_close_times_out_when_the_peer_goes_silent_either_way() {
    for (starts, silent) in [(Side::Client, Side::Server), (Side::Server, Side::Client)] {
        let limits = Limits {
            close_timeout: Duration::from_secs(2),
            ..Limits::default()
        };
        let mut p = Pair::new(limits, 64);
        p.close(starts, CloseCode::GOING_AWAY, "bye");
        p.lose_towards(silent);
        p.run();
        let conn = p.end(starts).0;
        assert!(matches!(conn.state(), State::CloseSent { .. }));
        assert_eq!(conn.poll_timeout(), Some(p.now + Duration::from_secs(2)));
        p.advance(Duration::from_millis(1999));
        assert!(matches!(p.end(starts).0.state(), State::CloseSent { .. }));
        p.advance(Duration::from_millis(1));
        assert_eq!(p.end(starts).0.state(), State::Closed, "{starts:?} gave up");
        assert_eq!(
            p.end(silent).0.state(),
            State::Open,
            "never heard the close"
        );
    }
}

#[test]
fn pair_protocol_error_fails_both_ends_with_the_code() {
    let limits = Limits {
        max_message_bytes: 10,
        max_frame_bytes: 10,
        ..Limits::default()
    };
    let mut p = Pair::new(limits, 4);
    p.send(Side::Client, MessageKind::Binary, &[0u8; 11]);
    p.run();
    assert_eq!(
        p.server.error,
        Some(WsError::FrameTooLarge {
            size: 11,
            limit: 10
        })
    );
    assert_eq!(p.server.conn.state(), State::Closed);
    assert!(
        matches!(p.client.got.as_slice(), [Got::Close(Some((1009, _)))]),
        "{:?}",
        p.client.got
    );
}
