//! What timing a hop costs on the hot path: reading the clock, recording into a
//! worker's HdrHistogram, and both together (what the relay does per hop), beside an
//! empty baseline, in one group so the ratios come from one run.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use feedrelay::metrics::{now_ns, Hop, HopHistograms};

fn hop_record(c: &mut Criterion) {
    let mut group = c.benchmark_group("hop_record");
    let mut hops = HopHistograms::default();
    let mut v: u64 = 12_345;
    group.bench_function("baseline", |b| b.iter(|| black_box(v)));
    group.bench_function("clock", |b| b.iter(|| black_box(now_ns())));
    group.bench_function("record", |b| {
        b.iter(|| {
            v = v.wrapping_mul(6364136223846793005).wrapping_add(1) % 10_000_000;
            hops.record(Hop::Egress, black_box(v + 1));
        })
    });
    let start = now_ns();
    group.bench_function("clock_and_record", |b| {
        b.iter(|| {
            let now = now_ns();
            hops.record(Hop::Egress, now - start);
        })
    });
    group.finish();
}

criterion_group!(benches, hop_record);
criterion_main!(benches);
