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

use crate::train::SavedModel;
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
    let top = plurality(votes);
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

/// The class with the most votes, the lower class on ties.
fn plurality(votes: &[u32]) -> usize {
    let mut top = 0usize;
    for (c, &v) in votes.iter().enumerate() {
        if v > votes[top] {
            top = c;
        }
    }
    top
}

/// The plurality vote of Finite Aggregation base models and its certificate
/// (Wang, Levine & Feizi 2022, Theorem 2).
///
/// `preds[i]` is base model `i`'s class (`None`: it abstains, having had no
/// training data); there are `k * d` models and as many buckets, and bucket
/// `h` feeds models `(h + s) mod kd` for `s` in `shifts`. One poisoned sample
/// touches one bucket, so it can change at most those `d` votes: against a
/// class `c`, a bucket can close the gap `n_top - n_c - [c < top]` by at
/// most `delta_h = sum over its models of (2 if it votes top, 0 if it votes c,
/// 1 otherwise)`. Buckets share models, so the sum of the `r` largest
/// `delta_h` bounds what any `r` poisoned samples can do; the certificate is
/// the largest `r` whose bound stays within the gap, the least over `c`.
/// With `d = 1` this is exactly DPA's certificate.
pub fn certify_finite_aggregation(
    preds: &[Option<u32>],
    shifts: &[usize],
    n_classes: usize,
) -> Certified {
    let m = preds.len();
    let mut votes = vec![0u32; n_classes];
    for &p in preds.iter().flatten() {
        if let Some(v) = votes.get_mut(p as usize) {
            *v += 1;
        }
    }
    let top = plurality(&votes);
    let n_top = votes.get(top).copied().unwrap_or(0);
    let mut cert = m as u64;
    let mut deltas = vec![0u64; m];
    for c in (0..n_classes).filter(|&c| c != top) {
        let gap = u64::from(n_top) - u64::from(votes[c]) - u64::from(c < top);
        for (h, delta) in deltas.iter_mut().enumerate() {
            *delta = shifts
                .iter()
                .map(|&s| match preds[(h + s) % m] {
                    Some(p) if p as usize == top => 2,
                    Some(p) if p as usize == c => 0,
                    _ => 1,
                })
                .sum();
        }
        deltas.sort_unstable_by(|a, b| b.cmp(a));
        let mut left = gap;
        let mut r = 0u64;
        for &dl in &deltas {
            if dl > left {
                break;
            }
            left -= dl;
            r += 1;
        }
        cert = cert.min(r);
    }
    Certified {
        label: top as u32,
        votes: n_top,
        certificate: u32::try_from(cert).unwrap_or(u32::MAX),
    }
}

/// How training samples are assigned to base models.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "scheme")]
pub enum Scheme {
    /// Deep Partition Aggregation: `partitions` disjoint partitions by hash,
    /// one base model each.
    Dpa {
        /// Number of partitions (and base models) `k`.
        partitions: usize,
    },
    /// Finite Aggregation: `partitions * spread` buckets by hash; bucket `h`
    /// feeds the `spread` base models `(h + s) mod (partitions * spread)`
    /// for `s` in `shifts`, so each of the `partitions * spread` base models
    /// trains on `spread` buckets (about `1 / partitions` of the data, as in
    /// DPA with `partitions`).
    FiniteAggregation {
        /// `k`: each base model sees about `1 / k` of the data.
        partitions: usize,
        /// `d`: base models each sample is used by.
        spread: usize,
        /// The `d` distinct shifts in `0..k * d` (drawn once, from a fixed seed).
        shifts: Vec<usize>,
    },
}

impl Scheme {
    /// DPA with `partitions` partitions.
    pub fn dpa(partitions: usize) -> Self {
        Scheme::Dpa { partitions }
    }

