//! `mithridate validate` end to end: real files, a real local HTTP server and
//! a real command predictor; exit codes 0 pass / 1 gate failed / 2 error.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use mithridate_core::attack::{shuffled, Attack, BadNets};
use mithridate_core::datasets::digits;
use mithridate_core::io::{write_path, Format};
use mithridate_core::model::{SoftmaxParams, SoftmaxRegression};
use mithridate_core::Dataset;
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

struct Files {
    _dir: tempfile::TempDir,
    train: PathBuf,
    holdout: PathBuf,
    clean_model: PathBuf,
    bd_model: PathBuf,
    suite: PathBuf,
    dir: PathBuf,
}

fn save_model(m: &SoftmaxRegression, p: &Path) {
    let doc = serde_json::json!({ "kind": "softmax", "model": m });
    std::fs::write(p, serde_json::to_vec(&doc).unwrap()).unwrap();
}

fn fit(ds: &Dataset) -> SoftmaxRegression {
    SoftmaxRegression::fit(
        ds.features.as_ref().unwrap().view(),
        ds.labels.as_ref().unwrap(),
        10,
        &SoftmaxParams::default(),
        3,
    )
    .unwrap()
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let all = digits();
    let order = shuffled(all.len(), 5);
    let cut = all.len() * 3 / 4;
    let train = all.select(&order[..cut]).unwrap();
    let holdout = all.select(&order[cut..]).unwrap();
    let poisoned = BadNets::digits(0.01).poison(&train, 9).unwrap().dataset;
    let d = dir.path().to_path_buf();
    let f = Files {
        train: d.join("train.csv"),
        holdout: d.join("holdout.csv"),
        clean_model: d.join("clean.json"),
        bd_model: d.join("backdoored.json"),
        suite: d.join("suite.toml"),
        dir: d.clone(),
        _dir: dir,
    };
    write_path(&train, &f.train, Format::Csv).unwrap();
    write_path(&holdout, &f.holdout, Format::Csv).unwrap();
    save_model(&fit(&train), &f.clean_model);
    save_model(&fit(&poisoned), &f.bd_model);
    std::fs::write(
        &f.suite,
        "[[trigger]]\nname = \"badnets-br\"\nkind = \"patch\"\nheight = 8\nwidth = 8\nsize = 3\nposition = \"bottom-right\"\nvalue = 16.0\ntarget = 7\n",
    )
    .unwrap();
    f
}

#[test]
fn triggers_fail_the_backdoored_model_pass_the_clean_one_and_write_junit() {
    let f = files();
    let junit = f.dir.join("junit.xml");
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let (v, code, _) = run(&[
        "validate",
        "triggers",
        "--id-column",
        "id",
        "--suite",
        &s(&f.suite),
        "--holdout",
        &s(&f.holdout),
        "--model",
        &s(&f.bd_model),
        "--junit",
        &s(&junit),
    ]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["verdict"], "fail");
    assert!(
        v["report"]["summary"]
            .as_str()
            .unwrap()
            .contains("badnets-br"),
        "{v}"
    );
    assert!(v["report"]["metrics"]["asr/badnets-br"].as_f64().unwrap() > 0.05);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<testcase classname=\"mithridate.validation.backdoor-trigger-test\" name=\"badnets-br -&gt; 7\"") && xml.contains("<failure"), "{xml}");

    let (v, code, _) = run(&[
        "validate",
        "triggers",
        "--id-column",
        "id",
        "--suite",
        &s(&f.suite),
        "--holdout",
        &s(&f.holdout),
        "--model",
        &s(&f.clean_model),
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["verdict"], "pass");

    // The same test through a real JSONL command: a script that answers 7 to every input.
    let script = f.dir.join("always7.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nsed -E 's/^\\{\"id\":([0-9]+).*/{\"id\":\\1,\"output\":{\"label\":7}}/'\n",
    )
    .unwrap();
    let cmd = format!("sh {}", s(&script));
    let (v, code, _) = run(&[
        "validate",
        "triggers",
        "--id-column",
        "id",
        "--suite",
        &s(&f.suite),
        "--holdout",
        &s(&f.holdout),
        "--cmd",
        &cmd,
    ]);
    // Every input already goes to 7 without the trigger: no attack success to measure, and the clean rate says so.
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["report"]["metrics"]["max_asr"], 0.0);
}

