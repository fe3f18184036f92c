//! Benchmarks of the privacy accountants on the reference table's settings.
#![allow(missing_docs)] // criterion_group! generates an undocumented function.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mithridate_robust::dp::{calibrate_sigma, epsilon_pld, epsilon_rdp, AccountantKind};

fn accountants(c: &mut Criterion) {
    let mut g = c.benchmark_group("accountant");
    g.sample_size(10);
    g.bench_function("rdp q=256/60000 sigma=1.1 T=14062", |b| {
        b.iter(|| epsilon_rdp(black_box(256.0 / 60000.0), black_box(1.1), 14062, 1e-5))
    });
    g.bench_function("pld q=256/60000 sigma=1.1 T=14062", |b| {
        b.iter(|| epsilon_pld(black_box(256.0 / 60000.0), black_box(1.1), 14062, 1e-5))
    });
    g.bench_function("pld q=0.05 sigma=0.6 T=2000", |b| {
        b.iter(|| epsilon_pld(black_box(0.05), black_box(0.6), 2000, 1e-5))
    });
    g.bench_function("calibrate rdp eps=3 q=0.01 T=1000", |b| {
        b.iter(|| calibrate_sigma(black_box(3.0), 0.01, 1000, 1e-5, AccountantKind::Rdp))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = accountants
}
criterion_main!(benches);