    /// Finite Aggregation with `partitions` (`k`) and `spread` (`d`); the
    /// shifts are `d` distinct values of `0..kd` drawn from a fixed seed, so
    /// the same `(k, d)` always gives the same assignment.
    pub fn finite_aggregation(partitions: usize, spread: usize) -> Result<Self> {
        if partitions == 0 || spread == 0 {
            return Err(Error::param(
                "partitions",
                "Finite Aggregation needs at least 1 partition and a spread of at least 1",
            ));
        }
        let kd = partitions
            .checked_mul(spread)
            .ok_or_else(|| Error::param("spread", "partitions x spread overflows"))?;
        let mut rng = mithridate_core::rng::seeded(FA_SHIFT_SEED);
        let mut shifts = rand::seq::index::sample(&mut rng, kd, spread).into_vec();
        shifts.sort_unstable();
        Ok(Scheme::FiniteAggregation {
            partitions,
            spread,
            shifts,
        })
    }

    /// Number of hash buckets, which is also the number of base models.
    pub fn buckets(&self) -> usize {
        match self {
            Scheme::Dpa { partitions } => *partitions,
            Scheme::FiniteAggregation {
                partitions, spread, ..
            } => partitions.saturating_mul(*spread),
        }
    }

    /// Shifts from a bucket to the base models it feeds (`[0]` for DPA).
    pub fn shifts(&self) -> &[usize] {
        match self {
            Scheme::Dpa { .. } => &[0],
            Scheme::FiniteAggregation { shifts, .. } => shifts,
        }
    }

    /// Short name: `dpa` or `finite-aggregation`.
    pub fn name(&self) -> &'static str {
        match self {
            Scheme::Dpa { .. } => "dpa",
            Scheme::FiniteAggregation { .. } => "finite-aggregation",
        }
    }

    fn check(&self) -> Result<()> {
        let m = self.buckets();
        if m == 0 {
            return Err(Error::param("partitions", "must be at least 1"));
        }
        let s = self.shifts();
        let mut seen = s.to_vec();
        seen.sort_unstable();
        seen.dedup();
        if s.is_empty() || seen.len() != s.len() || s.iter().any(|&v| v >= m) {
            return Err(Error::param(
                "shifts",
                format!("need distinct shifts in 0..{m}, got {s:?}"),
            ));
        }
        Ok(())
    }
}

/// Seed of the Finite Aggregation shifts (fixed: the assignment must not
/// depend on anything but the samples' content and `(k, d)`).
const FA_SHIFT_SEED: u64 = 0x4641_5f73_6869_6674;

/// A base model of a partition ensemble: anything that predicts classes.
pub trait BaseModel: Send + Sync {
    /// One class per row of `x`.
    fn predict_classes(&self, x: ArrayView2<'_, f32>) -> Vec<u32>;
}

impl BaseModel for Box<dyn Classifier> {
    fn predict_classes(&self, x: ArrayView2<'_, f32>) -> Vec<u32> {
        self.predict(x)
    }
}

impl BaseModel for SavedModel {
    fn predict_classes(&self, x: ArrayView2<'_, f32>) -> Vec<u32> {
        self.as_classifier().predict(x)
    }
}

/// A partition-and-vote ensemble (DPA, or Finite Aggregation, per its
/// [`Scheme`]): one base model per bucket of the training set (`None` for a
/// base model that received no sample: it abstains).
///
/// With `M = `[`SavedModel`] the ensemble serialises with serde (what
/// `mithridate train --certified` writes); the default `M` holds any
/// [`Trainer`]'s models.
#[derive(Serialize, Deserialize)]
pub struct Dpa<M = Box<dyn Classifier>> {
    scheme: Scheme,
    models: Vec<Option<M>>,
    sizes: Vec<usize>,
    n_features: usize,
    n_classes: usize,
}

impl<M> std::fmt::Debug for Dpa<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dpa")
            .field("scheme", &self.scheme)
            .field("sizes", &self.sizes)
            .field("n_features", &self.n_features)
            .field("n_classes", &self.n_classes)
            .finish()
    }
}

/// Samples of each of `k` partitions, each sorted by (digest, label) so that a
/// partition's training order depends only on its own contents.
pub fn partition_indices(digests: &[[u8; 32]], labels: &[u32], k: usize) -> Vec<Vec<usize>> {
    assign(digests, labels, &Scheme::dpa(k))
}

