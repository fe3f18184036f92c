//! The dataset manifest: what it holds, how it is built, loaded and saved.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use mithridate_core::{Error, Location, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::hash::{
    digest_bytes, leaf_hash, merkle_root, with_digest, Algorithm, Blake3, StreamDigest,
};
use crate::records::{
    jsonl_blake3_fused, record_digests, RecordDigests, RecordFormat, RecordIds, PIECE,
};
use crate::walk::{canonical_root, check_rel_path, walk};

/// Schema URI of a manifest document, checked on load so that a file of
/// another kind is never mistaken for a manifest.
pub const MANIFEST_SCHEMA: &str = "https://mithridate.dev/manifest/v1";

/// Record count above which manifests are saved as compact JSON.
pub const COMPACT_ABOVE: u64 = 10_000;

/// Default field (JSONL) or column (CSV) holding record ids.
pub const DEFAULT_ID_FIELD: &str = "id";

/// Where a dataset came from: what an auditor asks before trusting it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Source URI (bucket, URL, repository).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Revision or version pin of the source (commit, snapshot, tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Person or system that collected it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collector: Option<String>,
    /// Collection date (free form; ISO 8601 recommended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collected: Option<String>,
    /// Licence (SPDX expression recommended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// Free-form notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// How a dataset was derived: the roots of the manifests it came from and
/// the step in between, so a chain of datasets can be walked back to its
/// sources.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lineage {
    /// Roots (hex) of the parent manifests.
    pub parents: Vec<String>,
    /// The derivation step, e.g. `dedup`, `filter`, `scan --quarantine`.
    pub step: String,
}

/// Per-record digests of one file, folded into a Merkle root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordSet {
    /// How the file was split into records.
    pub format: RecordFormat,
    /// Number of records.
    pub count: u64,
    /// Merkle root (hex) over the record leaves.
    pub root: String,
    /// Leaf hash (hex) of the header (CSV header row, NPY header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Field or column the ids were read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_field: Option<String>,
    /// Leaf hashes, concatenated (base64 in JSON): needed to say *which*
    /// record changed, not only that one did.
    #[serde(with = "b64")]
    pub leaves: Vec<u8>,
    /// Record ids (empty when no record has one, else one per record).
    #[serde(default, skip_serializing_if = "RecordIds::is_empty")]
    pub ids: RecordIds,
}

impl RecordSet {
    /// Leaf hash of record `i`.
    pub fn leaf(&self, i: usize) -> Option<&[u8]> {
        self.leaves.get(i * 32..(i + 1) * 32)
    }

    /// Id of record `i`, if known.
    pub fn id(&self, i: usize) -> Option<&str> {
        self.ids.get(i)
    }

    fn from_digests(r: RecordDigests, id_field: &str) -> Self {
        let has_ids = r.ids.any();
        Self {
            format: r.format,
            count: r.count() as u64,
            root: String::new(),
            header: r.header.map(hex::encode),
            id_field: has_ids.then(|| id_field.to_owned()),
            leaves: r.leaves,
            ids: if has_ids { r.ids } else { RecordIds::default() },
        }
    }
}

/// One file of the dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Path relative to the dataset root, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Digest (hex) of the whole file.
    pub digest: String,
    /// Per-record digests, for record-level manifests of known formats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<RecordSet>,
}

/// A dataset manifest: every file's digest (and optionally every record's),
/// a Merkle root over them, metadata and lineage.
///
/// A value of this type that came from [`Manifest::from_json_slice`],
/// [`Manifest::load`] or [`create_manifest`] is internally consistent: paths
/// are safe and unique, and every root matches what it summarises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`MANIFEST_SCHEMA`].
    pub schema: String,
    /// Digest algorithm of every digest in the manifest.
    pub algorithm: Algorithm,
    /// Merkle root (hex) over the file entries: the dataset's identity,
    /// independent of metadata, used as a parent in lineage.
    pub root: String,
    /// Where the data came from.
    #[serde(default)]
    pub metadata: Metadata,
    /// How it was derived, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<Lineage>,
    /// Files, sorted by path.
    pub files: Vec<FileEntry>,
    /// Paths under the root that are not dataset content (typically the
    /// manifest itself, written beside the data). Verification skips them;
    /// they are listed, and signed, so that an auditor sees what was left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// What [`create_manifest`] hashes and records.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Per-record digests for JSONL, CSV and NPY files.
    pub records: bool,
    /// Digest algorithm (BLAKE3 unless set).
    pub algorithm: Algorithm,
    /// JSON field or CSV column with record ids (`id` when None).
    pub id_field: Option<String>,
    /// Dataset metadata.
    pub metadata: Metadata,
    /// Lineage, if the dataset was derived from others.
    pub lineage: Option<Lineage>,
    /// Files under the root that are not part of the dataset (e.g. the
    /// manifest itself), absolute or relative to the current directory.
    pub exclude: Vec<PathBuf>,
}

