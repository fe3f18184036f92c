//! `mithridate privacy` and `mithridate train` end to end.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mithridate"))
}

fn json_of(args: &[&str]) -> (Value, i32) {
    let out = bin().args(args).arg("--json").output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("one JSON doc on stdout ({e}): {text}"));
    (v, out.status.code().unwrap_or(-1))
}

#[test]
fn epsilon_rdp_matches_the_reference_value() {
    let (v, code) = json_of(&[
        "privacy",
        "epsilon",
        "--sampling-rate",
        "0.01",
        "--noise-multiplier",
        "1.0",
        "--steps",
        "1000",
        "--delta",
        "1e-5",
    ]);
    assert_eq!(code, 0);
    let eps = v["epsilon"].as_f64().unwrap();
    // dp-accounting 0.6.0: 2.101367...
    assert!((eps - 2.101_367).abs() < 1e-5, "{v}");
    assert_eq!(v["order"].as_f64(), Some(7.8));
    assert_eq!(v["accountant"], "rdp");
}

#[test]
fn epsilon_pld_is_tighter() {
    let (v, code) = json_of(&[
        "privacy",
        "epsilon",
        "--sampling-rate",
        "0.01",
        "--noise-multiplier",
        "1.0",
        "--steps",
        "1000",
        "--delta",
        "1e-5",
        "--accountant",
        "pld",
    ]);
    assert_eq!(code, 0);
    let eps = v["epsilon"].as_f64().unwrap();
    // dp-accounting 0.6.0: 1.828244...
    assert!((eps - 1.828_244).abs() < 0.01 * 1.83, "{v}");
    assert!(v["order"].is_null());
}

#[test]
fn calibrate_reaches_the_target() {
    let (v, code) = json_of(&[
        "privacy",
        "calibrate",
        "--epsilon",
        "2.0",
        "--sampling-rate",
        "0.01",
        "--steps",
        "1000",
        "--delta",
        "1e-5",
    ]);
    assert_eq!(code, 0);
    let sigma = v["noise_multiplier"].as_f64().unwrap();
    assert!(sigma > 1.0 && sigma < 1.1, "{v}");
    assert!(v["epsilon"].as_f64().unwrap() <= 2.0);
}

#[test]
fn bad_parameters_exit_2_with_the_field_named() {
    let out = bin()
        .args([
            "privacy",
            "epsilon",
            "--sampling-rate",
            "1.5",
            "--noise-multiplier",
            "1",
            "--steps",
            "10",
            "--delta",
            "1e-5",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sampling_rate"));
    let out = bin()
        .args(["privacy", "epsilon", "--sampling-rate", "0.1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

fn write_digits_csv(path: &Path) {
    let ds = mithridate_core::datasets::digits();
    mithridate_core::io::write_path(&ds, path, mithridate_core::io::Format::Csv).unwrap();
}

#[test]
fn train_with_dp_writes_a_model_and_reports_epsilon() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("digits.csv");
    write_digits_csv(&data);
    let model = dir.path().join("model.json");
    let (v, code) = json_of(&[
        "train",
        data.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
        "--id-column",
        "id",
        "--dp",
        "--target-epsilon",
        "3",
        "--delta",
        "1e-5",
    ]);
    assert_eq!(code, 0, "{v}");
    let eps = v["dp"]["epsilon"].as_f64().unwrap();
    assert!(eps <= 3.0 && eps > 2.9, "{v}");
    assert!(v["train_accuracy"].as_f64().unwrap() > 0.85, "{v}");
    let saved: Value = serde_json::from_slice(&std::fs::read(&model).unwrap()).unwrap();
    assert_eq!(saved["kind"], "softmax");

    // A fixed noise multiplier too small for the budget: refuses to start.
    let out = bin()
        .args([
            "train",
            data.to_str().unwrap(),
            "--out",
            model.to_str().unwrap(),
            "--dp",
            "--target-epsilon",
            "0.1",
        ])
        .args(["--noise-multiplier", "0.3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("target_epsilon"));
}

#[test]
fn train_plain_mlp() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("digits.csv");
    write_digits_csv(&data);
    let model = dir.path().join("mlp.json");
    let (v, code) = json_of(&[
        "train",
        data.to_str().unwrap(),
        "-o",
        model.to_str().unwrap(),
        "--id-column",
        "id",
        "--model",
        "mlp",
        "--epochs",
        "3",
        "--holdout",
        data.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{v}");
    assert!(v["dp"].is_null());
    assert!(v["holdout_accuracy"].as_f64().unwrap() > 0.8, "{v}");
    let saved: Value = serde_json::from_slice(&std::fs::read(&model).unwrap()).unwrap();
    assert_eq!(saved["kind"], "mlp");
}

#[test]
fn train_missing_file_is_an_error_naming_it() {
    let out = bin()
        .args(["train", "/nonexistent/data.csv", "-o", "/tmp/x.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/data.csv"));
}
