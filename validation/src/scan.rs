//! Unknown-trigger scan: Neural Cleanse (Wang et al., IEEE S&P 2019) and a
//! STRIP entropy test (Gao et al., ACSAC 2019) on differentiable models.
//!
//! Neural Cleanse asks, for each class `t`, for the smallest mask `m` and
//! pattern `p` such that `x' = (1 - m) x + m p` sends almost every input to
//! `t`. A backdoor is a shortcut: its target needs a much smaller mask than
//! the other classes, so the L1 norms of the masks have an outlier on the
//! small side. The outlier is measured with the anomaly index
//! `|s - median| / (1.4826 MAD)`; an index above 2 (the paper's cut-off)
//! flags the class.
//!
//! These changes make this work on small built-in models, where some classes
//! are naturally reachable with few pixels (measured on digits with a
//! softmax regression, see `examples/nc_seeds.rs`):
//! - the pattern may take any value of the data's global range (a patch
//!   trigger sits where clean images are blank);
//! - the score `s` is on a log scale and partly normalised by the same
//!   search on a reference model distilled from the model on the clean
//!   holdout: `s = ln L1(model) - 0.5 ln L1(reference)`;
//! - the robust spread has a floor (0.25 in log units), so ten classes
//!   that happen to cluster tightly do not turn natural variation into
//!   outliers;
//! - a trigger counts when it reaches 90% attack success (not 99%);
//! - a minimum absolute effect: a flagged class's mask must also be below
//!   0.75 times the median mask, so a noisy model (DP training) whose log
//!   scores spread out does not flag a class whose trigger is barely smaller.
//!
//! STRIP then checks the recovered trigger at inference time: inputs carrying
//! a real trigger keep their (target) prediction when blended with random
//! clean inputs, so the entropy of the blended predictions is low. The rate
//! at which stamped inputs fall below the entropy threshold calibrated on
//! clean inputs confirms (or not) that the recovered trigger behaves like a
//! backdoor, and [`Strip`] can screen production inputs.

use std::fmt::Write as _;

use base64::Engine as _;
use mithridate_core::model::Adam;
use mithridate_core::rng::{derive_seed, seeded};
use mithridate_core::{
    Classifier, Context, Dataset, Defense, Error, Finding, Layer, Report, Result, Stage, ThreatTag,
    Verdict,
};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::junit::{Check, Outcome};

/// Parameters of the Neural Cleanse optimisation and of the STRIP test.
/// Build with `Default` and adjust; [`ScanParams::check`] rejects bad values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanParams {
    /// Optimisation steps per candidate class.
    pub steps: usize,
    /// Adam learning rate on the mask and pattern logits.
    pub learning_rate: f32,
    /// Initial weight of the mask L1 penalty (adapted during the search).
    pub initial_cost: f32,
    /// Initial value of every mask entry, in (0, 1).
    pub initial_mask: f32,
    /// Independent restarts per class; the smallest successful mask is kept.
    pub restarts: usize,
    /// Compare with a reference: a softmax regression trained on the clean
    /// holdout and scanned the same way. The anomaly index is then taken over
    /// `ln(mask L1 of the model / mask L1 of the reference)`, which cancels
    /// how easy each class is to reach by nature (on small images some
    /// classes need few pixels whatever the training data was).
    pub reference: bool,
    /// Weight `b` of the reference in the score `ln L1(model) - b ln L1(reference)`.
    /// 1 would cancel each class's natural difficulty completely, but the
    /// reference is trained on the small holdout and its estimate is noisy,
    /// so the default takes half of it (a shrinkage towards the plain score).
    pub reference_weight: f64,
    /// Train the reference by distillation: a softmax regression fitted on
    /// the holdout inputs to the model's own class probabilities (instead of
    /// the holdout labels). It copies how the model separates clean inputs,
    /// including how sharp its logits are, so each class's natural
    /// difficulty is estimated for this model rather than for a weaker one
    /// trained on fewer data. A trigger cannot be copied: its features are
    /// absent from clean inputs, so the student never sees them fire.
    pub reference_distill: bool,
    /// Passes over the holdout when training the reference.
    pub reference_epochs: usize,
    /// A flagged class's mask L1 must also be below this fraction of the
    /// median mask L1 of all classes (a minimum absolute effect): noisy
    /// models (DP training) spread the scores so that a class can be an
    /// outlier of the log scores while its trigger is not much smaller.
    pub max_l1_ratio: f64,
    /// Lower bound of the robust spread (1.4826 MAD) of the log scores: a
    /// class whose mask is within this factor (`e^min_spread`) of the median
    /// is never an outlier, however tightly the other classes cluster. With
    /// ten classes the MAD alone is often tiny and flags natural variation.
    pub min_spread: f64,
    /// Bound each pattern value by that feature's range on the holdout
    /// instead of the global range of all features.
    pub per_feature_bounds: bool,
    /// Attack success rate a candidate trigger must reach to count. Below
    /// the paper's 0.99: the last percent of inputs are the few that are
    /// most confidently of another class, and reaching them inflates every
    /// class's mask alike, hiding the backdoor's shortcut (on digits, 0.9
    /// separates a backdoored target from clean classes more often).
    pub target_asr: f64,
    /// Inputs used per class (holdout inputs of other classes, sampled).
    pub samples: usize,
    /// Anomaly index above which a small-mask class is flagged.
    pub anomaly_threshold: f64,
    /// STRIP: blends per input.
    pub strip_blends: usize,
    /// STRIP: false rejection rate on clean inputs that sets the entropy threshold.
    pub strip_frr: f64,
}