/// Training samples of each base model under `scheme`, each sorted by
/// (digest, label).
pub fn assign(digests: &[[u8; 32]], labels: &[u32], scheme: &Scheme) -> Vec<Vec<usize>> {
    let m = scheme.buckets();
    let mut parts = vec![Vec::new(); m];
    if m == 0 {
        return parts;
    }
    for (i, d) in digests.iter().enumerate() {
        let h = partition_of(d, m);
        for &s in scheme.shifts() {
            parts[(h + s) % m].push(i);
        }
    }
    for p in &mut parts {
        p.sort_by(|&a, &b| digests[a].cmp(&digests[b]).then(labels[a].cmp(&labels[b])));
    }
    parts
}

/// Digests of every sample of `ds` (features and text fields).
fn dataset_digests(ds: &Dataset, x: &Array2<f32>) -> Vec<[u8; 32]> {
    let texts: Vec<(&String, &Vec<String>)> = ds.text_fields.iter().collect();
    (0..ds.len())
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
        .collect()
}

impl Dpa<Box<dyn Classifier>> {
    /// Train on a dataset with features and labels (partitioned by the hash of
    /// each sample's features and text).
    pub fn fit(ds: &Dataset, partitions: usize, trainer: &dyn Trainer, seed: u64) -> Result<Self> {
        Self::fit_scheme(ds, Scheme::dpa(partitions), trainer, seed)
    }

    /// Train with any [`Scheme`] (DPA or Finite Aggregation).
    pub fn fit_scheme(
        ds: &Dataset,
        scheme: Scheme,
        trainer: &dyn Trainer,
        seed: u64,
    ) -> Result<Self> {
        Self::fit_with(ds, scheme, seed, |x, y, k, s| trainer.fit(x, y, k, s))
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
        Self::fit_xy_scheme(x, y, n_classes, Scheme::dpa(partitions), trainer, seed)
    }

    /// [`Dpa::fit_xy`] with any [`Scheme`].
    pub fn fit_xy_scheme(
        x: ArrayView2<'_, f32>,
        y: &[u32],
        n_classes: usize,
        scheme: Scheme,
        trainer: &dyn Trainer,
        seed: u64,
    ) -> Result<Self> {
        let digests: Vec<[u8; 32]> = x
            .rows()
            .into_iter()
            .map(|r| content_digest(Some(&r.to_vec()), &[]))
            .collect();
        Self::fit_digests(x, y, n_classes, &digests, scheme, seed, &|x, y, k, s| {
            trainer.fit(x, y, k, s)
        })
    }
}

/// A function that trains one base model: `(features, labels, classes, seed)`.
pub type FitFn<'a, M> = dyn Fn(ArrayView2<'_, f32>, &[u32], usize, u64) -> Result<M> + Sync + 'a;

