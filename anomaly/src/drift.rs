//! Drift between a reference batch and a new batch: kernel MMD with a
//! permutation-test p-value over whole samples (or embeddings), and per
//! feature the two-sample Kolmogorov-Smirnov test and the population
//! stability index.
//!
//! A poisoning campaign that injects many samples shifts the distribution of
//! the incoming batch; drift does not say which samples, so it warns rather
//! than quarantines.

use mithridate_core::{
    Context, Dataset, Defense, Error, Finding, Layer, Report, Result, Stage, Verdict,
};
use ndarray::{ArrayView2, Axis};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::detector::poison_tags;
use crate::util::median;

/// Parameters of [`DriftDetector`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DriftParams {
    /// Permutations of the MMD test.
    pub permutations: usize,
    /// Rows per batch used by the MMD test (random subset above it).
    pub max_rows: usize,
    /// Significance level (Bonferroni-corrected over features for KS).
    pub alpha: f64,
    /// Quantile bins of the PSI.
    pub psi_bins: usize,
    /// PSI above which a feature counts as shifted (0.25 is the usual "major shift").
    pub psi_threshold: f64,
}

impl Default for DriftParams {
    fn default() -> Self {
        Self {
            permutations: 200,
            max_rows: 400,
            alpha: 0.01,
            psi_bins: 10,
            psi_threshold: 0.25,
        }
    }
}

impl DriftParams {
    /// Check every field.
    pub fn check(&self) -> Result<()> {
        if self.permutations < 10 {
            return Err(Error::param("permutations", "must be at least 10"));
        }
        if self.max_rows < 4 {
            return Err(Error::param("max_rows", "must be at least 4"));
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(Error::param("alpha", "must be in (0, 1)"));
        }
        if self.psi_bins < 2 {
            return Err(Error::param("psi_bins", "must be at least 2"));
        }
        if !(self.psi_threshold.is_finite() && self.psi_threshold > 0.0) {
            return Err(Error::param(
                "psi_threshold",
                "must be a positive finite number",
            ));
        }
        Ok(())
    }
}

/// Squared MMD (biased V-statistic) with an RBF kernel of bandwidth `sigma`
/// between rows `a` and rows `b` of the pooled Gram matrix `k`.
fn mmd2(k: &[f64], n: usize, a: &[usize], b: &[usize]) -> f64 {
    let mean = |p: &[usize], q: &[usize]| -> f64 {
        let mut s = 0.0;
        for &i in p {
            for &j in q {
                s += k[i * n + j];
            }
        }
        s / (p.len() * q.len()).max(1) as f64
    };
    mean(a, a) + mean(b, b) - 2.0 * mean(a, b)
}

/// MMD² between two samples and its permutation p-value.
pub fn mmd_test(
    x: ArrayView2<'_, f32>,
    y: ArrayView2<'_, f32>,
    permutations: usize,
    max_rows: usize,
    seed: u64,
) -> Result<(f64, f64)> {
    if x.ncols() != y.ncols() {
        return Err(Error::data(format!(
            "batches have {} and {} features",
            x.ncols(),
            y.ncols()
        )));
    }
    if x.nrows() < 2 || y.nrows() < 2 {
        return Err(Error::data("each batch needs at least two rows"));
    }
    let mut rng = mithridate_core::rng::seeded(seed);
    let sub = |m: ArrayView2<'_, f32>, rng: &mut mithridate_core::rng::ChaCha8Rng| {
        let mut idx: Vec<usize> = (0..m.nrows()).collect();
        idx.shuffle(rng);
        idx.truncate(max_rows);
        m.select(Axis(0), &idx)
    };
    let xa = sub(x, &mut rng);
    let ya = sub(y, &mut rng);
    let pooled = ndarray::concatenate(Axis(0), &[xa.view(), ya.view()])
        .map_err(|e| Error::data(e.to_string()))?;
    let n = pooled.nrows();
    let mut d2 = vec![0.0f64; n * n];
    for i in 0..n {
        for j in i + 1..n {
            let d: f64 = pooled
                .row(i)
                .iter()
                .zip(pooled.row(j))
                .map(|(a, b)| f64::from(a - b).powi(2))
                .sum();
            d2[i * n + j] = d;
            d2[j * n + i] = d;
        }
    }
    let off: Vec<f64> = (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .map(|(i, j)| d2[i * n + j])
        .collect();
    let bw = median(&off).max(1e-12);
    let k: Vec<f64> = d2.iter().map(|d| (-d / bw).exp()).collect();
    let na = xa.nrows();
    let a: Vec<usize> = (0..na).collect();
    let b: Vec<usize> = (na..n).collect();
    let obs = mmd2(&k, n, &a, &b);
    let mut idx: Vec<usize> = (0..n).collect();
    let mut ge = 0usize;
    for _ in 0..permutations {
        idx.shuffle(&mut rng);
        if mmd2(&k, n, &idx[..na], &idx[na..]) >= obs {
            ge += 1;
        }
    }
    Ok((obs, (ge as f64 + 1.0) / (permutations as f64 + 1.0)))
}

