//! What reading a message's topic costs, per message shape: the bench generator's
//! 256 B message (one long string), the same with order-book digits, and an
//! exchange-style depth update (many short strings in nested arrays).
//!
//! Beside each, in the same run, the baseline `simd_json/<shape>`: what the lookup cost
//! before the scan, a copy into a reused buffer and simd-json's tape parse with reused
//! buffers (without walking the tape to the pointer, so it flatters simd-json a little).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use feedrelay::relay::core::topic::{JsonPointer, TopicReader};

fn messages() -> Vec<(&'static str, Vec<u8>)> {
    let mut pad = br#"{"s":"SYM7","seq":123,"ts":1732456789123456789,"pad":""#.to_vec();
    pad.resize(254, b'x');
    pad.extend_from_slice(b"\"}");
    let mut book = br#"{"s":"SYM7","seq":123,"ts":1732456789123456789,"pad":""#.to_vec();
    let n = 254 - book.len();
    feedrelay::bench::load::book_levels(&mut book, n, 7);
    book.extend_from_slice(b"\"}");
    let mut depth =
        br#"{"e":"depthUpdate","E":1732456789123,"s":"BNBBTC","U":157,"u":160,"b":["#.to_vec();
    for i in 0..6 {
        depth.extend_from_slice(format!(r#"["0.00{i}4","1{i}"],"#).as_bytes());
    }
    depth.pop();
    depth.extend_from_slice(br#"],"a":[["0.0026","100"],["0.0027","12"]]}"#);
    vec![
        ("pad_256", pad),
        ("book_256", book),
        ("depth_update", depth),
    ]
}

fn topic_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("topic_lookup");
    for (name, msg) in messages() {
        let mut reader =
            TopicReader::new(JsonPointer::parse("/s").unwrap_or_else(|e| panic!("{e}")));
        group.bench_function(name, |b| {
            b.iter(|| black_box(reader.lookup(black_box(&msg))))
        });
        let mut scratch = Vec::new();
        let mut buffers = simd_json::Buffers::default();
        let mut tape = Some(simd_json::tape::Tape::null());
        group.bench_function(format!("simd_json/{name}"), |b| {
            b.iter(|| {
                scratch.clear();
                scratch.extend_from_slice(black_box(&msg));
                let mut t = tape
                    .take()
                    .map_or_else(simd_json::tape::Tape::null, |t| t.reset());
                let ok = simd_json::fill_tape(&mut scratch, &mut buffers, &mut t).is_ok();
                tape = Some(t.reset());
                black_box(ok)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, topic_lookup);
criterion_main!(benches);