impl Default for ScanParams {
    fn default() -> Self {
        Self {
            steps: 1000,
            learning_rate: 0.05,
            initial_cost: 1e-3,
            initial_mask: 0.02,
            restarts: 1,
            reference: true,
            per_feature_bounds: false,
            reference_weight: 0.5,
            reference_distill: true,
            reference_epochs: 60,
            max_l1_ratio: 0.75,
            min_spread: 0.25,
            target_asr: 0.9,
            samples: 200,
            anomaly_threshold: 2.0,
            strip_blends: 16,
            strip_frr: 0.01,
        }
    }
}

impl ScanParams {
    /// Check every field.
    pub fn check(&self) -> Result<()> {
        if self.steps == 0 {
            return Err(Error::param("steps", "must be at least 1"));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(Error::param("learning_rate", "must be positive"));
        }
        if !(self.initial_cost.is_finite() && self.initial_cost > 0.0) {
            return Err(Error::param("initial_cost", "must be positive"));
        }
        if !(self.initial_mask > 0.0 && self.initial_mask < 1.0) {
            return Err(Error::param("initial_mask", "must be in (0, 1)"));
        }
        if self.restarts == 0 {
            return Err(Error::param("restarts", "must be at least 1"));
        }
        if !(self.target_asr > 0.0 && self.target_asr <= 1.0) {
            return Err(Error::param("target_asr", "must be in (0, 1]"));
        }
        if self.samples < 2 {
            return Err(Error::param("samples", "must be at least 2"));
        }
        if !(self.anomaly_threshold.is_finite() && self.anomaly_threshold > 0.0) {
            return Err(Error::param("anomaly_threshold", "must be positive"));
        }
        if !(self.reference_weight.is_finite() && (0.0..=1.0).contains(&self.reference_weight)) {
            return Err(Error::param("reference_weight", "must be in [0, 1]"));
        }
        if self.reference_epochs == 0 {
            return Err(Error::param("reference_epochs", "must be at least 1"));
        }
        if !(self.max_l1_ratio.is_finite() && self.max_l1_ratio > 0.0) {
            return Err(Error::param("max_l1_ratio", "must be positive"));
        }
        if !(self.min_spread.is_finite() && self.min_spread >= 0.0) {
            return Err(Error::param("min_spread", "must be a non-negative number"));
        }
        if self.strip_blends == 0 {
            return Err(Error::param("strip_blends", "must be at least 1"));
        }
        if !(self.strip_frr > 0.0 && self.strip_frr < 1.0) {
            return Err(Error::param("strip_frr", "must be in (0, 1)"));
        }
        Ok(())
    }
}

