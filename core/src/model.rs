//! Models: the [`Classifier`] and [`Trainer`] traits that detectors and
//! validators are written against, a built-in [`SoftmaxRegression`], and the
//! [`Predictor`] trait for models that live outside the process.

use ndarray::{s, Array1, Array2, ArrayView2, Axis};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rng::seeded;

/// A trained classifier over `n_features()` inputs and `n_classes()` classes.
///
/// Object safe, so a pipeline holds any model as `Arc<dyn Classifier>`.
pub trait Classifier: Send + Sync {
    /// Number of input features.
    fn n_features(&self) -> usize;
    /// Number of classes.
    fn n_classes(&self) -> usize;
    /// Class probabilities, `n x n_classes`.
    fn predict_proba(&self, x: ArrayView2<'_, f32>) -> Array2<f32>;
    /// Most probable class per row (ties go to the lower class index).
    fn predict(&self, x: ArrayView2<'_, f32>) -> Vec<u32> {
        argmax_rows(&self.predict_proba(x))
    }
    /// A representation for spectral and clustering detectors: the last hidden
    /// layer where there is one, else the logits.
    fn embed(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        self.predict_proba(x)
    }
    /// Gradient of the cross-entropy loss towards `target` with respect to the
    /// input, for trigger reverse-engineering. `None` when the model cannot
    /// differentiate (external models).
    fn input_gradient(&self, _x: ArrayView2<'_, f32>, _target: &[u32]) -> Option<Array2<f32>> {
        None
    }
}

/// Something that fits a [`Classifier`] to labelled features: what
/// cross-validation, retraining and partition ensembles are generic over.
pub trait Trainer: Send + Sync {
    /// Fit on `x` (`n x d`) and `y` (class indices `< n_classes`), with `seed` for every random choice.
    fn fit(
        &self,
        x: ArrayView2<'_, f32>,
        y: &[u32],
        n_classes: usize,
        seed: u64,
    ) -> Result<Box<dyn Classifier>>;
}

/// Row-wise argmax (first maximum wins).
pub fn argmax_rows(p: &Array2<f32>) -> Vec<u32> {
    p.rows()
        .into_iter()
        .map(|r| {
            let mut best = 0usize;
            for (j, &v) in r.iter().enumerate() {
                if v > r[best] {
                    best = j;
                }
            }
            best as u32
        })
        .collect()
}

/// Fraction of `pred` equal to `truth` (0 for empty input).
pub fn accuracy(pred: &[u32], truth: &[u32]) -> f64 {
    if truth.is_empty() {
        return 0.0;
    }
    pred.iter().zip(truth).filter(|(a, b)| a == b).count() as f64 / truth.len() as f64
}

/// In-place numerically stable softmax of each row.
pub fn softmax_rows(z: &mut Array2<f32>) {
    for mut r in z.rows_mut() {
        let m = r.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        r.mapv_inplace(|v| (v - m).exp());
        let s = r.sum();
        if s > 0.0 {
            r /= s;
        }
    }
}

/// Feature scaling learnt at fit time: per-feature mean and one global scale
/// (the RMS of feature standard deviations). One scale keeps the geometry of
/// the data (a pixel that is always 0 stays 0) while making learning rates
/// independent of the data's units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    /// Per-feature mean.
    pub mean: Array1<f32>,
    /// Global scale.
    pub scale: f32,
}

impl Scaler {
    /// Fit to `x`.
    pub fn fit(x: ArrayView2<'_, f32>) -> Self {
        let n = x.nrows().max(1) as f32;
        let mean = x.sum_axis(Axis(0)) / n;
        let var = x
            .rows()
            .into_iter()
            .fold(0.0f32, |acc, r| acc + (&r - &mean).mapv(|v| v * v).sum())
            / n;
        let d = x.ncols().max(1) as f32;
        let scale = (var / d).sqrt();
        Self {
            mean,
            scale: if scale > 1e-12 { scale } else { 1.0 },
        }
    }
    /// Apply to `x`.
    pub fn transform(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        (&x - &self.mean) / self.scale
    }
}

