//! `feedrelay echo` over real loopback sockets, frame by frame, the way a conformance
//! suite (Autobahn|Testsuite's sections 1-7 and 9) probes a server: every frame here is
//! written by hand, so our own client code is not what is being trusted.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{Raw, Server};

fn echo_of(raw: &mut Raw, first: u8, payload: &[u8]) {
    raw.send(first, payload);
    let (f, p) = raw.recv().expect("echo");
    assert_eq!(f, first, "frame type");
    assert_eq!(p.len(), payload.len());
    assert!(p == payload, "payload differs");
}

#[test]
fn text_and_binary_of_every_length_class_echo() {
    // Autobahn 1.1.x / 1.2.x: 7-bit, 16-bit and 64-bit lengths, at the edges.
    let server = Server::echo(&[]);
    let mut raw = Raw::connect(server.addr);
    for len in [0usize, 1, 125, 126, 127, 128, 65535, 65536, 65537, 1 << 20] {
        let text: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        echo_of(&mut raw, 0x81, &text);
        let bin: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        echo_of(&mut raw, 0x82, &bin);
    }
    raw.send(0x88, &1000u16.to_be_bytes());
    raw.expect_close(Some(1000));
}

#[test]
fn frames_written_in_tiny_chops_echo() {
    // Autobahn 1.1.8 / 1.2.8 style: one frame delivered in small pieces.
    let server = Server::echo(&[]);
    let mut raw = Raw::connect(server.addr);
    let payload: Vec<u8> = (0..70_000).map(|i| (i % 256) as u8).collect();
    let frame = Raw::frame(0x82, &payload, true);
    for chunk in frame.chunks(997) {
        raw.send_bytes(chunk);
    }
    let small = Raw::frame(0x81, "chopped κόσμε".as_bytes(), true);
    for b in &small {
        raw.send_bytes(&[*b]);
        raw.s.flush().unwrap();
    }
    assert_eq!(raw.recv().unwrap(), (0x82, payload));
    assert_eq!(
        raw.recv().unwrap(),
        (0x81, "chopped κόσμε".as_bytes().to_vec())
    );
}

#[test]
fn pings_get_pongs_in_order_and_pongs_are_ignored() {
    // Autobahn 2.x.
    let server = Server::echo(&[]);
    let mut raw = Raw::connect(server.addr);
    for payload in [&b""[..], b"hello", &[0xfe; 125]] {
        raw.send(0x89, payload);
        assert_eq!(raw.recv().unwrap(), (0x8a, payload.to_vec()));
    }
    let mut burst = Vec::new();
    for i in 0..10u8 {
        burst.extend(Raw::frame(0x89, &[i], true));
    }
    raw.send_bytes(&burst);
    for i in 0..10u8 {
        assert_eq!(raw.recv().unwrap(), (0x8a, vec![i]));
    }
    raw.send(0x8a, b"unsolicited");
    echo_of(&mut raw, 0x81, b"still here");
    // 2.5: a ping with 126 bytes of payload is a protocol error.
    raw.send(0x89, &[0; 126]);
    raw.expect_close(Some(1002));
}

#[test]
fn reserved_bits_fail_with_1002_after_earlier_echoes() {
    // Autobahn 3.x: the echo of the good frame before still arrives first.
    for rsv in 1..8u8 {
        let server = Server::echo(&[]);
        let mut raw = Raw::connect(server.addr);
        let mut both = Raw::frame(0x81, b"good", true);
        both.extend(Raw::frame(0x81 | rsv << 4, b"bad", true));
        raw.send_bytes(&both);
        assert_eq!(raw.recv().unwrap(), (0x81, b"good".to_vec()));
        raw.expect_close(Some(1002));
    }
}

#[test]
fn reserved_opcodes_fail_with_1002() {
    // Autobahn 4.x.
    for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
        let server = Server::echo(&[]);
        let mut raw = Raw::connect(server.addr);
        raw.send(0x80 | op, b"");
        raw.expect_close(Some(1002));
    }
}