/// The smallest trigger found for one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveredTrigger {
    /// Candidate target class.
    pub target: u32,
    /// Mask in [0, 1], one value per feature.
    pub mask: Vec<f32>,
    /// Pattern, one value per feature, within the data's range.
    pub pattern: Vec<f32>,
    /// L1 norm of the mask.
    pub mask_l1: f64,
    /// ASR of the trigger on the inputs it was optimised on.
    pub asr: f64,
}

impl RecoveredTrigger {
    /// Apply to one input: `(1 - m) x + m p`.
    pub fn apply(&self, x: &mut [f32]) {
        for ((v, m), p) in x.iter_mut().zip(&self.mask).zip(&self.pattern) {
            *v = (1.0 - m) * *v + m * p;
        }
    }
}

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

/// Range of the pattern: the data's global range (a pixel may take any
/// value a pixel takes anywhere), or each feature's own range. The global
/// range is the default because a patch trigger typically sits where clean
/// images are blank: limited to that feature's clean range, the search
/// could not express it.
fn ranges(x: ArrayView2<'_, f32>, per_feature: bool) -> (Array1<f32>, Array1<f32>) {
    let lo = x.fold_axis(Axis(0), f32::INFINITY, |a, &b| a.min(b));
    let hi = x.fold_axis(Axis(0), f32::NEG_INFINITY, |a, &b| a.max(b));
    if per_feature {
        return (lo, hi);
    }
    let (l, h) = (
        lo.fold(f32::INFINITY, |a, &b| a.min(b)),
        hi.fold(f32::NEG_INFINITY, |a, &b| a.max(b)),
    );
    (
        Array1::from_elem(lo.len(), l),
        Array1::from_elem(hi.len(), h),
    )
}

/// Reverse-engineer the smallest trigger sending `x` (inputs of classes other
/// than `target`) to `target`, by Adam on mask and pattern logits with an L1
/// penalty whose weight is raised while the trigger works and lowered when it
/// does not (the schedule of the Neural Cleanse paper).
pub fn reverse_engineer(
    model: &dyn Classifier,
    x: ArrayView2<'_, f32>,
    target: u32,
    bounds: (&Array1<f32>, &Array1<f32>),
    params: &ScanParams,
    seed: u64,
) -> Result<RecoveredTrigger> {
    params.check()?;
    let (n, d) = x.dim();
    if n == 0 || d != model.n_features() {
        return Err(Error::data(format!(
            "{n} inputs of {d} features for a model of {}",
            model.n_features()
        )));
    }
    let (lo, hi) = bounds;
    let span: Array1<f32> = (hi - lo).mapv(|v| v.max(1e-6));
    let mut rng = seeded(seed);
    // theta = [mask logits (d), pattern logits (d)]
    let m0 = (params.initial_mask / (1.0 - params.initial_mask)).ln();
    let mut theta: Vec<f32> = (0..d).map(|_| m0 + rng.gen::<f32>() * 0.1).collect();
    theta.extend((0..d).map(|_| rng.gen::<f32>() - 0.5));
    let mut adam = Adam::new(2 * d, params.learning_rate);
    let mut cost = params.initial_cost;
    let targets = vec![target; n];
    let mut best: Option<RecoveredTrigger> = None;
    let mut last = None;
    let (mut up, mut down) = (0usize, 0usize);
    let mut grad = vec![0f32; 2 * d];
    for _ in 0..params.steps {
        let m: Vec<f32> = theta[..d].iter().map(|&a| sigmoid(a)).collect();
        let sp: Vec<f32> = theta[d..].iter().map(|&b| sigmoid(b)).collect();
        let p: Vec<f32> = (0..d).map(|j| lo[j] + span[j] * sp[j]).collect();
        let mut xs = x.to_owned();
        for mut row in xs.rows_mut() {
            for j in 0..d {
                row[j] = (1.0 - m[j]) * row[j] + m[j] * p[j];
            }
        }
        let g = model
            .input_gradient(xs.view(), &targets)
            .ok_or_else(|| Error::Model("the model gives no input gradient".into()))?;
        let pred = model.predict(xs.view());
        let asr = pred.iter().filter(|&&l| l == target).count() as f64 / n as f64;
        let l1: f64 = m.iter().map(|&v| f64::from(v)).sum();
        if asr >= params.target_asr && best.as_ref().is_none_or(|b| l1 < b.mask_l1) {
            best = Some(RecoveredTrigger {
                target,
                mask: m.clone(),
                pattern: p.clone(),
                mask_l1: l1,
                asr,
            });
        }
        last = Some(RecoveredTrigger {
            target,
            mask: m.clone(),
            pattern: p.clone(),
            mask_l1: l1,
            asr,
        });
        // Cost schedule: raise while the trigger works, lower when it does not.
        if asr >= params.target_asr {
            up += 1;
            down = 0;
        } else {
            down += 1;
            up = 0;
        }
        if up >= 5 {
            cost *= 1.5;
            up = 0;
        } else if down >= 5 {
            cost /= 1.5;
            down = 0;
        }
        let inv = 1.0 / n as f32;
        for j in 0..d {
            let col = g.column(j);
            let (mut gm, mut gp) = (0f32, 0f32);
            for (i, &gij) in col.iter().enumerate() {
                gm += gij * (p[j] - x[[i, j]]);
                gp += gij;
            }
            gm = gm * inv + cost;
            gp = gp * inv * m[j];
            grad[j] = gm * m[j] * (1.0 - m[j]);
            grad[d + j] = gp * span[j] * sp[j] * (1.0 - sp[j]);
        }
        adam.step(&mut theta, &grad);
    }
    best.or(last)
        .ok_or_else(|| Error::Model("trigger search did not run".into()))
}

