//! Wall times of the two hot paths, for a quick look without criterion:
//! the default scan of the embedded digits (goal: under 1 s) and the n-gram
//! trigger scan of N JSONL text records, reading included (goal for 1M
//! records: at most 10 s on 2 cores). Prints the median of a few runs.
//!
//! `cargo run --release -p mithridate-anomaly --example scan_timing -- [N] [REPS]`
//! (defaults: 100000 records, 3 repetitions).

use std::time::Instant;

use mithridate_anomaly::text::TextTriggerMining;
use mithridate_anomaly::{scan, Detector, ScanParams};
use mithridate_core::attack::{Attack, BadNets, EveryNth};
use mithridate_core::datasets::{digits, synthetic_text};
use mithridate_core::io::{jsonl, ReadOptions};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    let reps: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(3)
        .max(1);
    let threads = rayon::current_num_threads();

    let p = BadNets::digits(0.01).poison(&digits(), 1)?;
    let mut t = Vec::new();
    for _ in 0..reps {
        let t0 = Instant::now();
        let out = scan(&p.dataset, &ScanParams::default(), 1)?;
        t.push(t0.elapsed().as_secs_f64());
        assert!(!out.decisions.is_empty());
    }
    println!(
        "digits default scan: {} samples, median {:.3} s over {reps} runs ({threads} threads)",
        p.dataset.len(),
        median(t)
    );

    let tp = EveryNth::every_1000th(2).poison(&synthetic_text(n, 4, 3), 0)?;
    let dir = std::env::temp_dir().join(format!("mithridate-scan-timing-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("text.jsonl");
    jsonl::write_jsonl(&tp.dataset, &path)?;
    let det = TextTriggerMining::default();
    let (mut mem, mut full) = (Vec::new(), Vec::new());
    let mut flagged = 0;
    for _ in 0..reps {
        let t0 = Instant::now();
        flagged = det.detect(&tp.dataset, 0)?.flags.len();
        mem.push(t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        let (ds, _) = jsonl::read_jsonl(&path, &ReadOptions::default())?;
        det.detect(&ds, 0)?;
        full.push(t0.elapsed().as_secs_f64());
    }
    std::fs::remove_dir_all(&dir)?;
    println!(
        "text trigger scan: {n} records ({} tampered, {flagged} flagged), median in memory {:.2} s, read JSONL + scan {:.2} s over {reps} runs ({threads} threads)",
        tp.poisoned_ids.len(),
        median(mem),
        median(full)
    );
    Ok(())
}