/// Hyper-parameters of [`SoftmaxRegression`]. Build with `Default` and adjust;
/// [`SoftmaxParams::check`] rejects invalid values before training starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoftmaxParams {
    /// Passes over the data.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Adam learning rate.
    pub learning_rate: f32,
    /// L2 penalty on the weights.
    pub l2: f32,
}

impl Default for SoftmaxParams {
    fn default() -> Self {
        Self {
            epochs: 60,
            batch_size: 64,
            learning_rate: 0.01,
            l2: 1e-4,
        }
    }
}

impl SoftmaxParams {
    /// Check every field.
    pub fn check(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::param("epochs", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(Error::param("batch_size", "must be at least 1"));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(Error::param(
                "learning_rate",
                "must be a positive finite number",
            ));
        }
        if !(self.l2.is_finite() && self.l2 >= 0.0) {
            return Err(Error::param("l2", "must be a non-negative finite number"));
        }
        Ok(())
    }
}

/// Multinomial logistic regression, trained by mini-batch Adam on cross-entropy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoftmaxRegression {
    /// Input scaling.
    pub scaler: Scaler,
    /// Weights, `d x k`.
    pub weights: Array2<f32>,
    /// Biases, `k`.
    pub bias: Array1<f32>,
}

impl SoftmaxRegression {
    /// A zero model for `d` features and `k` classes with the given scaler.
    pub fn zeros(scaler: Scaler, d: usize, k: usize) -> Self {
        Self {
            scaler,
            weights: Array2::zeros((d, k)),
            bias: Array1::zeros(k),
        }
    }

    /// Logits of scaled inputs.
    pub fn logits_scaled(&self, xs: ArrayView2<'_, f32>) -> Array2<f32> {
        xs.dot(&self.weights) + &self.bias
    }

    /// Fit with `params`.
    pub fn fit(
        x: ArrayView2<'_, f32>,
        y: &[u32],
        n_classes: usize,
        params: &SoftmaxParams,
        seed: u64,
    ) -> Result<Self> {
        params.check()?;
        check_xy(x, y, n_classes)?;
        let scaler = Scaler::fit(x);
        let xs = scaler.transform(x);
        let (n, d) = xs.dim();
        let dk = d * n_classes;
        // Weights (row-major d x k) then biases, in one buffer that Adam updates
        // in place; the views below read it without copying.
        let mut flat = vec![0f32; dk + n_classes];
        let mut adam = Adam::new(flat.len(), params.learning_rate);
        let mut rng = seeded(seed);
        let mut order: Vec<usize> = (0..n).collect();
        let mut grad = vec![0f32; flat.len()];
        let shape_err = |e: ndarray::ShapeError| Error::data(e.to_string());
        for _ in 0..params.epochs {
            order.shuffle(&mut rng);
            for batch in order.chunks(params.batch_size) {
                let (w, bias) = flat.split_at(dk);
                let w = ArrayView2::from_shape((d, n_classes), w).map_err(shape_err)?;
                let xb = xs.select(Axis(0), batch);
                let mut p = xb.dot(&w) + ndarray::ArrayView1::from(bias);
                softmax_rows(&mut p);
                for (r, &i) in batch.iter().enumerate() {
                    p[[r, y[i] as usize]] -= 1.0;
                }
                let b = batch.len() as f32;
                let gw = xb.t().dot(&p) / b + &w * params.l2;
                let gb = p.sum_axis(Axis(0)) / b;
                for (g, v) in grad.iter_mut().zip(gw.iter().chain(gb.iter())) {
                    *g = *v;
                }
                adam.step(&mut flat, &grad);
            }
        }
        let bias = Array1::from(flat.split_off(dk));
        let weights = Array2::from_shape_vec((d, n_classes), flat).map_err(shape_err)?;
        Ok(Self {
            scaler,
            weights,
            bias,
        })
    }
}

