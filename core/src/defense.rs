//! The [`Defense`] trait every layer implements, and the [`Context`] a pipeline
//! carries from one defense to the next.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;
use crate::error::Result;
use crate::model::{Classifier, Predictor, SharedClassifierPredictor};
use crate::quarantine::Quarantine;
use crate::report::Report;

/// The five defense layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// 1: provenance and hashing.
    Provenance,
    /// 2: anomaly detection and quarantine.
    Anomaly,
    /// 3: robust training.
    Robust,
    /// 4: continuous validation.
    Validation,
    /// 5: canary and honeypot data.
    Canary,
}

impl Layer {
    /// All layers in order.
    pub const ALL: [Layer; 5] = [
        Layer::Provenance,
        Layer::Anomaly,
        Layer::Robust,
        Layer::Validation,
        Layer::Canary,
    ];
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Provenance => "provenance",
            Layer::Anomaly => "anomaly",
            Layer::Robust => "robust",
            Layer::Validation => "validation",
            Layer::Canary => "canary",
        })
    }
}

/// When in the life of a model a defense runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Before training: on the data.
    Ingest,
    /// During training.
    Train,
    /// After training: on the model, before it ships.
    Release,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Ingest => "ingest",
            Stage::Train => "train",
            Stage::Release => "release",
        })
    }
}

/// A sink for progress of long steps. The CLI draws bars; libraries and tests
/// use [`NoProgress`]. Implementations must be cheap to call per item.
pub trait Progress: Send + Sync {
    /// A step named `what` begins, with `total` units of work if known.
    fn start(&self, what: &str, total: Option<u64>);
    /// `n` more units are done.
    fn advance(&self, n: u64);
    /// The current step is finished.
    fn finish(&self);
    /// Step `index` (0-based) of `total` of a multi-step run (a pipeline)
    /// begins, named `what`; `index == total` means the run is over. Steps
    /// report their own progress with [`Progress::start`] meanwhile.
    fn step(&self, _what: &str, _index: usize, _total: usize) {}
}

/// A [`Progress`] that shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: Option<u64>) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

/// What a pipeline run carries between defenses.
///
/// Defenses read what they need and fail with [`crate::Error::Data`] when it is
/// missing; they add to it (quarantine entries, a trained model, artifacts) but
/// never remove what an earlier defense put there.
pub struct Context {
    /// The training data as loaded (quarantined samples are still here; see [`Context::training_set`]).
    pub dataset: Option<Dataset>,
    /// Files the dataset was read from (what provenance hashes).
    pub dataset_paths: Vec<PathBuf>,
    /// Root directory of the dataset files, for provenance checks.
    pub dataset_root: Option<PathBuf>,
    /// The clean held-out set; it never touches training.
    pub holdout: Option<Dataset>,
    /// Samples flagged so far.
    pub quarantine: Quarantine,
    /// The trained model, once a train-stage defense has produced one.
    pub model: Option<Arc<dyn Classifier>>,
    /// The model under test when it lives outside the process (a command, an
    /// HTTP endpoint): release checks that only query the model use it when
    /// there is no in-process [`Context::model`].
    pub predictor: Option<Arc<dyn Predictor>>,
    /// Seed for every random choice in the run.
    pub seed: u64,
    /// Progress sink.
    pub progress: Arc<dyn Progress>,
    /// Reports of the defenses run so far, in order.
    pub reports: Vec<Report>,
    /// Named values a defense leaves for later ones or for the audit report
    /// (manifest roots, epsilon spent, canary set, trigger images...).
    pub artifacts: BTreeMap<String, serde_json::Value>,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("samples", &self.dataset.as_ref().map(Dataset::len))
            .field("holdout", &self.holdout.as_ref().map(Dataset::len))
            .field("quarantined", &self.quarantine.active_len())
            .field("model", &self.model.is_some())
            .field(
                "predictor",
                &self.predictor.as_ref().map(|p| p.name().to_owned()),
            )
            .field("seed", &self.seed)
            .field("reports", &self.reports.len())
            .finish()
    }
}

impl Default for Context {
    fn default() -> Self {
        Self::new(0)
    }
}

