//! ONNX image classifiers run in-process with `tract-onnx` (pure Rust, no
//! native runtime to install), behind the cargo feature `onnx`.
//!
//! The model takes one `f32` input of shape `[batch, ...]` (for example
//! `[N, 64]` or `[N, 1, 8, 8]`): each [`Input::Features`] is one sample,
//! flattened in row-major order, so it must have as many values as one
//! sample has elements. The first floating-point output of shape
//! `[batch, classes, ...]` is read as class scores: probabilities when every
//! row is non-negative and sums to 1, logits otherwise (a softmax is applied),
//! or as [`OnnxOutput`] says.
//!
//! ```no_run
//! use mithridate_core::model::{Input, Predictor};
//! use mithridate_validation::onnx::OnnxPredictor;
//!
//! let model = OnnxPredictor::load("classifier.onnx")?;
//! let out = model.predict(&[Input::Features(vec![0.0; model.n_features()])])?;
//! println!("class {:?}", out[0].label);
//! # Ok::<(), mithridate_core::Error>(())
//! ```

use std::path::Path;
use std::sync::Arc;

use mithridate_core::model::{Input, Output, Predictor};
use mithridate_core::{Error, Result};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid as _;

/// How to read the model's class scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnnxOutput {
    /// Probabilities when every row is non-negative and sums to 1 (within
    /// 1e-3), logits otherwise.
    #[default]
    Auto,
    /// The output is already probabilities.
    Probabilities,
    /// The output is logits: a softmax gives probabilities.
    Logits,
}

/// An ONNX classifier loaded in-process, as a [`Predictor`].
#[derive(Clone)]
pub struct OnnxPredictor {
    name: String,
    plan: Arc<TypedRunnableModel>,
    sample_shape: Vec<usize>,
    n_classes: usize,
    output: OnnxOutput,
    batch_size: usize,
}

impl std::fmt::Debug for OnnxPredictor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxPredictor")
            .field("name", &self.name)
            .field("sample_shape", &self.sample_shape)
            .field("n_classes", &self.n_classes)
            .field("output", &self.output)
            .field("batch_size", &self.batch_size)
            .finish()
    }
}

fn model_err(name: &str, e: impl std::fmt::Display) -> Error {
    Error::Model(format!("{name}: {e}"))
}

