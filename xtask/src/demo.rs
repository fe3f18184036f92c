//! `cargo xtask demo`: the whole story on the embedded digits, in one run.
//!
//! 1. Split digits into train and holdout (fixed seed).
//! 2. An attacker upstream poisons 1% of the training set with a BadNets patch
//!    (target class 7); the team receives that data, writes and signs a manifest.
//! 3. An undefended model learns the backdoor: high attack success rate (ASR).
//! 4. The low, medium and high tiers run on the same poisoned data, side by side.
//! 5. One record is tampered after signing: verification rejects it and names it.
//! 6. The medium tier's audit report is written (JSON, Markdown, HTML).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result};
use mithridate_core::attack::{shuffled, Attack, BadNets, Trigger};
use mithridate_core::datasets::digits;
use mithridate_core::io::{csv::write_csv, read_path, ReadOptions};
use mithridate_core::model::{accuracy, Classifier, SoftmaxParams, SoftmaxRegression};
use mithridate_core::rng::derive_seed;
use mithridate_core::{Context, Dataset, Stage, Verdict};
use mithridate_policy::{
    AuditReport, Config, EffectivePolicy, Inputs, Pipeline, Series, Table, Tier,
};
use serde_json::json;

use crate::flag;

/// Figures of one model on the holdout.
struct Eval {
    accuracy: f64,
    asr: f64,
}