/// Check that `x` and `y` agree and labels are below `n_classes`.
pub fn check_xy(x: ArrayView2<'_, f32>, y: &[u32], n_classes: usize) -> Result<()> {
    if x.nrows() != y.len() {
        return Err(Error::data(format!(
            "{} rows of features for {} labels",
            x.nrows(),
            y.len()
        )));
    }
    if x.nrows() == 0 {
        return Err(Error::data("cannot train on an empty dataset"));
    }
    if n_classes < 2 {
        return Err(Error::param("n_classes", "need at least 2 classes"));
    }
    if let Some(l) = y.iter().find(|&&l| l as usize >= n_classes) {
        return Err(Error::data(format!(
            "label {l} is not below n_classes = {n_classes}"
        )));
    }
    Ok(())
}

impl Classifier for SoftmaxRegression {
    fn n_features(&self) -> usize {
        self.weights.nrows()
    }
    fn n_classes(&self) -> usize {
        self.weights.ncols()
    }
    fn predict_proba(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        let mut z = self.logits_scaled(self.scaler.transform(x).view());
        softmax_rows(&mut z);
        z
    }
    fn embed(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        self.logits_scaled(self.scaler.transform(x).view())
    }
    fn input_gradient(&self, x: ArrayView2<'_, f32>, target: &[u32]) -> Option<Array2<f32>> {
        let mut p = self.predict_proba(x);
        for (r, &t) in target.iter().enumerate().take(p.nrows()) {
            if (t as usize) < p.ncols() {
                p[[r, t as usize]] -= 1.0;
            }
        }
        Some(p.dot(&self.weights.t()) / self.scaler.scale)
    }
}

/// Trains a [`SoftmaxRegression`] with fixed params: the default simple clean
/// model of detectors and the demo.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SoftmaxTrainer {
    /// Hyper-parameters.
    pub params: SoftmaxParams,
}

impl Trainer for SoftmaxTrainer {
    fn fit(
        &self,
        x: ArrayView2<'_, f32>,
        y: &[u32],
        n_classes: usize,
        seed: u64,
    ) -> Result<Box<dyn Classifier>> {
        Ok(Box::new(SoftmaxRegression::fit(
            x,
            y,
            n_classes,
            &self.params,
            seed,
        )?))
    }
}

/// The Adam optimiser over a flat parameter vector.
#[derive(Debug, Clone)]
pub struct Adam {
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    t: i32,
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Adam {
    /// Adam for `n` parameters with learning rate `lr` and the usual betas.
    pub fn new(n: usize, lr: f32) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            t: 0,
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }
    /// One update of `params` with `grad`.
    pub fn step(&mut self, params: &mut [f32], grad: &[f32]) {
        self.t += 1;
        let b1t = 1.0 - self.beta1.powi(self.t);
        let b2t = 1.0 - self.beta2.powi(self.t);
        for i in 0..params.len().min(grad.len()) {
            self.m[i] = self.beta1 * self.m[i] + (1.0 - self.beta1) * grad[i];
            self.v[i] = self.beta2 * self.v[i] + (1.0 - self.beta2) * grad[i] * grad[i];
            let mh = self.m[i] / b1t;
            let vh = self.v[i] / b2t;
            params[i] -= self.lr * mh / (vh.sqrt() + self.eps);
        }
    }
}

/// One input to a [`Predictor`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Input {
    /// A feature vector (image pixels, tabular row).
    Features(Vec<f32>),
    /// A text prompt for a text classifier or a completion model.
    Text(String),
    /// A chat turn: optional system prompt and a user message.
    Chat {
        /// System prompt.
        system: Option<String>,
        /// User message.
        user: String,
    },
}

/// One output of a [`Predictor`]. Which fields are set depends on the model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Output {
    /// Predicted class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<u32>,
    /// Class probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proba: Option<Vec<f32>>,
    /// Generated text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Log-likelihood of the input under the model (for exposure tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprob: Option<f64>,
}

/// A model queried through inputs and outputs only: in-process, a command, an
/// HTTP endpoint. Validation and canary checks are written against this.
pub trait Predictor: Send + Sync {
    /// A name for reports.
    fn name(&self) -> &str;
    /// Predict a batch; the output has one entry per input, in order.
    fn predict(&self, inputs: &[Input]) -> Result<Vec<Output>>;
}

