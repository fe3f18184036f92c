//! DP-SGD (Abadi et al. 2016) for the built-in models.
//!
//! Each step draws a Poisson sample (every record independently with
//! probability `q`), clips every per-sample gradient to L2 norm `C`, sums,
//! adds Gaussian noise of standard deviation `sigma * C` to every coordinate,
//! divides by the *expected* batch size `q n` (the actual size is itself data
//! dependent) and hands the result to SGD with momentum or Adam.
//!
//! Privacy: the accountant (RDP or PLD, [`crate::dp`]) is consulted before the
//! first step. Given a noise multiplier, training refuses to start when even
//! one step would exceed the target epsilon, and stops at the last step that
//! stays within it; without one, sigma is calibrated so that the planned steps
//! land on the target. The result records the epsilon actually spent.
//!
//! The input scaling is *not* fitted on the private data (that would leak
//! unaccounted information): it is a fixed public `input_scale`.

use ndarray::{Array1, ArrayView2, Axis};
use rand::Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use mithridate_core::model::{check_xy, softmax_rows, Adam, Scaler, SoftmaxRegression};
use mithridate_core::rng::{derive_seed, seeded};
use mithridate_core::{Classifier, Error, Progress, Result};

use crate::dp::{self, AccountantKind, RdpAccountant};
use crate::mlp::Mlp;

/// A model DP-SGD can train: flat parameters and clipped per-sample gradients
/// of the cross-entropy on already scaled inputs.
pub trait GradModel: Classifier {
    /// Number of parameters.
    fn n_params(&self) -> usize;
    /// The parameters as one flat vector.
    fn params(&self) -> Vec<f32>;
    /// Set the parameters from a flat vector (as laid out by [`GradModel::params`]).
    fn set_params(&mut self, p: &[f32]);
    /// Which flat parameters are weights (L2-penalised) rather than biases.
    fn weight_mask(&self) -> Vec<bool>;
    /// The input scaling the model applies before its first layer.
    fn scaler(&self) -> &Scaler;
    /// Add to `out` the sum over rows of the per-sample gradients, each clipped
    /// to L2 norm `clip` when given. Returns how many samples were clipped.
    fn clipped_grad_sum(
        &self,
        xs: ArrayView2<'_, f32>,
        y: &[u32],
        clip: Option<f32>,
        out: &mut [f32],
    ) -> usize;
    /// Add the gradient of `l2/2 |w|^2` (weights only) at `params` to `grad`.
    fn add_l2(&self, params: &[f32], l2: f32, grad: &mut [f32]) {
        if l2 == 0.0 {
            return;
        }
        for ((g, p), w) in grad.iter_mut().zip(params).zip(self.weight_mask()) {
            if w {
                *g += l2 * p;
            }
        }
    }
}

impl GradModel for SoftmaxRegression {
    fn n_params(&self) -> usize {
        self.weights.len() + self.bias.len()
    }
    fn params(&self) -> Vec<f32> {
        self.weights.iter().chain(&self.bias).copied().collect()
    }
    fn set_params(&mut self, p: &[f32]) {
        for (dst, &src) in self.weights.iter_mut().chain(self.bias.iter_mut()).zip(p) {
            *dst = src;
        }
    }
    fn weight_mask(&self) -> Vec<bool> {
        let mut m = vec![true; self.weights.len()];
        m.extend(std::iter::repeat_n(false, self.bias.len()));
        m
    }
    fn scaler(&self) -> &Scaler {
        &self.scaler
    }
    fn clipped_grad_sum(
        &self,
        xs: ArrayView2<'_, f32>,
        y: &[u32],
        clip: Option<f32>,
        out: &mut [f32],
    ) -> usize {
        let mut e = self.logits_scaled(xs);
        softmax_rows(&mut e);
        for (r, &t) in y.iter().enumerate().take(e.nrows()) {
            if (t as usize) < e.ncols() {
                e[[r, t as usize]] -= 1.0;
            }
        }
        let mut clipped = 0;
        if let Some(c) = clip {
            // |x e^T|^2 + |e|^2 = (|x|^2 + 1) |e|^2.
            for r in 0..e.nrows() {
                let x2: f32 = xs.row(r).iter().map(|v| v * v).sum();
                let e2: f32 = e.row(r).iter().map(|v| v * v).sum();
                let norm = ((x2 + 1.0) * e2).sqrt();
                if norm > c {
                    let f = c / norm;
                    e.row_mut(r).mapv_inplace(|v| v * f);
                    clipped += 1;
                }
            }
        }
        let gw = xs.t().dot(&e);
        let gb = e.sum_axis(Axis(0));
        for (o, g) in out.iter_mut().zip(gw.iter().chain(&gb)) {
            *o += g;
        }
        clipped
    }
}

