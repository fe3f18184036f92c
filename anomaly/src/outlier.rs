//! Outlier scores: k-nearest-neighbour distance and robust Mahalanobis
//! distance (per class when labels exist, else global).
//!
//! Outliers are not poison by themselves (a rare but honest sample is an
//! outlier too), so these detectors flag [`FlagKind::Outlier`] only: the
//! combiner quarantines an outlier when several detectors agree, within the
//! false-positive budget. Each threshold is the larger of a robust z-score
//! cut (median + z MADs) and the `1 - fp_budget` quantile of the scores, so on
//! clean data a detector never flags more than the budget.

use mithridate_core::{Dataset, Error, Result};
use ndarray::{Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::detector::{detector_defense, Detector, DetectorOutput, Flag, FlagKind};
use crate::util::{cholesky, knn, live_columns, mad, mahalanobis_sq, median, quantile};

/// Parameters shared by the outlier detectors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OutlierParams {
    /// Neighbours for the kNN distance.
    pub k: usize,
    /// Robust z-score a sample must exceed.
    pub z: f64,
    /// Largest fraction of samples a detector may flag.
    pub fp_budget: f64,
    /// Fraction of each class used for the robust covariance (the most central).
    pub support_fraction: f64,
    /// Datasets larger than this use a random subset as kNN references.
    pub max_refs: usize,
}

impl Default for OutlierParams {
    fn default() -> Self {
        Self {
            k: 10,
            z: 4.0,
            fp_budget: 0.005,
            support_fraction: 0.75,
            max_refs: 20_000,
        }
    }
}

impl OutlierParams {
    /// Check every field.
    pub fn check(&self) -> Result<()> {
        if self.k == 0 || self.max_refs == 0 {
            return Err(Error::param("k/max_refs", "must be at least 1"));
        }
        if !(self.z.is_finite() && self.z >= 0.0) {
            return Err(Error::param("z", "must be a non-negative finite number"));
        }
        if !(0.0..=0.5).contains(&self.fp_budget) {
            return Err(Error::param("fp_budget", "must be in [0, 0.5]"));
        }
        if !(self.support_fraction > 0.0 && self.support_fraction <= 1.0) {
            return Err(Error::param("support_fraction", "must be in (0, 1]"));
        }
        Ok(())
    }
}

/// Normalise raw scores so that 1.0 is the threshold, and flag those above.
pub(crate) fn threshold_and_flag(
    raw: &[f64],
    z: f64,
    budget: f64,
    what: &str,
    out: &mut DetectorOutput,
) {
    if raw.is_empty() {
        return;
    }
    let m = median(raw);
    let s = mad(raw).max(1e-12);
    let robust = m + z * s;
    let q = quantile(raw, 1.0 - budget);
    let t = robust.max(q).max(1e-12);
    // Quantile ties: never flag more than the budget.
    let cap = (budget * raw.len() as f64).floor() as usize;
    let mut above: Vec<usize> = (0..raw.len()).filter(|&i| raw[i] > t).collect();
    above.sort_by(|&a, &b| raw[b].total_cmp(&raw[a]));
    above.truncate(cap);
    out.scores = raw.iter().map(|v| (v / t).max(0.0)).collect();
    for i in above {
        out.flags.push(Flag {
            index: i,
            score: raw[i] / t,
            kind: FlagKind::Outlier,
            message: format!(
                "{what} {:.3} is {:.1} robust SDs above the median",
                raw[i],
                (raw[i] - m) / s
            ),
            trigger: None,
        });
    }
    out.flags.sort_by_key(|f| f.index);
    out.metrics.insert(format!("{}_threshold", out.detector), t);
}

/// Mean distance to the `k` nearest neighbours.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KnnOutlier {
    /// Checked parameters.
    pub params: OutlierParams,
}

impl KnnOutlier {
    /// A detector with checked `params`.
    pub fn new(params: OutlierParams) -> Result<Self> {
        params.check()?;
        Ok(Self { params })
    }
}

/// Mean kNN distance of every row of `x` (leave-one-out).
pub fn knn_scores(x: ArrayView2<'_, f32>, k: usize, max_refs: usize, seed: u64) -> Vec<f64> {
    let n = x.nrows();
    let refs: Vec<usize> = if n > max_refs {
        let mut v = mithridate_core::attack::shuffled(n, seed);
        v.truncate(max_refs);
        v.sort_unstable();
        v
    } else {
        (0..n).collect()
    };
    let rx = x.select(Axis(0), &refs);
    knn(x, rx.view(), k + 1, false)
        .iter()
        .enumerate()
        .map(|(i, nb)| {
            let d: Vec<f64> = nb
                .iter()
                .filter(|(r, _)| refs[*r] != i)
                .take(k)
                .map(|(_, d2)| f64::from(d2.sqrt()))
                .collect();
            d.iter().sum::<f64>() / d.len().max(1) as f64
        })
        .collect()
}

