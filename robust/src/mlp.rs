//! A one-hidden-layer perceptron ([`Mlp`]): the small non-linear built-in
//! model, trainable in the ordinary way ([`Mlp::fit`], [`MlpTrainer`]) or with
//! DP-SGD ([`crate::dpsgd`]).
//!
//! The hidden activation is `tanh`. A bounded activation keeps the norms of
//! per-sample gradients bounded too, which is what DP-SGD clips: with ReLU a
//! few large activations dominate the clipped gradient and more of the signal
//! is lost to clipping (Papernot et al. 2021, "Tempered Sigmoid Activations").

use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use mithridate_core::model::{check_xy, softmax_rows, Adam, Scaler, SoftmaxParams};
use mithridate_core::rng::{derive_seed, seeded};
use mithridate_core::{Classifier, Error, Result, Trainer};

use crate::dpsgd::GradModel;

/// Hyper-parameters of [`Mlp::fit`]; [`MlpParams::check`] rejects invalid ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpParams {
    /// Hidden units.
    pub hidden: usize,
    /// Passes over the data.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Adam learning rate.
    pub learning_rate: f32,
    /// L2 penalty on the weights.
    pub l2: f32,
}

impl Default for MlpParams {
    fn default() -> Self {
        Self {
            hidden: 64,
            epochs: 40,
            batch_size: 64,
            learning_rate: 0.005,
            l2: 1e-4,
        }
    }
}

impl MlpParams {
    /// Check every field. The optimiser fields are the softmax model's and
    /// are checked by the same rules ([`SoftmaxParams::check`]).
    pub fn check(&self) -> Result<()> {
        if self.hidden == 0 {
            return Err(Error::param("hidden", "must be at least 1"));
        }
        SoftmaxParams {
            epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
            l2: self.l2,
        }
        .check()
    }
}

/// `softmax(tanh(x W1 + b1) W2 + b2)` on scaled inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mlp {
    /// Input scaling.
    pub scaler: Scaler,
    /// Input-to-hidden weights, `d x h`.
    pub w1: Array2<f32>,
    /// Hidden biases, `h`.
    pub b1: Array1<f32>,
    /// Hidden-to-output weights, `h x k`.
    pub w2: Array2<f32>,
    /// Output biases, `k`.
    pub b2: Array1<f32>,
}

impl Mlp {
    /// A freshly initialised network (Glorot-uniform weights, zero biases).
    pub fn init(scaler: Scaler, d: usize, hidden: usize, k: usize, seed: u64) -> Self {
        let mut rng = seeded(derive_seed(seed, "mlp-init"));
        let a1 = (6.0 / (d + hidden) as f32).sqrt();
        let a2 = (6.0 / (hidden + k) as f32).sqrt();
        let w1 = Array2::from_shape_fn((d, hidden), |_| rng.gen_range(-a1..a1));
        let w2 = Array2::from_shape_fn((hidden, k), |_| rng.gen_range(-a2..a2));
        Self {
            scaler,
            w1,
            b1: Array1::zeros(hidden),
            w2,
            b2: Array1::zeros(k),
        }
    }

    /// Hidden units.
    pub fn hidden(&self) -> usize {
        self.w1.ncols()
    }

    /// Hidden activations of scaled inputs.
    pub fn hidden_scaled(&self, xs: ArrayView2<'_, f32>) -> Array2<f32> {
        (xs.dot(&self.w1) + &self.b1).mapv(f32::tanh)
    }

    /// `(hidden activations, class probabilities)` of scaled inputs.
    pub fn forward_scaled(&self, xs: ArrayView2<'_, f32>) -> (Array2<f32>, Array2<f32>) {
        let h = self.hidden_scaled(xs);
        let mut p = h.dot(&self.w2) + &self.b2;
        softmax_rows(&mut p);
        (h, p)
    }