/// A [`Classifier`] seen as a [`Predictor`] over feature inputs.
pub struct ClassifierPredictor<'a> {
    /// The model.
    pub model: &'a dyn Classifier,
}

impl Predictor for ClassifierPredictor<'_> {
    fn name(&self) -> &str {
        "in-process classifier"
    }
    fn predict(&self, inputs: &[Input]) -> Result<Vec<Output>> {
        let d = self.model.n_features();
        let mut x = Array2::zeros((inputs.len(), d));
        for (i, inp) in inputs.iter().enumerate() {
            match inp {
                Input::Features(f) if f.len() == d => x
                    .slice_mut(s![i, ..])
                    .assign(&ndarray::ArrayView1::from(f.as_slice())),
                Input::Features(f) => {
                    return Err(Error::Model(format!(
                        "input {i} has {} features, the model takes {d}",
                        f.len()
                    )))
                }
                _ => return Err(Error::Model(format!("input {i} is not a feature vector"))),
            }
        }
        let p = self.model.predict_proba(x.view());
        let labels = argmax_rows(&p);
        Ok(p.rows()
            .into_iter()
            .zip(labels)
            .map(|(r, l)| Output {
                label: Some(l),
                proba: Some(r.to_vec()),
                ..Default::default()
            })
            .collect())
    }
}

/// A shared [`Classifier`] seen as a [`Predictor`]: the owning form of
/// [`ClassifierPredictor`], for code that keeps the predictor beyond a borrow.
#[derive(Clone)]
pub struct SharedClassifierPredictor(pub std::sync::Arc<dyn Classifier>);

impl Predictor for SharedClassifierPredictor {
    fn name(&self) -> &str {
        "in-process classifier"
    }
    fn predict(&self, inputs: &[Input]) -> Result<Vec<Output>> {
        ClassifierPredictor {
            model: self.0.as_ref(),
        }
        .predict(inputs)
    }
}

