//! What compressing one relayed message costs: a 256 B and a 2 KiB order-book update,
//! compressed on its own (the relay's shared frames: no context takeover, the
//! compressor reset after each message) and with context takeover (what a
//! per-subscriber compressor does), at zlib levels 1 and 6; and inflating one. One
//! group per size, so the ratios come from one run.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use feedrelay::bench::load::book_levels;
use feedrelay::ws::{Deflater, Inflater};

/// An order-book update of `n` bytes whose digits vary with `k`, padded as `feedrelay
/// bench --payload book` pads its messages.
fn book(n: usize, k: u64) -> Vec<u8> {
    let mut m = format!(r#"{{"s":"SYM3","seq":{k},"ts":1764489600000000000,"pad":""#).into_bytes();
    let pad = n.saturating_sub(m.len() + 2);
    book_levels(&mut m, pad, k);
    m.extend_from_slice(b"\"}");
    m
}

fn deflate(c: &mut Criterion) {
    for size in [256usize, 2048] {
        let mut group = c.benchmark_group(format!("deflate_{size}B"));
        // More distinct messages than a 32 KiB window holds, so context takeover finds
        // what a live feed gives it (structure), not whole repeated messages.
        const DISTINCT: usize = 4096;
        let messages: Vec<Vec<u8>> = (0..DISTINCT as u64).map(|k| book(size, k)).collect();
        let mut out = Vec::with_capacity(2 * size);
        for level in [1u32, 6] {
            for (name, fresh) in [("per_message", true), ("takeover", false)] {
                let mut d = Deflater::new(level, 15, fresh);
                let mut k = 0;
                group.bench_function(BenchmarkId::new(name, format!("level{level}")), |b| {
                    b.iter(|| {
                        out.clear();
                        d.compress(black_box(&messages[k % DISTINCT]), &mut out);
                        k += 1;
                        black_box(out.len())
                    })
                });
            }
        }
        let mut d = Deflater::new(1, 15, true);
        let compressed: Vec<Vec<u8>> = messages
            .iter()
            .map(|m| {
                let mut z = Vec::new();
                d.compress(m, &mut z);
                z
            })
            .collect();
        let ratio = compressed.iter().map(Vec::len).sum::<usize>() as f64
            / messages.iter().map(Vec::len).sum::<usize>() as f64;
        let mut t = Deflater::new(1, 15, false);
        let with_context: usize = messages
            .iter()
            .map(|m| {
                let mut z = Vec::new();
                t.compress(m, &mut z);
                z.len()
            })
            .sum();
        let total: usize = messages.iter().map(Vec::len).sum();
        println!(
            "deflate_{size}B: level 1 output is {:.1}% of the input per message, {:.1}% with context takeover",
            100.0 * ratio,
            100.0 * with_context as f64 / total as f64
        );
        let mut i = Inflater::new(true);
        let mut plain = Vec::with_capacity(2 * size);
        let mut k = 0;
        group.bench_function("inflate", |b| {
            b.iter(|| {
                i.inflate(black_box(&compressed[k % DISTINCT]), &mut plain, 1 << 20)
                    .unwrap_or_default();
                k += 1;
                black_box(plain.len())
            })
        });
        group.finish();
    }
}

criterion_group!(benches, deflate);
criterion_main!(benches);