    /// Fit with `params` by mini-batch Adam on cross-entropy.
    pub fn fit(
        x: ArrayView2<'_, f32>,
        y: &[u32],
        n_classes: usize,
        params: &MlpParams,
        seed: u64,
    ) -> Result<Self> {
        params.check()?;
        check_xy(x, y, n_classes)?;
        let scaler = Scaler::fit(x);
        let xs = scaler.transform(x);
        let (n, d) = xs.dim();
        let mut m = Self::init(scaler, d, params.hidden, n_classes, seed);
        let np = m.n_params();
        let mut adam = Adam::new(np, params.learning_rate);
        let mut rng = seeded(derive_seed(seed, "mlp-shuffle"));
        let mut order: Vec<usize> = (0..n).collect();
        let mut grad = vec![0f32; np];
        let mut flat = m.params();
        for _ in 0..params.epochs {
            order.shuffle(&mut rng);
            for batch in order.chunks(params.batch_size) {
                let xb = xs.select(Axis(0), batch);
                let yb: Vec<u32> = batch.iter().map(|&i| y[i]).collect();
                grad.iter_mut().for_each(|g| *g = 0.0);
                m.clipped_grad_sum(xb.view(), &yb, None, &mut grad);
                let b = batch.len() as f32;
                grad.iter_mut().for_each(|g| *g /= b);
                m.add_l2(&flat, params.l2, &mut grad);
                adam.step(&mut flat, &grad);
                m.set_params(&flat);
            }
        }
        Ok(m)
    }
}

impl Classifier for Mlp {
    fn n_features(&self) -> usize {
        self.w1.nrows()
    }
    fn n_classes(&self) -> usize {
        self.w2.ncols()
    }
    fn predict_proba(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        self.forward_scaled(self.scaler.transform(x).view()).1
    }
    fn embed(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        self.hidden_scaled(self.scaler.transform(x).view())
    }
    fn input_gradient(&self, x: ArrayView2<'_, f32>, target: &[u32]) -> Option<Array2<f32>> {
        let (h, mut p) = self.forward_scaled(self.scaler.transform(x).view());
        for (r, &t) in target.iter().enumerate().take(p.nrows()) {
            if (t as usize) < p.ncols() {
                p[[r, t as usize]] -= 1.0;
            }
        }
        let d1 = p.dot(&self.w2.t()) * h.mapv(|v| 1.0 - v * v);
        Some(d1.dot(&self.w1.t()) / self.scaler.scale)
    }
}

impl GradModel for Mlp {
    fn n_params(&self) -> usize {
        self.w1.len() + self.b1.len() + self.w2.len() + self.b2.len()
    }

    fn params(&self) -> Vec<f32> {
        self.w1
            .iter()
            .chain(&self.b1)
            .chain(&self.w2)
            .chain(&self.b2)
            .copied()
            .collect()
    }

    fn set_params(&mut self, p: &[f32]) {
        let it = self
            .w1
            .iter_mut()
            .chain(self.b1.iter_mut())
            .chain(self.w2.iter_mut())
            .chain(self.b2.iter_mut());
        for (dst, &src) in it.zip(p) {
            *dst = src;
        }
    }

    fn weight_mask(&self) -> Vec<bool> {
        let mut m = vec![true; self.w1.len()];
        m.extend(std::iter::repeat_n(false, self.b1.len()));
        m.extend(std::iter::repeat_n(true, self.w2.len()));
        m.extend(std::iter::repeat_n(false, self.b2.len()));
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
        let (h, mut e) = self.forward_scaled(xs);
        for (r, &t) in y.iter().enumerate().take(e.nrows()) {
            if (t as usize) < e.ncols() {
                e[[r, t as usize]] -= 1.0;
            }
        }
        let mut d1 = e.dot(&self.w2.t()) * h.mapv(|v| 1.0 - v * v);
        let mut clipped = 0;
        if let Some(c) = clip {
            // Per-sample gradient norms in closed form: an outer product
            // u v^T has norm |u| |v|, so no per-sample gradient is materialised.
            for r in 0..e.nrows() {
                let x2: f32 = xs.row(r).iter().map(|v| v * v).sum();
                let h2: f32 = h.row(r).iter().map(|v| v * v).sum();
                let e2: f32 = e.row(r).iter().map(|v| v * v).sum();
                let d2: f32 = d1.row(r).iter().map(|v| v * v).sum();
                let norm = ((h2 + 1.0) * e2 + (x2 + 1.0) * d2).sqrt();
                if norm > c {
                    let f = c / norm;
                    e.row_mut(r).mapv_inplace(|v| v * f);
                    d1.row_mut(r).mapv_inplace(|v| v * f);
                    clipped += 1;
                }
            }
        }
        let gw1 = xs.t().dot(&d1);
        let gb1 = d1.sum_axis(Axis(0));
        let gw2 = h.t().dot(&e);
        let gb2 = e.sum_axis(Axis(0));
        for (o, g) in out
            .iter_mut()
            .zip(gw1.iter().chain(&gb1).chain(&gw2).chain(&gb2))
        {
            *o += g;
        }
        clipped
    }
}