/// The anomaly index of each value: `|v - median| / (1.4826 * MAD)`.
/// With a zero MAD every value off the median gets an infinite index.
pub fn anomaly_index(values: &[f64]) -> Vec<f64> {
    anomaly_index_floored(values, 0.0)
}

/// The anomaly index with the robust spread `1.4826 * MAD` floored at `min_spread`.
pub fn anomaly_index_floored(values: &[f64], min_spread: f64) -> Vec<f64> {
    let med = median(values);
    let dev: Vec<f64> = values.iter().map(|v| (v - med).abs()).collect();
    let spread = (median(&dev) * 1.4826).max(min_spread);
    dev.iter()
        .map(|&d| {
            if spread > 0.0 {
                d / spread
            } else if d > 0.0 {
                f64::INFINITY
            } else {
                0.0
            }
        })
        .collect()
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// STRIP: the entropy of a model's predictions on an input blended with
/// random clean inputs, with a threshold calibrated on clean inputs.
#[derive(Debug, Clone)]
pub struct Strip {
    pool: Array2<f32>,
    blends: usize,
    /// Inputs whose mean entropy is below this are flagged.
    pub threshold: f64,
    seed: u64,
}

impl Strip {
    /// Calibrate on `clean` inputs: the threshold is the `frr` quantile of
    /// their entropies, so about `frr` of clean inputs are flagged.
    pub fn calibrate(
        model: &dyn Classifier,
        clean: ArrayView2<'_, f32>,
        blends: usize,
        frr: f64,
        seed: u64,
    ) -> Result<Self> {
        if clean.nrows() < 2 {
            return Err(Error::data("STRIP needs at least two clean inputs"));
        }
        let mut s = Self {
            pool: clean.to_owned(),
            blends: blends.max(1),
            threshold: 0.0,
            seed,
        };
        let mut e = s.entropies(model, clean);
        e.sort_by(f64::total_cmp);
        let k = ((frr * e.len() as f64).floor() as usize).min(e.len() - 1);
        s.threshold = e[k];
        Ok(s)
    }

    /// Mean entropy (nats) of the predictions on each row of `x` blended
    /// half-and-half with random pool inputs.
    pub fn entropies(&self, model: &dyn Classifier, x: ArrayView2<'_, f32>) -> Vec<f64> {
        let mut rng = seeded(derive_seed(self.seed, "strip"));
        let (n, d) = x.dim();
        let b = self.blends;
        let mut blended = Array2::<f32>::zeros((n * b, d));
        for i in 0..n {
            for k in 0..b {
                let r = rng.gen_range(0..self.pool.nrows());
                let mut row = blended.row_mut(i * b + k);
                for j in 0..d {
                    row[j] = 0.5 * x[[i, j]] + 0.5 * self.pool[[r, j]];
                }
            }
        }
        let p = model.predict_proba(blended.view());
        (0..n)
            .map(|i| {
                (0..b)
                    .map(|k| {
                        p.row(i * b + k)
                            .iter()
                            .filter(|&&q| q > 0.0)
                            .map(|&q| -f64::from(q) * f64::from(q).ln())
                            .sum::<f64>()
                    })
                    .sum::<f64>()
                    / b as f64
            })
            .collect()
    }

    /// Which rows of `x` look triggered (entropy below the threshold).
    pub fn flags(&self, model: &dyn Classifier, x: ArrayView2<'_, f32>) -> Vec<bool> {
        self.entropies(model, x)
            .into_iter()
            .map(|e| e < self.threshold)
            .collect()
    }
}

/// Result of a scan: every class's recovered trigger and anomaly index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanResult {
    /// One per class, in class order.
    pub triggers: Vec<RecoveredTrigger>,
    /// Mask L1 per class of the reference model (empty without a reference).
    pub reference_l1: Vec<f64>,
    /// Score per class: `ln L1(model) - w ln L1(reference)` (see [`ScanParams`]).
    pub scores: Vec<f64>,
    /// Anomaly index per class.
    pub anomaly_index: Vec<f64>,
    /// Classes flagged (small-side outliers above the threshold).
    pub suspected: Vec<u32>,
    /// STRIP: fraction of holdout inputs stamped with each class's trigger that STRIP flags.
    pub strip_detect_rate: Vec<f64>,
    /// STRIP entropy threshold.
    pub strip_threshold: f64,
}

