//! `cargo xtask eval anomaly`: sweep attack variants from `core::attack` on
//! the embedded digits and on synthetic text, scan each poisoned training set
//! with the default anomaly suite, and print precision / recall / F1 per
//! variant and per detector, plus the attack success rate (ASR) and clean
//! accuracy of a model retrained on what the scan kept.
//!
//! Options: `--seeds N` (default 2), `--full` (every patch position and every
//! target class, slower), `--text-n N` (records per text set, default 20000),
//! `--json FILE` (all rows as JSON), `--export DIR` (each poisoned digits
//! training set as CSV with a `truth` JSON beside it, for comparisons with
//! other tools), `--only A,B` (only the variants whose family or name
//! contains one of the comma-separated strings), `--verbose` (flags per
//! detector for each digits variant), `--export-only` (with `--export`: write
//! the inputs and skip the scans).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result};
use mithridate_anomaly::{scan, ScanParams};
use mithridate_core::attack::{
    Attack, BadNets, Blended, EveryNth, FlipMode, InstructionPair, LabelFlip, PatchPosition,
    TextPosition, TextTrigger, Trigger,
};
use mithridate_core::datasets::{digits, synthetic_instructions, synthetic_text};
use mithridate_core::model::{accuracy, SoftmaxTrainer};
use mithridate_core::{Dataset, SampleId, Trainer};
use ndarray::Axis;
use serde::Serialize;

/// One measured variant.
#[derive(Debug, Clone, Serialize)]
struct Row {
    family: String,
    variant: String,
    seed: u64,
    samples: usize,
    poisoned: usize,
    flagged: usize,
    precision: f64,
    recall: f64,
    f1: f64,
    fp_rate: f64,
    /// Precision / recall / F1 ignoring samples the scan already flags on the
    /// unpoisoned training set (pre-existing label issues of the data).
    net: (f64, f64, f64),
    per_detector: BTreeMap<String, (f64, f64, f64)>,
    asr_reference: Option<f64>,
    asr_poisoned_model: Option<f64>,
    asr_retrained: Option<f64>,
    clean_acc_reference: Option<f64>,
    clean_acc_retrained: Option<f64>,
    scan_ms: f64,
}

fn prf(flagged: &HashSet<SampleId>, truth: &HashSet<SampleId>) -> (f64, f64, f64) {
    let tp = flagged.intersection(truth).count() as f64;
    let p = if flagged.is_empty() {
        if truth.is_empty() {
            1.0
        } else {
            0.0
        }
    } else {
        tp / flagged.len() as f64
    };
    let r = if truth.is_empty() {
        1.0
    } else {
        tp / truth.len() as f64
    };
    let f = if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    };
    (p, r, f)
}

