//! The holdout gate: metrics on a clean held-out set that never touched
//! training, compared with absolute levels and with a stored baseline.

use std::collections::HashSet;

use mithridate_core::{
    Context, Dataset, Defense, Error, Finding, Layer, Report, Result, Stage, ThreatTag, Verdict,
};
use serde::Serialize;

use crate::digest::{overlap, record_digests, Digest, HoldoutManifest};
use crate::junit::{Check, Outcome};
use crate::metrics::{Baseline, Metrics};

/// Holdout gate (`holdout-gate`): fails when the holdout overlaps the training
/// data, when it is not the recorded holdout, when accuracy is below an
/// absolute level, or when accuracy or macro F1 regressed from the baseline
/// by more than the allowed drop. A calibration error above its limit and a
/// class whose recall regressed warn.
#[derive(Debug, Clone, Serialize)]
pub struct HoldoutGate {
    min_accuracy: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_macro_f1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_ece: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline: Option<Baseline>,
    max_regression: f64,
    max_class_recall_drop: f64,
    #[serde(skip)]
    training_digests: Option<HashSet<Digest>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    manifest_root: Option<String>,
    #[serde(skip)]
    manifest: Option<HoldoutManifest>,
}

impl HoldoutGate {
    /// Name in reports and `mithridate.toml`.
    pub const NAME: &'static str = "holdout-gate";

    /// A gate that requires `min_accuracy` on the holdout, with no baseline:
    /// add one with [`HoldoutGate::with_baseline`]. The default allowed
    /// regression is 0.02 (two points of accuracy or macro F1).
    pub fn new(min_accuracy: f64) -> Self {
        Self {
            min_accuracy,
            min_macro_f1: None,
            max_ece: None,
            baseline: None,
            max_regression: 0.02,
            max_class_recall_drop: 0.10,
            training_digests: None,
            manifest_root: None,
            manifest: None,
        }
    }

    /// Compare with `baseline`.
    #[must_use]
    pub fn with_baseline(mut self, baseline: Baseline) -> Self {
        self.baseline = Some(baseline);
        self
    }

    /// Fail when accuracy or macro F1 is more than `drop` below the baseline.
    #[must_use]
    pub fn with_max_regression(mut self, drop: f64) -> Self {
        self.max_regression = drop;
        self
    }

    /// Warn when one class's recall is more than `drop` below its baseline recall.
    #[must_use]
    pub fn with_max_class_recall_drop(mut self, drop: f64) -> Self {
        self.max_class_recall_drop = drop;
        self
    }

    /// Fail below this macro F1.
    #[must_use]
    pub fn with_min_macro_f1(mut self, f1: f64) -> Self {
        self.min_macro_f1 = Some(f1);
        self
    }

    /// Warn above this expected calibration error.
    #[must_use]
    pub fn with_max_ece(mut self, ece: f64) -> Self {
        self.max_ece = Some(ece);
        self
    }

    /// Record digests of the training data (e.g. from a training manifest
    /// written with [`crate::digest::record_digests`]) to check the holdout
    /// against, in addition to the context's dataset.
    #[must_use]
    pub fn with_training_digests(mut self, digests: impl IntoIterator<Item = Digest>) -> Self {
        self.training_digests = Some(digests.into_iter().collect());
        self
    }

    /// Require the holdout to be the one recorded in `manifest`.
    #[must_use]
    pub fn with_manifest(mut self, manifest: HoldoutManifest) -> Self {
        self.manifest_root = Some(manifest.root.clone());
        self.manifest = Some(manifest);
        self
    }