/// A softmax regression trained on the rows of `x` to reproduce `model`'s
/// class probabilities (cross-entropy to soft targets, mini-batch Adam with
/// the L2 penalty of `params`): the reference of [`ScanParams::reference_distill`].
pub fn distill(
    model: &dyn Classifier,
    x: ArrayView2<'_, f32>,
    params: &mithridate_core::model::SoftmaxParams,
    seed: u64,
) -> Result<mithridate_core::model::SoftmaxRegression> {
    use rand::seq::SliceRandom as _;
    params.check()?;
    let (n, d) = x.dim();
    let k = model.n_classes();
    if n == 0 || d != model.n_features() {
        return Err(Error::data(format!(
            "{n} inputs of {d} features to distil a model of {}",
            model.n_features()
        )));
    }
    let soft = model.predict_proba(x);
    let scaler = mithridate_core::model::Scaler::fit(x);
    let xs = scaler.transform(x);
    let mut student = mithridate_core::model::SoftmaxRegression::zeros(scaler, d, k);
    let mut flat = vec![0f32; d * k + k];
    let mut grad = vec![0f32; flat.len()];
    let mut adam = Adam::new(flat.len(), params.learning_rate);
    let mut rng = seeded(seed);
    let mut order: Vec<usize> = (0..n).collect();
    let shape_err = |e: ndarray::ShapeError| Error::data(e.to_string());
    for _ in 0..params.epochs {
        order.shuffle(&mut rng);
        for batch in order.chunks(params.batch_size) {
            let (w, b) = flat.split_at(d * k);
            let w = ArrayView2::from_shape((d, k), w).map_err(shape_err)?;
            let xb = xs.select(Axis(0), batch);
            let mut p = xb.dot(&w) + ndarray::ArrayView1::from(b);
            mithridate_core::model::softmax_rows(&mut p);
            p -= &soft.select(Axis(0), batch);
            let m = batch.len() as f32;
            let gw = xb.t().dot(&p) / m + &w * params.l2;
            let gb = p.sum_axis(Axis(0)) / m;
            for (g, v) in grad.iter_mut().zip(gw.iter().chain(gb.iter())) {
                *g = *v;
            }
            adam.step(&mut flat, &grad);
        }
    }
    student.bias = Array1::from(flat.split_off(d * k));
    student.weights = Array2::from_shape_vec((d, k), flat).map_err(shape_err)?;
    Ok(student)
}

