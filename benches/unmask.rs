//! Unmasking throughput: the SIMD kernel chosen at run time (`simd`) against the 64-bit
//! word loop (`word`) and the plain byte loop (`byte`), side by side in one group so the
//! ratios come from one run. Every frame a server receives goes through this.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use feedrelay::ws::mask::{apply_mask, apply_mask_byte, apply_mask_word, MaskKernel};

fn unmask(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask");
    eprintln!("simd kernel on this CPU: {}", MaskKernel::detected().name());
    for len in [16usize, 128, 1024, 65536] {
        let mut buf: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let key = black_box([0x37, 0xfa, 0x21, 0x3d]);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("simd", len), &len, |b, _| {
            b.iter(|| apply_mask(black_box(&mut buf), key, black_box(0)))
        });
        group.bench_with_input(BenchmarkId::new("word", len), &len, |b, _| {
            b.iter(|| apply_mask_word(black_box(&mut buf), key, black_box(0)))
        });
        group.bench_with_input(BenchmarkId::new("byte", len), &len, |b, _| {
            b.iter(|| apply_mask_byte(black_box(&mut buf), key, black_box(0)))
        });
    }
    group.finish();
}

/// Each kernel this CPU has, forced, at the same lengths: how the dispatcher's choice
/// compares with the narrower kernels.
fn unmask_kernels(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask_kernels");
    for len in [16usize, 128, 1024, 65536] {
        let mut buf: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let key = black_box([0x37, 0xfa, 0x21, 0x3d]);
        group.throughput(Throughput::Bytes(len as u64));
        for kernel in MaskKernel::available() {
            group.bench_with_input(BenchmarkId::new(kernel.name(), len), &len, |b, _| {
                b.iter(|| kernel.apply(black_box(&mut buf), key, black_box(0)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, unmask, unmask_kernels);
criterion_main!(benches);
