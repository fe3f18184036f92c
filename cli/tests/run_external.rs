//! The staged pipeline with a model trained outside mithridate: `run --stage
//! ingest`, training elsewhere on `clean.csv` plus `canaries.csv`, then `run
//! --stage release` against the model behind `[model] command` (here
//! `mithridate serve`, which speaks the JSONL command protocol).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mithridate_core::attack::{shuffled, Attack, BadNets};
use mithridate_core::datasets::digits;
use mithridate_core::io::csv::write_csv;
use mithridate_core::io::{read_path, ReadOptions};
use mithridate_core::model::{SoftmaxParams, SoftmaxRegression};
use ndarray::{concatenate, Axis};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mithridate"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

/// `mithridate run --config CFG --stage STAGE --out OUT`.
fn stage(cfg: &Path, stage: &str, out: &Path) -> Output {
    run(&["run", "--config", s(cfg), "--stage", stage, "--out", s(out)])
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Poisoned training data, a clean holdout and a known-trigger suite.
fn setup(dir: &Path) {
    let ds = digits();
    let perm = shuffled(ds.len(), 3);
    let (h, t) = perm.split_at(ds.len() / 5);
    let poisoned = BadNets::digits(0.01)
        .poison(&ds.select(t).unwrap(), 9)
        .unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    write_csv(&poisoned.dataset, &dir.join("data/train.csv")).unwrap();
    write_csv(&ds.select(h).unwrap(), &dir.join("holdout.csv")).unwrap();
    std::fs::write(
        dir.join("triggers.toml"),
        "[[trigger]]\nname = \"br\"\nkind = \"patch\"\nheight = 8\nwidth = 8\nsize = 3\nposition = \"bottom-right\"\nvalue = 16.0\ntarget = 7\n",
    )
    .unwrap();
}

fn config(dir: &Path, name: &str, model_table: &str) -> PathBuf {
    let cfg = dir.join(name);
    std::fs::write(
        &cfg,
        format!(
            "tier = \"medium\"\nseed = 5\n[data]\ntrain = \"data/train.csv\"\nholdout = \"holdout.csv\"\nid_column = \"id\"\ntrigger_suite = \"triggers.toml\"\n{model_table}"
        ),
    )
    .unwrap();
    cfg
}

/// "External training": a softmax regression fitted on the given CSV files
/// (concatenated), saved as JSON.
fn train_outside(files: &[PathBuf], out: &Path) {
    let opts = ReadOptions {
        id_column: Some("id".into()),
        ..Default::default()
    };
    let parts: Vec<_> = files
        .iter()
        .map(|f| read_path(f, &opts).unwrap().0)
        .collect();
    let xs: Vec<_> = parts
        .iter()
        .map(|d| d.features.as_ref().unwrap().view())
        .collect();
    let x = concatenate(Axis(0), &xs).unwrap();
    let y: Vec<u32> = parts
        .iter()
        .flat_map(|d| d.labels.clone().unwrap())
        .collect();
    let m = SoftmaxRegression::fit(x.view(), &y, 10, &SoftmaxParams::default(), 1).unwrap();
    std::fs::write(out, serde_json::to_vec(&m).unwrap()).unwrap();
}

fn serve_table(model: &Path) -> String {
    format!(
        "[model]\ncommand = \"{} serve --model {}\"\ntimeout_s = 60\n",
        env!("CARGO_BIN_EXE_mithridate"),
        s(model)
    )
}

#[test]
fn staged_run_checks_an_external_model_and_its_canaries() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    let out = d.join("gate");

    // Ingest: quarantine, clean data, canary rows and the hand-off state.
    let cfg0 = config(d, "ingest.toml", "");
    let o = stage(&cfg0, "ingest", &out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("canaries.csv") && err.contains("--stage release"),
        "{err}"
    );
    for f in [
        "clean.csv",
        "canaries.csv",
        "ingest.json",
        "quarantine.jsonl",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }

    // Trained outside on the vetted data plus canaries: the release gate passes.
    let good = d.join("good.json");
    train_outside(&[out.join("clean.csv"), out.join("canaries.csv")], &good);
    let cfg = config(d, "good.toml", &serve_table(&good));
    let o = run(&[
        "run",
        "--json",
        "--config",
        s(&cfg),
        "--stage",
        "release",
        "--out",
        s(&out),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(report["policy"]["model"]
        .as_str()
        .unwrap()
        .starts_with("command "));
    assert_eq!(report["policy"]["external_model"], true);
    let ran: Vec<&str> = report["posture"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"] == "ran")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for c in ["holdout-gate", "backdoor-trigger-test", "canary-assert"] {
        assert!(ran.contains(&c), "{c} did not run: {ran:?}");
    }

    // Trained outside on the raw poisoned data instead: the trigger fires.
    let bad = d.join("bad.json");
    train_outside(&[d.join("data/train.csv")], &bad);
    let cfg = config(d, "bad.toml", &serve_table(&bad));
    let o = stage(&cfg, "release", &out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("backdoor-trigger-test") && err.contains("br"),
        "{err}"
    );
    assert!(err.contains("gate: FAIL"), "{err}");

    // An external model cannot be trained by the pipeline.
    let o = stage(&cfg, "all", &out);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--stage ingest"));
}

#[test]
fn release_without_the_ingest_state_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    let model = d.join("m.json");
    train_outside(&[d.join("data/train.csv")], &model);
    let cfg = config(d, "m.toml", &serve_table(&model));
    let fresh = d.join("fresh");
    // Two models named at once is a usage error, not a silent choice.
    let o = run(&[
        "run",
        "--config",
        s(&cfg),
        "--stage",
        "release",
        "--out",
        s(&fresh),
        "--model",
        s(&model),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("one or the other"), "{err}");
    let o = stage(&cfg, "release", &fresh);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("ingest.json") && err.contains("canary-assert"),
        "{err}"
    );
}

#[test]
fn serve_speaks_the_command_protocol_and_refuses_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    let model = d.join("m.json");
    train_outside(&[d.join("holdout.csv")], &model);
    let zeros = vec![0.0f32; 64];
    let req = format!(
        "{}\n\n{}\n",
        serde_json::json!({"id": 4, "input": {"features": zeros}}),
        serde_json::json!({"id": 9, "input": {"features": zeros}})
    );
    let answer = |input: &str| {
        use std::io::Write;
        let mut c = bin()
            .args(["serve", "--model", s(&model)])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    };
    let o = answer(&req);
    assert_eq!(o.status.code(), Some(0));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["id"], 4);
    assert_eq!(lines[1]["id"], 9);
    assert_eq!(lines[0]["output"], lines[1]["output"]);
    assert_eq!(lines[0]["output"]["proba"].as_array().unwrap().len(), 10);
    let o = answer("{\"id\": 1, \"input\": {\"features\": [1.0]}}\n");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("stdin line 1"));
    let o = answer("not json\n");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a request"));
}