impl<M: BaseModel> Dpa<M> {
    /// Train one base model per bucket of `scheme` with `fit` (in parallel).
    pub fn fit_with<F>(ds: &Dataset, scheme: Scheme, seed: u64, fit: F) -> Result<Self>
    where
        F: Fn(ArrayView2<'_, f32>, &[u32], usize, u64) -> Result<M> + Sync,
    {
        let x = ds.require_features("DPA")?;
        let y = ds.require_labels("DPA")?;
        let digests = dataset_digests(ds, x);
        Self::fit_digests(x.view(), y, ds.n_classes(), &digests, scheme, seed, &fit)
    }

    /// [`Dpa::fit_with`], reporting each finished base model to `progress`.
    pub fn fit_with_progress<F, P>(
        ds: &Dataset,
        scheme: Scheme,
        seed: u64,
        fit: F,
        progress: P,
    ) -> Result<Self>
    where
        F: Fn(ArrayView2<'_, f32>, &[u32], usize, u64) -> Result<M> + Sync,
        P: Fn() + Sync,
    {
        Self::fit_with(ds, scheme, seed, |x, y, k, s| {
            let m = fit(x, y, k, s);
            progress();
            m
        })
    }

    fn fit_digests(
        x: ArrayView2<'_, f32>,
        y: &[u32],
        n_classes: usize,
        digests: &[[u8; 32]],
        scheme: Scheme,
        seed: u64,
        fit: &FitFn<'_, M>,
    ) -> Result<Self> {
        scheme.check()?;
        check_xy(x, y, n_classes)?;
        let parts = assign(digests, y, &scheme);
        let models: Vec<Option<M>> = parts
            .par_iter()
            .enumerate()
            .map(|(p, idx)| {
                if idx.is_empty() {
                    return Ok(None);
                }
                let xp = x.select(Axis(0), idx);
                let yp: Vec<u32> = idx.iter().map(|&i| y[i]).collect();
                fit(
                    xp.view(),
                    &yp,
                    n_classes,
                    derive_seed(seed, &format!("dpa-partition-{p}")),
                )
                .map(Some)
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            scheme,
            models,
            sizes: parts.iter().map(Vec::len).collect(),
            n_features: x.ncols(),
            n_classes,
        })
    }

    /// Check a deserialised ensemble: as many models as buckets, consistent sizes.
    pub fn validate(&self) -> Result<()> {
        self.scheme.check()?;
        let m = self.scheme.buckets();
        if self.models.len() != m || self.sizes.len() != m {
            return Err(Error::data(format!(
                "the {} scheme needs {m} base models, the ensemble has {} (and {} sizes)",
                self.scheme.name(),
                self.models.len(),
                self.sizes.len()
            )));
        }
        if self.n_classes == 0 {
            return Err(Error::data("the ensemble has 0 classes"));
        }
        Ok(())
    }

    /// The assignment scheme.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// Number of base models (`k` for DPA, `k * d` for Finite Aggregation).
    pub fn partitions(&self) -> usize {
        self.models.len()
    }

    /// Training samples per base model.
    pub fn partition_sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// Every base model's class for every row of `x` (`None`: it abstains).
    pub fn base_predictions(&self, x: ArrayView2<'_, f32>) -> Vec<Option<Vec<u32>>> {
        self.models
            .par_iter()
            .map(|m| m.as_ref().map(|m| m.predict_classes(x)))
            .collect()
    }

    /// Votes per class, `n x n_classes` (abstaining base models vote for nothing).
    pub fn votes(&self, x: ArrayView2<'_, f32>) -> Array2<u32> {
        let mut v = Array2::<u32>::zeros((x.nrows(), self.n_classes));
        for p in self.base_predictions(x).into_iter().flatten() {
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
        match &self.scheme {
            Scheme::Dpa { .. } => self
                .votes(x)
                .rows()
                .into_iter()
                .map(|r| certify_votes(&r.to_vec()))
                .collect(),
            Scheme::FiniteAggregation { shifts, .. } => {
                let preds = self.base_predictions(x);
                (0..x.nrows())
                    .into_par_iter()
                    .map(|i| {
                        let row: Vec<Option<u32>> = preds
                            .iter()
                            .map(|p| {
                                p.as_ref()
                                    .map(|p| p[i])
                                    .filter(|&c| (c as usize) < self.n_classes)
                            })
                            .collect();
                        certify_finite_aggregation(&row, shifts, self.n_classes)
                    })
                    .collect()
            }
        }
    }
}

impl<M: BaseModel> Classifier for Dpa<M> {
    fn n_features(&self) -> usize {
        self.n_features
    }
    fn n_classes(&self) -> usize {
        self.n_classes
    }
    /// Vote shares: votes for each class over the number of base models.
    fn predict_proba(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        let k = self.models.len().max(1) as f32;
        self.votes(x).mapv(|v| v as f32 / k)
    }
    fn predict(&self, x: ArrayView2<'_, f32>) -> Vec<u32> {
        self.votes(x)
            .rows()
            .into_iter()
            .map(|r| plurality(&r.to_vec()) as u32)
            .collect()
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