/// Neural Cleanse over every class of `model`, with holdout inputs of the other classes.
fn cleanse(
    model: &dyn Classifier,
    holdout: &Dataset,
    bounds: (&Array1<f32>, &Array1<f32>),
    params: &ScanParams,
    seed: u64,
    init_seed: u64,
) -> Result<Vec<RecoveredTrigger>> {
    let x = holdout.require_features("trigger scan")?;
    let y = holdout.require_labels("trigger scan")?;
    let (lo, hi) = bounds;
    let k = model.n_classes();
    let mut triggers = Vec::with_capacity(k);
    for t in 0..k as u32 {
        let idx: Vec<usize> = (0..holdout.len()).filter(|&i| y[i] != t).collect();
        let order =
            mithridate_core::attack::shuffled(idx.len(), derive_seed(seed, &format!("scan/{t}")));
        let sel: Vec<usize> = order
            .into_iter()
            .take(params.samples)
            .map(|j| idx[j])
            .collect();
        if sel.is_empty() {
            return Err(Error::data(format!("no holdout input outside class {t}")));
        }
        let xs = x.select(Axis(0), &sel);
        let mut best: Option<RecoveredTrigger> = None;
        for r in 0..params.restarts {
            let cand = reverse_engineer(
                model,
                xs.view(),
                t,
                (lo, hi),
                params,
                derive_seed(init_seed, &format!("nc/{t}/{r}")),
            )?;
            let better = best.as_ref().is_none_or(|b| {
                (cand.asr >= params.target_asr, -cand.mask_l1)
                    > (b.asr >= params.target_asr, -b.mask_l1)
            });
            if better {
                best = Some(cand);
            }
        }
        triggers.extend(best);
    }
    Ok(triggers)
}

/// Scan `model` with the inputs of `holdout`.
pub fn scan(
    model: &dyn Classifier,
    holdout: &Dataset,
    params: &ScanParams,
    seed: u64,
) -> Result<ScanResult> {
    params.check()?;
    let x = holdout.require_features("trigger scan")?;
    let y = holdout.require_labels("trigger scan")?;
    if x.ncols() != model.n_features() {
        return Err(Error::data(format!(
            "holdout has {} features, the model takes {}",
            x.ncols(),
            model.n_features()
        )));
    }
    let k = model.n_classes();
    if k < 3 {
        return Err(Error::data(
            "the anomaly index needs at least three classes",
        ));
    }
    let (lo, hi) = ranges(x.view(), params.per_feature_bounds);
    let triggers = cleanse(model, holdout, (&lo, &hi), params, seed, seed)?;
    let norms: Vec<f64> = triggers.iter().map(|t| t.mask_l1).collect();
    let (reference_l1, scores): (Vec<f64>, Vec<f64>) = if params.reference {
        let rparams = mithridate_core::model::SoftmaxParams {
            epochs: params.reference_epochs,
            ..Default::default()
        };
        let rseed = derive_seed(seed, "scan/reference");
        let reference = if params.reference_distill {
            distill(model, x.view(), &rparams, rseed)?
        } else {
            mithridate_core::model::SoftmaxRegression::fit(x.view(), y, k, &rparams, rseed)?
        };
        let r = cleanse(
            &reference,
            holdout,
            (&lo, &hi),
            params,
            seed,
            derive_seed(seed, "scan/reference-nc"),
        )?;
        let rl: Vec<f64> = r.iter().map(|t| t.mask_l1).collect();
        let sc = norms
            .iter()
            .zip(&rl)
            .map(|(m, r)| m.max(1e-9).ln() - params.reference_weight * r.max(1e-9).ln())
            .collect();
        (rl, sc)
    } else {
        (Vec::new(), norms.iter().map(|m| m.max(1e-9).ln()).collect())
    };
    let idx = anomaly_index_floored(&scores, params.min_spread);
    let med = median(&scores);
    let suspected: Vec<u32> = (0..k)
        .filter(|&c| {
            scores[c] < med
                && idx[c] > params.anomaly_threshold
                && norms[c] < params.max_l1_ratio * median(&norms)
        })
        .map(|c| c as u32)
        .collect();
    let strip = Strip::calibrate(
        model,
        x.view(),
        params.strip_blends,
        params.strip_frr,
        derive_seed(seed, "strip"),
    )?;
    let probe_n = x.nrows().min(params.samples);
    let mut strip_detect_rate = Vec::with_capacity(k);
    for t in &triggers {
        let mut xs = x.slice(ndarray::s![..probe_n, ..]).to_owned();
        for mut row in xs.rows_mut() {
            if let Some(s) = row.as_slice_mut() {
                t.apply(s);
            }
        }
        let f = strip.flags(model, xs.view());
        strip_detect_rate.push(f.iter().filter(|&&b| b).count() as f64 / f.len().max(1) as f64);
    }
    Ok(ScanResult {
        triggers,
        reference_l1,
        scores,
        anomaly_index: idx,
        suspected,
        strip_detect_rate,
        strip_threshold: strip.threshold,
    })
}

