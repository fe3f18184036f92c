//! Record digests and the holdout manifest.
//!
//! A holdout set proves it never touched training only if its records can be
//! compared with the training records without trusting ids or file names: ids
//! are reassigned by every reader and a leaked record is usually a copy. So
//! each record is reduced to a BLAKE3 digest of a canonical encoding of its
//! *inputs* (features and text fields, not the label nor the id): a copy of a
//! holdout image relabelled in the training set is still an overlap.
//!
//! The digests are computed here rather than taken from the provenance layer
//! because layers do not depend on one another; the encoding is versioned
//! (`mithridate-record-v1`) so a manifest says which one it used.

use std::collections::HashSet;
use std::path::Path;

use mithridate_core::{Dataset, Error, Result};
use serde::{Deserialize, Serialize};

/// A 32-byte BLAKE3 record digest.
pub type Digest = [u8; 32];

/// The name of the canonical record encoding, stored in manifests.
pub const ENCODING: &str = "mithridate-record-v1";

/// The canonical bytes of record `i` of `ds`: features as little-endian `f32`
/// (with `-0.0` written as `0.0` and every NaN as one NaN, so equal values
/// give equal bytes), then text fields in name order, each length-prefixed.
pub fn canonical_bytes(ds: &Dataset, i: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + ds.n_features() * 4);
    out.extend_from_slice(ENCODING.as_bytes());
    out.push(0);
    if let Some(x) = ds.features.as_ref() {
        if i < x.nrows() {
            out.push(b'F');
            out.extend_from_slice(&(x.ncols() as u64).to_le_bytes());
            for &v in x.row(i) {
                let v = if v == 0.0 {
                    0.0f32
                } else if v.is_nan() {
                    f32::NAN
                } else {
                    v
                };
                out.extend_from_slice(&v.to_bits().to_le_bytes());
            }
        }
    }
    for (name, col) in &ds.text_fields {
        if let Some(t) = col.get(i) {
            out.push(b'T');
            out.extend_from_slice(&(name.len() as u64).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(t.len() as u64).to_le_bytes());
            out.extend_from_slice(t.as_bytes());
        }
    }
    out
}

/// The digest of record `i` of `ds`.
pub fn record_digest(ds: &Dataset, i: usize) -> Digest {
    *blake3::hash(&canonical_bytes(ds, i)).as_bytes()
}

/// Digests of every record of `ds`, in order.
pub fn record_digests(ds: &Dataset) -> Vec<Digest> {
    (0..ds.len()).map(|i| record_digest(ds, i)).collect()
}

/// Merkle root over `leaves` in order: leaves hashed with prefix `0`, inner
/// nodes with prefix `1`, an odd node promoted unchanged. The prefixes keep a
/// leaf from being passed off as an inner node (second-preimage resistance).
pub fn merkle_root(leaves: &[Digest]) -> Digest {
    if leaves.is_empty() {
        return *blake3::hash(b"\x00").as_bytes();
    }
    let mut level: Vec<Digest> = leaves
        .iter()
        .map(|l| {
            let mut h = blake3::Hasher::new();
            h.update(&[0]);
            h.update(l);
            *h.finalize().as_bytes()
        })
        .collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [a, b] => {
                    let mut h = blake3::Hasher::new();
                    h.update(&[1]);
                    h.update(a);
                    h.update(b);
                    *h.finalize().as_bytes()
                }
                [a] => *a,
                _ => unreachable_pair(),
            })
            .collect();
    }
    level[0]
}

// `chunks(2)` yields one or two items; this keeps the match total without a panic path.
fn unreachable_pair() -> Digest {
    [0; 32]
}

/// What is recorded about a holdout set when it is frozen: its size, the
/// Merkle root of its record digests and the digests themselves, so a later
/// run can prove it evaluated on the same records and that none of them is
/// in the training data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldoutManifest {
    /// Record encoding (see [`ENCODING`]).
    pub encoding: String,
    /// Number of records.
    pub records: usize,
    /// Hex Merkle root of the record digests in order.
    pub root: String,
    /// Hex record digests in order.
    pub digests: Vec<String>,
}

impl HoldoutManifest {
    /// The manifest of `holdout`.
    pub fn of(holdout: &Dataset) -> Self {
        let d = record_digests(holdout);
        Self {
            encoding: ENCODING.into(),
            records: d.len(),
            root: hex::encode(merkle_root(&d)),
            digests: d.iter().map(hex::encode).collect(),
        }
    }

