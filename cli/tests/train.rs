//! `mithridate train --certified` end to end: DPA and Finite Aggregation
//! ensembles on digits, certified accuracy on a holdout, the saved ensemble,
//! per-row predictions, and clear errors.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::process::Command;

use mithridate_core::io::{write_path, Format};
use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mithridate"))
}

fn json_of(args: &[&str]) -> (Value, i32) {
    let out = bin().args(args).arg("--json").output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "one JSON doc on stdout ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (v, out.status.code().unwrap_or(-1))
}

/// Digits split 4:1 into train.csv and test.csv.
fn digits_split(dir: &Path) -> (String, String) {
    let ds = mithridate_core::datasets::digits();
    let train: Vec<usize> = (0..ds.len()).filter(|i| i % 5 != 0).collect();
    let test: Vec<usize> = (0..ds.len()).filter(|i| i % 5 == 0).collect();
    let (a, b) = (dir.join("train.csv"), dir.join("test.csv"));
    write_path(&ds.select(&train).unwrap(), &a, Format::Csv).unwrap();
    write_path(&ds.select(&test).unwrap(), &b, Format::Csv).unwrap();
    (
        a.to_str().unwrap().to_owned(),
        b.to_str().unwrap().to_owned(),
    )
}

#[test]
fn certified_dpa_and_finite_aggregation_report_certified_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = digits_split(dir.path());
    let model = dir.path().join("dpa.json");
    let preds = dir.path().join("preds.jsonl");
    let (v, code) = json_of(&[
        "train",
        "--certified",
        "--partitions",
        "10",
        &train,
        "-o",
        model.to_str().unwrap(),
        "--id-column",
        "id",
        "--epochs",
        "10",
        "--holdout",
        &test,
        "--predictions",
        preds.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["scheme"], "dpa");
    assert_eq!(v["base_models"], 10);
    let acc = v["holdout_accuracy"].as_f64().unwrap();
    assert!(acc > 0.85, "{v}");
    let curve = v["certified_accuracy"].as_array().unwrap();
    assert_eq!(curve[0]["radius"], 0);
    assert!(curve
        .windows(2)
        .all(|w| w[1]["accuracy"].as_f64() <= w[0]["accuracy"].as_f64()));
    assert!(curve.len() >= 3, "some certificates >= 2: {v}");
    // The ensemble file is the serialised ensemble.
    let saved: Value = serde_json::from_slice(&std::fs::read(&model).unwrap()).unwrap();
    assert_eq!(saved["scheme"]["scheme"], "dpa");
    assert_eq!(saved["models"].as_array().unwrap().len(), 10);
    // One prediction line per holdout row; certified accuracy at radius 1 recomputed from them.
    let lines: Vec<Value> = std::fs::read_to_string(&preds)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), v["holdout_samples"].as_u64().unwrap() as usize);
    let ok1 = lines
        .iter()
        .filter(|l| l["label"] == l["truth"] && l["certificate"].as_u64().unwrap() >= 1)
        .count() as f64
        / lines.len() as f64;
    assert!((ok1 - curve[1]["accuracy"].as_f64().unwrap()).abs() < 1e-12);

    // Finite Aggregation: k*d base models.
    let fa = dir.path().join("fa.json");
    let (w, code) = json_of(&[
        "train",
        "--certified",
        "--partitions",
        "5",
        "--spread",
        "3",
        &train,
        "-o",
        fa.to_str().unwrap(),
        "--id-column",
        "id",
        "--epochs",
        "5",
        "--holdout",
        &test,
    ]);
    assert_eq!(code, 0, "{w}");
    assert_eq!(w["scheme"], "finite-aggregation");
    assert_eq!(w["base_models"], 15);
    assert!(w["holdout_accuracy"].as_f64().unwrap() > 0.8, "{w}");
}

#[test]
fn certified_training_rejects_bad_options_and_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let (train, _) = digits_split(dir.path());
    let out = dir.path().join("m.json");
    let run = |extra: &[&str]| {
        bin()
            .args(["train", &train, "-o", out.to_str().unwrap(), "--certified"])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&["--dp"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--dp"));
    let o = run(&["--partitions", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--partitions"));
    let o = run(&["--predictions", "p.jsonl"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--holdout"));
    assert!(!out.exists(), "nothing written on error");
    // A missing file is named.
    let o = bin()
        .args([
            "train",
            "--certified",
            "/nonexistent/d.csv",
            "-o",
            "/tmp/x.json",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/d.csv"));
}