impl OnnxPredictor {
    /// Load an `.onnx` file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes, path.display().to_string())
    }

    /// Load a model from the bytes of an ONNX file; `name` appears in reports
    /// and errors.
    pub fn from_bytes(bytes: &[u8], name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let mut model = tract_onnx::onnx()
            .model_for_read(&mut std::io::Cursor::new(bytes))
            .map_err(|e| model_err(&name, format!("not a readable ONNX model: {e:#}")))?;
        if model.inputs.len() != 1 {
            return Err(model_err(
                &name,
                format!(
                    "the model has {} inputs; an image classifier takes one",
                    model.inputs.len()
                ),
            ));
        }
        let fact = model
            .input_fact(0)
            .map_err(|e| model_err(&name, e))?
            .clone();
        if let Some(dt) = fact.datum_type.concretize() {
            if dt != f32::datum_type() {
                return Err(model_err(
                    &name,
                    format!("the input is {dt:?}; only f32 inputs are supported"),
                ));
            }
        }
        let rank =
            fact.shape.rank().concretize().ok_or_else(|| {
                model_err(&name, "the input shape is not declared (rank unknown)")
            })?;
        if rank < 2 {
            return Err(model_err(
                &name,
                format!("the input has rank {rank}; expected [batch, ...]"),
            ));
        }
        let mut sample_shape = Vec::with_capacity(rank as usize - 1);
        for (i, dim) in fact.shape.dims().enumerate().skip(1) {
            let v = dim
                .concretize()
                .and_then(|d| d.to_i64().ok())
                .filter(|&v| v > 0)
                .ok_or_else(|| {
                    model_err(
                        &name,
                        format!("input dimension {i} is not a fixed positive size"),
                    )
                })?;
            sample_shape.push(v as usize);
        }
        let batch = model.symbols.sym("N");
        let mut dims: Vec<TDim> = vec![batch.into()];
        dims.extend(sample_shape.iter().map(|&v| TDim::from(v as i64)));
        model = model
            .with_input_fact(0, f32::fact(dims).into())
            .map_err(|e| model_err(&name, e))?;
        let typed = model
            .into_optimized()
            .map_err(|e| model_err(&name, format!("cannot prepare the model: {e:#}")))?;
        let out = typed.output_fact(0).map_err(|e| model_err(&name, e))?;
        if !out.datum_type.is_float() {
            return Err(model_err(
                &name,
                format!(
                    "output 0 is {:?}; expected floating-point class scores",
                    out.datum_type
                ),
            ));
        }
        let n_classes = out
            .shape
            .dims()
            .get(1)
            .and_then(|d| d.to_i64().ok())
            .filter(|&v| v > 0)
            .ok_or_else(|| {
                model_err(
                    &name,
                    format!(
                        "output 0 has shape {:?}; expected [batch, classes]",
                        out.shape
                    ),
                )
            })? as usize;
        let plan = typed
            .into_runnable()
            .map_err(|e| model_err(&name, format!("cannot prepare the model: {e:#}")))?;
        Ok(Self {
            name,
            plan,
            sample_shape,
            n_classes,
            output: OnnxOutput::Auto,
            batch_size: 256,
        })
    }

    /// Read the scores as `output` says.
    #[must_use]
    pub fn with_output(mut self, output: OnnxOutput) -> Self {
        self.output = output;
        self
    }

    /// Run at most `n` samples per call of the model (bounds memory); at least 1.
    #[must_use]
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// Values per sample (the product of the input shape after the batch dimension).
    pub fn n_features(&self) -> usize {
        self.sample_shape.iter().product()
    }

    /// Shape of one sample (the input shape without the batch dimension).
    pub fn sample_shape(&self) -> &[usize] {
        &self.sample_shape
    }

    /// Number of classes (the second dimension of the output).
    pub fn n_classes(&self) -> usize {
        self.n_classes
    }

    fn run_batch(&self, inputs: &[Input], offset: usize) -> Result<Vec<Output>> {
        let d = self.n_features();
        let mut flat = Vec::with_capacity(inputs.len() * d);
        for (i, inp) in inputs.iter().enumerate() {
            match inp {
                Input::Features(f) if f.len() == d => flat.extend_from_slice(f),
                Input::Features(f) => {
                    return Err(model_err(
                        &self.name,
                        format!(
                            "input {} has {} values, the model takes {d} (shape {:?})",
                            offset + i,
                            f.len(),
                            self.sample_shape
                        ),
                    ))
                }
                _ => {
                    return Err(model_err(
                        &self.name,
                        format!("input {} is not a feature vector", offset + i),
                    ))
                }
            }
        }
        let mut shape = vec![inputs.len()];
        shape.extend_from_slice(&self.sample_shape);
        let tensor = Tensor::from_shape(&shape, &flat).map_err(|e| model_err(&self.name, e))?;
        let result = self
            .plan
            .run(tvec!(tensor.into()))
            .map_err(|e| model_err(&self.name, format!("inference failed: {e:#}")))?;
        let first = result
            .first()
            .ok_or_else(|| model_err(&self.name, "the model gave no output"))?;
        let scores = first
            .cast_to::<f32>()
            .map_err(|e| model_err(&self.name, e))?;
        let view = scores
            .to_plain_array_view::<f32>()
            .map_err(|e| model_err(&self.name, e))?;
        let n = inputs.len();
        if view.ndim() < 2 || view.shape()[0] != n || view.len() != n * self.n_classes {
            return Err(model_err(
                &self.name,
                format!(
                    "output of shape {:?} for {n} inputs; expected [{n}, {}]",
                    view.shape(),
                    self.n_classes
                ),
            ));
        }
        let values: Vec<f32> = view.iter().copied().collect();
        let rows: Vec<&[f32]> = values.chunks(self.n_classes).collect();
        let is_proba = match self.output {
            OnnxOutput::Probabilities => true,
            OnnxOutput::Logits => false,
            OnnxOutput::Auto => rows.iter().all(|r| {
                r.iter().all(|&v| (0.0..=1.0 + 1e-4).contains(&v))
                    && (r.iter().map(|&v| f64::from(v)).sum::<f64>() - 1.0).abs() < 1e-3
            }),
        };
        rows.into_iter()
            .enumerate()
            .map(|(i, r)| {
                if r.iter().any(|v| !v.is_finite()) {
                    return Err(model_err(
                        &self.name,
                        format!("output {} has a non-finite score", offset + i),
                    ));
                }
                let proba = if is_proba { r.to_vec() } else { softmax(r) };
                let label = argmax(&proba);
                Ok(Output {
                    label: Some(label),
                    proba: Some(proba),
                    ..Default::default()
                })
            })
            .collect()
    }
}

fn softmax(r: &[f32]) -> Vec<f32> {
    let m = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = r.iter().map(|&v| (v - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

fn argmax(r: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, &v) in r.iter().enumerate() {
        if v > r[best] {
            best = i;
        }
    }
    best as u32
}

impl Predictor for OnnxPredictor {
    fn name(&self) -> &str {
        &self.name
    }
    fn predict(&self, inputs: &[Input]) -> Result<Vec<Output>> {
        let mut out = Vec::with_capacity(inputs.len());
        for (b, chunk) in inputs.chunks(self.batch_size).enumerate() {
            out.extend(self.run_batch(chunk, b * self.batch_size)?);
        }
        Ok(out)
    }
}
