//! `mithridate run` and `mithridate policy show` end to end on poisoned digits.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::process::Command;

use mithridate_core::attack::{shuffled, Attack, BadNets};
use mithridate_core::datasets::digits;
use mithridate_core::io::csv::write_csv;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mithridate"))
}

/// Poisoned train split in `dir/data/train.csv`, holdout in `dir/holdout.csv`,
/// a record-level manifest of `dir/data`, a suite and a config.
fn setup(dir: &Path, tier: &str) -> std::path::PathBuf {
    let ds = digits();
    let perm = shuffled(ds.len(), 3);
    let (h, t) = perm.split_at(ds.len() / 5);
    let poisoned = BadNets::digits(0.01)
        .poison(&ds.select(t).unwrap(), 9)
        .unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    write_csv(&poisoned.dataset, &dir.join("data/train.csv")).unwrap();
    write_csv(&ds.select(h).unwrap(), &dir.join("holdout.csv")).unwrap();
    let st = bin()
        .args(["manifest", "create"])
        .arg(dir.join("data"))
        .arg("-o")
        .arg(dir.join("train.manifest.json"))
        .arg("--records")
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(
        dir.join("triggers.toml"),
        "[[trigger]]\nname = \"br\"\nkind = \"patch\"\nheight = 8\nwidth = 8\nsize = 3\nposition = \"bottom-right\"\nvalue = 16.0\ntarget = 7\n",
    )
    .unwrap();
    let cfg = dir.join("mithridate.toml");
    std::fs::write(
        &cfg,
        format!(
            "tier = \"{tier}\"\nseed = 5\n[data]\ntrain = \"data/train.csv\"\nholdout = \"holdout.csv\"\nmanifest = \"train.manifest.json\"\nid_column = \"id\"\ntrigger_suite = \"triggers.toml\"\n"
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn medium_tier_quarantines_poison_and_writes_the_audit_trail() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path(), "medium");
    let out = dir.path().join("out");
    let o = bin()
        .args(["run", "--json", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(0),
        "medium tier should pass once poison is quarantined: {stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&o.stdout).expect("one JSON document on stdout");
    assert_eq!(report["schema"], "mithridate.audit/v1");
    assert_eq!(report["policy"]["tier"], "medium");
    let posture = report["posture"].as_array().unwrap();
    assert!(posture
        .iter()
        .any(|p| p["name"] == "anomaly-scan" && p["status"] == "ran"));
    assert!(posture
        .iter()
        .any(|p| p["name"] == "unknown-trigger-scan" && p["status"] == "disabled"));
    assert!(report["quarantine"].as_array().unwrap().len() >= 14);
    for f in [
        "report.json",
        "report.md",
        "report.html",
        "clean.csv",
        "quarantine.jsonl",
        "clean.manifest.json",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    // The clean manifest names the verified input as its parent.
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("clean.manifest.json")).unwrap()).unwrap();
    assert_eq!(m["lineage"]["step"], "scan --quarantine");
    assert_eq!(m["lineage"]["parents"].as_array().unwrap().len(), 1);
    let v = bin()
        .args(["manifest", "verify"])
        .arg(&out)
        .arg("--manifest")
        .arg(out.join("clean.manifest.json"))
        .status()
        .unwrap();
    assert!(v.success(), "the clean manifest verifies the clean data");
}

#[test]
fn low_tier_fails_the_gate_on_the_backdoor() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path(), "low");
    let out = dir.path().join("out");
    let o = bin()
        .args(["run", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("backdoor-trigger-test") && stderr.contains("gate: FAIL"),
        "{stderr}"
    );
}

#[test]
fn bad_config_is_an_error_naming_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("m.toml");
    std::fs::write(
        &cfg,
        "tier = \"low\"\n[thresholds]\nmax_asr = 0.1\nfp_budjet = 0.1\n",
    )
    .unwrap();
    let o = bin()
        .args(["policy", "show", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("line 4") && e.contains("fp_budjet"), "{e}");
    let o = bin()
        .args(["policy", "show", "--tier", "high", "--json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(p["training"], "dp");
    assert_eq!(p["require_signed_sources"], true);
}
