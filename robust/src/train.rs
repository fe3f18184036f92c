//! [`TrainDefense`]: the train-stage defense that fits the pipeline's model,
//! plainly or with DP-SGD, on the training set minus quarantined samples.
//!
//! Differential privacy bounds how much any single record can change the
//! model, so a small number of poisoned records has a bounded effect on it:
//! that is why a privacy mechanism is a poisoning defense.

use std::sync::Arc;

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use mithridate_core::model::{accuracy, SoftmaxParams, SoftmaxRegression};
use mithridate_core::rng::derive_seed;
use mithridate_core::{
    Classifier, Context, Dataset, Defense, Error, Finding, Layer, Report, Result, Stage, Verdict,
};

use crate::dp::AccountantKind;
use crate::dpsgd::{self, DpSgdParams, DpSgdSummary, Optimizer};
use crate::mlp::{Mlp, MlpParams};

/// Which built-in model to train.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Multinomial logistic regression (core's [`SoftmaxRegression`]).
    #[default]
    Softmax,
    /// One hidden `tanh` layer ([`Mlp`]).
    Mlp,
}

impl std::str::FromStr for ModelKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "softmax" => Ok(ModelKind::Softmax),
            "mlp" => Ok(ModelKind::Mlp),
            other => Err(Error::param(
                "model",
                format!("`{other}` is not softmax or mlp"),
            )),
        }
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModelKind::Softmax => "softmax",
            ModelKind::Mlp => "mlp",
        })
    }
}

/// How [`TrainDefense`] trains. Build with [`TrainConfig::plain`] or
/// [`TrainConfig::dp`] and adjust the public fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Model family.
    pub model: ModelKind,
    /// Passes over the data.
    pub epochs: usize,
    /// Mini-batch size (plain) or expected lot size (DP-SGD).
    pub batch_size: usize,
    /// Learning rate.
    pub learning_rate: f32,
    /// L2 penalty on the weights.
    pub l2: f32,
    /// Hidden units of the MLP.
    pub hidden: usize,
    /// DP-SGD settings; `None` trains without privacy.
    pub dp: Option<DpConfig>,
}

/// The privacy part of a [`TrainConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DpConfig {
    /// Budget: training never spends more.
    pub target_epsilon: f64,
    /// Delta of the guarantee.
    pub delta: f64,
    /// Noise multiplier; `None`: calibrated to reach `target_epsilon`.
    pub noise_multiplier: Option<f64>,
    /// Per-sample gradient norm bound.
    pub clip: f32,
    /// Accountant.
    pub accountant: AccountantKind,
    /// Optimiser.
    pub optimizer: Optimizer,
    /// Public input scale (features are divided by it; never fitted on the data).
    pub input_scale: f32,
}

impl DpConfig {
    /// `(target_epsilon, delta)` with the digits-tuned defaults of
    /// [`DpSgdParams::default`] and a calibrated noise multiplier.
    pub fn new(target_epsilon: f64, delta: f64) -> Self {
        let d = DpSgdParams::default();
        Self {
            target_epsilon,
            delta,
            noise_multiplier: None,
            clip: d.clip,
            accountant: AccountantKind::Rdp,
            optimizer: d.optimizer,
            input_scale: d.input_scale,
        }
    }
}

impl TrainConfig {
    /// Softmax regression with core's default parameters, no privacy.
    pub fn plain() -> Self {
        let p = SoftmaxParams::default();
        Self {
            model: ModelKind::Softmax,
            epochs: p.epochs,
            batch_size: p.batch_size,
            learning_rate: p.learning_rate,
            l2: p.l2,
            hidden: MlpParams::default().hidden,
            dp: None,
        }
    }

    /// DP-SGD softmax regression spending at most `(target_epsilon, delta)`,
    /// with defaults tuned on the digits set; the noise multiplier is
    /// calibrated by the RDP accountant when training starts (it depends on
    /// the number of training samples).
    pub fn dp(target_epsilon: f64, delta: f64) -> Self {
        let d = DpSgdParams::default();
        Self {
            model: ModelKind::Softmax,
            epochs: d.epochs,
            batch_size: d.expected_batch_size,
            learning_rate: d.learning_rate,
            l2: d.l2,
            hidden: MlpParams::default().hidden,
            dp: Some(DpConfig::new(target_epsilon, delta)),
        }
    }