/// The optimiser applied to the noisy gradient.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Optimizer {
    /// SGD with heavy-ball momentum.
    Sgd {
        /// Momentum in `[0, 1)`.
        momentum: f32,
    },
    /// Adam with the usual betas.
    Adam,
}

/// Hyper-parameters of DP-SGD; [`DpSgdParams::check`] rejects invalid ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DpSgdParams {
    /// Planned passes over the data: `epochs / q` steps.
    pub epochs: usize,
    /// Expected batch (lot) size `L`; the sampling rate is `q = L / n`.
    pub expected_batch_size: usize,
    /// Per-sample gradient norm bound `C`.
    pub clip: f32,
    /// Noise multiplier sigma. `None`: calibrate to reach `target_epsilon`
    /// exactly at the end of the planned steps.
    pub noise_multiplier: Option<f64>,
    /// Privacy budget: training never spends more.
    pub target_epsilon: f64,
    /// Delta of the `(epsilon, delta)` guarantee.
    pub delta: f64,
    /// Accountant for calibration, the budget check and the reported epsilon.
    pub accountant: AccountantKind,
    /// Learning rate.
    pub learning_rate: f32,
    /// Optimiser.
    pub optimizer: Optimizer,
    /// L2 penalty on the weights (data independent, so privacy-free).
    pub l2: f32,
    /// Public input scale: features are divided by it (never fitted on the data).
    pub input_scale: f32,
}

impl Default for DpSgdParams {
    /// Defaults tuned on the digits set (pixel values 0..16): lot 128, 30
    /// epochs, Adam at 0.02, clip 1, inputs divided by 8.
    fn default() -> Self {
        Self {
            epochs: 30,
            expected_batch_size: 128,
            clip: 1.0,
            noise_multiplier: None,
            target_epsilon: 3.0,
            delta: 1e-5,
            accountant: AccountantKind::Rdp,
            learning_rate: 0.02,
            optimizer: Optimizer::Adam,
            l2: 0.0,
            input_scale: 8.0,
        }
    }
}

impl DpSgdParams {
    /// Check every field.
    pub fn check(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::param("epochs", "must be at least 1"));
        }
        if self.expected_batch_size == 0 {
            return Err(Error::param("expected_batch_size", "must be at least 1"));
        }
        if !(self.clip.is_finite() && self.clip > 0.0) {
            return Err(Error::param("clip", "must be a positive finite number"));
        }
        if let Some(s) = self.noise_multiplier {
            if !(s.is_finite() && s > 0.0) {
                return Err(Error::param(
                    "noise_multiplier",
                    "must be a positive finite number",
                ));
            }
        }
        if self.target_epsilon.is_nan() || self.target_epsilon <= 0.0 {
            return Err(Error::param("target_epsilon", "must be positive"));
        }
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return Err(Error::param("delta", "must be in (0, 1)"));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(Error::param(
                "learning_rate",
                "must be a positive finite number",
            ));
        }
        if let Optimizer::Sgd { momentum } = self.optimizer {
            if !(0.0..1.0).contains(&momentum) {
                return Err(Error::param("momentum", "must be in [0, 1)"));
            }
        }
        if !(self.l2.is_finite() && self.l2 >= 0.0) {
            return Err(Error::param("l2", "must be a non-negative finite number"));
        }
        if !(self.input_scale.is_finite() && self.input_scale > 0.0) {
            return Err(Error::param(
                "input_scale",
                "must be a positive finite number",
            ));
        }
        Ok(())
    }
}