impl Context {
    /// An empty context with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            dataset: None,
            dataset_paths: Vec::new(),
            dataset_root: None,
            holdout: None,
            quarantine: Quarantine::default(),
            model: None,
            predictor: None,
            seed,
            progress: Arc::new(NoProgress),
            reports: Vec::new(),
            artifacts: BTreeMap::new(),
        }
    }

    /// A context holding `dataset`.
    #[must_use]
    pub fn with_dataset(mut self, dataset: Dataset) -> Self {
        self.dataset = Some(dataset);
        self
    }

    /// A context holding `holdout`.
    #[must_use]
    pub fn with_holdout(mut self, holdout: Dataset) -> Self {
        self.holdout = Some(holdout);
        self
    }

    /// The trained model, or a [`crate::Error::Data`] naming `who` needed it.
    pub fn require_model(&self, who: &str) -> Result<Arc<dyn Classifier>> {
        self.model.clone().ok_or_else(|| {
            crate::Error::data(format!("{who} needs a trained model in the context"))
        })
    }

    /// The model under test as a [`Predictor`]: the in-process model when there
    /// is one, else the external predictor, else a [`crate::Error::Data`]
    /// naming `who` needed it.
    pub fn require_predictor(&self, who: &str) -> Result<Arc<dyn Predictor>> {
        if let Some(m) = &self.model {
            return Ok(Arc::new(SharedClassifierPredictor(m.clone())));
        }
        self.predictor.clone().ok_or_else(|| {
            crate::Error::data(format!(
                "{who} needs a trained model or an external predictor in the context"
            ))
        })
    }

    /// The holdout set, or a [`crate::Error::Data`] naming `who` needed it.
    pub fn require_holdout(&self, who: &str) -> Result<&Dataset> {
        self.holdout
            .as_ref()
            .ok_or_else(|| crate::Error::data(format!("{who} needs a holdout set in the context")))
    }

    /// The dataset minus every sample under active quarantine: what training sees.
    pub fn training_set(&self) -> Result<Dataset> {
        let ds = self
            .dataset
            .as_ref()
            .ok_or_else(|| crate::Error::data("no training dataset in the context"))?;
        let drop: Vec<usize> = ds
            .ids
            .iter()
            .enumerate()
            .filter(|(_, id)| self.quarantine.is_quarantined(id))
            .map(|(i, _)| i)
            .collect();
        ds.without(&drop)
    }

    /// Run `defense`, time it, record its report and return a copy.
    ///
    /// The report is also kept in [`Context::reports`], so later defenses (and
    /// the audit report) see it.
    pub fn run(&mut self, defense: &dyn Defense) -> Result<Report> {
        let span = tracing::info_span!("defense", name = defense.name(), layer = %defense.layer());
        let _guard = span.enter();
        let t0 = Instant::now();
        let mut report = defense.run(self)?;
        report.elapsed_ms = t0.elapsed().as_secs_f64() * 1e3;
        tracing::info!(verdict = %report.verdict, ms = report.elapsed_ms, "{}", report.summary);
        self.reports.push(report.clone());
        Ok(report)
    }
}

/// One defense: a unit of the pipeline, testable alone.
///
/// Object safe, so a tier is a `Vec<Box<dyn Defense>>`. Implementations keep
/// their checked parameters and take everything else from the [`Context`].
pub trait Defense: Send + Sync {
    /// Stable name used in reports and in `mithridate.toml`.
    fn name(&self) -> &str;
    /// The layer it belongs to.
    fn layer(&self) -> Layer;
    /// When it runs.
    fn stage(&self) -> Stage;
    /// Run on the context. An `Err` is a failure to run (bad input, I/O), not a
    /// finding: findings go in the returned report with a [`crate::Verdict`].
    fn run(&self, cx: &mut Context) -> Result<Report>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Verdict;

    struct Counter;
    impl Defense for Counter {
        fn name(&self) -> &str {
            "counter"
        }
        fn layer(&self) -> Layer {
            Layer::Anomaly
        }
        fn stage(&self) -> Stage {
            Stage::Ingest
        }
        fn run(&self, cx: &mut Context) -> Result<Report> {
            let n = cx.dataset.as_ref().map_or(0, Dataset::len);
            let mut r = Report::new(self.name(), self.layer(), self.stage());
            r.metric("n", n as f64);
            if n == 0 {
                r.escalate(Verdict::Warn);
            }
            Ok(r)
        }
    }

    #[test]
    fn defenses_are_object_safe_and_reports_accumulate() {
        let ds: Vec<Box<dyn Defense>> = vec![Box::new(Counter), Box::new(Counter)];
        let mut cx = Context::new(7);
        for d in &ds {
            cx.run(d.as_ref()).unwrap();
        }
        assert_eq!(cx.reports.len(), 2);
        assert_eq!(cx.reports[0].verdict, Verdict::Warn);
        assert_eq!(cx.reports[0].metrics["n"], 0.0);
    }
}
