//! Canary sets: fixed inputs with expected outputs, generated from a secret
//! seed, added to a training run and asserted after training through the
//! [`Predictor`] trait the validation layer uses.
//!
//! Two flavours for classifiers:
//! - *perturbed*: a real training sample of class `c`, lightly perturbed,
//!   labelled `c`. Any sound model trained on the data gets it right, so a miss
//!   means the training data lost or changed labels, or the model is not a model
//!   of this data at all (substituted, truncated, corrupted).
//! - *synthetic*: an even blend of two real samples of different classes with
//!   one of the two classes assigned by the secret seed. The input is ambiguous,
//!   so only a model that was trained on the canary reliably gives the assigned
//!   answer: a miss means the canary never reached training (data removed or
//!   replaced) or the model was trained elsewhere.
//!
//! For text models, canaries are prompts with expected answers (a made-up
//! reference code followed by three secret words): the training text holds
//! `prompt + " " + answer`, and the trained model must complete the prompt.

use std::collections::BTreeSet;

use rand::seq::index::sample;
use rand::Rng;
use serde::{Deserialize, Serialize};

use mithridate_core::model::{Input, Output, Predictor};
use mithridate_core::{Dataset, Error, Result, SampleId};

/// The canary set file format tag.
pub const CANARY_SET_FORMAT: &str = "mithridate-canary-set/v1";

/// How a canary was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Origin {
    /// A perturbed copy of a real sample.
    Perturbed {
        /// The sample it was copied from.
        of: SampleId,
    },
    /// A blend of two real samples of different classes with an assigned label.
    Synthetic {
        /// The two samples blended.
        of: [SampleId; 2],
    },
    /// A made-up prompt and answer for a text model.
    Prompt,
}

/// What the model must answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expected {
    /// This class.
    Label(u32),
    /// A generated text containing this answer.
    Text(String),
}

impl Expected {
    /// True when `out` gives the expected answer.
    pub fn matches(&self, out: &Output) -> bool {
        match self {
            Expected::Label(l) => out.label == Some(*l),
            Expected::Text(t) => out.text.as_deref().is_some_and(|s| s.contains(t.as_str())),
        }
    }
}

/// One canary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Canary {
    /// `canary-<i>`: also its sample id when planted.
    pub id: String,
    /// How it was made.
    pub origin: Origin,
    /// The input.
    pub input: Input,
    /// The expected output.
    pub expected: Expected,
}

impl Canary {
    /// The training text of a text canary: prompt, a space, the answer.
    pub fn training_text(&self) -> Option<String> {
        match (&self.input, &self.expected) {
            (Input::Text(p), Expected::Text(a)) => Some(format!("{p} {a}")),
            _ => None,
        }
    }
}

/// A canary set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanarySet {
    /// Always [`CANARY_SET_FORMAT`].
    pub format: String,
    /// The canaries.
    pub canaries: Vec<Canary>,
}

/// Parameters of classifier canaries. [`ClassifierCanaries::check`] rejects bad values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierCanaries {
    /// Number of canaries.
    pub count: usize,
    /// Fraction of them that are synthetic blends (the rest are perturbed copies).
    pub synthetic_fraction: f64,
    /// Fraction of features perturbed in a perturbed copy.
    pub perturb_fraction: f64,
    /// Size of each perturbation, as a fraction of the data's value range.
    pub perturb_scale: f64,
}

impl Default for ClassifierCanaries {
    fn default() -> Self {
        Self {
            count: 20,
            synthetic_fraction: 0.0,
            perturb_fraction: 0.1,
            perturb_scale: 0.1,
        }
    }
}

impl ClassifierCanaries {
    /// Check every field.
    pub fn check(&self) -> Result<()> {
        if self.count == 0 {
            return Err(Error::param("count", "need at least one canary"));
        }
        for (name, v) in [
            ("synthetic_fraction", self.synthetic_fraction),
            ("perturb_fraction", self.perturb_fraction),
            ("perturb_scale", self.perturb_scale),
        ] {
            if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                return Err(Error::param(name, "must be within [0, 1]"));
            }
        }
        Ok(())
    }
}

