//! `mithridate validate` with ONNX models (`--model FILE.onnx`). The files in
//! `tests/data/` are softmax regressions trained on the digits split below
//! (written by `cargo run -p mithridate-validation --features onnx --example
//! export_onnx -- cli/tests/data`). With the `onnx` feature they are run
//! in-process; without it the CLI must say which feature is missing.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Command;

use mithridate_core::attack::shuffled;
use mithridate_core::datasets::digits;
use mithridate_core::io::{write_path, Format};
use serde_json::Value;

fn run(args: &[&str]) -> (Value, i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mithridate"))
        .args(args)
        .arg("--json")
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("one JSON doc on stdout ({e}): {text}"));
    (
        v,
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn data(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
        .to_str()
        .unwrap()
        .to_owned()
}

/// The holdout of the split the ONNX files were trained on, and a suite with its trigger.
fn files(dir: &Path) -> (PathBuf, PathBuf) {
    let all = digits();
    let order = shuffled(all.len(), 5);
    let holdout = all.select(&order[all.len() * 3 / 4..]).unwrap();
    let h = dir.join("holdout.csv");
    write_path(&holdout, &h, Format::Csv).unwrap();
    let suite = dir.join("suite.toml");
    std::fs::write(
        &suite,
        "[[trigger]]\nname = \"badnets-br\"\nkind = \"patch\"\nheight = 8\nwidth = 8\nsize = 3\nposition = \"bottom-right\"\nvalue = 16.0\ntarget = 7\n",
    )
    .unwrap();
    (h, suite)
}

#[cfg(feature = "onnx")]
#[test]
fn onnx_models_pass_or_fail_the_gates_like_built_in_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (h, suite) = files(dir.path());
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let (v, code, err) = run(&[
        "validate",
        "holdout",
        "--id-column",
        "id",
        "--holdout",
        &s(&h),
        "--model",
        &data("digits_clean.onnx"),
    ]);
    assert_eq!(code, 0, "{v} {err}");
    assert!(
        v["report"]["metrics"]["accuracy"].as_f64().unwrap() > 0.9,
        "{v}"
    );

    let triggers = |model: &str| {
        run(&[
            "validate",
            "triggers",
            "--id-column",
            "id",
            "--suite",
            &s(&suite),
            "--holdout",
            &s(&h),
            "--model",
            &data(model),
        ])
    };
    let (v, code, err) = triggers("digits_backdoored.onnx");
    assert_eq!(code, 1, "{v} {err}");
    assert!(
        v["report"]["summary"]
            .as_str()
            .unwrap()
            .contains("badnets-br"),
        "{v}"
    );
    assert!(v["report"]["metrics"]["asr/badnets-br"].as_f64().unwrap() > 0.05);
    let (v, code, err) = triggers("digits_clean.onnx");
    assert_eq!(code, 0, "{v} {err}");

    // The scan needs gradients: a clear error, not a JSON parse failure.
    let (_, code, err) = run(&[
        "validate",
        "scan",
        "--id-column",
        "id",
        "--holdout",
        &s(&h),
        "--model",
        &data("digits_clean.onnx"),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("input gradients"), "{err}");

    // A file that is not ONNX: exit 2 naming the file.
    let junk = dir.path().join("junk.onnx");
    std::fs::write(&junk, b"not a model").unwrap();
    let (_, code, err) = run(&[
        "validate",
        "holdout",
        "--id-column",
        "id",
        "--holdout",
        &s(&h),
        "--model",
        &s(&junk),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("junk.onnx"), "{err}");
}

#[cfg(not(feature = "onnx"))]
#[test]
fn onnx_model_without_the_feature_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (h, suite) = files(dir.path());
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    for args in [
        vec![
            "validate",
            "holdout",
            "--id-column",
            "id",
            "--holdout",
            &s(&h),
        ],
        vec![
            "validate",
            "triggers",
            "--id-column",
            "id",
            "--suite",
            &s(&suite),
            "--holdout",
            &s(&h),
        ],
    ] {
        let model = data("digits_clean.onnx");
        let mut a = args.clone();
        a.extend(["--model", model.as_str()]);
        let (_, code, err) = run(&a);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("digits_clean.onnx") && err.contains("`onnx` cargo feature"),
            "{err}"
        );
    }
}