    /// The DP-SGD parameters this configuration implies (`None` without DP).
    pub fn dp_params(&self) -> Option<DpSgdParams> {
        self.dp.as_ref().map(|dp| DpSgdParams {
            epochs: self.epochs,
            expected_batch_size: self.batch_size,
            clip: dp.clip,
            noise_multiplier: dp.noise_multiplier,
            target_epsilon: dp.target_epsilon,
            delta: dp.delta,
            accountant: dp.accountant,
            learning_rate: self.learning_rate,
            optimizer: dp.optimizer,
            l2: self.l2,
            input_scale: dp.input_scale,
        })
    }

    /// Check every field.
    pub fn check(&self) -> Result<()> {
        match self.dp_params() {
            Some(p) => p.check()?,
            None => match self.model {
                ModelKind::Softmax => self.softmax_params().check()?,
                ModelKind::Mlp => self.mlp_params().check()?,
            },
        }
        if self.model == ModelKind::Mlp && self.hidden == 0 {
            return Err(Error::param("hidden", "must be at least 1"));
        }
        Ok(())
    }

    fn softmax_params(&self) -> SoftmaxParams {
        SoftmaxParams {
            epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
            l2: self.l2,
        }
    }

    fn mlp_params(&self) -> MlpParams {
        MlpParams {
            hidden: self.hidden,
            epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
            l2: self.l2,
        }
    }

    /// Train on `(x, y)` with `seed`.
    pub fn fit(
        &self,
        x: ArrayView2<'_, f32>,
        y: &[u32],
        n_classes: usize,
        seed: u64,
    ) -> Result<Trained> {
        self.check()?;
        let (model, dp) = match (self.dp_params(), self.model) {
            (None, ModelKind::Softmax) => (
                SavedModel::Softmax(SoftmaxRegression::fit(
                    x,
                    y,
                    n_classes,
                    &self.softmax_params(),
                    seed,
                )?),
                None,
            ),
            (None, ModelKind::Mlp) => (
                SavedModel::Mlp(Mlp::fit(x, y, n_classes, &self.mlp_params(), seed)?),
                None,
            ),
            (Some(p), ModelKind::Softmax) => {
                let (m, s) = dpsgd::train_softmax(x, y, n_classes, &p, seed)?;
                (SavedModel::Softmax(m), Some(s))
            }
            (Some(p), ModelKind::Mlp) => {
                let (m, s) = dpsgd::train_mlp(x, y, n_classes, self.hidden, &p, seed)?;
                (SavedModel::Mlp(m), Some(s))
            }
        };
        Ok(Trained { model, dp })
    }
}

/// A trained built-in model, as saved to JSON (`{"kind": "softmax", "model": {...}}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "model", rename_all = "lowercase")]
pub enum SavedModel {
    /// Softmax regression.
    Softmax(SoftmaxRegression),
    /// One-hidden-layer MLP.
    Mlp(Mlp),
}

impl SavedModel {
    /// The model as a shareable classifier.
    pub fn into_classifier(self) -> Arc<dyn Classifier> {
        match self {
            SavedModel::Softmax(m) => Arc::new(m),
            SavedModel::Mlp(m) => Arc::new(m),
        }
    }

    /// The model as a classifier reference.
    pub fn as_classifier(&self) -> &dyn Classifier {
        match self {
            SavedModel::Softmax(m) => m,
            SavedModel::Mlp(m) => m,
        }
    }
}

/// The outcome of [`TrainConfig::fit`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trained {
    /// The model.
    pub model: SavedModel,
    /// What DP-SGD spent, when it was used.
    pub dp: Option<DpSgdSummary>,
}

/// One point of the utility/privacy trade-off (see [`utility_tradeoff`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TradeoffPoint {
    /// Epsilon spent; `None` for the non-private baseline.
    pub epsilon: Option<f64>,
    /// Noise multiplier (0 for the baseline).
    pub noise_multiplier: f64,
    /// Optimiser steps.
    pub steps: u64,
    /// Accuracy on the holdout.
    pub holdout_accuracy: f64,
    /// Training time.
    pub seconds: f64,
}