    /// Check every parameter.
    pub fn check(&self) -> Result<()> {
        let unit = |name: &str, v: f64| {
            if v.is_finite() && (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::param(name, format!("must be in [0, 1], got {v}")))
            }
        };
        unit("min_accuracy", self.min_accuracy)?;
        unit("max_regression", self.max_regression)?;
        unit("max_class_recall_drop", self.max_class_recall_drop)?;
        if let Some(v) = self.min_macro_f1 {
            unit("min_macro_f1", v)?;
        }
        if let Some(v) = self.max_ece {
            unit("max_ece", v)?;
        }
        Ok(())
    }

    /// Evaluate `proba` (the model's class probabilities on `holdout`)
    /// against the gate; `training` is the training data when known.
    pub fn evaluate(
        &self,
        holdout: &Dataset,
        proba: ndarray::ArrayView2<'_, f32>,
        training: Option<&Dataset>,
    ) -> Result<Outcome> {
        self.check()?;
        let truth = holdout.require_labels("holdout gate")?;
        let mut out = Outcome {
            report: Report::new(Self::NAME, Layer::Validation, Stage::Release),
            checks: Vec::new(),
        };
        out.report.params = serde_json::to_value(self).unwrap_or_default();

        // 1. The holdout is what was recorded.
        if let Some(m) = &self.manifest {
            match m.verify(holdout) {
                Ok(()) => out.push(Check::new(
                    "holdout-manifest",
                    Verdict::Pass,
                    format!("holdout matches recorded root {}", m.root),
                )),
                Err(msg) => {
                    out.report.findings.push(
                        Finding::new(1.0, msg.clone())
                            .with_tags([ThreatTag::atlas_poison_training_data()]),
                    );
                    out.push(Check::new("holdout-manifest", Verdict::Fail, msg));
                }
            }
        }

        // 2. It never touched training.
        let hd = record_digests(holdout);
        let mut train: HashSet<Digest> = self.training_digests.clone().unwrap_or_default();
        let sources =
            usize::from(training.is_some()) + usize::from(self.training_digests.is_some());
        if let Some(t) = training {
            train.extend(record_digests(t));
        }
        let shared = overlap(&hd, &train);
        out.report.metric("overlap", shared.len() as f64);
        if sources == 0 {
            out.push(Check::new(
                "no-overlap",
                Verdict::Warn,
                "no training data or digests given: overlap not checked",
            ));
        } else if shared.is_empty() {
            out.push(Check::new(
                "no-overlap",
                Verdict::Pass,
                format!(
                    "none of {} holdout records is in the {} training records",
                    hd.len(),
                    train.len()
                ),
            ));
        } else {
            let msg = format!("{} of {} holdout records also appear in the training data: the holdout is not clean", shared.len(), hd.len());
            out.report.findings.push(
                Finding::new(shared.len() as f64, msg.clone())
                    .with_ids(shared.iter().map(|&i| holdout.ids[i].clone()).collect())
                    .with_detail(serde_json::json!({ "digests": shared.iter().take(20).map(|&i| hex::encode(hd[i])).collect::<Vec<_>>() })),
            );
            out.push(
                Check::new("no-overlap", Verdict::Fail, msg).measured(shared.len() as f64, 0.0),
            );
        }

        // 3. Metrics against absolute levels and the baseline.
        let m = Metrics::compute(proba, truth)?;
        out.report
            .metric("accuracy", m.accuracy)
            .metric("macro_f1", m.macro_f1)
            .metric("ece", m.ece)
            .metric("n", m.n as f64);
        for (c, r) in m.per_class_recall.iter().enumerate() {
            out.report
                .metric(format!("recall/{}", holdout.label_name(c as u32)), *r);
        }
        let lvl = |ok: bool, bad: Verdict| if ok { Verdict::Pass } else { bad };
        out.push(
            Check::new(
                "accuracy",
                lvl(m.accuracy >= self.min_accuracy, Verdict::Fail),
                format!(
                    "accuracy {:.4} (minimum {:.4})",
                    m.accuracy, self.min_accuracy
                ),
            )
            .measured(m.accuracy, self.min_accuracy),
        );
        if let Some(f) = self.min_macro_f1 {
            out.push(
                Check::new(
                    "macro_f1",
                    lvl(m.macro_f1 >= f, Verdict::Fail),
                    format!("macro F1 {:.4} (minimum {f:.4})", m.macro_f1),
                )
                .measured(m.macro_f1, f),
            );
        }
        if let Some(e) = self.max_ece {
            out.push(
                Check::new(
                    "ece",
                    lvl(m.ece <= e, Verdict::Warn),
                    format!("calibration error {:.4} (maximum {e:.4})", m.ece),
                )
                .measured(m.ece, e),
            );
        }
        if let Some(b) = &self.baseline {
            for (name, now, was) in [
                ("accuracy", m.accuracy, b.accuracy),
                ("macro_f1", m.macro_f1, b.macro_f1),
            ] {
                let floor = was - self.max_regression;
                out.report.metric(format!("delta/{name}"), now - was);
                out.push(
                    Check::new(
                        format!("regression/{name}"),
                        lvl(now >= floor, Verdict::Fail),
                        format!(
                            "{name} {now:.4} vs baseline {was:.4} (allowed drop {:.4})",
                            self.max_regression
                        ),
                    )
                    .measured(now, floor),
                );
            }
            for (c, (now, was)) in m
                .per_class_recall
                .iter()
                .zip(&b.per_class_recall)
                .enumerate()
            {
                if now + self.max_class_recall_drop < *was {
                    let name = holdout.label_name(c as u32);
                    let msg = format!("recall of class {name} fell from {was:.3} to {now:.3}");
                    out.report.findings.push(
                        Finding::new(was - now, msg.clone())
                            .with_tags([ThreatTag::atlas_poison_training_data()]),
                    );
                    out.push(
                        Check::new(format!("regression/recall/{name}"), Verdict::Warn, msg)
                            .measured(*now, was - self.max_class_recall_drop),
                    );
                }
            }
        }
        let failed: Vec<&str> = out
            .checks
            .iter()
            .filter(|c| c.verdict == Verdict::Fail)
            .map(|c| c.name.as_str())
            .collect();
        out.report.summary = if failed.is_empty() {
            format!(
                "holdout of {}: accuracy {:.3}, macro F1 {:.3}, ECE {:.3}",
                m.n, m.accuracy, m.macro_f1, m.ece
            )
        } else {
            format!(
                "holdout gate failed ({}): accuracy {:.3}, macro F1 {:.3}",
                failed.join(", "),
                m.accuracy,
                m.macro_f1
            )
        };
        Ok(out)
    }
}

