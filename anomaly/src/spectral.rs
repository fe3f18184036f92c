//! Spectral signatures (Tran et al., 2018) and activation clustering (Chen et
//! al., 2019) on a model's hidden representation.
//!
//! Both look inside each class: a backdoor makes the poisoned samples of the
//! target class a separate direction (spectral) or a separate cluster
//! (activation clustering) of the representation. Units with zero variance in
//! a class (a dead ReLU, a pixel that is always 0) are dropped first: they
//! carry nothing and would make the problem degenerate. Without a model the
//! representation is the features themselves.

use std::sync::Arc;

use mithridate_core::{Classifier, Dataset, Error, Result};
use ndarray::{Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::detector::{detector_defense, Detector, DetectorOutput, Flag, FlagKind};
use crate::outlier::threshold_and_flag;
use crate::util::{live_columns, top_direction};

/// Parameters of [`SpectralSignatures`] and [`ActivationClustering`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SpectralParams {
    /// Robust z-score cut on the spectral score.
    pub z: f64,
    /// Largest fraction of samples flagged.
    pub fp_budget: f64,
    /// Activation clustering: a cluster smaller than this fraction of its class is suspicious.
    pub max_cluster_fraction: f64,
    /// Activation clustering: smallest silhouette-like separation (between/within distance ratio).
    pub min_separation: f64,
    /// Power-iteration steps.
    pub iters: usize,
}

impl Default for SpectralParams {
    fn default() -> Self {
        Self {
            z: 4.0,
            fp_budget: 0.005,
            max_cluster_fraction: 0.35,
            min_separation: 2.5,
            iters: 50,
        }
    }
}

impl SpectralParams {
    /// Check every field.
    pub fn check(&self) -> Result<()> {
        if !(self.z.is_finite() && self.z >= 0.0) {
            return Err(Error::param("z", "must be a non-negative finite number"));
        }
        if !(0.0..=0.5).contains(&self.fp_budget) {
            return Err(Error::param("fp_budget", "must be in [0, 0.5]"));
        }
        if !(self.max_cluster_fraction > 0.0 && self.max_cluster_fraction < 0.5) {
            return Err(Error::param("max_cluster_fraction", "must be in (0, 0.5)"));
        }
        if !(self.min_separation.is_finite() && self.min_separation >= 0.0) {
            return Err(Error::param(
                "min_separation",
                "must be a non-negative finite number",
            ));
        }
        if self.iters == 0 {
            return Err(Error::param("iters", "must be at least 1"));
        }
        Ok(())
    }
}

fn representation(
    ds: &Dataset,
    model: Option<&Arc<dyn Classifier>>,
    who: &str,
) -> Result<Array2<f32>> {
    let x = ds.require_features(who)?;
    match model {
        Some(m) if m.n_features() == x.ncols() => Ok(m.embed(x.view())),
        Some(m) => Err(Error::data(format!(
            "{who}: the model takes {} features, the data has {}",
            m.n_features(),
            x.ncols()
        ))),
        None => Ok(x.clone()),
    }
}

fn class_rows(ds: &Dataset) -> Vec<Vec<usize>> {
    let n = ds.len();
    match &ds.labels {
        Some(y) => (0..ds.n_classes() as u32)
            .map(|c| (0..n).filter(|&i| y[i] == c).collect())
            .collect(),
        None => vec![(0..n).collect()],
    }
}

/// Centred live columns of `rows` of `e`.
fn centred(e: ArrayView2<'_, f32>, rows: &[usize]) -> Option<Array2<f32>> {
    let sub = e.select(Axis(0), rows);
    let live = live_columns(sub.view(), 1e-9);
    if live.is_empty() || rows.len() < 3 {
        return None;
    }
    let z = sub.select(Axis(1), &live);
    let mean = z.mean_axis(Axis(0))?;
    Some(&z - &mean)
}

/// Spectral signatures: squared projection on the top singular direction of each class.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct SpectralSignatures {
    /// Checked parameters.
    pub params: SpectralParams,
    /// Model whose [`Classifier::embed`] gives the representation (features when `None`).
    #[serde(skip)]
    pub model: Option<Arc<dyn Classifier>>,
}

impl std::fmt::Debug for SpectralSignatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpectralSignatures")
            .field("params", &self.params)
            .field("model", &self.model.is_some())
            .finish()
    }
}

impl SpectralSignatures {
    /// A detector with checked `params` and an optional model.
    pub fn new(params: SpectralParams, model: Option<Arc<dyn Classifier>>) -> Result<Self> {
        params.check()?;
        Ok(Self { params, model })
    }
}

impl Detector for SpectralSignatures {
    fn name(&self) -> &str {
        "spectral-signatures"
    }
    fn detect(&self, ds: &Dataset, _seed: u64) -> Result<DetectorOutput> {
        self.params.check()?;
        let e = representation(ds, self.model.as_ref(), "spectral signatures")?;
        let mut raw = vec![0.0; ds.len()];
        for rows in class_rows(ds) {
            let Some(c) = centred(e.view(), &rows) else {
                continue;
            };
            let v = top_direction(c.view(), self.params.iters);
            let s: Vec<f64> = c.dot(&v).iter().map(|p| f64::from(p * p)).collect();
            // Per-class scale so classes with more spread do not dominate.
            let m = crate::util::median(&s).max(1e-12);
            for (&i, si) in rows.iter().zip(s) {
                raw[i] = si / m;
            }
        }
        let mut out = DetectorOutput {
            detector: self.name().into(),
            ..Default::default()
        };
        threshold_and_flag(
            &raw,
            self.params.z,
            self.params.fp_budget,
            "spectral score",
            &mut out,
        );
        Ok(out)
    }
}