/// Holdout accuracy of `base` trained without privacy and with DP-SGD at
/// each budget in `epsilons` (delta and everything else from `base.dp`, or
/// from [`TrainConfig::dp`] when `base` has none): the table and plot of
/// accuracy against epsilon in audit reports.
pub fn utility_tradeoff(
    base: &TrainConfig,
    epsilons: &[f64],
    train: &Dataset,
    holdout: &Dataset,
    seed: u64,
) -> Result<Vec<TradeoffPoint>> {
    let x = train.require_features("utility_tradeoff")?;
    let y = train.require_labels("utility_tradeoff")?;
    let hx = holdout.require_features("utility_tradeoff")?;
    let hy = holdout.require_labels("utility_tradeoff")?;
    if hx.ncols() != x.ncols() {
        return Err(Error::data(format!(
            "holdout has {} features, training data {}",
            hx.ncols(),
            x.ncols()
        )));
    }
    let k = train.n_classes().max(holdout.n_classes()).max(2);
    let mut out = Vec::with_capacity(epsilons.len() + 1);
    let mut plain = base.clone();
    if plain.dp.is_some() {
        // The non-private baseline keeps the model but uses its usual recipe.
        let p = TrainConfig::plain();
        plain = TrainConfig {
            dp: None,
            epochs: p.epochs,
            batch_size: p.batch_size,
            learning_rate: p.learning_rate,
            ..plain
        };
    }
    let mut configs = vec![plain];
    for &e in epsilons {
        let mut c = base.clone();
        let dp = c.dp.get_or_insert_with(|| DpConfig::new(e, 1e-5));
        dp.target_epsilon = e;
        if base.dp.is_none() {
            let d = TrainConfig::dp(e, 1e-5);
            c.epochs = d.epochs;
            c.batch_size = d.batch_size;
            c.learning_rate = d.learning_rate;
            c.l2 = d.l2;
        }
        configs.push(c);
    }
    for c in configs {
        let t0 = std::time::Instant::now();
        let t = c.fit(x.view(), y, k, seed)?;
        let seconds = t0.elapsed().as_secs_f64();
        let acc = accuracy(&t.model.as_classifier().predict(hx.view()), hy);
        out.push(TradeoffPoint {
            epsilon: t.dp.as_ref().map(|s| s.epsilon),
            noise_multiplier: t.dp.as_ref().map_or(0.0, |s| s.noise_multiplier),
            steps: t.dp.as_ref().map_or(0, |s| s.steps),
            holdout_accuracy: acc,
            seconds,
        });
    }
    Ok(out)
}

/// Trains the pipeline's model on `cx.training_set()` (quarantined samples
/// excluded) and stores it in `cx.model`.
///
/// Metrics: `train_samples`, `train_accuracy`, `holdout_accuracy` (when the
/// context has a labelled holdout) and, with DP, `epsilon`, `delta`,
/// `noise_multiplier`, `steps`, `sampling_rate`. Artifacts: `epsilon` (a
/// number) and `dp` (the whole [`DpSgdSummary`]). The verdict is `Warn` when
/// the privacy budget cut training short.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainDefense {
    cfg: TrainConfig,
}

impl TrainDefense {
    /// A defense training with `cfg`.
    pub fn new(cfg: TrainConfig) -> Self {
        Self { cfg }
    }

    /// Its configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }
}