/// Two-sample Kolmogorov-Smirnov statistic and asymptotic p-value.
pub fn ks_test(a: &[f64], b: &[f64]) -> (f64, f64) {
    if a.is_empty() || b.is_empty() {
        return (0.0, 1.0);
    }
    let mut x = a.to_vec();
    let mut y = b.to_vec();
    x.sort_by(|p, q| p.total_cmp(q));
    y.sort_by(|p, q| p.total_cmp(q));
    let (mut i, mut j, mut d) = (0usize, 0usize, 0.0f64);
    while i < x.len() && j < y.len() {
        let v = x[i].min(y[j]);
        while i < x.len() && x[i] <= v {
            i += 1;
        }
        while j < y.len() && y[j] <= v {
            j += 1;
        }
        d = d.max((i as f64 / x.len() as f64 - j as f64 / y.len() as f64).abs());
    }
    let ne = (x.len() * y.len()) as f64 / (x.len() + y.len()) as f64;
    let lambda = (ne.sqrt() + 0.12 + 0.11 / ne.sqrt()) * d;
    // The Kolmogorov series does not converge at 0; Q(0.3) is already 1 - 1e-5.
    if lambda < 0.3 {
        return (d, 1.0);
    }
    let mut p = 0.0;
    for k in 1..=100 {
        let kf = f64::from(k);
        let term = 2.0 * (-2.0 * kf * kf * lambda * lambda).exp();
        p += if k % 2 == 1 { term } else { -term };
        if term < 1e-12 {
            break;
        }
    }
    (d, p.clamp(0.0, 1.0))
}

/// Population stability index of `b` against reference `a`, with `bins`
/// quantile bins of the reference.
pub fn psi(a: &[f64], b: &[f64], bins: usize) -> f64 {
    if a.is_empty() || b.is_empty() || bins < 2 {
        return 0.0;
    }
    let mut edges: Vec<f64> = (1..bins)
        .map(|q| crate::util::quantile(a, q as f64 / bins as f64))
        .collect();
    edges.dedup();
    let hist = |v: &[f64]| -> Vec<f64> {
        let mut h = vec![0.0; edges.len() + 1];
        for x in v {
            h[edges.partition_point(|e| e < x)] += 1.0;
        }
        h.iter().map(|c| (c / v.len() as f64).max(1e-4)).collect()
    };
    let (ha, hb) = (hist(a), hist(b));
    ha.iter()
        .zip(&hb)
        .map(|(r, q)| (q - r) * (q / r).ln())
        .sum()
}

/// Result of a drift comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftResult {
    /// MMD² of the batches.
    pub mmd2: f64,
    /// Its permutation p-value.
    pub mmd_p_value: f64,
    /// KS statistic per feature.
    pub ks: Vec<f64>,
    /// KS p-value per feature.
    pub ks_p_values: Vec<f64>,
    /// PSI per feature.
    pub psi: Vec<f64>,
    /// Features whose KS p-value is below alpha / d or whose PSI is above the threshold.
    pub drifted_features: Vec<usize>,
    /// True when the MMD test rejects at `alpha`.
    pub drift: bool,
}

