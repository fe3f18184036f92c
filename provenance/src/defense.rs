//! [`VerifyDefense`]: verify-before-train as a pipeline [`Defense`].

use std::path::{Path, PathBuf};

use mithridate_core::{
    Context, Defense, Error, Finding, Layer, Report, Result, SampleId, Stage, ThreatTag, Verdict,
};
use serde_json::json;

use crate::diff::FileChangeKind;
use crate::envelope::{load_any, load_trusted};
use crate::keys::load_public_key;
use crate::verify::{verify_manifest_with, VerifyOptions};

/// Verify the dataset in the context against a manifest (plain or signed)
/// before anything trains on it.
///
/// With trusted keys the manifest must be a DSSE envelope signed by one of
/// them; an unsigned manifest or a bad signature fails the gate. Every
/// changed, added, removed or escaping file and every changed, inserted,
/// deleted or moved record becomes one finding.
#[derive(Debug, Clone)]
pub struct VerifyDefense {
    manifest: PathBuf,
    trusted_keys: Vec<PathBuf>,
}

impl VerifyDefense {
    /// Verify against the manifest at `manifest`; `trusted_keys` are SPKI PEM
    /// public keys (empty: accept an unsigned manifest, do not check signatures).
    pub fn new(manifest: PathBuf, trusted_keys: Vec<PathBuf>) -> Self {
        Self {
            manifest,
            trusted_keys,
        }
    }

    fn tags() -> [ThreatTag; 3] {
        [
            ThreatTag::atlas_supply_chain(),
            ThreatTag::atlas_poison_training_data(),
            ThreatTag::owasp_llm04(),
        ]
    }

    fn root_of(cx: &Context) -> Result<PathBuf> {
        if let Some(r) = &cx.dataset_root {
            return Ok(r.clone());
        }
        let first = cx.dataset_paths.first().ok_or_else(|| {
            Error::data("provenance-verify: no dataset_root and no dataset_paths in the context")
        })?;
        Ok(match first.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => Path::new(".").to_path_buf(),
        })
    }
}

impl Defense for VerifyDefense {
    fn name(&self) -> &str {
        "provenance-verify"
    }
    fn layer(&self) -> Layer {
        Layer::Provenance
    }
    fn stage(&self) -> Stage {
        Stage::Ingest
    }

    fn run(&self, cx: &mut Context) -> Result<Report> {
        let mut r = Report::new(self.name(), self.layer(), self.stage());
        r.params = json!({ "manifest": self.manifest, "trusted_keys": self.trusted_keys });
        let root = Self::root_of(cx)?;
        let manifest = if self.trusted_keys.is_empty() {
            load_any(&self.manifest)?.manifest
        } else {
            let keys = self
                .trusted_keys
                .iter()
                .map(|p| load_public_key(p))
                .collect::<Result<Vec<_>>>()?;
            match load_trusted(&self.manifest, &keys) {
                Ok(v) => v.manifest,
                Err(Error::Crypto(msg)) => {
                    r.escalate(Verdict::Fail);
                    r.summary = format!("manifest signature rejected: {msg}");
                    r.findings.push(
                        Finding::new(1.0, format!("manifest signature rejected: {msg}"))
                            .with_tags(Self::tags()),
                    );
                    r.metric("files_checked", 0.0)
                        .metric("records_checked", 0.0)
                        .metric("mismatches", 1.0);
                    return Ok(r);
                }
                Err(e) => return Err(e),
            }
        };
        cx.artifacts
            .insert("manifest_root".into(), json!(manifest.root));
        let opts = VerifyOptions {
            ignore: vec![self.manifest.clone()],
        };
        let out = verify_manifest_with(&root, &manifest, &opts)?;
        r.metric("files_checked", out.files_checked as f64)
            .metric("records_checked", out.records_checked as f64)
            .metric("mismatches", out.mismatches() as f64);
        for c in &out.changes {
            if c.records.is_empty() {
                let score = if c.kind == FileChangeKind::SymlinkEscape {
                    1.0
                } else {
                    0.9
                };
                r.findings.push(
                    Finding::new(score, c.to_string())
                        .with_tags(Self::tags())
                        .with_detail(json!(c)),
                );
            }
            for rc in &c.records {
                let ids: Vec<SampleId> =
                    rc.id.as_deref().map(SampleId::parse).into_iter().collect();
                r.findings.push(
                    Finding::new(1.0, format!("{}: {rc}", c.path))
                        .with_ids(ids)
                        .with_tags(Self::tags())
                        .with_detail(json!({ "file": c.path, "record": rc })),
                );
            }
        }
        if out.ok() {
            r.summary = format!(
                "{} files and {} records match manifest {}",
                out.files_checked, out.records_checked, &manifest.root
            );
        } else {
            r.escalate(Verdict::Fail);
            r.summary = format!(
                "{} mismatches against manifest {} ({} files differ)",
                out.mismatches(),
                &manifest.root,
                out.changes.len()
            );
        }
        Ok(r)
    }
}