#[test]
fn fragmentation_rules() {
    // Autobahn 5.x.
    let server = Server::echo(&[]);
    // 5.1/5.2: fragmented ping and pong are errors.
    for first in [0x09u8, 0x0a] {
        let mut raw = Raw::connect(server.addr);
        raw.send(first, b"x");
        raw.expect_close(Some(1002));
    }
    // 5.6-5.8: a ping in the middle is answered first; the message comes whole.
    let mut raw = Raw::connect(server.addr);
    let mut wire = Raw::frame(0x01, b"frag", true);
    wire.extend(Raw::frame(0x89, b"mid", true));
    wire.extend(Raw::frame(0x00, b"men", true));
    wire.extend(Raw::frame(0x80, b"ted", true));
    raw.send_bytes(&wire);
    assert_eq!(raw.recv().unwrap(), (0x8a, b"mid".to_vec()));
    assert_eq!(raw.recv().unwrap(), (0x81, b"fragmented".to_vec()));
    // 5.19-5.20 style: many 1-byte fragments, pings between them, binary.
    let mut wire = Vec::new();
    for i in 0..100u8 {
        let first = match i {
            0 => 0x02,
            99 => 0x80,
            _ => 0x00,
        };
        wire.extend(Raw::frame(first, &[i], true));
        if i % 10 == 0 {
            wire.extend(Raw::frame(0x89, &[i], true));
        }
    }
    raw.send_bytes(&wire);
    for i in (0..100u8).step_by(10) {
        assert_eq!(raw.recv().unwrap(), (0x8a, vec![i]));
    }
    assert_eq!(raw.recv().unwrap(), (0x82, (0..100u8).collect::<Vec<_>>()));
    // 5.9-5.14: continuation with nothing to continue.
    let mut raw = Raw::connect(server.addr);
    raw.send(0x80, b"orphan");
    raw.expect_close(Some(1002));
    // 5.18: a new text frame inside a fragmented message.
    let mut raw = Raw::connect(server.addr);
    raw.send(0x01, b"one");
    raw.send(0x81, b"two");
    raw.expect_close(Some(1002));
}

#[test]
fn utf8_is_checked_and_fails_fast() {
    // Autobahn 6.x.
    let server = Server::echo(&[]);
    let mut raw = Raw::connect(server.addr);
    for s in [
        "",
        "Hello-µ@ßöäüàá-UTF-8!!",
        "κόσμε",
        "𝄞 \u{10FFFF} \u{FFFD} \u{7FF}\u{800}",
    ] {
        echo_of(&mut raw, 0x81, s.as_bytes());
    }
    // A code point split across fragments.
    let euro = "€".as_bytes();
    let mut wire = Raw::frame(0x01, &euro[..1], true);
    wire.extend(Raw::frame(0x00, &euro[1..2], true));
    wire.extend(Raw::frame(0x80, &euro[2..], true));
    raw.send_bytes(&wire);
    assert_eq!(raw.recv().unwrap(), (0x81, euro.to_vec()));
    for bad in [
        &[0xffu8][..],
        &[0xed, 0xa0, 0x80],
        &[0xc0, 0xaf],
        &[0xf4, 0x90, 0x80, 0x80],
        b"ok\xce",
    ] {
        let mut raw = Raw::connect(server.addr);
        raw.send(0x81, bad);
        raw.expect_close(Some(1007));
    }
    // 6.4.1/6.4.2: invalid bytes in the first fragment fail before the message ends.
    let mut raw = Raw::connect(server.addr);
    raw.send(0x01, "κόσμε".as_bytes());
    raw.send(0x00, &[0xf4, 0x90, 0x80, 0x80]);
    raw.expect_close(Some(1007));
    // 6.4.3/6.4.4: inside one frame that has not fully arrived yet.
    let mut raw = Raw::connect(server.addr);
    let frame = Raw::frame(
        0x81,
        &[b"good".as_slice(), &[0xf4, 0x90, 0x80, 0x80], &[b'x'; 100]].concat(),
        true,
    );
    raw.send_bytes(&frame[..frame.len() - 50]);
    raw.expect_close(Some(1007));
}