impl Defense for HoldoutGate {
    fn name(&self) -> &str {
        Self::NAME
    }
    fn layer(&self) -> Layer {
        Layer::Validation
    }
    fn stage(&self) -> Stage {
        Stage::Release
    }
    fn run(&self, cx: &mut Context) -> Result<Report> {
        // Field access, not `require_holdout`: the artifacts are written below
        // while the holdout is still borrowed.
        let holdout = cx
            .holdout
            .as_ref()
            .ok_or_else(|| Error::data("holdout gate needs a holdout set in the context"))?;
        let x = holdout.require_features("holdout gate")?;
        let proba = match &cx.model {
            Some(model) => {
                if x.ncols() != model.n_features() {
                    return Err(Error::data(format!(
                        "holdout has {} features, the model takes {}",
                        x.ncols(),
                        model.n_features()
                    )));
                }
                model.predict_proba(x.view())
            }
            // A model outside the process answers through its predictor.
            None => mithridate_core::model::predict_proba_via(
                cx.require_predictor("holdout gate")?.as_ref(),
                x.view(),
                holdout.n_classes(),
            )?,
        };
        let out = self.evaluate(holdout, proba.view(), cx.dataset.as_ref())?;
        out.store_checks(&mut cx.artifacts, Self::NAME);
        cx.artifacts.insert(
            "validation/holdout_root".into(),
            serde_json::Value::String(HoldoutManifest::of(holdout).root),
        );
        Ok(out.report)
    }
}
