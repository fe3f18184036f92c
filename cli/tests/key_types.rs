//! Key-type confusion: every key that is not the Ed25519 key a command needs
//! is refused with exit 2 and a message naming what was found (RSA, ECDSA,
//! X25519, Ed448, SEC1, certificate, or the other half of a key pair), and
//! no key material is echoed.
//!
//! The fixtures in `tests/fixtures/keys/` are throwaway keys made with
//! `openssl genpkey` (RSA 1024, EC P-256, X25519, ED448), `openssl ecparam
//! -genkey -noout` (SEC1) and `openssl req -x509` (certificate).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mithridate"))
        .args(args)
        .output()
        .expect("run mithridate")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keys")
        .join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The base64 body lines of a PEM file: none may appear in any output.
fn pem_body_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 16)
        .map(str::to_owned)
        .collect()
}

fn assert_refused(o: &Output, key: &Path, found: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{}: {err}", key.display());
    assert!(
        err.contains(&format!("found {found}")),
        "{}: expected `found {found}` in: {err}",
        key.display()
    );
    assert!(err.contains(s(key)), "the message names the file: {err}");
    for line in pem_body_lines(key) {
        assert!(!err.contains(&line), "key material echoed: {err}");
        assert!(!String::from_utf8_lossy(&o.stdout).contains(&line));
    }
}

struct Signed {
    _dir: tempfile::TempDir,
    data: PathBuf,
    manifest: PathBuf,
    signed: PathBuf,
    key: PathBuf,
    public: PathBuf,
}

fn signed_dataset() -> Signed {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("a.jsonl"),
        "{\"id\":1,\"text\":\"a\",\"label\":0}\n",
    )
    .unwrap();
    let manifest = dir.path().join("m.json");
    let signed = dir.path().join("s.json");
    let keys = dir.path().join("keys");
    for args in [
        vec!["manifest", "create", s(&data), "-o", s(&manifest)],
        vec!["keygen", "--out", s(&keys)],
    ] {
        assert_eq!(run(&args).status.code(), Some(0), "{args:?}");
    }
    let key = keys.join("mithridate.key");
    let public = keys.join("mithridate.pub");
    let o = run(&[
        "manifest",
        "sign",
        s(&manifest),
        "--key",
        s(&key),
        "-o",
        s(&signed),
    ]);
    assert_eq!(o.status.code(), Some(0));
    Signed {
        _dir: dir,
        data,
        manifest,
        signed,
        key,
        public,
    }
}

#[test]
fn signing_refuses_every_other_key_type_and_names_it() {
    let d = signed_dataset();
    let out = d.manifest.with_file_name("out.json");
    let cases: Vec<(PathBuf, &str)> = vec![
        (fixture("rsa.key"), "an RSA private key"),
        (fixture("p256.key"), "an ECDSA P-256 private key"),
        (fixture("x25519.key"), "an X25519 private key"),
        (fixture("ed448.key"), "an Ed448 private key"),
        (fixture("p256-sec1.key"), "an EC private key in SEC1 form"),
        (fixture("cert.pem"), "an X.509 certificate"),
        (
            fixture("rsa.pub"),
            "an RSA public key (a public key where the private key is needed)",
        ),
        (
            d.public.clone(),
            "an Ed25519 public key (a public key where the private key is needed)",
        ),
    ];
    for (key, found) in &cases {
        let o = run(&[
            "manifest",
            "sign",
            s(&d.manifest),
            "--key",
            s(key),
            "-o",
            s(&out),
        ]);
        assert_refused(&o, key, found);
        assert!(
            !out.exists(),
            "a signature was written with {}",
            key.display()
        );
    }
}

#[test]
fn verification_refuses_every_other_key_type_as_trust_root() {
    let d = signed_dataset();
    let cases: Vec<(PathBuf, &str)> = vec![
        (fixture("rsa.pub"), "an RSA public key"),
        (fixture("p256.pub"), "an ECDSA P-256 public key"),
        (fixture("x25519.pub"), "an X25519 public key"),
        (fixture("ed448.pub"), "an Ed448 public key"),
        (fixture("cert.pem"), "an X.509 certificate"),
        (
            fixture("rsa.key"),
            "an RSA private key (a private key where a public key is needed",
        ),
        (
            d.key.clone(),
            "an Ed25519 private key (a private key where a public key is needed",
        ),
    ];
    for (key, found) in &cases {
        let o = run(&[
            "manifest",
            "verify",
            s(&d.data),
            "--manifest",
            s(&d.signed),
            "--trust",
            s(key),
        ]);
        assert_refused(&o, key, found);
    }
    // One bad trust root among good ones is still an error, not a silent skip.
    let o = run(&[
        "manifest",
        "verify",
        s(&d.data),
        "--manifest",
        s(&d.signed),
        "--trust",
        s(&d.public),
        "--trust",
        s(&fixture("p256.pub")),
    ]);
    assert_refused(&o, &fixture("p256.pub"), "an ECDSA P-256 public key");
    // And the right key still verifies.
    let o = run(&[
        "manifest",
        "verify",
        s(&d.data),
        "--manifest",
        s(&d.signed),
        "--trust",
        s(&d.public),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
