//! OpenSSF model-signing interop, library level.
//!
//! Always run: a bundle made by the real `model_signing` tool (committed
//! under `tests/fixtures/model-signing/`, see its README) verifies with
//! mithridate, tampering is named, and mithridate hashes the same directory
//! into the same resources and subject digest.
//!
//! Run when `MITHRIDATE_MODEL_SIGNING` names the `model_signing` executable
//! (skipped with a notice otherwise, a failure if
//! `MITHRIDATE_REQUIRE_MODEL_SIGNING=1`): both directions against the tool.

#![allow(clippy::unwrap_used)] // test helpers panic on setup failure by design

use std::path::{Path, PathBuf};
use std::process::Command;

use mithridate_provenance::diff::FileChangeKind;
use mithridate_provenance::model_signing as ms;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model-signing")
}

/// The `model_signing` executable, or `None` (with a printed notice) when the
/// interop tests should be skipped.
fn model_signing_bin() -> Option<PathBuf> {
    let required = std::env::var("MITHRIDATE_REQUIRE_MODEL_SIGNING").as_deref() == Ok("1");
    match std::env::var_os("MITHRIDATE_MODEL_SIGNING") {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            assert!(
                p.exists(),
                "MITHRIDATE_MODEL_SIGNING={} does not exist",
                p.display()
            );
            Some(p)
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

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

fn fixture_key() -> ms::EcVerifyingKey {
    ms::load_ec_public_key(&fixture().join("key.pub")).unwrap()
}

#[test]
fn bundle_made_by_model_signing_verifies() {
    let data = fixture().join("data");
    let sig = data.join("model.sig");
    let bundle = ms::Bundle::load(&sig).unwrap();
    let key = fixture_key();
    // The hint model-signing wrote is the one mithridate computes.
    assert_eq!(bundle.hint(), Some(ms::key_hint(&key).unwrap().as_str()));
    let out = ms::verify_dir(
        &data,
        &bundle,
        &[key],
        &ms::VerifyOptions {
            ignore: vec![sig],
            ..Default::default()
        },
    )
    .unwrap();
    assert!(out.ok(), "{:?}", out.changes);
    assert_eq!(out.files_checked, 3);
    assert_eq!(out.model_name, "data");
    assert_eq!(out.algorithm, "sha256");
}

#[test]
fn tampering_with_model_signing_data_is_named() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    copy_dir(&fixture().join("data"), &data);
    let bundle = ms::Bundle::load(&data.join("model.sig")).unwrap();
    let key = fixture_key();
    let opts = ms::VerifyOptions::default();
    assert!(ms::verify_dir(&data, &bundle, &[key], &opts).unwrap().ok());

    let train = data.join("train.jsonl");
    let mut text = std::fs::read_to_string(&train).unwrap();
    text = text.replace("\"label\":0", "\"label\":1");
    std::fs::write(&train, text).unwrap();
    std::fs::remove_file(data.join("labels.csv")).unwrap();
    std::fs::write(data.join("sub/extra.jsonl"), b"{\"id\":9}\n").unwrap();
    // Ignored by both tools: git metadata.
    std::fs::write(data.join(".gitignore"), b"changed\n").unwrap();
    let out = ms::verify_dir(&data, &bundle, &[key], &opts).unwrap();
    let got: Vec<String> = out.changes.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "removed: labels.csv",
            "added: sub/extra.jsonl",
            "changed: train.jsonl"
        ]
    );
    assert_eq!(out.changes[2].kind, FileChangeKind::Changed);
    assert_ne!(out.changes[2].expected, out.changes[2].actual);
}

