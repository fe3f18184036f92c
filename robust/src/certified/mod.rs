//! Certified defense against training-set poisoning: Deep Partition
//! Aggregation (DPA; Levine & Feizi, "Deep Partition Aggregation: Provable
//! Defenses against General Poisoning Attacks", ICLR 2021).
//!
//! The training set is split into `k` disjoint partitions by a hash of each
//! sample's content (its features, or its text), one base model is trained
//! per partition, and a prediction is the plurality vote of the base models,
//! ties going to the lower class. Because a sample's partition depends only
//! on its own content, inserting or deleting one training sample changes one
//! partition and so at most one vote; a vote moving from the winner to the
//! runner-up closes the gap by two. Hence every prediction carries a
//! certificate
//!
//! ```text
//! r = floor((n_top - max_{c != top} (n_c + [c < top])) / 2)
//! ```
//!
//! (the `[c < top]` term is the tie-break: a lower class wins a tie, so it
//! needs one vote less): no poisoning of at most `r` training samples, by
//! insertion or deletion, can change that prediction. A change that keeps a
//! sample's features (a label flip) stays in its partition and counts once;
//! a change of features moves the sample and counts as a deletion plus an
//! insertion.
//!
//! ```
//! use mithridate_core::{datasets::digits, model::SoftmaxTrainer};
//! use mithridate_robust::certified::Dpa;
//! let ds = digits();
//! let small = ds.select(&(0..400).collect::<Vec<_>>())?;
//! let trainer = SoftmaxTrainer { params: mithridate_core::model::SoftmaxParams { epochs: 5, ..Default::default() } };
//! let dpa = Dpa::fit(&small, 5, &trainer, 7)?;
//! let x = ds.features.as_ref().expect("features");
//! let preds = dpa.certify(x.slice(ndarray::s![1700.., ..]));
//! assert!(preds.iter().all(|p| p.certificate <= 2));
//! # Ok::<(), mithridate_core::Error>(())
//! ```

mod defense;

use mithridate_core::model::{check_xy, Classifier, Trainer};
use mithridate_core::rng::derive_seed;
use mithridate_core::{Dataset, Error, Result};
use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use defense::CertifiedTrainDefense;

/// 32-byte BLAKE3 digest of a sample's content: its feature values (as
/// little-endian `f32` bits) and its text fields (name and text, length
/// prefixed, in name order). Neither the id nor the label is hashed, so the
/// assignment is stable under insertion and deletion of other samples and
/// under relabelling.
pub fn content_digest(features: Option<&[f32]>, texts: &[(&str, &str)]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    if let Some(f) = features {
        h.update(b"f");
        h.update(&(f.len() as u64).to_le_bytes());
        for v in f {
            h.update(&v.to_le_bytes());
        }
    }
    for (name, text) in texts {
        h.update(b"t");
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(&(text.len() as u64).to_le_bytes());
        h.update(text.as_bytes());
    }
    *h.finalize().as_bytes()
}

/// Partition of a sample with digest `digest` among `k` partitions.
pub fn partition_of(digest: &[u8; 32], k: usize) -> usize {
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    (u64::from_le_bytes(b) % k.max(1) as u64) as usize
}

/// One prediction with its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certified {
    /// The plurality class (ties to the lower class).
    pub label: u32,
    /// Votes for it.
    pub votes: u32,
    /// Inserted or deleted training samples that provably cannot change it.
    pub certificate: u32,
}

/// The plurality class of `votes` (lower class wins ties) and its DPA
/// certificate `floor((n_top - max_{c != top}(n_c + [c < top])) / 2)`.
pub fn certify_votes(votes: &[u32]) -> Certified {
    let mut top = 0usize;
    for (c, &v) in votes.iter().enumerate() {
        if v > votes[top] {
            top = c;
        }
    }
    let n_top = votes.get(top).copied().unwrap_or(0);
    let runner = votes
        .iter()
        .enumerate()
        .filter(|&(c, _)| c != top)
        .map(|(c, &v)| v + u32::from(c < top))
        .max()
        .unwrap_or(0);
    Certified {
        label: top as u32,
        votes: n_top,
        certificate: n_top.saturating_sub(runner) / 2,
    }
}