/// An SVG picture of a recovered trigger: the mask (white = 1) beside the
/// stamped pattern `m * p` (scaled to the data range), one square per
/// feature on a `side x side` grid (a single row when the features are not
/// a square image).
pub fn trigger_svg(t: &RecoveredTrigger, hi: f32) -> String {
    let d = t.mask.len();
    let side = (d as f64).sqrt().round() as usize;
    let (rows, cols) = if side * side == d && side > 0 {
        (side, side)
    } else {
        (1, d.max(1))
    };
    let cell = (160 / cols.max(rows)).max(2);
    let (w, h) = (cols * cell, rows * cell);
    let mut s = String::new();
    let _ = write!(s, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\">", 2 * w + 10, h + 16, 2 * w + 10, h + 16);
    let _ = write!(s, "<title>recovered trigger for class {}</title>", t.target);
    let hi = if hi > 0.0 { hi } else { 1.0 };
    for (panel, x0) in [(0, 0), (1, w + 10)] {
        for i in 0..d {
            let (r, c) = (i / cols, i % cols);
            let v = if panel == 0 {
                t.mask[i]
            } else {
                t.mask[i] * t.pattern[i] / hi
            };
            let g = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            let _ = write!(s, "<rect x=\"{}\" y=\"{}\" width=\"{cell}\" height=\"{cell}\" fill=\"#{g:02x}{g:02x}{g:02x}\"/>", x0 + c * cell, r * cell);
        }
    }
    let _ = write!(
        s,
        "<text x=\"0\" y=\"{}\" font-size=\"11\" font-family=\"sans-serif\">mask</text>",
        h + 12
    );
    let _ = write!(s, "<text x=\"{}\" y=\"{}\" font-size=\"11\" font-family=\"sans-serif\">mask x pattern</text></svg>", w + 10, h + 12);
    s
}

/// Unknown-trigger scan (`unknown-trigger-scan`): Neural Cleanse over every
/// class of the context's model on the holdout inputs; fails when a class is
/// a small-mask outlier, and puts the recovered trigger in the finding as an
/// SVG image.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TriggerScan {
    params: ScanParams,
}

impl TriggerScan {
    /// Name in reports and `mithridate.toml`.
    pub const NAME: &'static str = "unknown-trigger-scan";

    /// A scan with the default parameters.
    pub fn new() -> Self {
        Self::default()
    }

    /// A scan with `params`.
    #[must_use]
    pub fn with_params(mut self, params: ScanParams) -> Self {
        self.params = params;
        self
    }

