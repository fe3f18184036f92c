//! Hot paths of the anomaly layer: the default scan of the embedded digits
//! (goal: under 1 s) and the n-gram trigger scan of 1M JSONL text records,
//! reading included (goal: at most 10 s on 2 cores).
//!
//! `MITHRIDATE_BENCH_TEXT_N` changes the number of text records.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use criterion::{criterion_main, Criterion};
use mithridate_anomaly::text::TextTriggerMining;
use mithridate_anomaly::{scan, Detector, ScanParams};
use mithridate_core::attack::{Attack, BadNets, EveryNth};
use mithridate_core::datasets::{digits, synthetic_text};
use mithridate_core::io::{jsonl, ReadOptions};

fn digits_scan(c: &mut Criterion) {
    let p = BadNets::digits(0.01).poison(&digits(), 1).expect("poison");
    let mut g = c.benchmark_group("digits");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("scan_default_suite", |b| {
        b.iter(|| scan(&p.dataset, &ScanParams::default(), 1).expect("scan"))
    });
    g.finish();
}

fn text_scan(c: &mut Criterion) {
    let n: usize = std::env::var("MITHRIDATE_BENCH_TEXT_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let p = EveryNth::every_1000th(2)
        .poison(&synthetic_text(n, 4, 3), 0)
        .expect("poison");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("text.jsonl");
    jsonl::write_jsonl(&p.dataset, &path).expect("write");
    let det = TextTriggerMining::default();
    let mut g = c.benchmark_group("text");
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    g.bench_function(format!("ngram_trigger_scan_{n}_records_in_memory"), |b| {
        b.iter(|| {
            let out = det.detect(&p.dataset, 0).expect("detect");
            assert_eq!(out.flags.len(), n / 1000);
        })
    });
    g.bench_function(
        format!("read_jsonl_and_ngram_trigger_scan_{n}_records"),
        |b| {
            b.iter(|| {
                let (ds, _) = jsonl::read_jsonl(&path, &ReadOptions::default()).expect("read");
                det.detect(&ds, 0).expect("detect")
            })
        },
    );
    g.finish();
}

// criterion's macro defines an undocumented function.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::digits_scan, super::text_scan);
}
criterion_main!(group::benches);
