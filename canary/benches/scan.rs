//! Scanner throughput on plain text with 10,000 registered honeypot tokens.
//!
//! `registry-10k`: the production path (token prefixes in the automaton, each
//! candidate confirmed by its keyed digest). `exact-10k`: the same 10,000
//! tokens as exact Aho-Corasick patterns, for comparison. Both scan 64 MiB of
//! news-like text in memory with the scanner's parallel ranges (rayon).

use criterion::{criterion_main, Criterion, Throughput};
use mithridate_canary::registry::{Registry, Site};
use mithridate_canary::scan::Scanner;
use mithridate_canary::token::{HoneypotKind, SecretKey};

fn corpus(bytes: usize, tokens: &[String]) -> Vec<u8> {
    let ds = mithridate_core::datasets::synthetic_text(2000, 6, 1);
    let lines: Vec<&String> = ds.text().map(|t| t.iter().collect()).unwrap_or_default();
    let mut out = Vec::with_capacity(bytes + 256);
    let mut i = 0usize;
    while out.len() < bytes {
        out.extend_from_slice(lines[i % lines.len()].as_bytes());
        out.push(b'\n');
        // A planted token every ~8 MiB.
        if i % 100_000 == 99_999 {
            out.extend_from_slice(tokens[i % tokens.len()].as_bytes());
            out.push(b'\n');
        }
        i += 1;
    }
    out
}

fn bench(c: &mut Criterion) {
    let key = SecretKey::from_seed(1);
    let mut reg = Registry::new(&key);
    let mut tokens = Vec::new();
    for i in 0..10_000 {
        let kind = HoneypotKind::ALL[i % 4];
        tokens.push(
            reg.mint(&key, kind, Site::file("bench"))
                .map(|t| t.0)
                .unwrap_or_default(),
        );
    }
    let data = corpus(64 << 20, &tokens);
    let prefix = Scanner::builder()
        .registry(&reg)
        .split_above(4 << 20)
        .build();
    let mut exact = Scanner::builder().split_above(4 << 20);
    for (i, t) in tokens.iter().enumerate() {
        exact = exact.exact(format!("t{i}"), t);
    }
    let exact = exact.build();
    let (Ok(prefix), Ok(exact)) = (prefix, exact) else {
        eprintln!("cannot build scanners");
        return;
    };
    let expected = prefix.scan_bytes(&data, "bench").len();
    assert_eq!(expected, exact.scan_bytes(&data, "bench").len());
    eprintln!(
        "corpus {} bytes, {} planted hits, {} rayon threads",
        data.len(),
        expected,
        rayon::current_num_threads()
    );
    let mut g = c.benchmark_group("scan");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    g.bench_function("registry-10k", |b| {
        b.iter(|| prefix.scan_bytes(&data, "bench").len())
    });
    g.bench_function("exact-10k", |b| {
        b.iter(|| exact.scan_bytes(&data, "bench").len())
    });
    g.finish();
}

#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(group::benches);