/// A DPA ensemble: one base classifier per partition (`None` for a partition
/// that received no sample: it abstains).
pub struct Dpa {
    models: Vec<Option<Box<dyn Classifier>>>,
    sizes: Vec<usize>,
    n_features: usize,
    n_classes: usize,
}

impl std::fmt::Debug for Dpa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dpa")
            .field("partitions", &self.models.len())
            .field("sizes", &self.sizes)
            .field("n_features", &self.n_features)
            .field("n_classes", &self.n_classes)
            .finish()
    }
}

/// Samples of each of `k` partitions, each sorted by (digest, label) so that a
/// partition's training order depends only on its own contents.
pub fn partition_indices(digests: &[[u8; 32]], labels: &[u32], k: usize) -> Vec<Vec<usize>> {
    let mut parts = vec![Vec::new(); k];
    for (i, d) in digests.iter().enumerate() {
        parts[partition_of(d, k)].push(i);
    }
    for p in &mut parts {
        p.sort_by(|&a, &b| digests[a].cmp(&digests[b]).then(labels[a].cmp(&labels[b])));
    }
    parts
}

impl Dpa {
    /// Train on a dataset with features and labels (partitioned by the hash of
    /// each sample's features and text).
    pub fn fit(ds: &Dataset, partitions: usize, trainer: &dyn Trainer, seed: u64) -> Result<Self> {
        let x = ds.require_features("DPA")?;
        let y = ds.require_labels("DPA")?;
        let texts: Vec<(&String, &Vec<String>)> = ds.text_fields.iter().collect();
        let digests: Vec<[u8; 32]> = (0..ds.len())
            .map(|i| {
                let row = x.row(i);
                let owned;
                let f = match row.as_slice() {
                    Some(s) => s,
                    None => {
                        owned = row.to_vec();
                        &owned[..]
                    }
                };
                let t: Vec<(&str, &str)> = texts
                    .iter()
                    .map(|(k, v)| (k.as_str(), v[i].as_str()))
                    .collect();
                content_digest(Some(f), &t)
            })
            .collect();
        Self::fit_digests(
            x.view(),
            y,
            ds.n_classes(),
            &digests,
            partitions,
            trainer,
            seed,
        )
    }

    /// Train on features `x` and labels `y`, partitioning by the features' digest.
    pub fn fit_xy(
        x: ArrayView2<'_, f32>,
        y: &[u32],
        n_classes: usize,
        partitions: usize,
        trainer: &dyn Trainer,
        seed: u64,
    ) -> Result<Self> {
        let digests: Vec<[u8; 32]> = x
            .rows()
            .into_iter()
            .map(|r| content_digest(Some(&r.to_vec()), &[]))
            .collect();
        Self::fit_digests(x, y, n_classes, &digests, partitions, trainer, seed)
    }

    fn fit_digests(
        x: ArrayView2<'_, f32>,
        y: &[u32],
        n_classes: usize,
        digests: &[[u8; 32]],
        partitions: usize,
        trainer: &dyn Trainer,
        seed: u64,
    ) -> Result<Self> {
        if partitions == 0 {
            return Err(Error::param("partitions", "must be at least 1"));
        }
        check_xy(x, y, n_classes)?;
        let parts = partition_indices(digests, y, partitions);
        let models: Vec<Option<Box<dyn Classifier>>> = parts
            .par_iter()
            .enumerate()
            .map(|(p, idx)| {
                if idx.is_empty() {
                    return Ok(None);
                }
                let xp = x.select(Axis(0), idx);
                let yp: Vec<u32> = idx.iter().map(|&i| y[i]).collect();
                trainer
                    .fit(
                        xp.view(),
                        &yp,
                        n_classes,
                        derive_seed(seed, &format!("dpa-partition-{p}")),
                    )
                    .map(Some)
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            models,
            sizes: parts.iter().map(Vec::len).collect(),
            n_features: x.ncols(),
            n_classes,
        })
    }

