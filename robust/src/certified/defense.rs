//! [`CertifiedTrainDefense`]: DPA training as a pipeline defense.

use std::sync::Arc;

use mithridate_core::model::{SoftmaxTrainer, Trainer};
use mithridate_core::{Context, Defense, Error, Layer, Report, Result, Stage};
use serde_json::json;

use super::{certified_accuracy, Dpa, Scheme};

/// Radii reported as `certified_accuracy_r{r}` metrics.
pub const REPORTED_RADII: [u32; 4] = [0, 1, 2, 5];

/// Train-stage defense: trains a [`Dpa`] ensemble of `partitions` base
/// models on the context's training set (quarantined samples left out),
/// stores it as the context's model (its `predict_proba` is the vote share),
/// and, when a holdout is present, reports certified accuracy.
///
/// Metrics: `partitions`, `spread`, `certified_accuracy_r0` (the clean accuracy of the
/// vote), `certified_accuracy_r1`, `certified_accuracy_r2`,
/// `certified_accuracy_r5`, `median_certificate` (over holdout predictions).
/// Artifact `certified_dpa`: the whole certified-accuracy curve.
#[derive(Clone)]
pub struct CertifiedTrainDefense {
    partitions: usize,
    spread: usize,
    trainer: Arc<dyn Trainer>,
}

impl std::fmt::Debug for CertifiedTrainDefense {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertifiedTrainDefense")
            .field("partitions", &self.partitions)
            .field("spread", &self.spread)
            .finish()
    }
}

impl CertifiedTrainDefense {
    /// DPA with `partitions` softmax-regression base models (core's
    /// [`SoftmaxTrainer`] with default parameters).
    pub fn new(partitions: usize) -> Self {
        Self {
            partitions,
            spread: 1,
            trainer: Arc::new(SoftmaxTrainer::default()),
        }
    }

    /// Finite Aggregation with spread `d` instead of DPA (`d = 1` is DPA):
    /// `partitions * d` base models, each sample used by `d` of them; the
    /// certificates are at least DPA's with the same `partitions`.
    #[must_use]
    pub fn with_spread(mut self, spread: usize) -> Self {
        self.spread = spread;
        self
    }

    /// The same with another base learner.
    #[must_use]
    pub fn with_trainer(mut self, trainer: Arc<dyn Trainer>) -> Self {
        self.trainer = trainer;
        self
    }
}

impl Defense for CertifiedTrainDefense {
    fn name(&self) -> &str {
        "train-certified-dpa"
    }
    fn layer(&self) -> Layer {
        Layer::Robust
    }
    fn stage(&self) -> Stage {
        Stage::Train
    }
    fn run(&self, cx: &mut Context) -> Result<Report> {
        if self.partitions == 0 {
            return Err(Error::param("partitions", "must be at least 1"));
        }
        let scheme = match self.spread {
            0 => return Err(Error::param("spread", "must be at least 1")),
            1 => Scheme::dpa(self.partitions),
            d => Scheme::finite_aggregation(self.partitions, d)?,
        };
        let train = cx.training_set()?;
        cx.progress
            .start("training partition models", Some(scheme.buckets() as u64));
        let progress = Arc::clone(&cx.progress);
        let trainer = self.trainer.as_ref();
        let fitted = Dpa::fit_with_progress(
            &train,
            scheme.clone(),
            cx.seed,
            |x, y, k, s| trainer.fit(x, y, k, s),
            || progress.advance(1),
        );
        cx.progress.finish();
        let dpa = fitted?;
        let mut r = Report::new(self.name(), self.layer(), self.stage());
        r.metric("partitions", self.partitions as f64);
        r.metric("spread", self.spread as f64);
        let sizes = dpa.partition_sizes();
        let empty = sizes.iter().filter(|&&s| s == 0).count();
        r.params = json!({ "scheme": scheme.name(), "partitions": self.partitions, "spread": self.spread, "base": "softmax-regression unless configured" });
        r.summary = format!(
            "{}: {} base models on {}..{} samples ({} empty)",
            if self.spread == 1 {
                "DPA"
            } else {
                "Finite Aggregation"
            },
            scheme.buckets(),
            sizes.iter().min().copied().unwrap_or(0),
            sizes.iter().max().copied().unwrap_or(0),
            empty
        );
        if let Some(h) = &cx.holdout {
            let x = h.require_features("certified accuracy")?;
            let y = h.require_labels("certified accuracy")?;
            let preds = dpa.certify(x.view());
            let max_r = preds.iter().map(|p| p.certificate).max().unwrap_or(0);
            let radii: Vec<u32> = (0..=max_r.max(5)).collect();
            let curve = certified_accuracy(&preds, y, &radii);
            for &rad in &REPORTED_RADII {
                r.metric(format!("certified_accuracy_r{rad}"), curve[rad as usize]);
            }
            let mut certs: Vec<u32> = preds.iter().map(|p| p.certificate).collect();
            certs.sort_unstable();
            let median = match certs.len() {
                0 => 0.0,
                n if n % 2 == 1 => f64::from(certs[n / 2]),
                n => (f64::from(certs[n / 2 - 1]) + f64::from(certs[n / 2])) / 2.0,
            };
            r.metric("median_certificate", median);
            r.summary.push_str(&format!(
                "; holdout accuracy {:.3}, certified at r=1 {:.3}, r=5 {:.3}, median certificate {median}",
                curve[0], curve[1], curve[5]
            ));
            cx.artifacts.insert(
                "certified_dpa".into(),
                json!({ "scheme": scheme.name(), "partitions": self.partitions, "spread": self.spread, "radii": radii, "certified_accuracy": curve }),
            );
        }
        cx.model = Some(Arc::new(dpa));
        Ok(r)
    }
}