/// Compare `batch` against `reference` on their features.
pub fn drift(
    reference: &Dataset,
    batch: &Dataset,
    p: &DriftParams,
    seed: u64,
) -> Result<DriftResult> {
    p.check()?;
    let a = reference.require_features("drift (reference)")?;
    let b = batch.require_features("drift (batch)")?;
    let (mmd2, mmd_p_value) = mmd_test(a.view(), b.view(), p.permutations, p.max_rows, seed)?;
    let d = a.ncols();
    let mut ks = Vec::with_capacity(d);
    let mut ks_p = Vec::with_capacity(d);
    let mut ps = Vec::with_capacity(d);
    let mut drifted = Vec::new();
    for j in 0..d {
        let ca: Vec<f64> = a.column(j).iter().map(|&v| f64::from(v)).collect();
        let cb: Vec<f64> = b.column(j).iter().map(|&v| f64::from(v)).collect();
        let (s, pv) = ks_test(&ca, &cb);
        let q = psi(&ca, &cb, p.psi_bins);
        if pv < p.alpha / d as f64 || q > p.psi_threshold {
            drifted.push(j);
        }
        ks.push(s);
        ks_p.push(pv);
        ps.push(q);
    }
    Ok(DriftResult {
        mmd2,
        mmd_p_value,
        ks,
        ks_p_values: ks_p,
        psi: ps,
        drifted_features: drifted,
        drift: mmd_p_value < p.alpha,
    })
}

/// Drift of the context's dataset against its holdout (the reference batch).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DriftDetector {
    /// Checked parameters.
    pub params: DriftParams,
}

impl DriftDetector {
    /// A detector with checked `params`.
    pub fn new(params: DriftParams) -> Result<Self> {
        params.check()?;
        Ok(Self { params })
    }
}

impl Defense for DriftDetector {
    fn name(&self) -> &str {
        "drift"
    }
    fn layer(&self) -> Layer {
        Layer::Anomaly
    }
    fn stage(&self) -> Stage {
        Stage::Ingest
    }
    fn run(&self, cx: &mut Context) -> Result<Report> {
        let reference = cx
            .holdout
            .as_ref()
            .ok_or_else(|| Error::data("drift needs a reference batch (the holdout)"))?;
        let batch = cx
            .dataset
            .as_ref()
            .ok_or_else(|| Error::data("drift needs a dataset"))?;
        let r = drift(reference, batch, &self.params, cx.seed)?;
        let mut rep = Report::new(self.name(), Layer::Anomaly, Stage::Ingest);
        rep.metric("mmd2", r.mmd2);
        rep.metric("mmd_p_value", r.mmd_p_value);
        rep.metric("features_drifted", r.drifted_features.len() as f64);
        rep.metric("max_ks", r.ks.iter().copied().fold(0.0, f64::max));
        rep.metric("max_psi", r.psi.iter().copied().fold(0.0, f64::max));
        if r.drift || !r.drifted_features.is_empty() {
            rep.escalate(Verdict::Warn);
            rep.findings.push(
                Finding::new(-r.mmd_p_value.max(1e-300).log10(), format!(
                    "batch differs from the reference: MMD² {:.4} (p = {:.3}), {} feature(s) shifted",
                    r.mmd2,
                    r.mmd_p_value,
                    r.drifted_features.len()
                ))
                .with_tags(poison_tags())
                .with_detail(json!({"drifted_features": r.drifted_features})),
            );
        }
        rep.summary = format!(
            "drift: MMD p = {:.3}, {} feature(s) shifted",
            r.mmd_p_value,
            r.drifted_features.len()
        );
        rep.params = serde_json::to_value(&self.params).unwrap_or_default();
        Ok(rep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn ks_and_psi_see_a_shift_and_not_its_absence() {
        let a: Vec<f64> = (0..500).map(|i| f64::from(i % 50)).collect();
        let b: Vec<f64> = a.iter().map(|v| v + 20.0).collect();
        let (d, p) = ks_test(&a, &a);
        assert!(d < 1e-12 && p > 0.99);
        let (d, p) = ks_test(&a, &b);
        assert!(d > 0.3 && p < 1e-6, "{d} {p}");
        assert!(psi(&a, &b, 10) > 0.25);
        assert!(psi(&a, &a, 10) < 1e-9);
    }

    #[test]
    fn mmd_detects_mean_shift() {
        let a = Array2::from_shape_fn((80, 3), |(i, j)| ((i * 7 + j * 3) % 11) as f32);
        let b = a.mapv(|v| v + 4.0);
        let (_, p_same) = mmd_test(a.view(), a.view(), 50, 100, 1).unwrap();
        let (_, p_diff) = mmd_test(a.view(), b.view(), 50, 100, 1).unwrap();
        assert!(p_same > 0.2, "{p_same}");
        assert!(p_diff < 0.05, "{p_diff}");
    }
}
