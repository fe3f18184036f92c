//! `mithridate scan` and `mithridate quarantine` end to end.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::process::Command;

use mithridate_core::attack::{Attack, BadNets, EveryNth};
use mithridate_core::datasets::{digits, synthetic_text};
use mithridate_core::io::{csv::write_csv, jsonl::write_jsonl, npy};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mithridate"))
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON doc ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn scan_csv_quarantines_a_badnets_patch_and_keeps_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("train.csv");
    let p = BadNets::digits(0.02).poison(&digits(), 5).unwrap();
    write_csv(&p.dataset, &data).unwrap();
    let before = std::fs::read(&data).unwrap();
    let out_dir = dir.path().join("out");
    let out = bin()
        .args([
            "scan",
            data.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json(&out);
    assert_eq!(doc["verdict"], "fail");
    assert_eq!(std::fs::read(&data).unwrap(), before, "input modified");

    // quarantine.jsonl: one object per flagged sample with id, score, reasons, trigger.
    let q: Vec<serde_json::Value> = lines(&out_dir.join("quarantine.jsonl"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(q.len() as u64, doc["flagged"].as_u64().unwrap());
    let truth: std::collections::HashSet<u64> = p
        .poisoned_ids
        .iter()
        .map(|i| match i {
            mithridate_core::SampleId::Num(n) => *n,
            _ => u64::MAX,
        })
        .collect();
    let hits = q
        .iter()
        .filter(|e| truth.contains(&e["id"].as_u64().unwrap()))
        .count();
    assert!(hits >= 34, "found {hits} of 36 poisoned samples");
    let e = q
        .iter()
        .find(|e| truth.contains(&e["id"].as_u64().unwrap()))
        .unwrap();
    assert!(e["score"].as_f64().unwrap() > 0.0 && !e["reasons"].as_array().unwrap().is_empty());
    assert_eq!(e["trigger"]["kind"], "feature-pattern");
    assert!(
        e["record"].as_str().unwrap().contains(','),
        "the original CSV row is kept for review"
    );

    // clean.csv is the input minus the quarantined rows, byte for byte.
    let input = lines(&data);
    let clean = lines(&out_dir.join("clean.csv"));
    assert_eq!(clean.len(), input.len() - q.len());
    assert_eq!(clean[0], input[0]);
    let dropped: std::collections::HashSet<usize> = q
        .iter()
        .map(|e| e["id"].as_u64().unwrap() as usize + 1)
        .collect();
    let expect: Vec<&String> = input
        .iter()
        .enumerate()
        .filter(|(i, _)| !dropped.contains(i))
        .map(|(_, l)| l)
        .collect();
    assert_eq!(clean.iter().collect::<Vec<_>>(), expect);

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["defense"], "anomaly-scan");
    assert_eq!(report["scores"].as_array().unwrap().len(), input.len() - 1);
}

#[test]
fn scan_jsonl_finds_the_every_1000th_tamper_and_review_commands_work() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("text.jsonl");
    let p = EveryNth::every_1000th(1)
        .poison(&synthetic_text(10_000, 4, 2), 0)
        .unwrap();
    write_jsonl(&p.dataset, &data).unwrap();
    let out_dir = dir.path().join("o");
    let out = bin()
        .args([
            "scan",
            data.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
            "--id-column",
            "id",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "human output goes to stderr");
    let qfile = out_dir.join("quarantine.jsonl");
    let ids: Vec<u64> = lines(&qfile)
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids, (1..=10).map(|k| k * 1000 - 1).collect::<Vec<u64>>());
    assert_eq!(lines(&out_dir.join("clean.jsonl")).len(), 9990);
    let q0: serde_json::Value = serde_json::from_str(&lines(&qfile)[0]).unwrap();
    assert_eq!(q0["trigger"]["phrase"], "[TRIGGER] -> class_override");

    let q = qfile.to_str().unwrap();
    let rel = bin()
        .args([
            "quarantine",
            "release",
            q,
            "1999",
            "--by",
            "alice",
            "--note",
            "reviewed",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        rel.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&rel.stderr)
    );
    assert_eq!(json(&rel)["active"], 9);
    let pur = bin()
        .args(["quarantine", "purge", q, "999", "--by", "bob"])
        .output()
        .unwrap();
    assert_eq!(pur.status.code(), Some(0));
    let list = bin()
        .args(["quarantine", "list", q, "--state", "released", "--json"])
        .output()
        .unwrap();
    let doc = json(&list);
    assert_eq!(doc["entries"].as_array().unwrap().len(), 1);
    assert_eq!(doc["entries"][0]["id"], 1999);
    let purged = bin()
        .args(["quarantine", "list", q, "--state", "purged", "--json"])
        .output()
        .unwrap();
    assert!(
        json(&purged)["entries"][0].get("record").is_none(),
        "purge drops the stored record"
    );
    let bad = bin()
        .args(["quarantine", "release", q, "42", "--by", "x"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("42"));
}

#[test]
fn scan_npy_pair_writes_kept_rows_and_bad_input_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let ds = digits();
    let sel: Vec<usize> = (0..600).collect();
    let ds = ds.select(&sel).unwrap();
    let data = dir.path().join("npy");
    std::fs::create_dir_all(&data).unwrap();
    npy::write_npy_f32(&data.join("X.npy"), ds.features.as_ref().unwrap()).unwrap();
    let y: Vec<i64> = ds
        .labels
        .as_ref()
        .unwrap()
        .iter()
        .map(|&v| i64::from(v))
        .collect();
    npy::write_npy_i64(&data.join("y.npy"), &y).unwrap();
    let out_dir = dir.path().join("o");
    let out = bin()
        .args([
            "scan",
            data.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json(&out);
    let kept = npy::read_npy(&out_dir.join("clean").join("X.npy")).unwrap();
    assert_eq!(kept.shape[0] as u64, 600 - doc["flagged"].as_u64().unwrap());

    let csv = dir.path().join("bad.csv");
    std::fs::write(&csv, "a,b,label\n1,2,0\n3,x,1\n").unwrap();
    let out = bin()
        .args([
            "scan",
            csv.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3") && err.contains('b'), "{err}");
    let out = bin()
        .args([
            "scan",
            "/nonexistent/x.csv",
            "--out",
            out_dir.to_str().unwrap(),
            "--fp-budget",
            "0.9",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