impl Detector for KnnOutlier {
    fn name(&self) -> &str {
        "knn-outlier"
    }
    fn detect(&self, ds: &Dataset, seed: u64) -> Result<DetectorOutput> {
        self.params.check()?;
        let x = ds.require_features("kNN outlier")?;
        let mut out = DetectorOutput {
            detector: self.name().into(),
            ..Default::default()
        };
        if ds.len() < 3 {
            return Ok(out);
        }
        let raw = knn_scores(x.view(), self.params.k, self.params.max_refs, seed);
        threshold_and_flag(
            &raw,
            self.params.z,
            self.params.fp_budget,
            "mean kNN distance",
            &mut out,
        );
        Ok(out)
    }
}

detector_defense!(KnnOutlier);

/// Robust Mahalanobis distance, per class when labels exist.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Mahalanobis {
    /// Checked parameters.
    pub params: OutlierParams,
}

impl Mahalanobis {
    /// A detector with checked `params`.
    pub fn new(params: OutlierParams) -> Result<Self> {
        params.check()?;
        Ok(Self { params })
    }
}

/// Robust Mahalanobis distances of `rows` of `x` to those rows' own centre.
///
/// Centre: coordinate-wise median. Covariance: of the `support_fraction` rows
/// closest to the centre (one concentration step, as in the MCD estimator),
/// over live columns only, with a small ridge so a near-constant pixel cannot
/// make it singular.
pub fn robust_mahalanobis(
    x: ArrayView2<'_, f32>,
    rows: &[usize],
    support_fraction: f64,
) -> Vec<f64> {
    let sub = x.select(Axis(0), rows);
    let live = live_columns(sub.view(), 1e-9);
    if live.is_empty() || rows.len() < 3 {
        return vec![0.0; rows.len()];
    }
    let z = sub.select(Axis(1), &live).mapv(f64::from);
    let d = z.ncols();
    let center: Vec<f64> = z.axis_iter(Axis(1)).map(|c| median(&c.to_vec())).collect();
    let dist_e: Vec<f64> = z
        .rows()
        .into_iter()
        .map(|r| r.iter().zip(&center).map(|(a, b)| (a - b) * (a - b)).sum())
        .collect();
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| dist_e[a].total_cmp(&dist_e[b]));
    let h = ((support_fraction * rows.len() as f64).ceil() as usize)
        .clamp(2.min(rows.len()), rows.len());
    let core = z.select(Axis(0), &order[..h]);
    let mean = core
        .mean_axis(Axis(0))
        .unwrap_or_else(|| ndarray::Array1::zeros(d));
    let c = &core - &mean;
    let mut cov: Array2<f64> = c.t().dot(&c) / (h.max(2) - 1) as f64;
    let tr = (0..d).map(|j| cov[[j, j]]).sum::<f64>() / d as f64;
    for j in 0..d {
        cov[[j, j]] += 1e-2 * tr + 1e-9;
    }
    let Some(l) = cholesky(&cov) else {
        return vec![0.0; rows.len()];
    };
    z.rows()
        .into_iter()
        .map(|r| {
            let v: Vec<f64> = r.iter().zip(mean.iter()).map(|(a, b)| a - b).collect();
            mahalanobis_sq(&l, &v).sqrt()
        })
        .collect()
}

impl Detector for Mahalanobis {
    fn name(&self) -> &str {
        "mahalanobis"
    }
    fn detect(&self, ds: &Dataset, _seed: u64) -> Result<DetectorOutput> {
        self.params.check()?;
        let x = ds.require_features("Mahalanobis")?;
        let n = ds.len();
        let mut out = DetectorOutput {
            detector: self.name().into(),
            ..Default::default()
        };
        if n < 3 {
            return Ok(out);
        }
        let mut raw = vec![0.0; n];
        let groups: Vec<Vec<usize>> = match &ds.labels {
            Some(y) => (0..ds.n_classes() as u32)
                .map(|c| (0..n).filter(|&i| y[i] == c).collect())
                .collect(),
            None => vec![(0..n).collect()],
        };
        for g in groups.iter().filter(|g| !g.is_empty()) {
            // Per class distances are chi-like with the class's own dimension; standardise per group.
            let d = robust_mahalanobis(x.view(), g, self.params.support_fraction);
            let m = median(&d);
            let s = mad(&d).max(1e-12);
            for (&i, v) in g.iter().zip(d) {
                raw[i] = (v - m) / s;
            }
        }
        threshold_and_flag(
            &raw,
            self.params.z,
            self.params.fp_budget,
            "robust Mahalanobis z",
            &mut out,
        );
        Ok(out)
    }
}

detector_defense!(Mahalanobis);