detector_defense!(SpectralSignatures);

/// Activation clustering: 2-means per class on the top principal directions.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct ActivationClustering {
    /// Checked parameters.
    pub params: SpectralParams,
    /// Model whose [`Classifier::embed`] gives the representation (features when `None`).
    #[serde(skip)]
    pub model: Option<Arc<dyn Classifier>>,
}

impl std::fmt::Debug for ActivationClustering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivationClustering")
            .field("params", &self.params)
            .field("model", &self.model.is_some())
            .finish()
    }
}

impl ActivationClustering {
    /// A detector with checked `params` and an optional model.
    pub fn new(params: SpectralParams, model: Option<Arc<dyn Classifier>>) -> Result<Self> {
        params.check()?;
        Ok(Self { params, model })
    }
}

/// Two-means on the rows of `z` (deterministic start: the two rows farthest
/// apart along the first coordinate). Returns assignments.
fn two_means(z: ArrayView2<'_, f32>, iters: usize) -> Vec<usize> {
    let n = z.nrows();
    let col0: Vec<f32> = z.column(0).to_vec();
    let lo = (0..n)
        .min_by(|&a, &b| col0[a].total_cmp(&col0[b]))
        .unwrap_or(0);
    let hi = (0..n)
        .max_by(|&a, &b| col0[a].total_cmp(&col0[b]))
        .unwrap_or(0);
    let mut c = [z.row(lo).to_owned(), z.row(hi).to_owned()];
    let mut a = vec![0usize; n];
    for _ in 0..iters {
        let mut changed = false;
        for (i, r) in z.rows().into_iter().enumerate() {
            let d0 = (&r - &c[0]).mapv(|v| v * v).sum();
            let d1 = (&r - &c[1]).mapv(|v| v * v).sum();
            let k = usize::from(d1 < d0);
            changed |= a[i] != k;
            a[i] = k;
        }
        for (k, ck) in c.iter_mut().enumerate() {
            let rows: Vec<usize> = (0..n).filter(|&i| a[i] == k).collect();
            if !rows.is_empty() {
                if let Some(m) = z.select(Axis(0), &rows).mean_axis(Axis(0)) {
                    *ck = m;
                }
            }
        }
        if !changed {
            break;
        }
    }
    a
}

impl Detector for ActivationClustering {
    fn name(&self) -> &str {
        "activation-clustering"
    }
    fn detect(&self, ds: &Dataset, _seed: u64) -> Result<DetectorOutput> {
        let p = &self.params;
        p.check()?;
        let e = representation(ds, self.model.as_ref(), "activation clustering")?;
        let mut out = DetectorOutput {
            detector: self.name().into(),
            scores: vec![0.0; ds.len()],
            ..Default::default()
        };
        for rows in class_rows(ds) {
            let Some(c) = centred(e.view(), &rows) else {
                continue;
            };
            // Project on the top 3 directions (deflation).
            let mut proj = Array2::<f32>::zeros((rows.len(), 3));
            let mut rest = c.clone();
            for j in 0..3 {
                let v = top_direction(rest.view(), p.iters);
                let pj = rest.dot(&v);
                for (r, &val) in pj.iter().enumerate() {
                    proj[[r, j]] = val;
                }
                for (mut row, &val) in rest.rows_mut().into_iter().zip(pj.iter()) {
                    row.scaled_add(-val, &v);
                }
            }
            let a = two_means(proj.view(), 30);
            let small = usize::from(a.iter().filter(|&&k| k == 1).count() < a.len() / 2);
            let size = a.iter().filter(|&&k| k == small).count();
            if size == 0 || size as f64 > p.max_cluster_fraction * rows.len() as f64 {
                continue;
            }
            // Separation: distance between centroids over mean within-cluster distance.
            let idx = |k: usize| -> Vec<usize> { (0..rows.len()).filter(|&i| a[i] == k).collect() };
            let (s_rows, b_rows) = (idx(small), idx(1 - small));
            let (Some(cs), Some(cb)) = (
                proj.select(Axis(0), &s_rows).mean_axis(Axis(0)),
                proj.select(Axis(0), &b_rows).mean_axis(Axis(0)),
            ) else {
                continue;
            };
            let between = (&cs - &cb).mapv(|v| v * v).sum().sqrt();
            let within = s_rows
                .iter()
                .map(|&i| (&proj.row(i) - &cs).mapv(|v| v * v).sum().sqrt())
                .chain(
                    b_rows
                        .iter()
                        .map(|&i| (&proj.row(i) - &cb).mapv(|v| v * v).sum().sqrt()),
                )
                .sum::<f32>()
                / rows.len() as f32;
            let sep = f64::from(between / within.max(1e-12));
            let norm = sep / p.min_separation.max(1e-12);
            if sep < p.min_separation {
                continue;
            }
            let class = ds.labels.as_ref().map_or(0, |y| y[rows[0]]);
            for &r in &s_rows {
                let i = rows[r];
                out.scores[i] = norm;
                out.flags.push(Flag {
                    index: i,
                    score: norm,
                    kind: FlagKind::Outlier,
                    message: format!(
                        "in a separate cluster of {size} of the {} samples of class {} (separation {sep:.1})",
                        rows.len(),
                        ds.label_name(class)
                    ),
                    trigger: None,
                });
            }
        }
        // Respect the budget: keep the most separated.
        let cap = (p.fp_budget * ds.len() as f64).floor() as usize;
        out.flags.sort_by(|a, b| b.score.total_cmp(&a.score));
        out.flags.truncate(cap);
        out.flags.sort_by_key(|f| f.index);
        Ok(out)
    }
}

detector_defense!(ActivationClustering);