/// Hash the dataset under `root` into a manifest.
///
/// Files are hashed in parallel, large ones memory-mapped; a symlink that
/// leaves the root is an error, not something to hash.
pub fn create_manifest(root: &Path, opts: &CreateOptions) -> Result<Manifest> {
    let span =
        tracing::info_span!("create_manifest", root = %root.display(), records = opts.records);
    let _g = span.enter();
    let croot = canonical_root(root)?;
    let ignore = canonical_list(&opts.exclude);
    let mut exclude: Vec<String> = ignore
        .iter()
        .filter_map(|p| p.strip_prefix(&croot).ok())
        .filter_map(|r| {
            r.to_str()
                .map(|s| s.replace(std::path::MAIN_SEPARATOR, "/"))
        })
        .filter(|r| check_rel_path(r).is_ok())
        .collect();
    // The output manifest usually does not exist yet: canonicalize its directory.
    for p in &opts.exclude {
        if let (Some(dir), Some(name)) = (p.parent(), p.file_name().and_then(|n| n.to_str())) {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Ok(rel) = dir.canonicalize().map(|d| d.join(name)) {
                if let Some(r) = rel.strip_prefix(&croot).ok().and_then(|r| r.to_str()) {
                    let r = r.replace(std::path::MAIN_SEPARATOR, "/");
                    if check_rel_path(&r).is_ok() && !exclude.contains(&r) {
                        exclude.push(r);
                    }
                }
            }
        }
    }
    exclude.sort();
    let ignore: Vec<PathBuf> = exclude.iter().map(|r| croot.join(r)).collect();
    let w = walk(&croot, &ignore)?;
    if let Some((rel, target)) = w.escapes.iter().next() {
        return Err(Error::data(format!(
            "{}: symlink to {} escapes the dataset root; refusing to follow it",
            root.join(rel).display(),
            target.display()
        )));
    }
    let id_field = opts.id_field.as_deref().unwrap_or(DEFAULT_ID_FIELD);
    let files: Vec<(&String, &PathBuf)> = w.files.iter().map(|(r, f)| (r, &f.abs)).collect();
    let entries = files
        .par_iter()
        .map(|(rel, abs)| {
            let fmt = if opts.records {
                RecordFormat::from_path(rel)
            } else {
                None
            };
            hash_entry(opts.algorithm, rel, abs, fmt, id_field)
        })
        .collect::<Result<Vec<_>>>()?;
    let m = assemble(entries, opts, exclude)?;
    tracing::info!(files = m.files.len(), root = %m.root, "manifest created");
    Ok(m)
}

/// A manifest of hashed `entries` (sorted here by path) with `opts`'
/// algorithm, metadata and lineage, and its root: what a whole-directory
/// manifest and a shard manifest share.
pub(crate) fn assemble(
    mut entries: Vec<FileEntry>,
    opts: &CreateOptions,
    exclude: Vec<String>,
) -> Result<Manifest> {
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let mut m = Manifest {
        schema: MANIFEST_SCHEMA.into(),
        algorithm: opts.algorithm,
        root: String::new(),
        metadata: opts.metadata.clone(),
        lineage: opts.lineage.clone(),
        files: entries,
        exclude,
    };
    m.root = hex::encode(m.compute_root());
    if let Some(l) = &m.lineage {
        check_lineage(l).map_err(|msg| Error::param("lineage", msg))?;
    }
    Ok(m)
}

/// Canonical forms of the paths that exist (others cannot be under the root).
pub(crate) fn canonical_list(paths: &[PathBuf]) -> Vec<PathBuf> {
    paths.iter().filter_map(|p| p.canonicalize().ok()).collect()
}