    /// Scan and judge.
    pub fn evaluate(
        &self,
        model: &dyn Classifier,
        holdout: &Dataset,
        seed: u64,
    ) -> Result<(Outcome, ScanResult)> {
        let res = scan(model, holdout, &self.params, seed)?;
        let mut out = Outcome {
            report: Report::new(Self::NAME, Layer::Validation, Stage::Release),
            checks: Vec::new(),
        };
        out.report.params = serde_json::to_value(&self.params).unwrap_or_default();
        out.report
            .metric("suspected_classes", res.suspected.len() as f64);
        out.report.metric("strip_threshold", res.strip_threshold);
        let hi = holdout
            .features
            .as_ref()
            .map_or(1.0, |x| x.fold(0f32, |a, &b| a.max(b)));
        for (c, t) in res.triggers.iter().enumerate() {
            let name = holdout.label_name(c as u32);
            out.report.metric(
                format!("anomaly_index/{name}"),
                if res.anomaly_index[c].is_finite() {
                    res.anomaly_index[c]
                } else {
                    f64::MAX
                },
            );
            out.report.metric(format!("mask_l1/{name}"), t.mask_l1);
            out.report.metric(
                format!("strip_detect_rate/{name}"),
                res.strip_detect_rate[c],
            );
            let suspected = res.suspected.contains(&(c as u32));
            let msg = format!(
                "class {name}: smallest trigger mask L1 {:.2}, anomaly index {:.2} (threshold {}), STRIP flags {:.0}% of stamped inputs",
                t.mask_l1, res.anomaly_index[c], self.params.anomaly_threshold, res.strip_detect_rate[c] * 100.0
            );
            if suspected {
                let svg = trigger_svg(t, hi);
                let uri = format!(
                    "data:image/svg+xml;base64,{}",
                    base64::engine::general_purpose::STANDARD.encode(svg.as_bytes())
                );
                out.report.findings.push(
                    Finding::new(res.anomaly_index[c], format!("suspected backdoor target {name}: a trigger of mask L1 {:.2} sends {:.0}% of inputs to it (median mask L1 of classes {:.2})", t.mask_l1, t.asr * 100.0, median(&res.triggers.iter().map(|t| t.mask_l1).collect::<Vec<_>>())))
                        .with_tags([ThreatTag::atlas_backdoor_model(), ThreatTag::atlas_poison_training_data()])
                        .with_detail(serde_json::json!({
                            "class": c, "anomaly_index": res.anomaly_index[c], "mask_l1": t.mask_l1, "asr": t.asr,
                            "strip_detect_rate": res.strip_detect_rate[c], "mask": t.mask, "pattern": t.pattern,
                            "image_svg": svg, "image": uri,
                        })),
                );
                out.push(
                    Check::new(format!("class {name}"), Verdict::Fail, msg)
                        .measured(res.anomaly_index[c], self.params.anomaly_threshold),
                );
            } else {
                out.push(
                    Check::new(format!("class {name}"), Verdict::Pass, msg)
                        .measured(res.anomaly_index[c], self.params.anomaly_threshold),
                );
            }
        }
        out.report.scores = res
            .anomaly_index
            .iter()
            .map(|v| if v.is_finite() { *v } else { f64::MAX })
            .collect();
        out.report.summary = if res.suspected.is_empty() {
            format!(
                "no suspected backdoor target among {} classes",
                res.triggers.len()
            )
        } else {
            format!(
                "suspected backdoor target class(es): {}",
                res.suspected
                    .iter()
                    .map(|c| holdout.label_name(*c))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        Ok((out, res))
    }
}

impl Defense for TriggerScan {
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
        let model = cx.require_model("trigger scan")?;
        let holdout = cx.require_holdout("trigger scan")?;
        let (out, res) = self.evaluate(model.as_ref(), holdout, cx.seed)?;
        out.store_checks(&mut cx.artifacts, Self::NAME);
        if !res.suspected.is_empty() {
            cx.artifacts.insert(
                "validation/suspected_classes".into(),
                serde_json::to_value(&res.suspected).unwrap_or_default(),
            );
        }
        Ok(out.report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anomaly_index_flags_the_outlier() {
        let v = [10.0, 11.0, 9.5, 10.5, 2.0, 10.2];
        let a = anomaly_index(&v);
        assert!(
            a[4] > 2.0 && a.iter().enumerate().all(|(i, &x)| i == 4 || x < 2.0),
            "{a:?}"
        );
        assert_eq!(anomaly_index(&[1.0, 1.0, 1.0]), vec![0.0, 0.0, 0.0]);
    }

    #[test]
    fn params_are_checked() {
        assert!(ScanParams {
            steps: 0,
            ..Default::default()
        }
        .check()
        .is_err());
        assert!(ScanParams {
            strip_frr: 1.0,
            ..Default::default()
        }
        .check()
        .is_err());
        assert!(ScanParams::default().check().is_ok());
    }

    #[test]
    fn svg_has_one_cell_per_feature_per_panel() {
        let t = RecoveredTrigger {
            target: 7,
            mask: vec![0.5; 64],
            pattern: vec![16.0; 64],
            mask_l1: 32.0,
            asr: 1.0,
        };
        let s = trigger_svg(&t, 16.0);
        assert_eq!(s.matches("<rect").count(), 128);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
    }
}
