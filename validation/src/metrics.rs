//! Holdout metrics: accuracy, per-class recall, macro F1 and expected
//! calibration error, and the stored baseline they are compared with.
//!
//! Accuracy alone hides a poisoned class: a label flip of one class in ten
//! costs at most 10% accuracy but all of that class's recall. Macro F1 weighs
//! every class equally, and the calibration error catches a model that became
//! over-confident (a common side effect of poisoning) while staying accurate.

use std::path::Path;

use mithridate_core::{Error, Location, Result};
use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

/// Number of equal-width confidence bins of the calibration error.
pub const ECE_BINS: usize = 15;

/// Metrics of a classifier on a labelled set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Number of samples.
    pub n: usize,
    /// Fraction predicted correctly.
    pub accuracy: f64,
    /// Recall of each class (`NaN`-free: a class absent from the set has recall 1).
    pub per_class_recall: Vec<f64>,
    /// Unweighted mean of per-class F1 over classes present in the truth or the predictions.
    pub macro_f1: f64,
    /// Expected calibration error over [`ECE_BINS`] equal-width bins of the top probability.
    pub ece: f64,
}

impl Metrics {
    /// Compute from class probabilities (`n x k`) and true labels.
    pub fn compute(proba: ArrayView2<'_, f32>, truth: &[u32]) -> Result<Self> {
        let (n, k) = proba.dim();
        if n != truth.len() {
            return Err(Error::data(format!(
                "{n} predictions for {} labels",
                truth.len()
            )));
        }
        if n == 0 {
            return Err(Error::data("cannot compute metrics on an empty set"));
        }
        if let Some(&l) = truth.iter().find(|&&l| l as usize >= k) {
            return Err(Error::data(format!(
                "label {l} is not below the model's {k} classes"
            )));
        }
        let mut tp = vec![0usize; k];
        let mut support = vec![0usize; k];
        let mut predicted = vec![0usize; k];
        let mut bins = vec![(0usize, 0f64, 0f64); ECE_BINS];
        for (row, &t) in proba.rows().into_iter().zip(truth) {
            let (mut best, mut conf) = (0usize, f32::NEG_INFINITY);
            for (j, &p) in row.iter().enumerate() {
                if p > conf {
                    best = j;
                    conf = p;
                }
            }
            let conf = if conf.is_finite() {
                f64::from(conf).clamp(0.0, 1.0)
            } else {
                0.0
            };
            support[t as usize] += 1;
            predicted[best] += 1;
            let hit = best == t as usize;
            if hit {
                tp[best] += 1;
            }
            let b = ((conf * ECE_BINS as f64) as usize).min(ECE_BINS - 1);
            bins[b].0 += 1;
            bins[b].1 += conf;
            bins[b].2 += f64::from(u8::from(hit));
        }
        let accuracy = tp.iter().sum::<usize>() as f64 / n as f64;
        let per_class_recall: Vec<f64> = (0..k)
            .map(|c| {
                if support[c] == 0 {
                    1.0
                } else {
                    tp[c] as f64 / support[c] as f64
                }
            })
            .collect();
        let mut f1s = Vec::new();
        for c in 0..k {
            if support[c] == 0 && predicted[c] == 0 {
                continue;
            }
            let p = if predicted[c] == 0 {
                0.0
            } else {
                tp[c] as f64 / predicted[c] as f64
            };
            let r = if support[c] == 0 {
                0.0
            } else {
                tp[c] as f64 / support[c] as f64
            };
            f1s.push(if p + r == 0.0 {
                0.0
            } else {
                2.0 * p * r / (p + r)
            });
        }
        let macro_f1 = f1s.iter().sum::<f64>() / f1s.len().max(1) as f64;
        let ece = bins
            .iter()
            .filter(|b| b.0 > 0)
            .map(|&(_, conf, acc)| (conf - acc).abs() / n as f64)
            .sum();
        Ok(Self {
            n,
            accuracy,
            per_class_recall,
            macro_f1,
            ece,
        })
    }
}

/// The metrics a release is compared with: usually those of the last
/// accepted model, saved with `Baseline::save`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Accuracy of the baseline.
    pub accuracy: f64,
    /// Macro F1 of the baseline.
    pub macro_f1: f64,
    /// Calibration error of the baseline.
    pub ece: f64,
    /// Per-class recall of the baseline (may be empty when unknown).
    #[serde(default)]
    pub per_class_recall: Vec<f64>,
}

