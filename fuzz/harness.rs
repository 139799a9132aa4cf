#![allow(dead_code)] // each target uses one of these
//! What each fuzz target does with its input, shared by the libFuzzer targets
//! (`fuzz/fuzz_targets`, `cargo fuzz run NAME`) and by `tests/fuzz_corpora.rs`, which
//! replays every committed corpus file on the stable toolchain in the normal suite.
//!
//! Each function must not panic on any input; where a rule can be checked cheaply
//! (ranges in bounds, counters consistent), it asserts it.

use std::time::{Duration, Instant};

use feedrelay::relay::config::Config;
use feedrelay::relay::core::control::{self, ControlLimits};
use feedrelay::relay::core::topic::{JsonPointer, TopicLookup, TopicReader};
use feedrelay::relay::feed::arbiter::{Arbiter, Verdict};
use feedrelay::ws::deflate::{negotiate_server, ClientOffer, DeflateServerConfig};
use feedrelay::ws::handshake::{parse_request, ClientHandshake};
use feedrelay::ws::{Connection, DeflateParams, Event, Limits, Role};

/// Frames in both roles under small and default limits, with and without
/// permessage-deflate: the first byte picks the role, the limits, the extension and the
/// size of the reads the bytes arrive in.
pub fn ws_connection(data: &[u8]) {
    let Some((&knobs, rest)) = data.split_first() else {
        return;
    };
    let role = if knobs & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let limits = if knobs & 2 == 0 {
        Limits::default()
    } else {
        Limits {
            max_frame_bytes: 64,
            max_message_bytes: 100,
            max_fragments: 3,
            inline_frame_bytes: 32,
            ..Limits::default()
        }
    };
    let chunk = 1 + (knobs as usize >> 3);
    let mut conn = Connection::new(role, limits, 7);
    if knobs & 4 != 0 {
        let params = DeflateParams {
            client_no_context_takeover: knobs & 8 != 0,
            ..DeflateParams::default()
        };
        conn = conn.with_deflate(params, 1);
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let now = Instant::now();
    for piece in rest.chunks(chunk) {
        buf.extend_from_slice(piece);
        let mut start = 0;
        while let Ok(Some((event, used))) = conn.handle_input(&mut buf[start..]) {
            if let Event::Message { payload, .. } = event {
                assert!(payload.len() <= limits.max_message_bytes);
            }
            assert!(used <= buf.len() - start, "consumed past the input");
            start += used;
        }
        buf.drain(..start);
        conn.poll_transmit(&mut out);
        out.clear();
    }
    conn.handle_timeout(now + Duration::from_secs(3600));
    conn.poll_transmit(&mut out);
}

/// The server's parse of an upgrade request and the client's of the answer.
pub fn handshake(data: &[u8]) {
    let max = 8 << 10;
    if let Ok(Some((req, len))) = parse_request(data, max) {
        assert!(len <= data.len() && len <= max);
        let _ = req.query_param("topics");
        let served = ["feedrelay.v1".to_owned(), "json".to_owned()];
        let chosen = req.select_protocol(&served).ok().flatten();
        assert!(chosen.map_or(true, |p| served.iter().any(|s| s == p)));
        let config = DeflateServerConfig {
            window_bits: 10,
            ..DeflateServerConfig::default()
        };
        let deflate = negotiate_server(&req.offered_extensions(), &config);
        if let Some((params, _)) = &deflate {
            assert!(params.server_max_window_bits <= 10);
        }
        let mut out = Vec::new();
        let answer = deflate.as_ref().map(|(_, a)| a.as_str());
        feedrelay::ws::handshake::write_accept(&req, chosen, answer, &mut out);
    }
    let offered = ["json".to_owned()];
    let client = ClientHandshake::new([9; 16])
        .with_protocols(&offered)
        .with_deflate(Some(ClientOffer {
            server_no_context_takeover: true,
            ..ClientOffer::default()
        }));
    if let Ok(Some((resp, len))) = client.parse_response(data, max) {
        assert!(len <= data.len());
        let protocol = resp.protocol.as_deref();
        assert!(
            matches!(protocol, None | Some("json")),
            "only what was offered"
        );
        if let Some(p) = resp.deflate {
            assert!(p.server_no_context_takeover, "asked for, so required");
        }
    }
}

/// Subscribers' control messages and the URL's topic list.
pub fn control(data: &[u8]) {
    let limits = ControlLimits {
        max_topics: 16,
        max_topic_bytes: 32,
        ..ControlLimits::default()
    };
    if let Ok(control::Control::Subscribe(t, _) | control::Control::Unsubscribe(t)) =
        control::parse(data, limits)
    {
        assert!(t.len() <= 16);
        assert!(t.iter().all(|t| !t.is_empty() && t.len() <= 32));
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(t) = control::parse_query_topics(s, limits) {
            assert!(t.len() <= 16);
        }
    }
}

/// The topic and sequence-number reader on hostile JSON, with pointers from the input.
pub fn topic_reader(data: &[u8]) {
    let pointers = ["/s", "/data/s", "/a/0", ""];
    let p = pointers[data.first().map_or(0, |b| *b as usize % pointers.len())];
    let mut r = TopicReader::with_seq(
        JsonPointer::parse(p).expect("a valid pointer"),
        Some(JsonPointer::parse("/data/u").expect("a valid pointer")),
    )
    .max_name_bytes(64);
    for _ in 0..2 {
        match r.lookup(data) {
            TopicLookup::InPayload(range) => {
                let t = data.get(range).expect("the range is inside the payload");
                assert!(!t.is_empty() && t.len() <= 64);
            }
            TopicLookup::Unescaped(t) => assert!(!t.is_empty() && t.len() <= 64),
            _ => {}
        }
        let _ = r.seq();
    }
}

/// The configuration loader on arbitrary text.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(c) = Config::parse(text, "fuzz.toml") {
            let _ = c.to_toml();
            let _ = c.ws_limits();
        }
    }
}

/// The A/B arbiter under hostile sequence numbers: 11-byte records (line, topic,
/// sequence number), counters checked against what was fed.
pub fn arbiter(data: &[u8]) {
    let mut a = Arbiter::with_limit(3, 8);
    let mut forwarded = 0u64;
    for rec in data.chunks_exact(11) {
        let line = rec[0] as usize % 4; // 3 is a line the arbiter does not have
        if rec[1] == 0xff {
            a.line_reconnected(line);
            continue;
        }
        let topic = [b'a' + rec[1] % 12];
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&rec[2..10]);
        let seq = match rec[10] % 4 {
            0 => u64::from_le_bytes(seq),
            1 => u64::MAX - (u64::from_le_bytes(seq) % 4),
            _ => u64::from_le_bytes(seq) % 16,
        };
        let (verdict, gap) = a.check(line, &topic, seq);
        if verdict == Verdict::Forward {
            forwarded += 1;
        }
        if let Some(g) = gap {
            assert!(g.from <= g.to && g.to < seq);
        }
    }
    let counted: u64 = a.topics().iter().map(|(_, t)| t.forwarded).sum();
    assert!(
        counted + a.untracked() == forwarded,
        "every forward counted once"
    );
}