impl Defense for TrainDefense {
    fn name(&self) -> &str {
        if self.cfg.dp.is_some() {
            "train-dp-sgd"
        } else {
            "train"
        }
    }
    fn layer(&self) -> Layer {
        Layer::Robust
    }
    fn stage(&self) -> Stage {
        Stage::Train
    }
    fn run(&self, cx: &mut Context) -> Result<Report> {
        let ds = cx.training_set()?;
        let x = ds.require_features(self.name())?;
        let y = ds.require_labels(self.name())?;
        let k = ds.n_classes().max(2);
        let mut k_all = k;
        if let Some(h) = cx.holdout.as_ref().and_then(|h| h.labels.as_ref()) {
            k_all = k_all.max(h.iter().map(|&l| l as usize + 1).max().unwrap_or(0));
        }
        let trained = self
            .cfg
            .fit(x.view(), y, k_all, derive_seed(cx.seed, "train"))?;
        let clf = trained.model.as_classifier();
        let mut r = Report::new(self.name(), self.layer(), self.stage());
        r.metric("train_samples", ds.len() as f64);
        r.metric("train_accuracy", accuracy(&clf.predict(x.view()), y));
        if let Some(h) = cx.holdout.as_ref() {
            if let (Some(hx), Some(hy)) = (h.features.as_ref(), h.labels.as_ref()) {
                if hx.ncols() == x.ncols() {
                    r.metric("holdout_accuracy", accuracy(&clf.predict(hx.view()), hy));
                }
            }
        }
        let mut summary = format!("trained {} on {} samples", self.cfg.model, ds.len());
        if let Some(s) = &trained.dp {
            r.metric("epsilon", s.epsilon);
            r.metric("delta", s.delta);
            r.metric("noise_multiplier", s.noise_multiplier);
            r.metric("steps", s.steps as f64);
            r.metric("sampling_rate", s.sampling_rate);
            r.metric("clipped_fraction", s.clipped_fraction);
            cx.artifacts
                .insert("epsilon".into(), serde_json::json!(s.epsilon));
            cx.artifacts.insert(
                "dp".into(),
                serde_json::to_value(s).unwrap_or(serde_json::Value::Null),
            );
            summary = format!(
                "{summary} with DP-SGD: epsilon {:.3} at delta {:e} (sigma {:.3}, {} steps, {})",
                s.epsilon, s.delta, s.noise_multiplier, s.steps, s.accountant
            );
            if s.stopped_by_budget {
                r.escalate(Verdict::Warn);
                r.findings.push(Finding::new(
                    s.steps as f64 / s.planned_steps.max(1) as f64,
                    format!(
                        "the privacy budget stopped training after {} of {} planned steps; raise the noise multiplier or the budget",
                        s.steps, s.planned_steps
                    ),
                ));
            }
        }
        r.summary = summary;
        cx.model = Some(trained.model.into_classifier());
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mithridate_core::datasets::digits;
    use mithridate_core::{Quarantine, Reason, SampleId};

    #[test]
    fn plain_training_skips_quarantined_samples() {
        let ds = digits();
        let mut cx = Context::new(1).with_dataset(ds.clone());
        let ids: Vec<SampleId> = ds.ids[..100].to_vec();
        let _ = quarantine_all(&mut cx.quarantine, &ids);
        let mut cfg = TrainConfig::plain();
        cfg.epochs = 5;
        let r = cx.run(&TrainDefense::new(cfg)).unwrap();
        assert_eq!(r.metrics["train_samples"], (ds.len() - 100) as f64);
        assert!(r.metrics["train_accuracy"] > 0.9);
        assert!(cx.model.is_some());
        assert_eq!(r.verdict, Verdict::Pass);
    }

    fn quarantine_all(q: &mut Quarantine, ids: &[SampleId]) -> usize {
        for id in ids {
            q.flag(
                id.clone(),
                Reason {
                    detector: "test".into(),
                    score: 1.0,
                    message: "test".into(),
                },
            );
        }
        ids.len()
    }

    #[test]
    fn dp_training_reports_its_budget() {
        let mut cfg = TrainConfig::dp(2.0, 1e-5);
        cfg.epochs = 3;
        let d = TrainDefense::new(cfg);
        assert_eq!(d.name(), "train-dp-sgd");
        let mut cx = Context::new(2).with_dataset(digits());
        let r = cx.run(&d).unwrap();
        assert!(r.metrics["epsilon"] <= 2.0 && r.metrics["epsilon"] > 1.9);
        assert!(r.metrics["noise_multiplier"] > 0.0 && r.metrics["steps"] > 0.0);
        assert_eq!(cx.artifacts["epsilon"].as_f64(), Some(r.metrics["epsilon"]));
    }

    #[test]
    fn tradeoff_has_a_baseline_and_one_point_per_budget() {
        let ds = digits();
        let tr: Vec<usize> = (0..ds.len()).filter(|i| i % 5 != 0).collect();
        let te: Vec<usize> = (0..ds.len()).filter(|i| i % 5 == 0).collect();
        let (train, holdout) = (ds.select(&tr).unwrap(), ds.select(&te).unwrap());
        let mut base = TrainConfig::plain();
        base.epochs = 5;
        let pts = utility_tradeoff(&base, &[1.0, 8.0], &train, &holdout, 0).unwrap();
        assert_eq!(pts.len(), 3);
        assert!(pts[0].epsilon.is_none() && pts[0].holdout_accuracy > 0.9);
        assert!(pts[1].epsilon.unwrap() <= 1.0 && pts[2].epsilon.unwrap() <= 8.0);
        assert!(pts[2].holdout_accuracy > pts[1].holdout_accuracy - 0.05);
    }

    #[test]
    fn missing_labels_is_an_error() {
        let mut ds = digits();
        ds.labels = None;
        let mut cx = Context::new(0).with_dataset(ds);
        assert!(cx.run(&TrainDefense::new(TrainConfig::plain())).is_err());
    }

    #[test]
    fn saved_models_round_trip_as_json() {
        let ds = digits();
        let mut cfg = TrainConfig::plain();
        cfg.model = ModelKind::Mlp;
        cfg.epochs = 1;
        cfg.hidden = 8;
        let t = cfg
            .fit(
                ds.features.as_ref().unwrap().view(),
                ds.labels.as_ref().unwrap(),
                10,
                0,
            )
            .unwrap();
        let json = serde_json::to_string(&t.model).unwrap();
        assert!(json.starts_with("{\"kind\":\"mlp\""));
        let back: SavedModel = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t.model);
    }
}
