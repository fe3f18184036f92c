//! Manifests made in pieces: one per shard (a subset of a dataset's files,
//! hashed on whichever machine holds them), merged into one dataset manifest.
//!
//! The dataset root is the Merkle root over the file entries in sorted path
//! order, and each entry (path, size, digest, record root) depends on its own
//! file only. So a shard manifest's entries are exactly the entries a
//! single-machine manifest of the whole dataset would hold for those files,
//! and the merged manifest, whose entries are the union of the shards' sorted
//! by path, has the single-machine root by construction. Shards must name
//! files by their path relative to the *dataset* root, never to a shard
//! directory, or the entries (and the root) would differ.
//!
//! The functions take paths or `(name, bytes)` pairs and return plain
//! serializable [`Manifest`]s, so a distributed job (a Spark `mapPartitions`,
//! a Ray task) can hash its partition, ship the manifest as JSON, and merge
//! on the driver.
//!
//! ```
//! use mithridate_provenance::{create_manifest, shard, CreateOptions};
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("a.jsonl"), "{\"id\":1}\n")?;
//! std::fs::write(dir.path().join("b.jsonl"), "{\"id\":2}\n")?;
//! let opts = CreateOptions { records: true, ..Default::default() };
//! let one = shard::create_shard_manifest(dir.path(), &["a.jsonl"], &opts)?;
//! let two = shard::manifest_from_bytes(&[("b.jsonl", b"{\"id\":2}\n".as_slice())], &opts)?;
//! let merged = shard::merge_manifests(&[one, two], &shard::MergeOptions::default())?;
//! assert_eq!(merged.root, create_manifest(dir.path(), &opts)?.root);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use mithridate_core::{Error, Result};
use rayon::prelude::*;

use crate::manifest::{
    assemble, entry_from_bytes, hash_entry, CreateOptions, FileEntry, Lineage, Manifest, Metadata,
    DEFAULT_ID_FIELD, MANIFEST_SCHEMA,
};
use crate::records::RecordFormat;
use crate::walk::{canonical_root, check_rel_path, rel_string};

/// What the merged manifest says about its dataset.
#[derive(Debug, Clone, Default)]
pub struct MergeOptions {
    /// Metadata of the merged manifest. When None, the shards' metadata if
    /// they all agree, else empty.
    pub metadata: Option<Metadata>,
    /// Lineage of the merged manifest. When None, the shards' lineage if
    /// they all agree, else none.
    pub lineage: Option<Lineage>,
}

/// Hash the files `files` of the dataset under `root` into a (shard)
/// manifest. Each file is named relative to `root` (a relative path is
/// taken relative to `root`, an absolute one must lie inside it); a file
/// that resolves outside the root, through `..` or a symlink, is refused.
/// `opts.exclude` is ignored: a shard lists exactly the files it is given.
pub fn create_shard_manifest<P: AsRef<Path>>(
    root: &Path,
    files: &[P],
    opts: &CreateOptions,
) -> Result<Manifest> {
    let croot = canonical_root(root)?;
    let mut named = BTreeMap::new();
    for f in files {
        let f = f.as_ref();
        let given = if f.is_absolute() {
            f.to_path_buf()
        } else {
            root.join(f)
        };
        // The name is the path as given under the root; the bytes are read
        // from where it resolves, which must also be under the root.
        let lexical = match given.parent().map(|d| d.canonicalize()) {
            Some(Ok(dir)) => dir.join(given.file_name().unwrap_or_default()),
            _ => given.clone(),
        };
        let rel = rel_string(&croot, &lexical).map_err(|_| {
            Error::data(format!(
                "{}: not inside the dataset root {}",
                f.display(),
                root.display()
            ))
        })?;
        let target = lexical.canonicalize().map_err(|e| Error::io(&given, e))?;
        if !target.starts_with(&croot) {
            return Err(Error::data(format!(
                "{}: resolves to {}, outside the dataset root; refusing to follow it",
                f.display(),
                target.display()
            )));
        }
        if !target.is_file() {
            return Err(Error::data(format!("{}: not a regular file", f.display())));
        }
        if named.insert(rel.clone(), target).is_some() {
            return Err(Error::data(format!("{rel}: listed twice")));
        }
    }
    let id_field = opts.id_field.as_deref().unwrap_or(DEFAULT_ID_FIELD);
    let entries = named
        .par_iter()
        .map(|(rel, abs)| hash_entry(opts.algorithm, rel, abs, format_of(opts, rel), id_field))
        .collect::<Result<Vec<_>>>()?;
    finish(entries, opts)
}