/// Hash one file into an entry. `fmt` asks for record digests.
pub(crate) fn hash_entry(
    alg: Algorithm,
    rel: &str,
    abs: &Path,
    fmt: Option<RecordFormat>,
    id_field: &str,
) -> Result<FileEntry> {
    let bytes = FileBytes::open(abs)?;
    Ok(entry_from_bytes(alg, rel, bytes.as_slice(), fmt, id_field))
}

/// An entry for `data` under the name `rel` (already checked).
pub(crate) fn entry_from_bytes(
    alg: Algorithm,
    rel: &str,
    data: &[u8],
    fmt: Option<RecordFormat>,
    id_field: &str,
) -> FileEntry {
    if let (Algorithm::Blake3, Some(RecordFormat::Jsonl)) = (alg, fmt) {
        // One pass for the file digest and the records (see
        // `jsonl_blake3_fused`); the other formats and SHA-256, whose file
        // digest is sequential, take two.
        let (r, digest) = jsonl_blake3_fused(data, id_field, PIECE);
        return FileEntry {
            path: rel.to_owned(),
            size: data.len() as u64,
            digest: hex::encode(digest),
            records: Some(record_set_of::<Blake3>(r, id_field)),
        };
    }
    let digest = with_digest!(alg, D => digest_bytes::<D>(data));
    let records = match fmt {
        None => None,
        Some(f) => match with_digest!(alg, D => record_set::<D>(data, f, id_field)) {
            Ok(r) => Some(r),
            Err(msg) => {
                tracing::warn!(path = rel, "no record digests: {msg}");
                None
            }
        },
    };
    FileEntry {
        path: rel.to_owned(),
        size: data.len() as u64,
        digest: hex::encode(digest),
        records,
    }
}

/// Record digests of `data` as a [`RecordSet`] with its root filled in.
pub(crate) fn record_set<D: StreamDigest>(
    data: &[u8],
    f: RecordFormat,
    id_field: &str,
) -> std::result::Result<RecordSet, String> {
    Ok(record_set_of::<D>(
        record_digests::<D>(data, f, id_field)?,
        id_field,
    ))
}

/// `r` as a [`RecordSet`] with its root filled in.
fn record_set_of<D: StreamDigest>(r: RecordDigests, id_field: &str) -> RecordSet {
    let root = merkle_root::<D>(&r.leaves);
    let mut rs = RecordSet::from_digests(r, id_field);
    rs.root = hex::encode(root);
    rs
}

/// A file's bytes: memory-mapped when large (no copy, bounded heap for
/// files of any size), read when small (a map costs more than a read there).
pub(crate) enum FileBytes {
    /// A read-only memory map.
    Map(memmap2::Mmap),
    /// A small file read into memory.
    Owned(Vec<u8>),
}

/// Files below this size are read rather than mapped.
const MMAP_MIN: u64 = 64 * 1024;

impl FileBytes {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
        if len < MMAP_MIN {
            let mut v = Vec::with_capacity(len as usize);
            f.read_to_end(&mut v).map_err(|e| Error::io(path, e))?;
            return Ok(FileBytes::Owned(v));
        }
        map(&f, len <= POPULATE_MAX)
            .map(FileBytes::Map)
            .map_err(|e| Error::io(path, e))
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            FileBytes::Map(m) => m,
            FileBytes::Owned(v) => v,
        }
    }
}

/// Files up to this size are mapped with all their pages at once (one
/// system call instead of a page fault per few pages); larger ones are
/// faulted in as they are hashed, so that a file larger than memory is not
/// read in full before hashing starts.
const POPULATE_MAX: u64 = 1 << 30;

/// The one `unsafe` block of the crate outside the vector code.
#[allow(unsafe_code)]
fn map(f: &File, populate: bool) -> std::io::Result<memmap2::Mmap> {
    let mut opts = memmap2::MmapOptions::new();
    if populate {
        opts.populate();
    }
    // SAFETY: the map is read-only and private to this process. If another
    // process truncates the file while it is mapped, reading the lost pages
    // raises SIGBUS (the process dies; no wrong digest is ever produced).
    // Modifying it in place changes the bytes being hashed, exactly as a
    // concurrent write would with read(2); the digest then mismatches.
    unsafe { opts.map(f) }
}

fn check_lineage(l: &Lineage) -> std::result::Result<(), String> {
    if l.step.trim().is_empty() {
        return Err("lineage step is empty".into());
    }
    for p in &l.parents {
        if p.is_empty() || hex::decode(p).is_err() {
            return Err(format!("lineage parent {p:?} is not a hex digest"));
        }
    }
    Ok(())
}