/// Accuracy on the clean holdout, and ASR: the fraction of non-target holdout
/// images that the model assigns to the target once the trigger is stamped.
fn evaluate(model: &dyn Classifier, hold: &Dataset, atk: &BadNets) -> Result<Eval> {
    let x = hold.require_features("evaluate")?;
    let y = hold.require_labels("evaluate")?;
    let acc = accuracy(&model.predict(x.view()), y);
    let idx: Vec<usize> = (0..hold.len()).filter(|&i| y[i] != atk.target).collect();
    let mut tx = x.select(ndarray::Axis(0), &idx);
    for mut row in tx.rows_mut() {
        let s = row.as_slice_mut().context("rows are contiguous")?;
        atk.apply_features(s)?;
    }
    let hits = model
        .predict(tx.view())
        .iter()
        .filter(|&&p| p == atk.target)
        .count();
    Ok(Eval {
        accuracy: acc,
        asr: hits as f64 / idx.len().max(1) as f64,
    })
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

struct TierRow {
    tier: Tier,
    caught: usize,
    quarantined: usize,
    eval: Option<Eval>,
    verdict: Verdict,
    secs: f64,
    epsilon: Option<f64>,
    failed: Vec<String>,
}

pub fn run(args: &[String]) -> Result<()> {
    let seed: u64 = flag(args, "--seed")
        .map(str::parse)
        .transpose()?
        .unwrap_or(42);
    let out =
        flag(args, "--out").map_or_else(|| crate::workspace_root().join("demo-out"), PathBuf::from);
    let t_all = Instant::now();
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("clearing {}", out.display()))?;
    }
    let data_dir = out.join("data");
    let train_dir = data_dir.join("train");
    std::fs::create_dir_all(&train_dir)?;
    eprintln!(
        "mithridate demo — UCI optical digits (1,797 images of 8x8, 10 classes), seed {seed}\n"
    );

    // 1. Split.
    let ds = digits();
    let perm = shuffled(ds.len(), derive_seed(seed, "split"));
    let (hold_idx, train_idx) = perm.split_at(ds.len() / 5);
    let (train, hold) = (ds.select(train_idx)?, ds.select(hold_idx)?);
    eprintln!(
        "[1/6] split: {} training images, {} held-out images that never touch training",
        train.len(),
        hold.len()
    );

    // 2. Poison upstream, then receive: write, manifest, sign.
    let atk = BadNets::digits(0.01);
    let poisoned = atk.poison(&train, derive_seed(seed, "poison"))?;
    eprintln!(
        "[2/6] attacker poisons {} of {} training images ({}) upstream: {}",
        poisoned.poisoned_ids.len(),
        train.len(),
        pct(poisoned.poisoned_ids.len() as f64 / train.len() as f64),
        atk.describe()
    );
    let train_csv = train_dir.join("train.csv");
    write_csv(&poisoned.dataset, &train_csv)?;
    let hold_csv = data_dir.join("holdout.csv");
    write_csv(&hold, &hold_csv)?;
    let prov = crate::demo_provenance::sign_dataset(&train_dir, &out)?;
    eprintln!(
        "      manifest of the received data: {} records, root {}, signed (DSSE, Ed25519)",
        prov.records,
        short(&prov.root)
    );

    // The team's known-trigger suite: the patch from the incident report, towards its target.
    let suite = data_dir.join("known-triggers.toml");
    std::fs::write(&suite, KNOWN_TRIGGERS)?;

    // 3. Undefended model, and the unpoisoned reference.
    let fit = |d: &Dataset| -> Result<SoftmaxRegression> {
        Ok(SoftmaxRegression::fit(
            d.require_features("fit")?.view(),
            d.require_labels("fit")?,
            10,
            &SoftmaxParams::default(),
            derive_seed(seed, "train"),
        )?)
    };
    let reference = evaluate(&fit(&train)?, &hold, &atk)?;
    let undefended = evaluate(&fit(&poisoned.dataset)?, &hold, &atk)?;
    eprintln!(
        "[3/6] undefended model on poisoned data: clean accuracy {}, attack success rate {}",
        pct(undefended.accuracy),
        pct(undefended.asr)
    );
    eprintln!(
        "      reference model on unpoisoned data: clean accuracy {}, attack success rate {}",
        pct(reference.accuracy),
        pct(reference.asr)
    );

    // 4. The tiers, side by side, on the same poisoned data.
    eprintln!("[4/6] the three tiers on the same poisoned data:");
    let truth: std::collections::HashSet<_> = poisoned.poisoned_ids.iter().cloned().collect();
    let mut rows = Vec::new();
    let mut medium_report = None;
    for tier in Tier::ALL {
        let t0 = Instant::now();
        let mut cfg = Config {
            seed: Some(seed),
            ..Default::default()
        };
        cfg.data.manifest = Some(prov.envelope.clone());
        cfg.data.trusted_keys = vec![prov.public_key.clone()];
        let policy = EffectivePolicy::new(tier, &cfg)?;
        let inputs = Inputs {
            manifest: cfg.data.manifest.clone(),
            trusted_keys: cfg.data.trusted_keys.clone(),
            trigger_suite: Some(suite.clone()),
        };
        let pipe = Pipeline::build(policy.clone(), &inputs)?;
        let (read, _) = read_path(
            &train_csv,
            &ReadOptions {
                id_column: Some("id".into()),
                ..Default::default()
            },
        )?;
        let input = read.clone();
        let mut cx = Context::new(seed)
            .with_dataset(read)
            .with_holdout(hold.clone());
        cx.dataset_paths = vec![train_csv.clone()];
        cx.dataset_root = Some(train_dir.clone());
        let stages = [Stage::Ingest, Stage::Train, Stage::Release];
        let summary = pipe.run(&mut cx, &stages)?;
        let caught = truth
            .iter()
            .filter(|id| cx.quarantine.is_quarantined(id))
            .count();
        let eval = cx
            .model
            .as_deref()
            .map(|m| evaluate(m, &hold, &atk))
            .transpose()?;
        let epsilon = cx
            .artifacts
            .get("epsilon")
            .and_then(serde_json::Value::as_f64);
        let failed = summary
            .reports
            .iter()
            .filter(|r| r.verdict == Verdict::Fail)
            .map(|r| r.defense.clone())
            .collect();
        let row = TierRow {
            tier,
            caught,
            quarantined: cx.quarantine.active_len(),
            eval,
            verdict: summary.verdict,
            secs: t0.elapsed().as_secs_f64(),
            epsilon,
            failed,
        };
        print_row(&row, truth.len());
        if std::env::var_os("MITHRIDATE_DEMO_DEBUG").is_some() {
            for r in &summary.reports {
                eprintln!(
                    "        {} {} {} {:?}",
                    r.defense, r.verdict, r.summary, r.metrics
                );
            }
        }
        if tier == Tier::Medium {
            let dir = out.join("ingest");
            std::fs::create_dir_all(&dir)?;
            mithridate_policy::runner::write_ingest_outputs(&cx, &input, &train_csv, &dir)?;
            medium_report = Some(AuditReport::new(
                "mithridate demo — medium tier on BadNets-poisoned digits",
                &policy,
                &stages,
                &summary,
                &cx,
            ));
        }
        rows.push(row);
    }

    // DP trade-off for the high tier's report section.
    eprintln!("      DP-SGD utility against epsilon (softmax regression, delta 1e-5):");
    let mut tradeoff = Vec::new();
    for eps in [1.0, 3.0, 8.0] {
        let mut cx = Context::new(seed)
            .with_dataset(train.clone())
            .with_holdout(hold.clone());
        let d = mithridate_robust::TrainDefense::new(mithridate_robust::TrainConfig::dp(eps, 1e-5));
        cx.run(&d)?;
        let m = cx.model.as_deref().context("DP training left no model")?;
        let e = evaluate(m, &hold, &atk)?;
        eprintln!(
            "        epsilon {eps:>4}: clean accuracy {}",
            pct(e.accuracy)
        );
        tradeoff.push((eps, e.accuracy));
    }

    // 5. Tamper one record after signing.
    let tampered_dir = out.join("tampered").join("train");
    std::fs::create_dir_all(&tampered_dir)?;
    let text = std::fs::read_to_string(&train_csv)?;
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let victim = 500.min(lines.len() - 1);
    lines[victim] = tamper_csv_line(&lines[victim]);
    std::fs::write(tampered_dir.join("train.csv"), lines.join("\n") + "\n")?;
    let verdict = crate::demo_provenance::verify_dir(&tampered_dir, &prov)?;
    eprintln!(
        "[5/6] one pixel of record {} (line {}) changed after signing; verify: {}",
        victim - 1,
        victim + 1,
        verdict.verdict
    );
    for m in verdict.messages.iter().take(3) {
        eprintln!("      {m}");
    }

    // 6. Report.
    let mut report = medium_report.context("medium tier did not run")?;
    report.tables.push(Table {
        title: "Tiers side by side on the same poisoned digits".into(),
        columns: [
            "tier",
            "poison caught",
            "quarantined",
            "ASR",
            "clean accuracy",
            "epsilon",
            "gate",
            "time",
        ]
        .map(String::from)
        .to_vec(),
        rows: rows.iter().map(|r| table_row(r, truth.len())).collect(),
    });
    report.tables.push(Table {
        title: "Models without defenses".into(),
        columns: ["model", "ASR", "clean accuracy"]
            .map(String::from)
            .to_vec(),
        rows: vec![
            vec![
                "trained on unpoisoned data".into(),
                pct(reference.asr),
                pct(reference.accuracy),
            ],
            vec![
                "trained on poisoned data, undefended".into(),
                pct(undefended.asr),
                pct(undefended.accuracy),
            ],
        ],
    });
    report.series.push(Series {
        title: "DP-SGD: clean accuracy against epsilon (delta 1e-5)".into(),
        x_label: "epsilon".into(),
        y_label: "accuracy".into(),
        points: tradeoff.clone(),
    });
    let report_dir = out.join("report");
    report.write_all(&report_dir)?;
    let summary = json!({
        "seed": seed,
        "poisoned": poisoned.poisoned_ids.len(),
        "reference": {"accuracy": reference.accuracy, "asr": reference.asr},
        "undefended": {"accuracy": undefended.accuracy, "asr": undefended.asr},
        "tiers": rows.iter().map(|r| json!({
            "tier": r.tier, "caught": r.caught, "quarantined": r.quarantined,
            "asr": r.eval.as_ref().map(|e| e.asr), "accuracy": r.eval.as_ref().map(|e| e.accuracy),
            "epsilon": r.epsilon, "verdict": r.verdict, "seconds": r.secs, "failed_controls": r.failed,
        })).collect::<Vec<_>>(),
        "dp_tradeoff": tradeoff,
        "tamper_verdict": verdict.verdict,
        "tamper_messages": verdict.messages,
    });
    mithridate_core::io::atomic::write_bytes_atomic(
        &out.join("demo.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    eprintln!(
        "[6/6] audit report: {}",
        report_dir.join("report.html").display()
    );
    eprintln!(
        "      also report.json, report.md; figures in {}; took {:.1} s",
        out.join("demo.json").display(),
        t_all.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The known-trigger suite of the demo (the format of `mithridate-validation`).
const KNOWN_TRIGGERS: &str = r#"# Triggers from the incident report, tested on every release.
[[trigger]]
name = "badnets-3x3-bottom-right"
kind = "patch"
height = 8
width = 8
size = 3
position = "bottom-right"
value = 16.0
target = 7
"#;

fn short(root: &str) -> String {
    root.chars().take(16).collect::<String>() + "…"
}

fn tamper_csv_line(line: &str) -> String {
    let mut cells: Vec<String> = line.split(',').map(str::to_owned).collect();
    // Cell 1 is the first pixel (cell 0 is the id).
    if let Some(c) = cells.get_mut(1) {
        *c = if c == "0" { "9".into() } else { "0".into() };
    }
    cells.join(",")
}

fn table_row(r: &TierRow, total: usize) -> Vec<String> {
    vec![
        r.tier.to_string(),
        format!("{}/{}", r.caught, total),
        r.quarantined.to_string(),
        r.eval.as_ref().map_or("-".into(), |e| pct(e.asr)),
        r.eval.as_ref().map_or("-".into(), |e| pct(e.accuracy)),
        r.epsilon.map_or("-".into(), |e| format!("{e:.2}")),
        r.verdict.to_string(),
        format!("{:.1} s", r.secs),
    ]
}

fn print_row(r: &TierRow, total: usize) {
    let c = table_row(r, total);
    eprintln!(
        "      {:<6} poison caught {:>7}  quarantined {:>3}  ASR {:>6}  clean accuracy {:>6}  epsilon {:>5}  gate {}  ({}){}",
        c[0],
        c[1],
        c[2],
        c[3],
        c[4],
        c[5],
        c[6],
        c[7],
        if r.failed.is_empty() { String::new() } else { format!("  failing controls: {}", r.failed.join(", ")) }
    );
}