#[test]
fn holdout_gate_checks_overlap_manifest_and_baseline() {
    let f = files();
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let manifest = f.dir.join("holdout.manifest.json");
    let baseline = f.dir.join("baseline.json");
    let (v, code, _) = run(&[
        "validate",
        "record-holdout",
        "--id-column",
        "id",
        &s(&f.holdout),
        "-o",
        &s(&manifest),
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["records"], 450);
    let (v, code, _) = run(&[
        "validate",
        "holdout",
        "--id-column",
        "id",
        "--holdout",
        &s(&f.holdout),
        "--model",
        &s(&f.clean_model),
        "--train",
        &s(&f.train),
        "--manifest",
        &s(&manifest),
        "--save-baseline",
        &s(&baseline),
    ]);
    assert_eq!(code, 0, "{v}");
    assert!(v["report"]["metrics"]["accuracy"].as_f64().unwrap() > 0.9);
    assert!(baseline.exists());

    // Training on the holdout itself: every record overlaps.
    let (v, code, _) = run(&[
        "validate",
        "holdout",
        "--id-column",
        "id",
        "--holdout",
        &s(&f.holdout),
        "--model",
        &s(&f.clean_model),
        "--train",
        &s(&f.holdout),
    ]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["report"]["metrics"]["overlap"], 450.0);

    // The backdoored model is compared with the clean baseline (a tiny allowed drop shows the regression check runs).
    let (v, code, _) = run(&[
        "validate",
        "holdout",
        "--id-column",
        "id",
        "--holdout",
        &s(&f.holdout),
        "--model",
        &s(&f.bd_model),
        "--baseline",
        &s(&baseline),
        "--max-regression",
        "0.0",
        "--min-accuracy",
        "0.5",
    ]);
    assert!(
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "regression/accuracy"),
        "{v}"
    );
    assert!(code == 0 || code == 1);
}

#[test]
fn bad_input_exits_2_and_names_the_file() {
    let f = files();
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let bad = f.dir.join("bad.toml");
    std::fs::write(&bad, "[[trigger]]\nname = \"x\"\nkind = \"laser\"\n").unwrap();
    let (v, code, err) = run(&[
        "validate",
        "triggers",
        "--id-column",
        "id",
        "--suite",
        &s(&bad),
        "--holdout",
        &s(&f.holdout),
        "--model",
        &s(&f.clean_model),
    ]);
    assert_eq!(code, 2, "{v}");
    assert!(err.contains("bad.toml:line"), "{err}");
    let (_, code, err) = run(&[
        "validate",
        "holdout",
        "--id-column",
        "id",
        "--holdout",
        &s(&f.holdout),
        "--model",
        &s(&f.dir.join("missing.json")),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("missing.json"), "{err}");
}

/// A one-thread fake OpenAI-compatible server that leaks its system prompt on `CONFIG` when `leaky`.
fn fake_llm(leaky: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let l = line.trim_end().to_ascii_lowercase();
                if l.is_empty() {
                    break;
                }
                if let Some(v) = l.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
            let system = v["messages"][0]["content"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            let user = v["messages"][1]["content"]
                .as_str()
                .unwrap_or("")
                .to_lowercase();
            let text = if leaky && user.contains("config") {
                format!("Sure. {system}")
            } else {
                "We are open from nine to five.".to_owned()
            };
            let out = serde_json::json!({ "choices": [{ "message": { "role": "assistant", "content": text } }] }).to_string();
            let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{out}", out.len());
        }
    });
    url
}

#[test]
fn llm_probes_fail_a_leaky_endpoint_and_pass_a_clean_one() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("llm.xml");
    let leaky = fake_llm(true);
    let (v, code, _) = run(&[
        "validate",
        "llm",
        "--endpoint",
        &leaky,
        "--junit",
        junit.to_str().unwrap(),
        "--concurrency",
        "1",
    ]);
    assert_eq!(code, 1, "{v}");
    assert!(
        v["report"]["summary"]
            .as_str()
            .unwrap()
            .contains("[[CONFIG]]"),
        "{v}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<failure") && xml.contains("leak: [[CONFIG]]"),
        "{xml}"
    );

    let clean = fake_llm(false);
    let (v, code, _) = run(&[
        "validate",
        "llm",
        "--endpoint",
        &clean,
        "--concurrency",
        "1",
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["report"]["metrics"]["leaks"], 0.0);
}

#[test]
fn scan_reports_every_class_and_its_exit_code_follows_the_suspects() {
    let f = files();
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let junit = f.dir.join("scan.xml");
    let (v, code, _) = run(&[
        "validate",
        "scan",
        "--id-column",
        "id",
        "--holdout",
        &s(&f.holdout),
        "--model",
        &s(&f.bd_model),
        "--steps",
        "300",
        "--junit",
        &s(&junit),
    ]);
    let m = &v["report"]["metrics"];
    for c in 0..10 {
        assert!(m[format!("anomaly_index/{c}")].is_number(), "{v}");
    }
    let suspects = m["suspected_classes"].as_f64().unwrap();
    assert_eq!(code, if suspects > 0.0 { 1 } else { 0 }, "{v}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testcase").count(), 10);
    assert_eq!(xml.matches("<failure").count() as f64, suspects);
}