#[test]
fn close_handshake_rules() {
    // Autobahn 7.x.
    let server = Server::echo(&[]);
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ] {
        let mut raw = Raw::connect(server.addr);
        raw.send(0x88, &code.to_be_bytes());
        raw.expect_close(Some(code));
    }
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        let mut raw = Raw::connect(server.addr);
        raw.send(0x88, &code.to_be_bytes());
        raw.expect_close(Some(1002));
    }
    // 7.1.1/7.3.1: empty close → empty close; 7.3.2: a 1-byte payload is an error.
    let mut raw = Raw::connect(server.addr);
    raw.send(0x88, b"");
    raw.expect_close(None);
    let mut raw = Raw::connect(server.addr);
    raw.send(0x88, &[3]);
    raw.expect_close(Some(1002));
    // 7.3.5/7.5.1: a 123-byte reason is fine; an invalid UTF-8 reason is 1007.
    let mut raw = Raw::connect(server.addr);
    raw.send(0x88, &[&1000u16.to_be_bytes()[..], &[b'r'; 123]].concat());
    raw.expect_close(Some(1000));
    let mut raw = Raw::connect(server.addr);
    raw.send(0x88, &[0x03, 0xe8, 0xce, 0xba, 0xe1, 0xbd]);
    raw.expect_close(Some(1007));
    // 7.1.2-7.1.5: nothing after the close is answered.
    let mut raw = Raw::connect(server.addr);
    let mut wire = Raw::frame(0x88, &1000u16.to_be_bytes(), true);
    wire.extend(Raw::frame(0x81, b"after close", true));
    wire.extend(Raw::frame(0x89, b"after close", true));
    raw.send_bytes(&wire);
    raw.expect_close(Some(1000));
}

#[test]
fn unmasked_client_frames_fail_with_1002() {
    let server = Server::echo(&[]);
    let mut raw = Raw::connect(server.addr);
    raw.send_bytes(&Raw::frame(0x81, b"plain", false));
    raw.expect_close(Some(1002));
}

#[test]
fn oversized_messages_fail_with_1009() {
    // Autobahn 9.x sends up to 16 MiB; here the limit is set to 64 KiB to test the edge.
    let server = Server::echo(&["--max-message-bytes", "65536"]);
    let mut raw = Raw::connect(server.addr);
    echo_of(&mut raw, 0x82, &vec![7u8; 65536]);
    raw.send_bytes(&Raw::frame(0x82, &vec![7u8; 65537], true)[..20]);
    raw.expect_close(Some(1009));
    let mut raw = Raw::connect(server.addr);
    raw.send(0x02, &vec![1u8; 40000]);
    raw.send(0x80, &vec![1u8; 30000]);
    raw.expect_close(Some(1009));
}

#[test]
fn bad_handshakes_get_400_or_426_with_a_reason() {
    let server = Server::echo(&[]);
    let good = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let cases = [
        (good.replace("GET", "POST"), "400", "method must be GET"),
        (good.replace("Upgrade: websocket\r\n", ""), "400", "Upgrade"),
        (
            good.replace("Version: 13", "Version: 8"),
            "426",
            "Sec-WebSocket-Version",
        ),
        (
            good.replace("dGhlIHNhbXBsZSBub25jZQ==", "short"),
            "400",
            "Sec-WebSocket-Key",
        ),
        ("NOT HTTP AT ALL\r\n\r\n".to_owned(), "400", "malformed"),
    ];
    for (req, status, needle) in cases {
        let mut raw = Raw::tcp(server.addr);
        raw.send_bytes(req.as_bytes());
        let text = String::from_utf8_lossy(&raw.read_to_end()).into_owned();
        assert!(text.starts_with(&format!("HTTP/1.1 {status}")), "{text}");
        assert!(text.contains(needle), "{needle} not in {text}");
        if status == "426" {
            assert!(text.contains("Sec-WebSocket-Version: 13\r\n"), "{text}");
        }
    }
    // An oversized header block is refused, not buffered without bound.
    let mut raw = Raw::tcp(server.addr);
    let mut big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 9000));
    let _ = raw.s.write_all(&big);
    let text = String::from_utf8_lossy(&raw.read_to_end()).into_owned();
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
}

#[test]
fn a_vanished_client_does_not_disturb_others() {
    let server = Server::echo(&[]);
    let mut steady = Raw::connect(server.addr);
    for _ in 0..20 {
        let mut gone = Raw::connect(server.addr);
        gone.send_bytes(&Raw::frame(0x82, &[0; 1000], true)[..500]);
        drop(gone);
    }
    std::thread::sleep(Duration::from_millis(50));
    echo_of(&mut steady, 0x81, b"unaffected");
}