/// Class probabilities of the rows of `x` through `predictor`, `n x n_classes`.
///
/// A predictor that answers with probabilities must give `n_classes` finite
/// values per row; one that answers with a label only gets a one-hot row (its
/// calibration is then that of a hard classifier). Anything else — a missing
/// answer, a label out of range — is an error naming the row.
pub fn predict_proba_via(
    predictor: &dyn Predictor,
    x: ArrayView2<'_, f32>,
    n_classes: usize,
) -> Result<Array2<f32>> {
    let inputs: Vec<Input> = x
        .rows()
        .into_iter()
        .map(|r| Input::Features(r.to_vec()))
        .collect();
    let outs = predictor.predict(&inputs)?;
    if outs.len() != inputs.len() {
        return Err(Error::Model(format!(
            "{}: {} answers for {} inputs",
            predictor.name(),
            outs.len(),
            inputs.len()
        )));
    }
    let mut p = Array2::zeros((inputs.len(), n_classes));
    for (i, o) in outs.iter().enumerate() {
        match (&o.proba, o.label) {
            (Some(pr), _) => {
                if pr.len() != n_classes || pr.iter().any(|v| !v.is_finite()) {
                    return Err(Error::Model(format!(
                        "{}: answer {i} has {} probabilities (finite: {}), expected {n_classes}",
                        predictor.name(),
                        pr.len(),
                        pr.iter().all(|v| v.is_finite())
                    )));
                }
                p.row_mut(i)
                    .assign(&ndarray::ArrayView1::from(pr.as_slice()));
            }
            (None, Some(l)) if (l as usize) < n_classes => p[[i, l as usize]] = 1.0,
            (None, Some(l)) => {
                return Err(Error::Model(format!(
                    "{}: answer {i} is class {l}, the data has {n_classes} classes",
                    predictor.name()
                )))
            }
            (None, None) => {
                return Err(Error::Model(format!(
                    "{}: answer {i} has neither `label` nor `proba`",
                    predictor.name()
                )))
            }
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::digits;

    /// A predictor answering with fixed outputs, to test the conversions.
    struct Fixed(Vec<Output>);

    impl Predictor for Fixed {
        fn name(&self) -> &str {
            "fixed"
        }
        fn predict(&self, _: &[Input]) -> Result<Vec<Output>> {
            Ok(self.0.clone())
        }
    }

    #[test]
    fn proba_via_a_predictor_checks_every_answer() {
        let x = Array2::<f32>::zeros((2, 3));
        let label = |l| Output {
            label: Some(l),
            ..Default::default()
        };
        let p = predict_proba_via(&Fixed(vec![label(1), label(0)]), x.view(), 3).unwrap();
        assert_eq!(p.row(0).to_vec(), vec![0.0, 1.0, 0.0]);
        assert_eq!(p.row(1).to_vec(), vec![1.0, 0.0, 0.0]);
        let probs = Output {
            proba: Some(vec![0.2, 0.3, 0.5]),
            ..Default::default()
        };
        let p = predict_proba_via(&Fixed(vec![probs.clone(), label(2)]), x.view(), 3).unwrap();
        assert_eq!(p.row(0).to_vec(), vec![0.2, 0.3, 0.5]);
        for (bad, what) in [
            (vec![label(1)], "1 answers for 2 inputs"),
            (vec![label(1), label(3)], "answer 1 is class 3"),
            (vec![label(1), Output::default()], "answer 1 has neither"),
            (
                vec![
                    Output {
                        proba: Some(vec![0.5, f32::NAN, 0.5]),
                        ..Default::default()
                    },
                    label(0),
                ],
                "answer 0 has 3 probabilities (finite: false)",
            ),
        ] {
            let e = predict_proba_via(&Fixed(bad), x.view(), 3)
                .unwrap_err()
                .to_string();
            assert!(e.contains(what), "{e}");
        }
    }

    #[test]
    fn softmax_learns_digits() {
        let ds = digits();
        let x = ds.features.as_ref().unwrap();
        let y = ds.labels.as_ref().unwrap();
        let idx: Vec<usize> = (0..ds.len()).collect();
        let (tr, te): (Vec<usize>, Vec<usize>) = idx.into_iter().partition(|i| i % 5 != 0);
        let xtr = x.select(Axis(0), &tr);
        let ytr: Vec<u32> = tr.iter().map(|&i| y[i]).collect();
        let m = SoftmaxRegression::fit(xtr.view(), &ytr, 10, &SoftmaxParams::default(), 1).unwrap();
        let xte = x.select(Axis(0), &te);
        let yte: Vec<u32> = te.iter().map(|&i| y[i]).collect();
        let acc = accuracy(&m.predict(xte.view()), &yte);
        assert!(acc > 0.93, "accuracy {acc}");
    }

    #[test]
    fn params_are_checked() {
        assert!(SoftmaxParams {
            epochs: 0,
            ..Default::default()
        }
        .check()
        .is_err());
        assert!(SoftmaxParams {
            learning_rate: f32::NAN,
            ..Default::default()
        }
        .check()
        .is_err());
        let x = Array2::<f32>::zeros((2, 3));
        assert!(
            SoftmaxRegression::fit(x.view(), &[0, 5], 2, &SoftmaxParams::default(), 0).is_err()
        );
    }

    #[test]
    fn input_gradient_matches_finite_differences() {
        let x = ndarray::array![[0.5f32, -1.0, 2.0], [1.0, 0.0, -0.5]];
        let m = SoftmaxRegression::fit(x.view(), &[0, 1], 2, &SoftmaxParams::default(), 3).unwrap();
        let g = m.input_gradient(x.view(), &[1, 1]).unwrap();
        let loss = |xx: &Array2<f32>| -> f32 { -m.predict_proba(xx.view())[[0, 1]].ln() };
        for j in 0..3 {
            let mut a = x.clone();
            let mut b = x.clone();
            a[[0, j]] += 1e-2;
            b[[0, j]] -= 1e-2;
            let fd = (loss(&a) - loss(&b)) / 2e-2;
            assert!(
                (fd - g[[0, j]]).abs() < 1e-2 * (1.0 + fd.abs()),
                "j={j} fd={fd} g={}",
                g[[0, j]]
            );
        }
    }
}