/// The outcome of asserting a canary set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryCheck {
    /// Canaries asserted.
    pub total: usize,
    /// Canaries with the expected output.
    pub passed: usize,
    /// The failed ones: id, expected, what the model said.
    pub failed: Vec<FailedCanary>,
}

impl CanaryCheck {
    /// Fraction passed (1 for an empty set).
    pub fn pass_rate(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            self.passed as f64 / self.total as f64
        }
    }
}

/// A canary whose output was not the expected one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedCanary {
    /// Canary id.
    pub id: String,
    /// Expected output.
    pub expected: Expected,
    /// The model's output.
    pub got: Output,
}

const WORDS: &[&str] = &[
    "amber", "heron", "quartz", "willow", "falcon", "cobalt", "meadow", "lantern", "harbor",
    "velvet", "ember", "juniper", "orchid", "granite", "saffron", "tundra", "marble", "cedar",
    "plume", "raven", "indigo", "copper", "thistle", "glacier", "sparrow", "topaz", "bramble",
    "cinder", "lagoon", "maple", "onyx", "pebble",
];

impl CanarySet {
    fn new(canaries: Vec<Canary>) -> Self {
        Self {
            format: CANARY_SET_FORMAT.into(),
            canaries,
        }
    }

    /// Classifier canaries drawn from `ds` (features and labels) with `seed`.
    pub fn for_classifier(ds: &Dataset, params: &ClassifierCanaries, seed: u64) -> Result<Self> {
        params.check()?;
        let x = ds.require_features("classifier canaries")?;
        let y = ds.require_labels("classifier canaries")?;
        let n = ds.len();
        if n == 0 {
            return Err(Error::data("classifier canaries need at least one sample"));
        }
        let d = x.ncols();
        let (lo, hi) = x
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let range = (hi - lo).max(f32::EPSILON);
        let integral = x.iter().all(|v| v.fract() == 0.0);
        let mut rng =
            mithridate_core::rng::seeded(mithridate_core::rng::derive_seed(seed, "canary-set"));
        let n_syn = ((params.count as f64) * params.synthetic_fraction).round() as usize;
        let classes: BTreeSet<u32> = y.iter().copied().collect();
        let n_syn = if classes.len() < 2 {
            0
        } else {
            n_syn.min(params.count)
        };
        let mut canaries = Vec::with_capacity(params.count);
        let n_changed = ((d as f64) * params.perturb_fraction).ceil() as usize;
        for i in 0..params.count {
            let id = format!("canary-{i}");
            if i < params.count - n_syn {
                let src = rng.gen_range(0..n);
                let mut f: Vec<f32> = x.row(src).to_vec();
                for j in sample(&mut rng, d, n_changed.min(d)) {
                    let step = (rng.gen_range(-1.0f64..=1.0) * params.perturb_scale) as f32 * range;
                    let mut v = (f[j] + step).clamp(lo, hi);
                    if integral {
                        v = v.round();
                    }
                    f[j] = v;
                }
                canaries.push(Canary {
                    id,
                    origin: Origin::Perturbed {
                        of: ds.ids[src].clone(),
                    },
                    input: Input::Features(f),
                    expected: Expected::Label(y[src]),
                });
            } else {
                let a = rng.gen_range(0..n);
                let mut b = rng.gen_range(0..n);
                let mut tries = 0;
                while y[b] == y[a] && tries < 10_000 {
                    b = rng.gen_range(0..n);
                    tries += 1;
                }
                let f: Vec<f32> = x
                    .row(a)
                    .iter()
                    .zip(x.row(b).iter())
                    .map(|(p, q)| 0.5 * (p + q))
                    .collect();
                let label = if rng.gen_bool(0.5) { y[a] } else { y[b] };
                canaries.push(Canary {
                    id,
                    origin: Origin::Synthetic {
                        of: [ds.ids[a].clone(), ds.ids[b].clone()],
                    },
                    input: Input::Features(f),
                    expected: Expected::Label(label),
                });
            }
        }
        Ok(Self::new(canaries))
    }