#[test]
fn mithridate_hashes_the_fixture_like_model_signing() {
    let data = fixture().join("data");
    let theirs = ms::Bundle::load(&data.join("model.sig"))
        .unwrap()
        .statement_unverified()
        .unwrap();
    let ours = ms::statement_for_dir(
        &data,
        &ms::SignOptions {
            ignore: vec![data.join("model.sig")],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ours.subject, theirs.subject);
    assert_eq!(ours.predicate.resources, theirs.predicate.resources);
    let mut their_ignores = theirs.predicate.serialization.ignore_paths.clone();
    their_ignores.sort();
    assert_eq!(ours.predicate.serialization.ignore_paths, their_ignores);
}

#[test]
fn a_tampered_fixture_bundle_is_rejected() {
    let data = fixture().join("data");
    let mut bundle = ms::Bundle::load(&data.join("model.sig")).unwrap();
    let key = fixture_key();
    // Re-encode the payload with one digest swapped: the signature must fail.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = String::from_utf8(b64.decode(&bundle.dsse_envelope.payload).unwrap()).unwrap();
    let st = bundle.statement_unverified().unwrap();
    let d0 = &st.predicate.resources[0].digest;
    let forged = body.replace(d0.as_str(), &"0".repeat(64));
    assert_ne!(forged, body);
    bundle.dsse_envelope.payload = b64.encode(forged);
    let e = ms::verify_bundle(&bundle, &[key]).unwrap_err();
    assert!(
        matches!(e, mithridate_core::Error::Crypto(_)),
        "{e}: not a signature failure"
    );
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn model_signing_verifies_what_mithridate_signs() {
    let Some(bin) = model_signing_bin() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let keys = ms::write_p256_keypair(&d.path().join("keys"), "ms", false).unwrap();
    let data = d.path().join("model");
    copy_dir(&fixture().join("data"), &data);
    std::fs::remove_file(data.join("model.sig")).unwrap();
    std::fs::create_dir_all(data.join("a")).unwrap();
    std::fs::write(data.join("a/b"), b"component order").unwrap();
    std::fs::write(data.join("a-c"), b"string order").unwrap();
    let sig = data.join("model.sig");
    let key = ms::load_ec_private_key(&keys.private).unwrap();
    let bundle = ms::sign_dir(
        &data,
        &key,
        &ms::SignOptions {
            ignore: vec![sig.clone()],
            ..Default::default()
        },
    )
    .unwrap();
    bundle.save(&sig).unwrap();
    let verify = || {
        run(Command::new(&bin)
            .args(["verify", "key"])
            .arg(&data)
            .arg("--signature")
            .arg(&sig)
            .arg("--public_key")
            .arg(&keys.public))
    };
    let (ok, text) = verify();
    assert!(ok, "model_signing rejected mithridate's signature:\n{text}");
    assert!(text.contains("Verification succeeded"), "{text}");

    std::fs::write(data.join("a/b"), b"tampered").unwrap();
    let (ok, text) = verify();
    assert!(!ok, "model_signing accepted tampered data:\n{text}");
    assert!(
        text.contains("a/b"),
        "model_signing did not name the file:\n{text}"
    );
}

#[test]
fn mithridate_verifies_what_model_signing_signs() {
    let Some(bin) = model_signing_bin() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let keys = ms::write_p256_keypair(&d.path().join("keys"), "ms", false).unwrap();
    let data = d.path().join("model");
    copy_dir(&fixture().join("data"), &data);
    std::fs::remove_file(data.join("model.sig")).unwrap();
    let sig = data.join("model.sig");
    let key = ms::load_ec_public_key(&keys.public).unwrap();
    // Several signatures: ECDSA nonces are random in OpenSSL, so about half
    // have a high S value; all must verify.
    for i in 0..3 {
        std::fs::write(data.join("round.txt"), format!("{i}")).unwrap();
        let (ok, text) = run(Command::new(&bin)
            .args(["sign", "key"])
            .arg(&data)
            .arg("--private_key")
            .arg(&keys.private)
            .arg("--signature")
            .arg(&sig));
        assert!(ok, "model_signing sign failed:\n{text}");
        let bundle = ms::Bundle::load(&sig).unwrap();
        let out = ms::verify_dir(&data, &bundle, &[key], &ms::VerifyOptions::default()).unwrap();
        assert!(out.ok(), "round {i}: {:?}", out.changes);
        assert_eq!(out.files_checked, 4);
    }
    std::fs::write(data.join("labels.csv"), b"id,label\n1,1\n").unwrap();
    let bundle = ms::Bundle::load(&sig).unwrap();
    let out = ms::verify_dir(&data, &bundle, &[key], &ms::VerifyOptions::default()).unwrap();
    assert_eq!(out.changes.len(), 1);
    assert_eq!(out.changes[0].to_string(), "changed: labels.csv");
}