/// Trains an [`Mlp`] with fixed params (for cross-validation and ensembles).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MlpTrainer {
    /// Hyper-parameters.
    pub params: MlpParams,
}

impl Trainer for MlpTrainer {
    fn fit(
        &self,
        x: ArrayView2<'_, f32>,
        y: &[u32],
        n_classes: usize,
        seed: u64,
    ) -> Result<Box<dyn Classifier>> {
        Ok(Box::new(Mlp::fit(x, y, n_classes, &self.params, seed)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mithridate_core::datasets::digits;
    use mithridate_core::model::accuracy;

    #[test]
    fn mlp_learns_digits() {
        let ds = digits();
        let x = ds.features.as_ref().unwrap();
        let y = ds.labels.as_ref().unwrap();
        let (tr, te): (Vec<usize>, Vec<usize>) = (0..ds.len()).partition(|i| i % 5 != 0);
        let xtr = x.select(Axis(0), &tr);
        let ytr: Vec<u32> = tr.iter().map(|&i| y[i]).collect();
        let params = MlpParams {
            epochs: 15,
            ..Default::default()
        };
        let m = Mlp::fit(xtr.view(), &ytr, 10, &params, 1).unwrap();
        let xte = x.select(Axis(0), &te);
        let yte: Vec<u32> = te.iter().map(|&i| y[i]).collect();
        let acc = accuracy(&m.predict(xte.view()), &yte);
        assert!(acc > 0.93, "accuracy {acc}");
        assert_eq!(m.embed(xte.view()).dim(), (te.len(), 64));
    }

    #[test]
    fn gradients_match_finite_differences() {
        let x = ndarray::array![[0.5f32, -1.0, 2.0], [1.0, 0.0, -0.5]];
        let scaler = Scaler {
            mean: Array1::zeros(3),
            scale: 1.0,
        };
        let m = Mlp::init(scaler, 3, 4, 2, 7);
        // Input gradient.
        let g = m.input_gradient(x.view(), &[1, 0]).unwrap();
        let loss = |xx: &Array2<f32>| -> f32 { -m.predict_proba(xx.view())[[0, 1]].ln() };
        for j in 0..3 {
            let (mut a, mut b) = (x.clone(), x.clone());
            a[[0, j]] += 1e-2;
            b[[0, j]] -= 1e-2;
            let fd = (loss(&a) - loss(&b)) / 2e-2;
            assert!(
                (fd - g[[0, j]]).abs() < 1e-2 * (1.0 + fd.abs()),
                "j={j} fd={fd} g={}",
                g[[0, j]]
            );
        }
        // Parameter gradient of the first row.
        let mut grad = vec![0f32; m.n_params()];
        m.clipped_grad_sum(x.slice(ndarray::s![0..1, ..]), &[1], None, &mut grad);
        let p0 = m.params();
        for k in [0usize, 5, 12, 13, 16, m.n_params() - 1] {
            let mut mm = m.clone();
            let mut pa = p0.clone();
            pa[k] += 1e-2;
            mm.set_params(&pa);
            let la = -mm.predict_proba(x.slice(ndarray::s![0..1, ..]))[[0, 1]].ln();
            pa[k] -= 2e-2;
            mm.set_params(&pa);
            let lb = -mm.predict_proba(x.slice(ndarray::s![0..1, ..]))[[0, 1]].ln();
            let fd = (la - lb) / 2e-2;
            assert!(
                (fd - grad[k]).abs() < 1e-2 * (1.0 + fd.abs()),
                "k={k} fd={fd} g={}",
                grad[k]
            );
        }
    }

    #[test]
    fn clipping_bounds_each_sample() {
        let x = ndarray::array![[50.0f32, -10.0, 20.0]];
        let scaler = Scaler {
            mean: Array1::zeros(3),
            scale: 1.0,
        };
        let m = Mlp::init(scaler, 3, 4, 2, 7);
        let mut grad = vec![0f32; m.n_params()];
        let clipped = m.clipped_grad_sum(x.view(), &[1], Some(0.5), &mut grad);
        let norm: f32 = grad.iter().map(|g| g * g).sum::<f32>().sqrt();
        assert_eq!(clipped, 1);
        assert!(norm <= 0.5 + 1e-4, "norm {norm}");
    }
}
