//! The OpenSSF model-signing format in `keygen`, `manifest sign` and
//! `manifest verify`: glue over `mithridate_provenance::model_signing`.
//!
//! - `mithridate keygen --type ecdsa-p256 --out DIR` writes the P-256 key
//!   pair the format needs (model-signing's private-key method takes only
//!   elliptic-curve keys).
//! - `mithridate manifest sign DIR --format model-signing --key KEY -o SIG`
//!   hashes and signs the directory into a Sigstore bundle that
//!   `model_signing verify key` accepts.
//! - `mithridate manifest verify DIR --manifest SIG --trust PUB` recognises a
//!   Sigstore bundle by its `mediaType` and verifies it; exit 0 / 1 / 2 as for
//!   mithridate manifests.

use std::path::Path;

use anyhow::bail;
use clap::ValueEnum;
use mithridate_core::Error;
use mithridate_provenance::model_signing as ms;
use serde_json::json;

use super::{KeygenArgs, SignArgs, VerifyArgs};
use crate::{Global, Outcome};

/// Key algorithm for `keygen --type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum KeyType {
    /// Ed25519, for mithridate manifests (DSSE envelopes).
    #[default]
    Ed25519,
    /// ECDSA P-256, for the OpenSSF model-signing format.
    EcdsaP256,
}

/// Signature format for `manifest sign --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum SignFormat {
    /// A mithridate manifest in an in-toto statement, DSSE envelope, Ed25519.
    #[default]
    Dsse,
    /// OpenSSF model-signing: a Sigstore bundle over a directory, ECDSA P-256.
    ModelSigning,
}

/// `keygen --type ecdsa-p256`.
pub fn keygen(args: &KeygenArgs, g: &Global) -> anyhow::Result<Outcome> {
    let p = ms::write_p256_keypair(&args.out, &args.name, args.force)?;
    let vk = ms::load_ec_public_key(&p.public)?;
    let hint = ms::key_hint(&vk)?;
    if !g.emit_json(&json!({
        "private_key": p.private, "public_key": p.public, "keyid": hint, "type": "ecdsa-p256"
    }))? {
        g.say(format!(
            "private key: {} (ECDSA P-256, mode 0600, keep it secret)",
            p.private.display()
        ));
        g.say(format!("public key:  {}", p.public.display()));
        g.say(format!("key hint:    {hint}"));
    }
    Ok(Outcome::Pass)
}

/// `manifest sign DIR --format model-signing`.
pub fn sign(a: &SignArgs, g: &Global) -> anyhow::Result<Outcome> {
    if !a.manifest.is_dir() {
        bail!(
            "{}: --format model-signing signs a dataset directory, not a manifest file \
             (give the directory)",
            a.manifest.display()
        );
    }
    let key = ms::load_ec_private_key(&a.key)?;
    let opts = ms::SignOptions {
        ignore: vec![a.output.clone()],
        ..Default::default()
    };
    let bar = g.progress();
    bar.start("hashing", None);
    let bundle = ms::sign_dir(&a.manifest, &key, &opts);
    bar.finish();
    let bundle = bundle?;
    bundle.save(&a.output)?;
    let st = bundle.statement_unverified()?;
    let hint = ms::key_hint(key.verifying_key())?;
    if !g.emit_json(&json!({
        "signed": a.output, "format": "model-signing", "model_name": st.model_name(),
        "root": st.root(), "files": st.predicate.resources.len(), "keyid": hint,
    }))? {
        g.say(format!(
            "wrote {} (model-signing bundle: {} files, root {}, key hint {hint})",
            a.output.display(),
            st.predicate.resources.len(),
            st.root()
        ));
    }
    Ok(Outcome::Pass)
}

/// Whether `path` holds a Sigstore bundle (read and sniffed; unreadable files
/// are left for the ordinary path to report).
pub fn is_bundle_file(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| ms::is_bundle(&b))
}

/// `manifest verify DIR --manifest BUNDLE [--trust PUB]...`.
pub fn verify(a: &VerifyArgs, g: &Global) -> anyhow::Result<Outcome> {
    let bundle = ms::Bundle::load(&a.manifest)?;
    let keys = a
        .trust
        .iter()
        .map(|p| ms::load_ec_public_key(p))
        .collect::<Result<Vec<_>, _>>()?;
    let opts = ms::VerifyOptions {
        ignore: vec![a.manifest.clone()],
        ..Default::default()
    };
    let mut signature = json!({ "checked": false });
    let statement = if keys.is_empty() {
        g.say("warning: signature NOT checked (no --trust key given)");
        bundle.statement_unverified()?
    } else {
        match ms::verify_bundle(&bundle, &keys) {
            Ok(v) => {
                signature = json!({ "checked": true, "valid": true, "keyid": v.keyid });
                v.statement
            }
            Err(Error::Crypto(msg)) => {
                let msg = format!("{}: {msg}", a.manifest.display());
                let doc = json!({
                    "ok": false, "format": "model-signing",
                    "signature": { "checked": true, "valid": false, "error": msg },
                });
                if !g.emit_json(&doc)? {
                    g.say(format!("REJECTED {msg}"));
                }
                return Ok(Outcome::GateFailed);
            }
            Err(e) => return Err(e.into()),
        }
    };
    let bar = g.progress();
    bar.start("verifying", None);
    let out = ms::check_dir(&a.path, &statement, &opts);
    bar.finish();
    let out = out?;
    let doc = json!({
        "ok": out.ok(), "format": "model-signing", "model_name": out.model_name,
        "root": out.root, "algorithm": out.algorithm, "signature": signature,
        "files_checked": out.files_checked, "mismatches": out.changes.len(),
        "changes": out.changes,
    });
    if !g.emit_json(&doc)? {
        if out.ok() {
            g.say(format!(
                "OK: {} files match model-signing bundle {} (root {})",
                out.files_checked,
                a.manifest.display(),
                out.root
            ));
        } else {
            g.say(format!(
                "MISMATCH against model-signing bundle {} (root {}):",
                a.manifest.display(),
                out.root
            ));
            for c in &out.changes {
                g.say(format!("  {c}"));
            }
        }
    }
    Ok(Outcome::gate(!out.ok()))
}