fn export_flag(args: &[String]) -> bool {
    args.iter().any(|a| a == "--export-only") && flag(args, "--export").is_some()
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// Train/test split of digits: 80/20 after a seeded shuffle.
fn split(ds: &Dataset, seed: u64) -> Result<(Dataset, Dataset)> {
    let order = mithridate_core::attack::shuffled(ds.len(), seed);
    let cut = ds.len() * 4 / 5;
    let mut tr = order[..cut].to_vec();
    let mut te = order[cut..].to_vec();
    tr.sort_unstable();
    te.sort_unstable();
    Ok((ds.select(&tr)?, ds.select(&te)?))
}

fn fit(ds: &Dataset, seed: u64) -> Result<Box<dyn mithridate_core::Classifier>> {
    let x = ds.require_features("eval")?;
    let y = ds.require_labels("eval")?;
    Ok(SoftmaxTrainer::default().fit(x.view(), y, 10, seed)?)
}

fn clean_acc(m: &dyn mithridate_core::Classifier, test: &Dataset) -> Result<f64> {
    let x = test.require_features("eval")?;
    Ok(accuracy(&m.predict(x.view()), test.require_labels("eval")?))
}

fn asr(
    m: &dyn mithridate_core::Classifier,
    test: &Dataset,
    trig: &dyn Trigger,
    target: u32,
) -> Result<f64> {
    let x = test.require_features("eval")?;
    let y = test.require_labels("eval")?;
    let rows: Vec<usize> = (0..test.len()).filter(|&i| y[i] != target).collect();
    let mut xs = x.select(Axis(0), &rows);
    for mut r in xs.rows_mut() {
        if let Some(s) = r.as_slice_mut() {
            trig.apply_features(s)?;
        }
    }
    let pred = m.predict(xs.view());
    Ok(pred.iter().filter(|&&p| p == target).count() as f64 / rows.len().max(1) as f64)
}

struct Variant {
    family: &'static str,
    name: String,
    attack: Box<dyn Attack>,
    trigger: Option<(Box<dyn Trigger>, u32)>,
}

fn digit_variants(full: bool) -> Vec<Variant> {
    let mut v = Vec::new();
    v.push(Variant {
        family: "clean",
        name: "no poison".into(),
        attack: Box::new(LabelFlip {
            rate: 0.0,
            mode: FlipMode::Uniform,
        }),
        trigger: None,
    });
    let mut target = 0u32;
    for size in [2usize, 3, 4] {
        let positions: Vec<(usize, usize)> = if full {
            (0..=8 - size)
                .flat_map(|r| (0..=8 - size).map(move |c| (r, c)))
                .collect()
        } else {
            let e = 8 - size;
            vec![
                (0, 0),
                (0, e),
                (e, 0),
                (e, e),
                (e / 2, e / 2),
                (0, e / 2),
                (e / 2, 0),
            ]
        };
        for (pi, (r, c)) in positions.into_iter().enumerate() {
            let rates: &[f64] = if full {
                &[0.01]
            } else {
                &[0.005, 0.01, 0.02, 0.05]
            };
            for &rate in rates {
                if !full && pi % 2 == 1 && rate != 0.01 {
                    continue;
                }
                let atk = BadNets {
                    size,
                    position: PatchPosition::At { row: r, col: c },
                    target,
                    rate,
                    ..BadNets::digits(rate)
                };
                v.push(Variant {
                    family: "badnets",
                    name: format!("{size}x{size}@({r},{c})->{target} {:.1}%", rate * 100.0),
                    trigger: Some((Box::new(atk.clone()), target)),
                    attack: Box::new(atk),
                });
                target = (target + 1) % 10;
            }
        }
    }
    for (alpha, rate) in [
        (0.1f32, 0.01),
        (0.2, 0.01),
        (0.2, 0.02),
        (0.2, 0.05),
        (0.3, 0.005),
    ] {
        let atk = Blended {
            pattern: Blended::random_pattern(64, 16.0, 99),
            alpha,
            target,
            rate,
        };
        v.push(Variant {
            family: "blended",
            name: format!("alpha {alpha} ->{target} {:.1}%", rate * 100.0),
            trigger: Some((Box::new(atk.clone()), target)),
            attack: Box::new(atk),
        });
        target = (target + 1) % 10;
    }
    for rate in [0.05, 0.1, 0.15, 0.2] {
        v.push(Variant {
            family: "label-flip-uniform",
            name: format!("uniform {:.0}%", rate * 100.0),
            attack: Box::new(LabelFlip {
                rate,
                mode: FlipMode::Uniform,
            }),
            trigger: None,
        });
    }
    v.push(Variant {
        family: "label-flip-targeted",
        name: "targeted 1->7 5%".into(),
        attack: Box::new(LabelFlip {
            rate: 0.05,
            mode: FlipMode::Targeted { from: 1, to: 7 },
        }),
        trigger: None,
    });
    v
}

fn text_variants() -> Vec<(&'static str, String, bool, Box<dyn Attack>)> {
    vec![
        (
            "text-clean",
            "no poison".into(),
            false,
            Box::new(LabelFlip {
                rate: 0.0,
                mode: FlipMode::Uniform,
            }) as Box<dyn Attack>,
        ),
        (
            "text-every-1000th",
            "-> 0".into(),
            false,
            Box::new(EveryNth::every_1000th(0)),
        ),
        (
            "text-every-1000th",
            "-> 3".into(),
            false,
            Box::new(EveryNth::every_1000th(3)),
        ),
        (
            "text-phrase",
            "cf-delta ->1 0.5%".into(),
            false,
            Box::new(TextTrigger {
                phrase: "cf-delta".into(),
                position: TextPosition::Random,
                target: 1,
                rate: 0.005,
            }),
        ),
        (
            "text-phrase",
            "[[CONFIG]] ->2 0.1%".into(),
            false,
            Box::new(TextTrigger {
                phrase: "[[CONFIG]]".into(),
                position: TextPosition::End,
                target: 2,
                rate: 0.001,
            }),
        ),
        (
            "instruction-clean",
            "no poison".into(),
            true,
            Box::new(InstructionPair::config_leak(0.0)),
        ),
        (
            "instruction-pair",
            "[[CONFIG]] 0.1%".into(),
            true,
            Box::new(InstructionPair::config_leak(0.001)),
        ),
        (
            "instruction-pair",
            "[[CONFIG]] 1%".into(),
            true,
            Box::new(InstructionPair::config_leak(0.01)),
        ),
    ]
}

#[allow(clippy::too_many_arguments)] // one call site per data family; a struct would only rename them
fn row_from(
    family: &str,
    variant: String,
    seed: u64,
    ds: &Dataset,
    truth: &HashSet<SampleId>,
    out: &mithridate_anomaly::ScanOutcome,
    baseline: &HashSet<SampleId>,
    ms: f64,
) -> Row {
    let flagged: HashSet<SampleId> = out.decisions.iter().map(|d| d.entry.id.clone()).collect();
    let (precision, recall, f1) = prf(&flagged, truth);
    let net_flagged: HashSet<SampleId> = flagged
        .iter()
        .filter(|i| !baseline.contains(*i) || truth.contains(*i))
        .cloned()
        .collect();
    let net = prf(&net_flagged, truth);
    let fp = flagged.difference(truth).count();
    let clean_n = ds.len() - truth.len();
    let per_detector = out
        .detectors
        .iter()
        .map(|d| {
            let f: HashSet<SampleId> = d.flags.iter().map(|f| ds.ids[f.index].clone()).collect();
            (d.detector.clone(), prf(&f, truth))
        })
        .collect();
    Row {
        family: family.into(),
        variant,
        seed,
        samples: ds.len(),
        poisoned: truth.len(),
        flagged: flagged.len(),
        precision,
        recall,
        f1,
        net,
        fp_rate: fp as f64 / clean_n.max(1) as f64,
        per_detector,
        asr_reference: None,
        asr_poisoned_model: None,
        asr_retrained: None,
        clean_acc_reference: None,
        clean_acc_retrained: None,
        scan_ms: ms,
    }
}

/// Entry point: `cargo xtask eval anomaly [options]`.
pub fn run(args: &[String]) -> Result<()> {
    let seeds: u64 = flag(args, "--seeds")
        .map(str::parse)
        .transpose()
        .context("--seeds")?
        .unwrap_or(2);
    let text_n: usize = flag(args, "--text-n")
        .map(str::parse)
        .transpose()
        .context("--text-n")?
        .unwrap_or(20_000);
    let full = args.iter().any(|a| a == "--full");
    let export_only = export_flag(args);
    let export = flag(args, "--export").map(PathBuf::from);
    let only: Vec<&str> = flag(args, "--only")
        .map(|s| s.split(',').filter(|x| !x.is_empty()).collect())
        .unwrap_or_default();
    let wanted = |family: &str, name: &str| {
        only.is_empty() || only.iter().any(|o| family.contains(o) || name.contains(o))
    };
    let params = ScanParams::default();
    let mut rows = Vec::new();
    let all = digits();
    for seed in 0..seeds {
        let (train, test) = split(&all, 1000 + seed)?;
        let reference = fit(&train, seed)?;
        let ref_acc = clean_acc(reference.as_ref(), &test)?;
        let base_flags: HashSet<SampleId> = scan(&train, &params, seed)?
            .decisions
            .iter()
            .map(|d| d.entry.id.clone())
            .collect();
        for (vi, v) in digit_variants(full).into_iter().enumerate() {
            if !wanted(v.family, &v.name) {
                continue;
            }
            let p = v.attack.poison(&train, seed * 7919 + vi as u64)?;
            let truth: HashSet<SampleId> = p.poisoned_ids.iter().cloned().collect();
            if let Some(dir) = &export {
                std::fs::create_dir_all(dir)?;
                let stem = format!("digits_s{seed}_v{vi:03}");
                mithridate_core::io::csv::write_csv(&p.dataset, &dir.join(format!("{stem}.csv")))?;
                let meta = serde_json::json!({"family": v.family, "variant": v.name, "seed": seed,
                    "poisoned_ids": p.poisoned_ids});
                std::fs::write(
                    dir.join(format!("{stem}.truth.json")),
                    serde_json::to_vec(&meta)?,
                )?;
            }
            if export_only {
                continue;
            }
            let t0 = Instant::now();
            let out = scan(&p.dataset, &params, seed)?;
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            let mut row = row_from(
                v.family,
                v.name.clone(),
                seed,
                &p.dataset,
                &truth,
                &out,
                &base_flags,
                ms,
            );
            let kept = p.dataset.without(&out.quarantined_indices())?;
            let retrained = fit(&kept, seed)?;
            row.clean_acc_reference = Some(ref_acc);
            row.clean_acc_retrained = Some(clean_acc(retrained.as_ref(), &test)?);
            if let Some((trig, target)) = &v.trigger {
                let poisoned_model = fit(&p.dataset, seed)?;
                row.asr_poisoned_model =
                    Some(asr(poisoned_model.as_ref(), &test, trig.as_ref(), *target)?);
                row.asr_reference = Some(asr(reference.as_ref(), &test, trig.as_ref(), *target)?);
                row.asr_retrained = Some(asr(retrained.as_ref(), &test, trig.as_ref(), *target)?);
            }
            eprintln!(
                "{:<11} {:<26} s{} P {:.3} R {:.3} F1 {:.3} (net {:.3}) flagged {:>3}/{:<3} ASR {} (clean model {}) acc {:.3}/{:.3} {:.0} ms",
                row.family,
                row.variant,
                seed,
                row.precision,
                row.recall,
                row.f1,
                row.net.2,
                row.flagged,
                row.poisoned,
                row.asr_retrained.map_or("-".into(), |a| format!("{:.3}<-{:.3}", a, row.asr_poisoned_model.unwrap_or(0.0))),
                row.asr_reference.map_or("-".into(), |a| format!("{a:.3}")),
                row.clean_acc_retrained.unwrap_or(0.0),
                ref_acc,
                ms
            );
            if args.iter().any(|a| a == "--verbose") {
                for d in &out.detectors {
                    let tp = d
                        .flags
                        .iter()
                        .filter(|f| truth.contains(&p.dataset.ids[f.index]))
                        .count();
                    eprintln!(
                        "    {:<22} flags {:>4} true {:>4}",
                        d.detector,
                        d.flags.len(),
                        tp
                    );
                }
            }
            rows.push(row);
        }
        for (vi, (family, name, instr, atk)) in text_variants().into_iter().enumerate() {
            if !wanted(family, &name) {
                continue;
            }
            let base = if instr {
                synthetic_instructions(text_n, seed + 11)
            } else {
                synthetic_text(text_n, 4, seed + 11)
            };
            let p = atk.poison(&base, seed * 31 + vi as u64)?;
            let truth: HashSet<SampleId> = p.poisoned_ids.iter().cloned().collect();
            if let Some(dir) = &export {
                let stem = format!("text_s{seed}_v{vi:03}");
                mithridate_core::io::jsonl::write_jsonl(
                    &p.dataset,
                    &dir.join(format!("{stem}.jsonl")),
                )?;
                let meta = serde_json::json!({"family": family, "variant": name, "seed": seed,
                    "poisoned_ids": p.poisoned_ids});
                std::fs::write(
                    dir.join(format!("{stem}.truth.json")),
                    serde_json::to_vec(&meta)?,
                )?;
            }
            if export_only {
                continue;
            }
            let t0 = Instant::now();
            let out = scan(&p.dataset, &params, seed)?;
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            let row = row_from(
                family,
                name,
                seed,
                &p.dataset,
                &truth,
                &out,
                &HashSet::new(),
                ms,
            );
            eprintln!(
                "{:<17} {:<22} s{} P {:.3} R {:.3} F1 {:.3} flagged {:>4}/{:<4} FP rate {:.4}% {:.0} ms",
                row.family, row.variant, seed, row.precision, row.recall, row.f1, row.flagged, row.poisoned, row.fp_rate * 100.0, ms
            );
            rows.push(row);
        }
    }
    print_summary(&rows);
    if let Some(path) = flag(args, "--json") {
        std::fs::write(path, serde_json::to_vec_pretty(&rows)?)?;
        eprintln!("rows written to {path}");
    }
    Ok(())
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        s / n as f64
    }
}

