//! Verify the data on disk against a manifest.

use std::path::{Path, PathBuf};

use mithridate_core::Result;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::diff::{compare_entries, removed, FileChange, FileChangeKind, FileFacts};
use crate::hash::Algorithm;
use crate::manifest::{canonical_list, hash_entry, Manifest, DEFAULT_ID_FIELD};
use crate::walk::{canonical_root, walk};

/// Extra knobs for [`verify_manifest_with`].
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Files under the root that are not dataset content (the manifest and
    /// its signature when stored beside the data).
    pub ignore: Vec<PathBuf>,
}

/// The result of verifying a dataset: empty `changes` means everything matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyOutcome {
    /// Root of the manifest verified against.
    pub root: String,
    /// Its digest algorithm.
    pub algorithm: Algorithm,
    /// Files listed in the manifest.
    pub files_checked: u64,
    /// Records listed in the manifest's record-level entries.
    pub records_checked: u64,
    /// Every difference, sorted by path.
    pub changes: Vec<FileChange>,
}

impl VerifyOutcome {
    /// True when the data matches the manifest exactly.
    pub fn ok(&self) -> bool {
        self.changes.is_empty()
    }

    /// Number of mismatches: each changed, added, removed or escaping file
    /// counts once, plus each record change beyond the first in a file.
    pub fn mismatches(&self) -> usize {
        self.changes.iter().map(|c| c.records.len().max(1)).sum()
    }
}

/// Verify the files under `root` against `m`.
pub fn verify_manifest(root: &Path, m: &Manifest) -> Result<VerifyOutcome> {
    verify_manifest_with(root, m, &VerifyOptions::default())
}

/// Verify with options. Only files whose digest differs are split into
/// records, so verifying unchanged data costs one hash pass.
pub fn verify_manifest_with(
    root: &Path,
    m: &Manifest,
    opts: &VerifyOptions,
) -> Result<VerifyOutcome> {
    let span = tracing::info_span!("verify_manifest", root = %root.display());
    let _g = span.enter();
    let croot = canonical_root(root)?;
    let mut ignore = canonical_list(&opts.ignore);
    ignore.extend(m.exclude.iter().map(|r| croot.join(r)));
    let w = walk(&croot, &ignore)?;
    let mut changes = m
        .files
        .par_iter()
        .map(|exp| -> Result<Option<FileChange>> {
            if let Some(found) = w.files.get(&exp.path) {
                let act = hash_entry(m.algorithm, &exp.path, &found.abs, None, DEFAULT_ID_FIELD)?;
                if act.size == exp.size && act.digest == exp.digest {
                    return Ok(None);
                }
                let act = match &exp.records {
                    Some(r) => {
                        let id_field = r.id_field.as_deref().unwrap_or(DEFAULT_ID_FIELD);
                        hash_entry(m.algorithm, &exp.path, &found.abs, Some(r.format), id_field)?
                    }
                    None => act,
                };
                Ok(compare_entries(exp, &act))
            } else if let Some(target) = w.escapes.get(&exp.path) {
                Ok(Some(escape(&exp.path, target)))
            } else {
                Ok(Some(removed(exp)))
            }
        })
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
    for (rel, found) in &w.files {
        if m.file(rel).is_none() {
            let act = hash_entry(m.algorithm, rel, &found.abs, None, DEFAULT_ID_FIELD)?;
            let mut c = FileChange::new(rel, FileChangeKind::Added);
            c.actual = Some(FileFacts {
                size: act.size,
                digest: act.digest,
            });
            changes.push(c);
        }
    }
    for (rel, target) in &w.escapes {
        if m.file(rel).is_none() {
            changes.push(escape(rel, target));
        }
    }
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(VerifyOutcome {
        root: m.root.clone(),
        algorithm: m.algorithm,
        files_checked: m.files.len() as u64,
        records_checked: m.record_count(),
        changes,
    })
}

fn escape(rel: &str, target: &Path) -> FileChange {
    let mut c = FileChange::new(rel, FileChangeKind::SymlinkEscape);
    c.note = Some(format!(
        "points to {}, outside the dataset root; not followed",
        target.display()
    ));
    c
}