impl Manifest {
    /// Parse and check a manifest from JSON bytes. Never panics, whatever
    /// the bytes; errors name the field at fault.
    pub fn from_json_slice(bytes: &[u8]) -> Result<Self> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| json_error(None, &e))?;
        m.validate()?;
        Ok(m)
    }

    /// Check a manifest built or deserialized by other means: schema, path
    /// safety, no duplicate paths, digest lengths, and that every root
    /// matches what it summarises.
    pub fn validate(&self) -> Result<()> {
        let err =
            |field: String, msg: String| Error::parse(Location::default().at_field(field), msg);
        if self.schema != MANIFEST_SCHEMA {
            return Err(err(
                "schema".into(),
                format!("expected {MANIFEST_SCHEMA:?}, got {:?}", self.schema),
            ));
        }
        let w = self.algorithm.output_len();
        let mut seen = BTreeSet::new();
        for (i, f) in self.files.iter().enumerate() {
            check_rel_path(&f.path).map_err(|m| err(format!("files[{i}].path"), m))?;
            if !seen.insert(f.path.as_str()) {
                return Err(err(
                    format!("files[{i}].path"),
                    format!("duplicate entry {:?}", f.path),
                ));
            }
            check_hex(&f.digest, w).map_err(|m| err(format!("files[{i}].digest"), m))?;
            if let Some(r) = &f.records {
                let field = |s: &str| format!("files[{i}].records.{s}");
                let n = usize::try_from(r.count)
                    .map_err(|_| err(field("count"), "too large".into()))?;
                if r.leaves.len() != n.saturating_mul(w) || n.checked_mul(w).is_none() {
                    return Err(err(
                        field("leaves"),
                        format!("{} bytes of leaves for {n} records", r.leaves.len()),
                    ));
                }
                if !r.ids.is_empty() && r.ids.len() != n {
                    return Err(err(
                        field("ids"),
                        format!("{} ids for {n} records", r.ids.len()),
                    ));
                }
                check_hex(&r.root, w).map_err(|m| err(field("root"), m))?;
                if let Some(h) = &r.header {
                    check_hex(h, w).map_err(|m| err(field("header"), m))?;
                }
                let root = with_digest!(self.algorithm, D => merkle_root::<D>(&r.leaves));
                if hex::encode(root) != r.root {
                    return Err(err(
                        field("root"),
                        "does not match the record leaves".into(),
                    ));
                }
            }
        }
        for (i, x) in self.exclude.iter().enumerate() {
            check_rel_path(x).map_err(|m| err(format!("exclude[{i}]"), m))?;
            if seen.contains(x.as_str()) {
                return Err(err(
                    format!("exclude[{i}]"),
                    format!("{x:?} is both a file entry and excluded"),
                ));
            }
        }
        if self.files.windows(2).any(|p| p[0].path > p[1].path) {
            return Err(err("files".into(), "entries are not sorted by path".into()));
        }
        check_hex(&self.root, w).map_err(|m| err("root".into(), m))?;
        if hex::encode(self.compute_root()) != self.root {
            return Err(err("root".into(), "does not match the file entries".into()));
        }
        if let Some(l) = &self.lineage {
            check_lineage(l).map_err(|m| err("lineage".into(), m))?;
        }
        Ok(())
    }

    /// The Merkle root over the file entries, as bytes. Each leaf encodes the
    /// path, size, digest and record summary with length prefixes, so no two
    /// different entries encode alike.
    pub fn compute_root(&self) -> Vec<u8> {
        with_digest!(self.algorithm, D => {
            let leaves: Vec<u8> = self.files.iter().flat_map(|f| leaf_hash::<D>(&entry_bytes(f)).to_vec()).collect();
            merkle_root::<D>(&leaves)
        })
    }

    /// Total number of records over record-level entries.
    pub fn record_count(&self) -> u64 {
        self.files
            .iter()
            .filter_map(|f| f.records.as_ref())
            .map(|r| r.count)
            .sum()
    }

    /// The entry for `path`.
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files
            .binary_search_by(|f| f.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.files[i])
    }

    /// Serialize as JSON: pretty for people, except when the manifest lists
    /// more than [`COMPACT_ABOVE`] records, where indentation would be most of
    /// the file (one indented line per record id).
    pub fn to_json_vec(&self) -> Result<Vec<u8>> {
        let r = if self.record_count() > COMPACT_ABOVE {
            self.compact_parts().map(|p| p.concat())
        } else {
            serde_json::to_vec_pretty(self)
        };
        r.map_err(|e| Error::data(format!("serializing manifest: {e}")))
    }

    /// Write to `path` atomically (temp file + rename), formatted as
    /// [`Manifest::to_json_vec`].
    pub fn save(&self, path: &Path) -> Result<()> {
        if self.record_count() > COMPACT_ABOVE {
            // Encoding (on other threads) and writing overlap: the pieces
            // go through a bounded channel, the writer takes them in order.
            return mithridate_core::io::atomic::write_atomic(path, |w| {
                std::thread::scope(|s| {
                    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(IN_FLIGHT);
                    let encoder = s.spawn(move || self.compact_stream(|p| tx.send(p).is_ok()));
                    let written = rx.iter().try_for_each(|p| w.write_all(&p));
                    // A failed write drops the receiver, which stops the encoder.
                    drop(rx);
                    let encoded = encoder
                        .join()
                        .unwrap_or_else(|_| Err(serde::ser::Error::custom("encoder panicked")));
                    written?;
                    encoded.map_err(std::io::Error::other)
                })?;
                w.write_all(b"\n")
            });
        }
        mithridate_core::io::atomic::write_atomic(path, |w| {
            serde_json::to_writer_pretty(&mut *w, self).map_err(std::io::Error::other)?;
            w.write_all(b"\n")
        })
    }

    /// Compact JSON in pieces that, concatenated, are byte for byte what
    /// `serde_json::to_vec` writes. The file entries are serialized in
    /// parallel: in a record-level manifest they are nearly all of the bytes
    /// (leaves and ids); the rest is serialized once, without them, and the
    /// entries go where serde would have put them.
    fn compact_parts(&self) -> serde_json::Result<Vec<Vec<u8>>> {
        let mut parts = Vec::new();
        self.compact_stream(|p| {
            parts.push(p);
            true
        })?;
        Ok(parts)
    }

    /// [`Manifest::compact_parts`] handed to `emit` piece by piece, in
    /// order, as they are encoded, so that a writer can write one group of
    /// entries while the next is encoded. Entries are encoded a group at a
    /// time, the entries of a group and the pieces of each entry in
    /// parallel. Stops early when `emit` returns false.
    fn compact_stream(&self, mut emit: impl FnMut(Vec<u8>) -> bool) -> serde_json::Result<()> {
        let head = Manifest {
            schema: self.schema.clone(),
            algorithm: self.algorithm,
            root: self.root.clone(),
            metadata: self.metadata.clone(),
            lineage: self.lineage.clone(),
            files: Vec::new(),
            exclude: self.exclude.clone(),
        };
        let top = serde_json::to_vec(&head)?;
        // The one unescaped `"files":[` is the field itself: inside a JSON
        // string every quote is escaped.
        const FIELD: &[u8] = b"\"files\":[";
        let Some(at) = top.windows(FIELD.len()).position(|w| w == FIELD) else {
            emit(serde_json::to_vec(self)?);
            return Ok(());
        };
        let cut = at + FIELD.len();
        if !emit(top[..cut].to_vec()) {
            return Ok(());
        }
        let mut rest = &self.files[..];
        let mut first = true;
        while !rest.is_empty() {
            // A group: entries up to GROUP_LEAVES bytes of leaves (at least one).
            let mut n = 0;
            let mut bytes = 0;
            while n < rest.len() && (n == 0 || bytes < GROUP_LEAVES) && n < GROUP_FILES {
                bytes += rest[n].records.as_ref().map_or(0, |r| r.leaves.len());
                n += 1;
            }
            let (group, tail) = rest.split_at(n);
            rest = tail;
            let encoded = group
                .par_iter()
                .map(entry_json)
                .collect::<serde_json::Result<Vec<Vec<Vec<u8>>>>>()?;
            for e in encoded {
                if !first && !emit(b",".to_vec()) {
                    return Ok(());
                }
                first = false;
                for p in e {
                    if !emit(p) {
                        return Ok(());
                    }
                }
            }
        }
        emit(top[cut..].to_vec());
        Ok(())
    }

    /// Read and check a plain manifest file (see [`crate::load_any`] for
    /// files that may be signed envelopes).
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| json_error(Some(path), &e))?;
        m.validate().map_err(|e| relocate(e, path))?;
        Ok(m)
    }
}

