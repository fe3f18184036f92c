//! OpenSSF model-signing interop through the CLI: `keygen --type ecdsa-p256`,
//! `manifest sign DIR --format model-signing`, `manifest verify` on a
//! Sigstore bundle (exit 0 / 1 / 2, `--json`).
//!
//! The tests against the real `model_signing` tool run when
//! `MITHRIDATE_MODEL_SIGNING` names its executable; without it they print a
//! notice and pass, unless `MITHRIDATE_REQUIRE_MODEL_SIGNING=1` (then they
//! fail).
#![allow(clippy::unwrap_used)] // test helpers panic on setup failure by design

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mithridate"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run mithridate")
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {:?}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

fn p(x: &Path) -> &str {
    x.to_str().unwrap()
}

/// The `model_signing` executable, or `None` (with a printed notice) when the
/// interop tests should be skipped.
fn model_signing_bin() -> Option<PathBuf> {
    let required = std::env::var("MITHRIDATE_REQUIRE_MODEL_SIGNING").as_deref() == Ok("1");
    match std::env::var_os("MITHRIDATE_MODEL_SIGNING") {
        Some(b) if !b.is_empty() => {
            let b = PathBuf::from(b);
            assert!(
                b.exists(),
                "MITHRIDATE_MODEL_SIGNING={} does not exist",
                b.display()
            );
            Some(b)
        }
        _ => {
            assert!(
                !required,
                "MITHRIDATE_REQUIRE_MODEL_SIGNING=1 but MITHRIDATE_MODEL_SIGNING is not set"
            );
            eprintln!(
                "notice: model-signing interop test skipped; set \
                 MITHRIDATE_MODEL_SIGNING=/path/to/venv/bin/model_signing to run it"
            );
            None
        }
    }
}

