//! [`Pair`]: a client and a server [`Connection`] back to back on a fake clock, and the
//! tests that drive the two against each other (close handshake from either side,
//! pings, fragmentation, silent peers, protocol errors).

use std::time::{Duration, Instant};

use super::Got;
use crate::ws::*;

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
                        Event::Message { kind, payload, .. } => {
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