    /// Parse from JSON text; `what` names the source in errors.
    pub fn from_json(text: &str, what: &Path) -> Result<Self> {
        let m: Self = serde_json::from_str(text).map_err(|e| {
            Error::parse(
                mithridate_core::Location::file(what).at_line(e.line() as u64),
                format!("holdout manifest: {e}"),
            )
        })?;
        if m.encoding != ENCODING {
            return Err(Error::parse(
                mithridate_core::Location::file(what).at_field("encoding"),
                format!(
                    "unknown record encoding `{}` (this version reads `{ENCODING}`)",
                    m.encoding
                ),
            ));
        }
        if m.digests.len() != m.records {
            return Err(Error::parse(
                mithridate_core::Location::file(what).at_field("digests"),
                format!("{} digests for {} records", m.digests.len(), m.records),
            ));
        }
        for (i, d) in m.digests.iter().enumerate() {
            parse_digest(d).map_err(|msg| {
                Error::parse(
                    mithridate_core::Location::file(what).at_field(format!("digests[{i}]")),
                    msg,
                )
            })?;
        }
        Ok(m)
    }

    /// Check that `holdout` is the set this manifest recorded. The error
    /// message says how many records differ.
    pub fn verify(&self, holdout: &Dataset) -> std::result::Result<(), String> {
        let now = Self::of(holdout);
        if now.root == self.root {
            return Ok(());
        }
        let before: HashSet<&String> = self.digests.iter().collect();
        let after: HashSet<&String> = now.digests.iter().collect();
        let added = after.difference(&before).count();
        let removed = before.difference(&after).count();
        Err(format!(
            "holdout root {} differs from the recorded {} ({added} records not in the manifest, {removed} recorded records missing)",
            short(&now.root),
            short(&self.root)
        ))
    }
}

fn short(h: &str) -> &str {
    h.get(..16).unwrap_or(h)
}

/// Parse one 64-hex-digit digest.
pub fn parse_digest(s: &str) -> std::result::Result<Digest, String> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut out)
        .map_err(|e| format!("not a 64-hex-digit digest ({e}): {s:?}"))?;
    Ok(out)
}

/// Indices of records of `holdout` whose digest is in `training`.
pub fn overlap(holdout: &[Digest], training: &HashSet<Digest>) -> Vec<usize> {
    holdout
        .iter()
        .enumerate()
        .filter(|(_, d)| training.contains(*d))
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mithridate_core::datasets::digits;
    use proptest::prelude::*;

    #[test]
    fn relabelled_copy_is_an_overlap_and_ids_do_not_matter() {
        let ds = digits();
        let mut copy = ds.select(&[5]).unwrap();
        copy.labels = Some(vec![9]);
        copy.ids = vec!["other".into()];
        assert_eq!(record_digest(&ds, 5), record_digest(&copy, 0));
        assert_ne!(record_digest(&ds, 5), record_digest(&ds, 6));
    }

    #[test]
    fn manifest_round_trips_and_detects_change() {
        let ds = digits().select(&(0..50).collect::<Vec<_>>()).unwrap();
        let m = HoldoutManifest::of(&ds);
        let text = serde_json::to_string(&m).unwrap();
        let back = HoldoutManifest::from_json(&text, Path::new("m.json")).unwrap();
        assert_eq!(back, m);
        assert!(m.verify(&ds).is_ok());
        let mut changed = ds.clone();
        changed.features.as_mut().unwrap()[[3, 3]] += 1.0;
        let msg = m.verify(&changed).unwrap_err();
        assert!(msg.contains("1 records not in the manifest"), "{msg}");
    }

    #[test]
    fn bad_manifests_name_the_field() {
        let e = HoldoutManifest::from_json(
            r#"{"encoding":"x","records":0,"root":"","digests":[]}"#,
            Path::new("h.json"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("field `encoding`"), "{e}");
        let e = HoldoutManifest::from_json(
            &format!(r#"{{"encoding":"{ENCODING}","records":1,"root":"","digests":["zz"]}}"#),
            Path::new("h.json"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("digests[0]"), "{e}");
    }

    proptest! {
        #[test]
        fn manifest_parser_never_panics(s in ".{0,200}") {
            let _ = HoldoutManifest::from_json(&s, Path::new("p.json"));
        }

        #[test]
        fn merkle_root_depends_on_every_leaf(n in 1usize..40, k in 0usize..40, b in 0usize..32) {
            let leaves: Vec<Digest> = (0..n).map(|i| *blake3::hash(&i.to_le_bytes()).as_bytes()).collect();
            let mut other = leaves.clone();
            other[k % n][b] ^= 1;
            prop_assert_ne!(merkle_root(&leaves), merkle_root(&other));
        }
    }
}