/// A small dataset: JSONL, CSV, a nested file and git metadata.
fn dataset(dir: &Path) {
    std::fs::create_dir_all(dir.join("shards")).unwrap();
    std::fs::create_dir_all(dir.join(".git")).unwrap();
    for s in 0..2 {
        let body: String = (0..20)
            .map(|i| format!("{{\"id\":\"s{s}-{i}\",\"label\":{}}}\n", i % 2))
            .collect();
        std::fs::write(dir.join(format!("shards/part-{s}.jsonl")), body).unwrap();
    }
    std::fs::write(dir.join("meta.csv"), "id,x\nr1,1\nr2,2\n").unwrap();
    std::fs::write(dir.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
}

fn keygen(dir: &Path) -> (PathBuf, PathBuf) {
    let o = run(&[
        "keygen",
        "--type",
        "ecdsa-p256",
        "--out",
        p(dir),
        "--name",
        "ms",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    (dir.join("ms.key"), dir.join("ms.pub"))
}

/// `manifest sign TARGET --format model-signing --key KEY -o OUT --json`.
fn sign(target: &Path, key: &Path, out: &Path) -> Output {
    run(&[
        "--json",
        "manifest",
        "sign",
        p(target),
        "--format",
        "model-signing",
        "--key",
        p(key),
        "-o",
        p(out),
    ])
}

fn verify(data: &Path, sig: &Path, trust: &Path) -> Output {
    run(&[
        "--json",
        "manifest",
        "verify",
        p(data),
        "--manifest",
        p(sig),
        "--trust",
        p(trust),
    ])
}

#[test]
fn sign_verify_tamper_and_wrong_key_through_the_cli() {
    let w = tempfile::tempdir().unwrap();
    let data = w.path().join("data");
    dataset(&data);
    let (key, public) = keygen(&w.path().join("keys"));
    let sig = data.join("model.sig");
    let o = sign(&data, &key, &sig);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let j = json(&o);
    assert_eq!(j["format"], "model-signing");
    assert_eq!(j["files"], 3);

    let o = verify(&data, &sig, &public);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let j = json(&o);
    assert_eq!(j["ok"], true);
    assert_eq!(j["signature"]["valid"], true);
    assert_eq!(j["files_checked"], 3);

    // Human output names the file; --json lists it.
    std::fs::write(data.join("meta.csv"), "id,x\nr1,1\nr2,3\n").unwrap();
    let o = run(&[
        "manifest",
        "verify",
        p(&data),
        "--manifest",
        p(&sig),
        "--trust",
        p(&public),
    ]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("changed: meta.csv"), "{}", text(&o));
    let j = json(&verify(&data, &sig, &public));
    assert_eq!(j["ok"], false);
    assert_eq!(j["changes"][0]["path"], "meta.csv");
    assert_eq!(j["changes"][0]["kind"], "changed");

    // A key that did not sign: rejected, exit 1.
    let (_, other) = keygen(&w.path().join("other"));
    let o = verify(&data, &sig, &other);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert_eq!(json(&o)["signature"]["valid"], false);

    // An Ed25519 key is a usage error naming the key type, exit 2.
    let ed = w.path().join("ed");
    let o = run(&["keygen", "--out", p(&ed)]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = verify(&data, &sig, &ed.join("mithridate.pub"));
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("Ed25519"), "{}", text(&o));

    // Signing a file (not a directory) in this format is a usage error.
    let o = sign(&data.join("meta.csv"), &key, &w.path().join("x.sig"));
    assert_eq!(code(&o), 2, "{}", text(&o));
}

#[test]
fn committed_model_signing_bundle_verifies_through_the_cli() {
    let fx =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../provenance/tests/fixtures/model-signing");
    let o = verify(
        &fx.join("data"),
        &fx.join("data/model.sig"),
        &fx.join("key.pub"),
    );
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(json(&o)["files_checked"], 3);
}

#[test]
fn model_signing_tool_accepts_mithridate_cli_signature() {
    let Some(ms) = model_signing_bin() else {
        return;
    };
    let w = tempfile::tempdir().unwrap();
    let data = w.path().join("data");
    dataset(&data);
    let (key, public) = keygen(&w.path().join("keys"));
    let sig = data.join("model.sig");
    let o = sign(&data, &key, &sig);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let check = || {
        Command::new(&ms)
            .args(["verify", "key", p(&data), "--signature", p(&sig)])
            .args(["--public_key", p(&public)])
            .output()
            .unwrap()
    };
    let o = check();
    assert!(
        o.status.success(),
        "model_signing rejected it:\n{}",
        text(&o)
    );
    assert!(text(&o).contains("Verification succeeded"), "{}", text(&o));

    std::fs::write(data.join("shards/part-1.jsonl"), "{\"id\":\"x\"}\n").unwrap();
    let o = check();
    assert!(!o.status.success(), "model_signing accepted tampered data");
    assert!(text(&o).contains("shards/part-1.jsonl"), "{}", text(&o));
}

#[test]
fn mithridate_cli_accepts_model_signing_tool_signature() {
    let Some(ms) = model_signing_bin() else {
        return;
    };
    let w = tempfile::tempdir().unwrap();
    let data = w.path().join("data");
    dataset(&data);
    let (key, public) = keygen(&w.path().join("keys"));
    let sig = data.join("model.sig");
    let o = Command::new(&ms)
        .args(["sign", "key", p(&data), "--private_key", p(&key)])
        .args(["--signature", p(&sig)])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "model_signing sign failed:\n{}",
        text(&o)
    );

    let o = verify(&data, &sig, &public);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(json(&o)["files_checked"], 3);

    std::fs::write(data.join("shards/part-0.jsonl"), "{\"id\":\"poison\"}\n").unwrap();
    std::fs::write(data.join("shards/part-2.jsonl"), "{\"id\":\"new\"}\n").unwrap();
    let o = run(&[
        "manifest",
        "verify",
        p(&data),
        "--manifest",
        p(&sig),
        "--trust",
        p(&public),
    ]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("changed: shards/part-0.jsonl"), "{t}");
    assert!(t.contains("added: shards/part-2.jsonl"), "{t}");
}