/// Put `path` into a location-less parse error.
pub(crate) fn relocate(e: Error, path: &Path) -> Error {
    match e {
        Error::Parse { mut loc, msg } => {
            loc.path = Some(path.to_path_buf());
            Error::Parse { loc, msg }
        }
        other => other,
    }
}

/// A serde_json error as a located parse error.
pub(crate) fn json_error(path: Option<&Path>, e: &serde_json::Error) -> Error {
    let loc = Location {
        path: path.map(Path::to_path_buf),
        line: Some(e.line() as u64),
        field: None,
    };
    Error::parse(loc, format!("column {}: {e}", e.column()))
}

fn check_hex(s: &str, len: usize) -> std::result::Result<(), String> {
    match hex::decode(s) {
        Ok(b) if b.len() == len => Ok(()),
        Ok(b) => Err(format!("digest of {} bytes, expected {len}", b.len())),
        Err(e) => Err(format!("not hex: {e}")),
    }
}

/// `serde_json::to_vec(f)`, byte for byte, in pieces (concatenated, they are
/// the entry; kept apart, they are written without a copy into one buffer),
/// with the record leaves and ids,
/// nearly all of a record-level entry, encoded directly and in parallel:
/// through serde, base64 goes through the `fmt` machinery a few bytes at a
/// time and every id through the generic string serializer, which made
/// writing a manifest cost as much as hashing the records.
///
/// The rest of the entry is serialized by serde with empty leaves and no
/// ids, and the encoded leaves and ids are put where serde writes the empty
/// leaves (the one unescaped `"leaves":""`: inside a JSON string every quote
/// is escaped; `ids`, when present, is the field right after it).
fn entry_json(f: &FileEntry) -> serde_json::Result<Vec<Vec<u8>>> {
    use base64::Engine;
    let Some(r) = &f.records else {
        return Ok(vec![serde_json::to_vec(f)?]);
    };
    let shell = FileEntry {
        path: f.path.clone(),
        size: f.size,
        digest: f.digest.clone(),
        records: Some(RecordSet {
            format: r.format,
            count: r.count,
            root: r.root.clone(),
            header: r.header.clone(),
            id_field: r.id_field.clone(),
            leaves: Vec::new(),
            ids: RecordIds::default(),
        }),
    };
    let top = serde_json::to_vec(&shell)?;
    const FIELD: &[u8] = b"\"leaves\":\"\"";
    let Some(at) = top.windows(FIELD.len()).position(|w| w == FIELD) else {
        return Ok(vec![serde_json::to_vec(f)?]);
    };
    let cut = at + FIELD.len() - 1;
    // Whole groups of 3 bytes encode to 4 characters with no padding, so
    // pieces of a multiple of 3 bytes encode independently and concatenate
    // to the encoding of the whole.
    // Pieces of 1.5 MiB: larger than the writer's buffer, so each goes to
    // the file without another copy.
    const PIECE: usize = 3 * 32 * 16384;
    let b64 = || -> Vec<Vec<u8>> {
        r.leaves
            .par_chunks(PIECE)
            .map(|c| {
                base64::engine::general_purpose::STANDARD
                    .encode(c)
                    .into_bytes()
            })
            .collect()
    };
    let ids = || -> Vec<Vec<u8>> {
        if r.ids.is_empty() {
            return Vec::new();
        }
        let n = r.ids.len();
        (0..n.div_ceil(IDS_PER_TASK))
            .into_par_iter()
            .map(|t| {
                let range = t * IDS_PER_TASK..((t + 1) * IDS_PER_TASK).min(n);
                let mut v = Vec::with_capacity(range.len() * 16);
                r.ids.write_json(range, &mut v);
                v
            })
            .collect()
    };
    let (b64, ids) = rayon::join(b64, ids);
    let mut out = Vec::with_capacity(b64.len() + ids.len() + 3);
    out.push(top[..cut].to_vec());
    out.extend(b64);
    if r.ids.is_empty() {
        out.push(b"\"".to_vec());
    } else {
        out.push(b"\",\"ids\":[".to_vec());
        out.extend(ids);
        out.push(b"]".to_vec());
    }
    out.push(top[cut + 1..].to_vec());
    Ok(out)
}