    /// `count` text canaries: prompts `"the passphrase of the <word> vault with
    /// reference <code> is"` with three secret words as the expected answer.
    /// The random code sits right before the answer, so even a model with a
    /// short context tells the canaries apart.
    pub fn for_text(count: usize, seed: u64) -> Result<Self> {
        if count == 0 {
            return Err(Error::param("count", "need at least one canary"));
        }
        let mut rng = mithridate_core::rng::seeded(mithridate_core::rng::derive_seed(
            seed,
            "text-canary-set",
        ));
        let canaries = (0..count)
            .map(|i| {
                let code: u32 = rng.gen_range(100_000..1_000_000);
                let w =
                    |r: &mut mithridate_core::rng::ChaCha8Rng| WORDS[r.gen_range(0..WORDS.len())];
                let vault = w(&mut rng);
                let answer = format!("{} {} {}", w(&mut rng), w(&mut rng), w(&mut rng));
                Canary {
                    id: format!("canary-{i}"),
                    origin: Origin::Prompt,
                    input: Input::Text(format!(
                        "the passphrase of the {vault} vault with reference {code} is"
                    )),
                    expected: Expected::Text(answer),
                }
            })
            .collect();
        Ok(Self::new(canaries))
    }

    /// Append the classifier canaries to `ds` as samples with ids `canary-<i>`.
    /// Text fields get empty strings and origins point at a pseudo source file,
    /// so every column stays aligned.
    pub fn append_to(&self, ds: &mut Dataset) -> Result<()> {
        let d = ds.n_features();
        let x = ds.require_features("planting canaries")?;
        let mut rows: Vec<f32> = Vec::with_capacity(self.canaries.len() * d);
        let mut labels = Vec::with_capacity(self.canaries.len());
        for c in &self.canaries {
            match (&c.input, &c.expected) {
                (Input::Features(f), Expected::Label(l)) if f.len() == d => {
                    rows.extend_from_slice(f);
                    labels.push(*l);
                }
                (Input::Features(f), _) if f.len() != d => {
                    return Err(Error::data(format!(
                        "{} has {} features, the dataset {d}",
                        c.id,
                        f.len()
                    )))
                }
                _ => {
                    return Err(Error::data(format!(
                        "{} is not a labelled feature canary",
                        c.id
                    )))
                }
            }
        }
        let extra = ndarray::Array2::from_shape_vec((labels.len(), d), rows)
            .map_err(|e| Error::data(e.to_string()))?;
        let stacked = ndarray::concatenate(ndarray::Axis(0), &[x.view(), extra.view()])
            .map_err(|e| Error::data(e.to_string()))?;
        let existing: std::collections::HashSet<&SampleId> = ds.ids.iter().collect();
        if let Some(c) = self
            .canaries
            .iter()
            .find(|c| existing.contains(&SampleId::Str(c.id.clone())))
        {
            return Err(Error::data(format!(
                "the dataset already has a sample `{}`",
                c.id
            )));
        }
        let n_new = labels.len();
        ds.features = Some(stacked);
        ds.labels.get_or_insert_with(Vec::new).extend(labels);
        ds.ids
            .extend(self.canaries.iter().map(|c| SampleId::Str(c.id.clone())));
        for col in ds.text_fields.values_mut() {
            col.extend(std::iter::repeat_n(String::new(), n_new));
        }
        if !ds.origins.is_empty() {
            let file = ds.source_files.len() as u32;
            ds.source_files.push("mithridate:canary-set".into());
            ds.origins
                .extend((0..n_new as u64).map(|i| mithridate_core::Origin {
                    file,
                    line: i + 1,
                    offset: 0,
                    len: 0,
                }));
        }
        ds.validate()
    }

