//! `mithridate canary` end to end: plant, scan, verify, exposure, watch; JSON
//! output and exit codes (0 pass, 1 gate failed, 2 error).
#![allow(clippy::unwrap_used)] // test helpers panic on setup failure by design

use std::path::Path;
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mithridate"))
}

fn run(dir: &Path, args: &[&str]) -> Output {
    bin().current_dir(dir).args(args).output().unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

fn dataset(dir: &Path) {
    let ds = mithridate_core::datasets::synthetic_text(200, 4, 3);
    mithridate_core::io::jsonl::write_jsonl(&ds, &dir.join("train.jsonl")).unwrap();
}

#[test]
fn plant_records_then_scan_finds_them_and_the_clean_file_passes() {
    let d = tempfile::tempdir().unwrap();
    dataset(d.path());
    let o = run(
        d.path(),
        &[
            "--json",
            "canary",
            "plant",
            "records",
            "--into",
            "train.jsonl",
            "-o",
            "planted.jsonl",
            "--registry",
            "reg.json",
            "--key",
            "key.hex",
            "--new-key",
            "--count",
            "6",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let planted = json(&o)["planted"].as_array().unwrap().len();
    assert_eq!(planted, 6);
    // The registry does not hold the tokens: scanning it finds nothing.
    let o = run(
        d.path(),
        &[
            "--json",
            "canary",
            "scan",
            "reg.json",
            "--registry",
            "reg.json",
        ],
    );
    assert_eq!(o.status.code(), Some(0));

    let o = run(
        d.path(),
        &[
            "--json",
            "canary",
            "scan",
            "planted.jsonl",
            "train.jsonl",
            "--registry",
            "reg.json",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = json(&o);
    let hits = v["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 6);
    for h in hits {
        assert!(h["file"].as_str().unwrap().ends_with("planted.jsonl"));
        assert_eq!(
            h["line"], h["target"]["honeypot"]["site"]["line"],
            "found where planted: {h}"
        );
        assert!(h["target"]["honeypot"]["planted_at"].is_string());
    }
    let o = run(
        d.path(),
        &[
            "--json",
            "canary",
            "scan",
            "train.jsonl",
            "--registry",
            "reg.json",
        ],
    );
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(json(&o)["hits"].as_array().unwrap().len(), 0);
}

#[test]
fn honeypot_files_verify_and_watch() {
    let d = tempfile::tempdir().unwrap();
    let o = run(
        d.path(),
        &[
            "canary",
            "plant",
            "files",
            "hp",
            "--registry",
            "reg.json",
            "--key",
            "k.hex",
            "--new-key",
            "--count",
            "4",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(
        d.path(),
        &["--json", "canary", "verify", "--registry", "reg.json"],
    );
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(json(&o)["checked"], 4);

    // watch logs an open of a honeypot file as a JSON line.
    let child = bin()
        .current_dir(d.path())
        .args([
            "canary",
            "watch",
            "hp",
            "--registry",
            "reg.json",
            "--for",
            "2",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    std::fs::write(
        d.path().join("hp/payments.env"),
        "PAYMENTS_SECRET_KEY=changed\n",
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines.iter().any(|e| e["paths"][0]
            .as_str()
            .unwrap_or("")
            .ends_with("payments.env")),
        "{lines:?}"
    );

    let o = run(
        d.path(),
        &["--json", "canary", "verify", "--registry", "reg.json"],
    );
    assert_eq!(o.status.code(), Some(1));
    let changed = json(&o)["changed"].as_array().unwrap().clone();
    assert_eq!(changed.len(), 1);
    assert!(changed[0]["path"]
        .as_str()
        .unwrap()
        .ends_with("payments.env"));
}

#[test]
fn exposure_flags_memorised_secrets_only_when_trained_on_them() {
    let d = tempfile::tempdir().unwrap();
    dataset(d.path());
    let o = run(
        d.path(),
        &[
            "canary",
            "plant",
            "secrets",
            "--into",
            "train.jsonl",
            "-o",
            "s.jsonl",
            "--secrets-out",
            "secrets.json",
            "--secrets",
            "2",
            "--repeats",
            "4",
            "--digits",
            "4",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(
        d.path(),
        &[
            "--json",
            "canary",
            "exposure",
            "--secrets",
            "secrets.json",
            "--train-ngram",
            "s.jsonl",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = json(&o);
    assert_eq!(v["report"]["metrics"]["memorised"], 2.0);
    let o = run(
        d.path(),
        &[
            "--json",
            "canary",
            "exposure",
            "--secrets",
            "secrets.json",
            "--train-ngram",
            "train.jsonl",
        ],
    );
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(json(&o)["report"]["metrics"]["memorised"], 0.0);
    // The secrets themselves are found in the planted copy by the scanner.
    let o = run(
        d.path(),
        &[
            "--json",
            "canary",
            "scan",
            "s.jsonl",
            "--secrets",
            "secrets.json",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json(&o)["hits"].as_array().unwrap().len(), 8);
}

#[test]
fn text_canaries_are_planted_as_readable_records_and_scanned() {
    let d = tempfile::tempdir().unwrap();
    dataset(d.path());
    let o = run(
        d.path(),
        &[
            "canary",
            "plant",
            "canaries",
            "--into",
            "train.jsonl",
            "-o",
            "c.jsonl",
            "--set-out",
            "set.json",
            "--count",
            "5",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The copy still reads as a labelled dataset.
    let opts = mithridate_core::io::ReadOptions {
        id_column: Some("id".into()),
        ..Default::default()
    };
    let (ds, _) = mithridate_core::io::jsonl::read_jsonl(&d.path().join("c.jsonl"), &opts).unwrap();
    assert_eq!(ds.len(), 205);
    assert!(ds.labels.is_some());
    let o = run(
        d.path(),
        &[
            "--json",
            "canary",
            "scan",
            "c.jsonl",
            "train.jsonl",
            "--canaries",
            "set.json",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json(&o)["hits"].as_array().unwrap().len(), 5);
}

#[test]
fn bad_input_exits_2_and_names_the_file() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("reg.json"), "{ not json").unwrap();
    let o = run(d.path(), &["canary", "scan", ".", "--registry", "reg.json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("reg.json"));
    let o = run(
        d.path(),
        &[
            "canary",
            "plant",
            "files",
            "hp",
            "--registry",
            "r.json",
            "--key",
            "missing.hex",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.hex"));
    let o = run(d.path(), &["canary", "scan", "nothing-here"]);
    assert_eq!(o.status.code(), Some(2));
}