/// Bytes of record leaves per group of entries encoded together when saving.
const GROUP_LEAVES: usize = 16 << 20;

/// Most entries encoded together when saving.
const GROUP_FILES: usize = 256;

/// Encoded pieces waiting to be written when saving (each at most ~2 MiB,
/// or one small entry).
const IN_FLIGHT: usize = 32;

/// Record ids serialized per parallel task.
const IDS_PER_TASK: usize = 1 << 17;

fn entry_bytes(f: &FileEntry) -> Vec<u8> {
    let mut v = Vec::with_capacity(f.path.len() + 128);
    v.extend_from_slice(&(f.path.len() as u64).to_le_bytes());
    v.extend_from_slice(f.path.as_bytes());
    v.extend_from_slice(&f.size.to_le_bytes());
    v.extend_from_slice(f.digest.as_bytes());
    match &f.records {
        None => v.push(0),
        Some(r) => {
            v.push(1);
            v.extend_from_slice(&r.count.to_le_bytes());
            v.extend_from_slice(r.root.as_bytes());
            v.extend_from_slice(r.header.as_deref().unwrap_or("-").as_bytes());
        }
    }
    v
}

/// Base64 (standard alphabet) for byte fields in JSON.
mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Streamed into the output: no base64 copy of the leaves is held.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&base64::display::Base64Display::new(
            v,
            &base64::engine::general_purpose::STANDARD,
        ))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(records: bool, alg: Algorithm) -> (tempfile::TempDir, Manifest) {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("shards")).unwrap();
        std::fs::write(d.path().join("shards/a.jsonl"), b"{\"id\":1}\n{\"id\":2}\n").unwrap();
        std::fs::write(d.path().join("b.csv"), b"id,x\nr1,1\nr2,2\n").unwrap();
        std::fs::write(d.path().join("README"), b"hello").unwrap();
        let m = create_manifest(
            d.path(),
            &CreateOptions {
                records,
                algorithm: alg,
                ..Default::default()
            },
        )
        .unwrap();
        (d, m)
    }

    #[test]
    fn create_then_round_trip() {
        for alg in [Algorithm::Blake3, Algorithm::Sha256] {
            let (d, m) = sample(true, alg);
            assert_eq!(
                m.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
                ["README", "b.csv", "shards/a.jsonl"]
            );
            assert_eq!(m.record_count(), 4);
            assert!(m.file("README").unwrap().records.is_none());
            let p = d.path().join("m.json");
            m.save(&p).unwrap();
            assert_eq!(Manifest::load(&p).unwrap(), m);
        }
    }

    #[test]
    fn compact_parts_are_serde_json() {
        let (_d, mut m) = sample(true, Algorithm::Blake3);
        m.metadata.notes = Some("a \"files\":[] note".into());
        m.lineage = Some(Lineage {
            parents: vec![hex::encode([1u8; 32])],
            step: "dedup".into(),
        });
        assert_eq!(
            m.compact_parts().unwrap().concat(),
            serde_json::to_vec(&m).unwrap()
        );
        m.files.clear();
        assert_eq!(
            m.compact_parts().unwrap().concat(),
            serde_json::to_vec(&m).unwrap()
        );
    }

    fn entry(leaves: Vec<u8>, ids: RecordIds, id_field: Option<String>) -> FileEntry {
        FileEntry {
            path: "dir/\"odd\" \\ name\n.jsonl".into(),
            size: 12,
            digest: hex::encode([2u8; 32]),
            records: Some(RecordSet {
                format: RecordFormat::Jsonl,
                count: ids.len() as u64,
                root: hex::encode([3u8; 32]),
                header: None,
                id_field,
                leaves,
                ids,
            }),
        }
    }

    #[test]
    fn entry_json_is_serde_json_across_parallel_pieces() {
        // More leaves and ids than one parallel piece holds, and a length
        // that is not a whole number of base64 groups.
        let n = 3 * 16384 * 3 + 7;
        let leaves: Vec<u8> = (0..n * 32 + 1).map(|i| (i * 31 % 251) as u8).collect();
        let ids: RecordIds = (0..IDS_PER_TASK * 2 + 5)
            .map(|i| (i % 5 != 0).then(|| format!("r{i}")))
            .collect();
        let e = entry(leaves, ids, Some("id".into()));
        assert_eq!(
            entry_json(&e).unwrap().concat(),
            serde_json::to_vec(&e).unwrap()
        );
        let none = FileEntry { records: None, ..e };
        assert_eq!(
            entry_json(&none).unwrap().concat(),
            serde_json::to_vec(&none).unwrap()
        );
    }

    #[test]
    fn saved_compact_manifest_is_serde_json() {
        // More files than one encoding group and more records than
        // COMPACT_ABOVE, so that saving streams several groups.
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("data");
        std::fs::create_dir(&data).unwrap();
        for f in 0..GROUP_FILES + 20 {
            let text: String = (0..40)
                .map(|i| format!("{{\"id\":\"f{f}-{i}\",\"x\":{i}}}\n"))
                .collect();
            std::fs::write(data.join(format!("{f:04}.jsonl")), text).unwrap();
        }
        let m = create_manifest(
            &data,
            &CreateOptions {
                records: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(m.record_count() > COMPACT_ABOVE);
        let p = d.path().join("m.json");
        m.save(&p).unwrap();
        let mut want = serde_json::to_vec(&m).unwrap();
        want.push(b'\n');
        assert_eq!(std::fs::read(&p).unwrap(), want);
        assert_eq!(m.to_json_vec().unwrap(), want[..want.len() - 1]);
        assert_eq!(Manifest::load(&p).unwrap(), m);
    }

    #[test]
    fn root_depends_on_content_not_metadata() {
        let (d, m) = sample(false, Algorithm::Blake3);
        let opts = CreateOptions {
            metadata: Metadata {
                source: Some("s3://x".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let m2 = create_manifest(d.path(), &opts).unwrap();
        assert_eq!(m.root, m2.root);
        std::fs::write(d.path().join("README"), b"hellO").unwrap();
        assert_ne!(create_manifest(d.path(), &opts).unwrap().root, m.root);
    }

    #[test]
    fn load_refuses_unsafe_or_inconsistent_manifests() {
        let (_d, m) = sample(true, Algorithm::Blake3);
        type Edit = Box<dyn Fn(&mut Manifest)>;
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|m| m.files[0].path = "../etc/passwd".into()),
                "traversal",
            ),
            (
                Box::new(|m| m.files[0].path = "/etc/passwd".into()),
                "absolute",
            ),
            (Box::new(|m| m.files[1] = m.files[0].clone()), "duplicate"),
            (
                Box::new(|m| m.files[0].digest = "00".into()),
                "digest of 1 bytes",
            ),
            (
                Box::new(|m| m.root = hex::encode([7u8; 32])),
                "does not match the file entries",
            ),
            (
                Box::new(|m| m.files[2].records.as_mut().unwrap().leaves[0] ^= 1),
                "does not match the record leaves",
            ),
            (Box::new(|m| m.schema = "x".into()), "schema"),
        ];
        for (edit, want) in cases {
            let mut bad = m.clone();
            edit(&mut bad);
            let bytes = serde_json::to_vec(&bad).unwrap();
            let e = Manifest::from_json_slice(&bytes).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn from_json_slice_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Manifest::from_json_slice(&bytes);
        }

        #[test]
        fn entry_json_is_serde_json(
            leaves in proptest::collection::vec(any::<u8>(), 0..200),
            ids in proptest::collection::vec(proptest::option::of(any::<String>()), 0..30),
            field in proptest::option::of("[a-z\"\\\\]{0,4}"),
        ) {
            let ids: RecordIds = ids.into_iter().collect();
            let e = entry(leaves, ids, field);
            prop_assert_eq!(entry_json(&e).unwrap().concat(), serde_json::to_vec(&e).unwrap());
        }

        #[test]
        fn from_json_slice_never_panics_on_mutated_manifests(pos in 0usize..2000, byte in any::<u8>()) {
            let m = Manifest {
                schema: MANIFEST_SCHEMA.into(), algorithm: Algorithm::Blake3, root: hex::encode([1u8; 32]),
                metadata: Metadata::default(), lineage: None, exclude: vec![],
                files: vec![FileEntry { path: "a.jsonl".into(), size: 3, digest: hex::encode([2u8; 32]),
                    records: Some(RecordSet { format: RecordFormat::Jsonl, count: 1, root: hex::encode([3u8; 32]),
                        header: None, id_field: None, leaves: vec![4u8; 32], ids: RecordIds::default() }) }],
            };
            let mut bytes = serde_json::to_vec(&m).unwrap();
            let i = pos % bytes.len();
            bytes[i] = byte;
            let _ = Manifest::from_json_slice(&bytes);
        }
    }
}