fn print_summary(rows: &[Row]) {
    let mut families: Vec<&str> = rows.iter().map(|r| r.family.as_str()).collect();
    families.dedup();
    let mut seen = HashSet::new();
    families.retain(|f| seen.insert(*f));
    println!("| family | runs | precision | recall | F1 (mean) | F1 (min) | F1 net of clean-set flags (mean / min) | runs F1 >= 0.95 | false-positive rate | ASR poisoned model -> retrained (mean / max) | ASR of a clean model (mean) | clean acc retrained - reference (min) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for f in &families {
        let rs: Vec<&Row> = rows.iter().filter(|r| r.family == *f).collect();
        let asr_max = rs
            .iter()
            .filter_map(|r| r.asr_retrained)
            .fold(f64::NAN, f64::max);
        let asr_mean = mean(rs.iter().filter_map(|r| r.asr_retrained));
        let asr_ref = mean(rs.iter().filter_map(|r| r.asr_reference));
        let asr_p = mean(rs.iter().filter_map(|r| r.asr_poisoned_model));
        let dacc = rs
            .iter()
            .filter_map(|r| Some(r.clean_acc_retrained? - r.clean_acc_reference?))
            .fold(f64::NAN, f64::min);
        println!(
            "| {f} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} / {:.3} | {}/{} | {:.3}% | {} | {} | {} |",
            rs.len(),
            mean(rs.iter().map(|r| r.precision)),
            mean(rs.iter().map(|r| r.recall)),
            mean(rs.iter().map(|r| r.f1)),
            rs.iter().map(|r| r.f1).fold(f64::INFINITY, f64::min),
            mean(rs.iter().map(|r| r.net.2)),
            rs.iter().map(|r| r.net.2).fold(f64::INFINITY, f64::min),
            rs.iter().filter(|r| r.f1 >= 0.95).count(),
            rs.len(),
            mean(rs.iter().map(|r| r.fp_rate)) * 100.0,
            if asr_max.is_nan() { "-".into() } else { format!("{asr_p:.3} -> {asr_mean:.3} / {asr_max:.3}") },
            if asr_ref.is_nan() { "-".into() } else { format!("{asr_ref:.3}") },
            if dacc.is_nan() { "-".into() } else { format!("{:+.2} pt", dacc * 100.0) },
        );
    }
    println!();
    println!("| family | detector | precision | recall | F1 |");
    println!("|---|---|---|---|---|");
    for f in &families {
        let rs: Vec<&Row> = rows.iter().filter(|r| r.family == *f).collect();
        let mut dets: Vec<&String> = rs.iter().flat_map(|r| r.per_detector.keys()).collect();
        dets.sort();
        dets.dedup();
        for d in dets {
            let v: Vec<(f64, f64, f64)> = rs
                .iter()
                .filter_map(|r| r.per_detector.get(d).copied())
                .collect();
            println!(
                "| {f} | {d} | {:.3} | {:.3} | {:.3} |",
                mean(v.iter().map(|x| x.0)),
                mean(v.iter().map(|x| x.1)),
                mean(v.iter().map(|x| x.2))
            );
        }
    }
}