impl From<&Metrics> for Baseline {
    fn from(m: &Metrics) -> Self {
        Self {
            accuracy: m.accuracy,
            macro_f1: m.macro_f1,
            ece: m.ece,
            per_class_recall: m.per_class_recall.clone(),
        }
    }
}

impl Baseline {
    /// Parse JSON text; `what` names the source in errors.
    pub fn from_json(text: &str, what: &Path) -> Result<Self> {
        let b: Self = serde_json::from_str(text).map_err(|e| {
            Error::parse(
                Location::file(what).at_line(e.line() as u64),
                format!("baseline: {e}"),
            )
        })?;
        for (name, v) in [
            ("accuracy", b.accuracy),
            ("macro_f1", b.macro_f1),
            ("ece", b.ece),
        ] {
            if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                return Err(Error::parse(
                    Location::file(what).at_field(name),
                    format!("must be in [0, 1], got {v}"),
                ));
            }
        }
        if let Some((i, v)) = b
            .per_class_recall
            .iter()
            .enumerate()
            .find(|(_, v)| !(v.is_finite() && (0.0..=1.0).contains(*v)))
        {
            return Err(Error::parse(
                Location::file(what).at_field(format!("per_class_recall[{i}]")),
                format!("must be in [0, 1], got {v}"),
            ));
        }
        Ok(b)
    }

    /// Read a baseline file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text, path)
    }

    /// Write a baseline file atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(|e| Error::data(e.to_string()))?;
        mithridate_core::io::atomic::write_bytes_atomic(path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use proptest::prelude::*;

    #[test]
    fn perfect_and_known_cases() {
        let p = array![[0.9f32, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]];
        let m = Metrics::compute(p.view(), &[0, 1, 1, 1]).unwrap();
        assert!((m.accuracy - 0.75).abs() < 1e-12);
        assert_eq!(m.per_class_recall, vec![1.0, 2.0 / 3.0]);
        // class 0: p = 1/2, r = 1 -> 2/3; class 1: p = 1, r = 2/3 -> 0.8
        assert!((m.macro_f1 - (2.0 / 3.0 + 0.8) / 2.0).abs() < 1e-12);
        // bins: 0.9 (hit), 0.8 (hit), 0.6 (miss), 0.7 (hit) each alone
        let want = (0.1 + 0.2 + 0.6 + 0.3) / 4.0;
        assert!((m.ece - want).abs() < 1e-6, "{}", m.ece);
        assert!(Metrics::compute(p.view(), &[0, 1]).is_err());
        assert!(Metrics::compute(p.view(), &[0, 1, 2, 1]).is_err());
    }

    #[test]
    fn baseline_errors_name_the_field() {
        let e = Baseline::from_json(
            r#"{"accuracy":1.5,"macro_f1":0.5,"ece":0.1}"#,
            Path::new("b.json"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("field `accuracy`"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let b = Baseline {
            accuracy: 0.9,
            macro_f1: 0.8,
            ece: 0.05,
            per_class_recall: vec![0.9, 0.7],
        };
        let p = dir.path().join("b.json");
        b.save(&p).unwrap();
        assert_eq!(Baseline::load(&p).unwrap(), b);
    }

    proptest! {
        #[test]
        fn baseline_parser_never_panics(s in ".{0,120}") {
            let _ = Baseline::from_json(&s, Path::new("p.json"));
        }

        #[test]
        fn metrics_stay_in_range(rows in proptest::collection::vec((0.0f32..1.0, 0.0f32..1.0, 0.0f32..1.0, 0u32..3), 1..60)) {
            let p = ndarray::Array2::from_shape_fn((rows.len(), 3), |(i, j)| match j { 0 => rows[i].0, 1 => rows[i].1, _ => rows[i].2 });
            let y: Vec<u32> = rows.iter().map(|r| r.3).collect();
            let m = Metrics::compute(p.view(), &y).unwrap();
            for v in [m.accuracy, m.macro_f1, m.ece] {
                prop_assert!((0.0..=1.0).contains(&v), "{v}");
            }
            prop_assert!(m.per_class_recall.iter().all(|r| (0.0..=1.0).contains(r)));
        }
    }
}
