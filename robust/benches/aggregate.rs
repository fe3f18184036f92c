//! Aggregation benchmarks.
//!
//! `cargo bench -p mithridate-robust --bench aggregate` runs criterion on 50
//! clients x 100,000 parameters. With `FLOWER_PYTHON=/path/to/python` (a
//! Python with `flwr` installed) it instead times Flower's functions and
//! ours on the same 50 clients x 1,000,000 parameters with 10 Byzantine
//! clients, in one run, checks that the results are equal and prints the
//! speed-up ratios. Flower and ours alternate (`FLOWER_REPS` repetitions,
//! default 3) so both see the same machine load.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use criterion::{black_box, BenchmarkId, Criterion};
use mithridate_core::io::npy::{read_npy, write_npy_f32};
use mithridate_core::rng::seeded;
use mithridate_robust::aggregate::{aggregate, Method};
use ndarray::Array2;
use rand::Rng;

/// `n` clients: honest ones near a common vector, the last `byz` Byzantine
/// (half sign-flipped and scaled, half large Gaussian noise).
fn updates(n: usize, d: usize, byz: usize) -> Array2<f32> {
    let mut rng = seeded(7);
    let base: Vec<f32> = (0..d).map(|_| rng.gen_range(-1.0..1.0)).collect();
    Array2::from_shape_fn((n, d), |(i, j)| {
        let noise: f32 = rng.gen_range(-0.1..0.1);
        if i + byz < n {
            base[j] + noise
        } else if i % 2 == 0 {
            -10.0 * base[j]
        } else {
            noise * 300.0
        }
    })
}

fn methods(n: usize, f: usize) -> Vec<(&'static str, Method)> {
    vec![
        ("fedavg", Method::FedAvg),
        ("median", Method::Median),
        ("trimmed-mean", Method::TrimmedMean { beta: 0.2 }),
        ("krum", Method::Krum { byzantine: f }),
        (
            "multi-krum",
            Method::MultiKrum {
                byzantine: f,
                keep: n - f,
            },
        ),
        ("bulyan", Method::Bulyan { byzantine: f }),
        ("geometric-median", Method::geometric_median()),
        ("centered-clipping", Method::centered_clipping()),
    ]
}

fn criterion_benches(c: &mut Criterion) {
    let (n, d, f) = (50, 100_000, 10);
    let x = updates(n, d, f);
    let mut g = c.benchmark_group("aggregate_50x100k");
    g.sample_size(10);
    for (name, m) in methods(n, f) {
        g.bench_with_input(BenchmarkId::from_parameter(name), &m, |b, m| {
            b.iter(|| aggregate(black_box(m), x.view(), None).map(|a| a.params.len()))
        });
    }
    g.finish();
}

/// Times one Flower function on the saved updates and saves its result.
/// Loaded once per call, so each call times only the aggregation.
const FLOWER: &str = r#"
import sys, time, json
import numpy as np
from flwr.server.strategy import aggregate as agg
x = np.load(sys.argv[1]); out = sys.argv[2]; f = int(sys.argv[3]); name = sys.argv[4]
res = [([x[i]], 1) for i in range(x.shape[0])]
runs = {
  "fedavg": lambda: agg.aggregate(res),
  "median": lambda: agg.aggregate_median(res),
  "trimmed-mean": lambda: agg.aggregate_trimmed_avg(res, 0.2),
  "krum": lambda: agg.aggregate_krum(res, f, 0),
  "multi-krum": lambda: agg.aggregate_krum(res, f, x.shape[0] - f),
  "bulyan": lambda: agg.aggregate_bulyan(res, f, agg.aggregate_krum, to_keep=0),
}
t = time.perf_counter(); r = runs[name](); dt = time.perf_counter() - t
np.save(f"{out}/{name}.npy", np.asarray(r[0], dtype=np.float32).reshape(1, -1))
print(json.dumps(dt))
"#;

/// The 1-minute load average, to print next to the timings.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn median_of(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Flower and ours on the same 50 x 1,000,000 updates, interleaved: for
/// each repetition and method, Flower's run and then ours, so both see the
/// same machine load. Prints the medians, their ratio, and how far our
/// result is from Flower's.
fn compare_with_flower(python: &str) {
    let (n, d, f) = (50, 1_000_000, 10);
    let reps: usize = std::env::var("FLOWER_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let x = updates(n, d, f);
    let dir = std::env::temp_dir().join(format!("mithridate-flower-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let input = dir.join("updates.npy");
    write_npy_f32(&input, &x).expect("write updates");
    let script = dir.join("flower_bench.py");
    std::fs::File::create(&script)
        .and_then(|mut s| s.write_all(FLOWER.as_bytes()))
        .expect("script");
    let flower = |name: &str| -> f64 {
        let out = Command::new(python)
            .arg(&script)
            .arg(&input)
            .arg(&dir)
            .arg(f.to_string())
            .arg(name)
            // Older OpenBLAS workarounds slow current NumPy down; give Flower its best run.
            .env_remove("OPENBLAS_CORETYPE")
            .env_remove("OPENBLAS_L2_SIZE")
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "flower failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("flower timing")
    };
    eprintln!(
        "Flower and ours on {n} x {d} ({f} Byzantine), {reps} interleaved repetitions \
         (Bulyan: 1 for Flower); load average {}",
        load_average()
    );
    println!(
        "{:<18} {:>10} {:>10} {:>8} {:>12} {:>7} {:>6}",
        "method", "flower_s", "ours_s", "ratio", "max_abs_diff", "n>1e-6", "load"
    );
    for (name, m) in methods(n, f) {
        let flower_runs = if name == "bulyan" { 1 } else { reps };
        let mut ft = Vec::new();
        let mut ot = Vec::new();
        let mut last = None;
        for r in 0..reps {
            if name != "geometric-median" && name != "centered-clipping" && r < flower_runs {
                ft.push(flower(name));
            }
            let t = Instant::now();
            let a = aggregate(&m, x.view(), None).expect("aggregate");
            ot.push(t.elapsed().as_secs_f64());
            last = Some(a);
        }
        let ours = median_of(ot);
        let load = load_average();
        if ft.is_empty() {
            println!(
                "{name:<18} {:>10} {ours:>10.4} {:>8} {:>12} {:>7} {load:>6}",
                "-", "-", "-", "-"
            );
            continue;
        }
        let flower_s = median_of(ft);
        let reference =
            read_npy(Path::new(&dir.join(format!("{name}.npy")))).expect("flower output");
        let got = last.expect("ran").params;
        let diffs: Vec<f64> = got
            .iter()
            .zip(&reference.data)
            .map(|(&a, &b)| (f64::from(a) - b).abs())
            .collect();
        let diff = diffs.iter().copied().fold(0.0, f64::max);
        // Coordinates off by more than 1e-6 (relative above 1).
        let over = reference
            .data
            .iter()
            .zip(&diffs)
            .filter(|(b, &e)| e > 1e-6 * b.abs().max(1.0))
            .count();
        println!(
            "{name:<18} {flower_s:>10.4} {ours:>10.4} {:>7.1}x {diff:>12.2e} {over:>7} {load:>6}",
            flower_s / ours
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    if let Ok(py) = std::env::var("FLOWER_PYTHON") {
        compare_with_flower(&py);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c);
    c.final_summary();
}
