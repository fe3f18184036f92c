//! # mithridate-provenance
//!
//! Layer 1 of mithridate: know exactly what you train on.
//!
//! - [`create_manifest`] hashes a dataset directory into a [`Manifest`]: each
//!   file's digest and size and, with [`CreateOptions::records`], a digest per
//!   record (JSONL line, CSV row, NPY row) folded into a Merkle tree, plus
//!   metadata (source, revision, collector, date, licence) and [`Lineage`].
//! - [`sign_manifest`] wraps it as an in-toto Statement v1 in a DSSE
//!   [`Envelope`] signed with Ed25519 ([`keys`]); [`verify_envelope`] checks it
//!   against trusted keys.
//! - [`verify_manifest`] compares the data on disk with a manifest and names
//!   every changed, added or removed file and every changed, inserted,
//!   deleted or moved record; [`diff_manifests`] does the same for two
//!   manifests; [`LineageGraph`] draws how datasets derive from each other.
//! - [`create_shard_manifest`] / [`manifest_from_bytes`] hash one shard of a
//!   dataset anywhere; [`merge_manifests`] joins the shards into the manifest
//!   (and root) a single machine would have made.
//! - [`VerifyDefense`] runs verification as a pipeline [`mithridate_core::Defense`].
//!
//! Hashing is generic over [`StreamDigest`] (a RustCrypto `Digest`), BLAKE3 by
//! default, SHA-256 on request; files are memory-mapped and hashed in
//! parallel; symlinks never lead outside the dataset root and manifests with
//! absolute, `..` or duplicate paths are refused.
//!
//! ```
//! use mithridate_provenance::{create_manifest, verify_manifest, CreateOptions};
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("train.jsonl"), "{\"id\":1,\"text\":\"a\"}\n{\"id\":2,\"text\":\"b\"}\n")?;
//! let m = create_manifest(dir.path(), &CreateOptions { records: true, ..Default::default() })?;
//! assert!(verify_manifest(dir.path(), &m)?.ok());
//!
//! std::fs::write(dir.path().join("train.jsonl"), "{\"id\":1,\"text\":\"a\"}\n{\"id\":2,\"text\":\"B\"}\n")?;
//! let out = verify_manifest(dir.path(), &m)?;
//! assert_eq!(out.changes[0].records[0].to_string(), "record 1 (id 2) changed");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod defense;
pub mod diff;
pub mod envelope;
pub mod hash;
pub mod keys;
mod lanes;
pub mod lineage;
pub mod manifest;
pub mod model_signing;
pub mod records;
pub mod shard;
pub mod verify;
mod walk;

pub use defense::VerifyDefense;
pub use diff::{
    align, diff_manifests, diff_records, FileChange, FileChangeKind, FileFacts, Op, RecordChange,
    RecordChangeKind,
};
pub use envelope::{
    from_json_slice_any, load_any, load_trusted, pae, sign_manifest, verify_envelope, Envelope,
    Loaded, Signature, Statement, Subject, Verified, PAYLOAD_TYPE, PREDICATE_TYPE, STATEMENT_TYPE,
};
pub use hash::{merkle_root, Algorithm, Blake3, StreamDigest};
pub use keys::{
    generate_keypair, parse_private_pem, parse_public_pem, write_keypair, KeyPaths, SigningKey,
    VerifyingKey,
};
pub use lineage::LineageGraph;
pub use manifest::{
    create_manifest, CreateOptions, FileEntry, Lineage, Manifest, Metadata, RecordSet,
    DEFAULT_ID_FIELD, MANIFEST_SCHEMA,
};
pub use records::{RecordFormat, RecordIds};
pub use shard::{create_shard_manifest, manifest_from_bytes, merge_manifests, MergeOptions};
pub use verify::{verify_manifest, verify_manifest_with, VerifyOptions, VerifyOutcome};
pub use walk::check_rel_path;
