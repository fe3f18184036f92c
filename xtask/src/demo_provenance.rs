//! The demo's provenance steps: a record-level manifest of the received
//! training data, signed with a fresh key; verification of a tampered copy.

use std::path::{Path, PathBuf};

use anyhow::Result;
use mithridate_core::Verdict;
use mithridate_provenance::keys::load_private_key;
use mithridate_provenance::manifest::Metadata;
use mithridate_provenance::{
    create_manifest, sign_manifest, verify_manifest, write_keypair, CreateOptions, Manifest,
};

/// What the demo keeps of the signing step.
pub struct Prov {
    /// Records covered.
    pub records: u64,
    /// Merkle root (hex).
    pub root: String,
    /// The signed DSSE envelope.
    pub envelope: PathBuf,
    /// The public key to trust.
    pub public_key: PathBuf,
    /// The manifest itself.
    pub manifest: Manifest,
}

/// Outcome of verifying a directory.
pub struct VerifySummary {
    /// Pass when everything matches.
    pub verdict: Verdict,
    /// One line per change.
    pub messages: Vec<String>,
}

/// Manifest `train_dir` record by record, generate a key pair under
/// `out/keys`, sign, and save the manifest and envelope beside the data.
pub fn sign_dataset(train_dir: &Path, out: &Path) -> Result<Prov> {
    let opts = CreateOptions {
        records: true,
        metadata: Metadata {
            source: Some("embedded:uci-optdigits".into()),
            revision: Some("sklearn-load_digits".into()),
            collector: Some("cargo xtask demo".into()),
            license: Some("CC-BY-4.0".into()),
            notes: Some("training split, as received from upstream".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let manifest = create_manifest(train_dir, &opts)?;
    let keys = write_keypair(&out.join("keys"))?;
    let envelope = sign_manifest(&manifest, &load_private_key(&keys.private)?)?;
    let data_dir = train_dir.parent().unwrap_or(out);
    manifest.save(&data_dir.join("train.manifest.json"))?;
    let env_path = data_dir.join("train.dsse.json");
    envelope.save(&env_path)?;
    Ok(Prov {
        records: manifest.record_count(),
        root: manifest.root.clone(),
        envelope: env_path,
        public_key: keys.public,
        manifest,
    })
}

/// Verify `dir` against the demo's manifest.
pub fn verify_dir(dir: &Path, prov: &Prov) -> Result<VerifySummary> {
    let out = verify_manifest(dir, &prov.manifest)?;
    let mut messages = Vec::new();
    for c in &out.changes {
        messages.push(c.to_string());
        messages.extend(c.records.iter().map(|r| format!("  {}: {r}", c.path)));
    }
    Ok(VerifySummary {
        verdict: if out.ok() {
            Verdict::Pass
        } else {
            Verdict::Fail
        },
        messages,
    })
}