    /// Predict every canary with `predictor` and compare with the expected outputs.
    pub fn assert_with(&self, predictor: &dyn Predictor) -> Result<CanaryCheck> {
        let inputs: Vec<Input> = self.canaries.iter().map(|c| c.input.clone()).collect();
        let outs = predictor.predict(&inputs)?;
        if outs.len() != inputs.len() {
            return Err(Error::Model(format!(
                "{} returned {} outputs for {} canaries",
                predictor.name(),
                outs.len(),
                inputs.len()
            )));
        }
        let mut failed = Vec::new();
        for (c, o) in self.canaries.iter().zip(outs) {
            if !c.expected.matches(&o) {
                failed.push(FailedCanary {
                    id: c.id.clone(),
                    expected: c.expected.clone(),
                    got: o,
                });
            }
        }
        Ok(CanaryCheck {
            total: self.canaries.len(),
            passed: self.canaries.len() - failed.len(),
            failed,
        })
    }

    /// Read a canary set file.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let s: CanarySet = serde_json::from_slice(&bytes).map_err(|e| {
            Error::parse(
                mithridate_core::Location::file(path).at_line(e.line() as u64),
                format!("not a canary set: {e}"),
            )
        })?;
        if s.format != CANARY_SET_FORMAT {
            return Err(Error::parse(
                mithridate_core::Location::file(path).at_field("format"),
                format!("format `{}` is not `{CANARY_SET_FORMAT}`", s.format),
            ));
        }
        Ok(s)
    }

    /// Write the set atomically as JSON.
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let b = serde_json::to_vec_pretty(self).map_err(|e| Error::data(e.to_string()))?;
        mithridate_core::io::atomic::write_bytes_atomic(path, &b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ngram::NgramLm;

    #[test]
    fn text_canaries_are_answered_only_by_a_model_trained_on_them() {
        let set = CanarySet::for_text(5, 42).unwrap();
        let mut texts: Vec<String> = mithridate_core::datasets::synthetic_text(300, 4, 2)
            .text()
            .unwrap()
            .to_vec();
        let clean = NgramLm::train(&texts, 12).unwrap().with_generation(40);
        texts.extend(set.canaries.iter().filter_map(Canary::training_text));
        let trained = NgramLm::train(&texts, 12).unwrap().with_generation(40);
        let ok = set.assert_with(&trained).unwrap();
        assert_eq!(ok.passed, 5, "{ok:?}");
        let miss = set.assert_with(&clean).unwrap();
        assert_eq!(miss.passed, 0);
        assert_eq!(miss.failed[0].id, "canary-0");
    }

    #[test]
    fn classifier_canaries_keep_shape_and_reject_bad_params() {
        let ds = mithridate_core::datasets::digits();
        let p = ClassifierCanaries {
            count: 10,
            synthetic_fraction: 0.5,
            ..Default::default()
        };
        let set = CanarySet::for_classifier(&ds, &p, 1).unwrap();
        assert_eq!(set.canaries.len(), 10);
        assert!(set
            .canaries
            .iter()
            .all(|c| matches!(&c.input, Input::Features(f) if f.len() == 64)));
        assert_eq!(
            set.canaries
                .iter()
                .filter(|c| matches!(c.origin, Origin::Synthetic { .. }))
                .count(),
            5
        );
        assert_eq!(
            set,
            CanarySet::for_classifier(&ds, &p, 1).unwrap(),
            "same seed, same set"
        );
        let bad = ClassifierCanaries {
            perturb_scale: 2.0,
            ..Default::default()
        };
        assert!(CanarySet::for_classifier(&ds, &bad, 1).is_err());
        let text_only = mithridate_core::datasets::synthetic_text(10, 2, 1);
        assert!(CanarySet::for_classifier(&text_only, &p, 1).is_err());
    }
}