/// Hash in-memory files `(name, bytes)` into a (shard) manifest, as if the
/// bytes were files at those paths under the dataset root: for data that
/// never touches a shared file system (a Spark partition's rows).
pub fn manifest_from_bytes<N: AsRef<str> + Sync, B: AsRef<[u8]> + Sync>(
    items: &[(N, B)],
    opts: &CreateOptions,
) -> Result<Manifest> {
    let mut seen = std::collections::BTreeSet::new();
    for (name, _) in items {
        let name = name.as_ref();
        check_rel_path(name).map_err(|m| Error::data(format!("file name {name:?}: {m}")))?;
        if !seen.insert(name) {
            return Err(Error::data(format!("{name}: listed twice")));
        }
    }
    let id_field = opts.id_field.as_deref().unwrap_or(DEFAULT_ID_FIELD);
    let entries = items
        .par_iter()
        .map(|(name, bytes)| {
            let name = name.as_ref();
            entry_from_bytes(
                opts.algorithm,
                name,
                bytes.as_ref(),
                format_of(opts, name),
                id_field,
            )
        })
        .collect();
    finish(entries, opts)
}

/// Merge shard manifests into one dataset manifest: the union of their
/// entries, sorted by path, under a root recomputed over all of them (equal
/// to the root of a single manifest of the same files). Refuses an empty
/// list, mixed digest algorithms, and a path listed by two shards with
/// different content; the same entry in two shards (a retried task) counts
/// once.
pub fn merge_manifests(shards: &[Manifest], opts: &MergeOptions) -> Result<Manifest> {
    let first = shards
        .first()
        .ok_or_else(|| Error::param("shards", "no shard manifest to merge"))?;
    let mut files: BTreeMap<&str, (usize, &FileEntry)> = BTreeMap::new();
    let mut exclude = std::collections::BTreeSet::new();
    for (i, m) in shards.iter().enumerate() {
        m.validate()
            .map_err(|e| Error::data(format!("shard {i}: {e}")))?;
        if m.algorithm != first.algorithm {
            return Err(Error::data(format!(
                "shard {i} uses {}, shard 0 uses {}: one dataset root needs one algorithm",
                m.algorithm, first.algorithm
            )));
        }
        for f in &m.files {
            match files.get(f.path.as_str()) {
                Some((j, g)) if *g != f => {
                    return Err(Error::data(format!(
                        "{}: shards {j} and {i} list different content for this path",
                        f.path
                    )))
                }
                Some(_) => {}
                None => {
                    files.insert(&f.path, (i, f));
                }
            }
        }
        exclude.extend(m.exclude.iter().map(String::as_str));
    }
    let metadata = match &opts.metadata {
        Some(md) => md.clone(),
        None if all_equal(shards, |m| &m.metadata) => first.metadata.clone(),
        None => Metadata::default(),
    };
    let lineage = match &opts.lineage {
        Some(l) => Some(l.clone()),
        None if all_equal(shards, |m| &m.lineage) => first.lineage.clone(),
        None => None,
    };
    let mut m = Manifest {
        schema: MANIFEST_SCHEMA.into(),
        algorithm: first.algorithm,
        root: String::new(),
        metadata,
        lineage,
        files: files.into_values().map(|(_, f)| f.clone()).collect(),
        exclude: exclude
            .into_iter()
            .filter(|x| !shards.iter().any(|m| m.file(x).is_some()))
            .map(str::to_owned)
            .collect(),
    };
    m.root = hex::encode(m.compute_root());
    m.validate()?;
    Ok(m)
}

fn all_equal<T: PartialEq>(shards: &[Manifest], get: impl Fn(&Manifest) -> &T) -> bool {
    shards.windows(2).all(|w| get(&w[0]) == get(&w[1]))
}

fn format_of(opts: &CreateOptions, rel: &str) -> Option<RecordFormat> {
    if opts.records {
        RecordFormat::from_path(rel)
    } else {
        None
    }
}

fn finish(entries: Vec<FileEntry>, opts: &CreateOptions) -> Result<Manifest> {
    let m = assemble(entries, opts, Vec::new())?;
    m.validate()?;
    Ok(m)
}