    /// Number of partitions `k`.
    pub fn partitions(&self) -> usize {
        self.models.len()
    }

    /// Training samples per partition.
    pub fn partition_sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// Votes per class, `n x n_classes` (abstaining partitions vote for nothing).
    pub fn votes(&self, x: ArrayView2<'_, f32>) -> Array2<u32> {
        let mut v = Array2::<u32>::zeros((x.nrows(), self.n_classes));
        let preds: Vec<Vec<u32>> = self
            .models
            .par_iter()
            .flatten()
            .map(|m| m.predict(x))
            .collect();
        for p in preds {
            for (i, &c) in p.iter().enumerate() {
                if (c as usize) < self.n_classes {
                    v[[i, c as usize]] += 1;
                }
            }
        }
        v
    }

    /// Prediction and certificate for every row of `x`.
    pub fn certify(&self, x: ArrayView2<'_, f32>) -> Vec<Certified> {
        self.votes(x)
            .rows()
            .into_iter()
            .map(|r| certify_votes(&r.to_vec()))
            .collect()
    }
}

impl Classifier for Dpa {
    fn n_features(&self) -> usize {
        self.n_features
    }
    fn n_classes(&self) -> usize {
        self.n_classes
    }
    /// Vote shares: votes for each class over the number of partitions.
    fn predict_proba(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        let k = self.models.len().max(1) as f32;
        self.votes(x).mapv(|v| v as f32 / k)
    }
    fn predict(&self, x: ArrayView2<'_, f32>) -> Vec<u32> {
        self.certify(x).iter().map(|c| c.label).collect()
    }
}

/// Certified accuracy at each radius of `radii`: the fraction of rows whose
/// prediction is right and whose certificate is at least the radius.
pub fn certified_accuracy(preds: &[Certified], truth: &[u32], radii: &[u32]) -> Vec<f64> {
    radii
        .iter()
        .map(|&r| {
            if truth.is_empty() {
                return 0.0;
            }
            preds
                .iter()
                .zip(truth)
                .filter(|(p, &t)| p.label == t && p.certificate >= r)
                .count() as f64
                / truth.len() as f64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_follows_levine_feizi_with_tie_break() {
        // 5 vs 3: gap 2 -> 1.
        assert_eq!(
            certify_votes(&[5, 3, 0]),
            Certified {
                label: 0,
                votes: 5,
                certificate: 1
            }
        );
        // Tie 4 vs 4: class 0 wins; class 1 needs one vote to win: 0.
        assert_eq!(certify_votes(&[4, 4]).label, 0);
        assert_eq!(certify_votes(&[4, 4]).certificate, 0);
        // Winner 2 with 6 votes against class 0 with 4: 0 wins ties, so (6 - 5) / 2 = 0.
        assert_eq!(
            certify_votes(&[4, 0, 6]),
            Certified {
                label: 2,
                votes: 6,
                certificate: 0
            }
        );
        // Winner 0 with 6 against class 2 with 4: (6 - 4) / 2 = 1.
        assert_eq!(certify_votes(&[6, 0, 4]).certificate, 1);
        assert_eq!(certify_votes(&[9, 0, 0]).certificate, 4);
    }

    #[test]
    fn partitions_depend_only_on_content() {
        let a = content_digest(Some(&[1.0, 2.0]), &[]);
        let b = content_digest(Some(&[1.0, 2.0]), &[]);
        let c = content_digest(Some(&[2.0, 1.0]), &[]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(
            content_digest(None, &[("text", "ab")]),
            content_digest(None, &[("tex", "tab")])
        );
    }
}