/// What a DP-SGD run spent and did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DpSgdSummary {
    /// Epsilon spent (by `accountant`) at `delta`.
    pub epsilon: f64,
    /// Delta of the guarantee.
    pub delta: f64,
    /// Optimal RDP order of the RDP bound (reported for either accountant).
    pub rdp_order: f64,
    /// Noise multiplier used.
    pub noise_multiplier: f64,
    /// Sampling rate `q`.
    pub sampling_rate: f64,
    /// Steps taken.
    pub steps: u64,
    /// Steps planned.
    pub planned_steps: u64,
    /// True when the budget ended training before the planned steps.
    pub stopped_by_budget: bool,
    /// Fraction of per-sample gradients that were clipped.
    pub clipped_fraction: f64,
    /// Accountant used.
    pub accountant: AccountantKind,
}

/// The noise multiplier and the number of steps the budget allows, decided
/// before the first step.
fn plan(params: &DpSgdParams, q: f64, planned: u64) -> Result<(f64, u64)> {
    let eps = |s: f64, t: u64| dp::epsilon(params.accountant, q, s, t, params.delta);
    match params.noise_multiplier {
        None => Ok((
            dp::calibrate_sigma(
                params.target_epsilon,
                q,
                planned,
                params.delta,
                params.accountant,
            )?,
            planned,
        )),
        Some(sigma) => {
            if eps(sigma, planned)? <= params.target_epsilon {
                return Ok((sigma, planned));
            }
            if eps(sigma, 1)? > params.target_epsilon {
                return Err(Error::param(
                    "target_epsilon",
                    format!(
                        "one step with noise multiplier {sigma} at sampling rate {q:.4} already spends more than epsilon {}; \
                         raise the noise or the budget",
                        params.target_epsilon
                    ),
                ));
            }
            // Largest T within budget (epsilon grows with T): bisection.
            let (mut lo, mut hi) = (1u64, planned);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if eps(sigma, mid)? <= params.target_epsilon {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            Ok((sigma, lo))
        }
    }
}

enum Opt {
    Sgd {
        lr: f32,
        momentum: f32,
        velocity: Vec<f32>,
    },
    Adam(Adam),
}

impl Opt {
    fn step(&mut self, params: &mut [f32], grad: &[f32]) {
        match self {
            Opt::Sgd {
                lr,
                momentum,
                velocity,
            } => {
                for ((p, g), v) in params.iter_mut().zip(grad).zip(velocity.iter_mut()) {
                    *v = *momentum * *v + g;
                    *p -= *lr * *v;
                }
            }
            Opt::Adam(a) => a.step(params, grad),
        }
    }
}

/// Train `model` (already initialised; its own scaler is applied to `x`) with
/// DP-SGD on `(x, y)`; `seed` fixes sampling and noise.
pub fn train<M: GradModel>(
    model: &mut M,
    x: ArrayView2<'_, f32>,
    y: &[u32],
    params: &DpSgdParams,
    seed: u64,
    progress: &dyn Progress,
) -> Result<DpSgdSummary> {
    params.check()?;
    check_xy(x, y, model.n_classes())?;
    if x.ncols() != model.n_features() {
        return Err(Error::data(format!(
            "{} features for a model of {}",
            x.ncols(),
            model.n_features()
        )));
    }
    let n = x.nrows();
    let lot = params.expected_batch_size.min(n);
    let q = lot as f64 / n as f64;
    let steps_per_epoch = (1.0 / q).round().max(1.0) as u64;
    let planned = steps_per_epoch * params.epochs as u64;
    let (sigma, allowed) = plan(params, q, planned)?;

    let xs = model.scaler().transform(x);
    let mut flat = model.params();
    let np = flat.len();
    let mut opt = match params.optimizer {
        Optimizer::Sgd { momentum } => Opt::Sgd {
            lr: params.learning_rate,
            momentum,
            velocity: vec![0.0; np],
        },
        Optimizer::Adam => Opt::Adam(Adam::new(np, params.learning_rate)),
    };
    let mut sample_rng = seeded(derive_seed(seed, "dpsgd-sample"));
    let mut noise_rng = seeded(derive_seed(seed, "dpsgd-noise"));
    let noise = Normal::new(0.0f64, sigma * f64::from(params.clip))
        .map_err(|e| Error::param("noise_multiplier", e.to_string()))?;
    let mut rdp = RdpAccountant::new();
    let step_rdp = rdp.step_rdp(q, sigma)?;
    let denom = (q * n as f64) as f32;
    let mut grad = vec![0f32; np];
    let (mut seen, mut clipped) = (0usize, 0usize);
    let mut batch: Vec<usize> = Vec::with_capacity(lot * 2);
    progress.start("DP-SGD", Some(allowed));
    for _ in 0..allowed {
        batch.clear();
        batch.extend((0..n).filter(|_| sample_rng.gen::<f64>() < q));
        grad.iter_mut().for_each(|g| *g = 0.0);
        if !batch.is_empty() {
            let xb = xs.select(Axis(0), &batch);
            let yb: Vec<u32> = batch.iter().map(|&i| y[i]).collect();
            clipped += model.clipped_grad_sum(xb.view(), &yb, Some(params.clip), &mut grad);
            seen += batch.len();
        }
        for g in &mut grad {
            *g = (f64::from(*g) + noise.sample(&mut noise_rng)) as f32 / denom;
        }
        model.add_l2(&flat, params.l2, &mut grad);
        opt.step(&mut flat, &grad);
        model.set_params(&flat);
        rdp.compose_rdp(&step_rdp, 1);
        progress.advance(1);
    }
    progress.finish();
    let (eps_rdp, order) = rdp.epsilon(params.delta)?;
    let epsilon = match params.accountant {
        AccountantKind::Rdp => eps_rdp,
        AccountantKind::Pld => dp::epsilon(AccountantKind::Pld, q, sigma, allowed, params.delta)?,
    };
    tracing::info!(epsilon, sigma, steps = allowed, "DP-SGD finished");
    Ok(DpSgdSummary {
        epsilon,
        delta: params.delta,
        rdp_order: order,
        noise_multiplier: sigma,
        sampling_rate: q,
        steps: allowed,
        planned_steps: planned,
        stopped_by_budget: allowed < planned,
        clipped_fraction: if seen == 0 {
            0.0
        } else {
            clipped as f64 / seen as f64
        },
        accountant: params.accountant,
    })
}

/// A [`SoftmaxRegression`] trained with DP-SGD from zero weights.
pub fn train_softmax(
    x: ArrayView2<'_, f32>,
    y: &[u32],
    n_classes: usize,
    params: &DpSgdParams,
    seed: u64,
) -> Result<(SoftmaxRegression, DpSgdSummary)> {
    params.check()?;
    check_xy(x, y, n_classes)?;
    let scaler = Scaler {
        mean: Array1::zeros(x.ncols()),
        scale: params.input_scale,
    };
    let mut m = SoftmaxRegression::zeros(scaler, x.ncols(), n_classes);
    let s = train(&mut m, x, y, params, seed, &mithridate_core::NoProgress)?;
    Ok((m, s))
}

/// An [`Mlp`] with `hidden` units trained with DP-SGD from a seeded initialisation.
pub fn train_mlp(
    x: ArrayView2<'_, f32>,
    y: &[u32],
    n_classes: usize,
    hidden: usize,
    params: &DpSgdParams,
    seed: u64,
) -> Result<(Mlp, DpSgdSummary)> {
    params.check()?;
    check_xy(x, y, n_classes)?;
    if hidden == 0 {
        return Err(Error::param("hidden", "must be at least 1"));
    }
    let scaler = Scaler {
        mean: Array1::zeros(x.ncols()),
        scale: params.input_scale,
    };
    let mut m = Mlp::init(scaler, x.ncols(), hidden, n_classes, seed);
    let s = train(&mut m, x, y, params, seed, &mithridate_core::NoProgress)?;
    Ok((m, s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mithridate_core::datasets::digits;
    use mithridate_core::model::accuracy;

    fn split() -> (
        ndarray::Array2<f32>,
        Vec<u32>,
        ndarray::Array2<f32>,
        Vec<u32>,
    ) {
        let ds = digits();
        let x = ds.features.as_ref().unwrap();
        let y = ds.labels.as_ref().unwrap();
        let (tr, te): (Vec<usize>, Vec<usize>) = (0..ds.len()).partition(|i| i % 5 != 0);
        (
            x.select(Axis(0), &tr),
            tr.iter().map(|&i| y[i]).collect(),
            x.select(Axis(0), &te),
            te.iter().map(|&i| y[i]).collect(),
        )
    }

    #[test]
    fn dp_softmax_learns_digits_within_budget() {
        let (xtr, ytr, xte, yte) = split();
        let params = DpSgdParams {
            epochs: 10,
            target_epsilon: 3.0,
            ..Default::default()
        };
        let (m, s) = train_softmax(xtr.view(), &ytr, 10, &params, 3).unwrap();
        assert!(s.epsilon <= 3.0 && s.epsilon > 2.9, "{s:?}");
        assert!(!s.stopped_by_budget);
        let acc = accuracy(&m.predict(xte.view()), &yte);
        assert!(acc > 0.8, "accuracy {acc}");
    }

    #[test]
    fn same_seed_same_model() {
        let (xtr, ytr, _, _) = split();
        let params = DpSgdParams {
            epochs: 1,
            ..Default::default()
        };
        let a = train_softmax(xtr.view(), &ytr, 10, &params, 9).unwrap().0;
        let b = train_softmax(xtr.view(), &ytr, 10, &params, 9).unwrap().0;
        let c = train_softmax(xtr.view(), &ytr, 10, &params, 10).unwrap().0;
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn budget_stops_or_refuses() {
        let (xtr, ytr, _, _) = split();
        // Too little noise for the planned steps: stops early, within budget.
        let params = DpSgdParams {
            epochs: 5,
            expected_batch_size: 64,
            noise_multiplier: Some(1.0),
            target_epsilon: 2.0,
            ..Default::default()
        };
        let (_, s) = train_softmax(xtr.view(), &ytr, 10, &params, 1).unwrap();
        assert!(s.stopped_by_budget && s.steps < s.planned_steps, "{s:?}");
        assert!(s.epsilon <= 2.0);
        assert!(dp::epsilon_rdp(s.sampling_rate, 1.0, s.steps + 1, 1e-5).0 > 2.0);
        // Even one step exceeds the budget: refuses to start.
        let params = DpSgdParams {
            noise_multiplier: Some(0.3),
            target_epsilon: 0.1,
            ..params
        };
        assert!(train_softmax(xtr.view(), &ytr, 10, &params, 1).is_err());
    }

    #[test]
    fn sgd_momentum_and_mlp_train() {
        let (xtr, ytr, xte, yte) = split();
        let params = DpSgdParams {
            epochs: 5,
            target_epsilon: 8.0,
            optimizer: Optimizer::Sgd { momentum: 0.9 },
            learning_rate: 0.05,
            ..Default::default()
        };
        let (m, s) = train_mlp(xtr.view(), &ytr, 10, 32, &params, 2).unwrap();
        assert!(s.epsilon <= 8.0);
        let acc = accuracy(&m.predict(xte.view()), &yte);
        assert!(acc > 0.6, "accuracy {acc}");
    }
}
