//! What every detector returns, and how a detector becomes a [`Defense`].

use std::collections::BTreeMap;

use mithridate_core::{
    Context, Dataset, Defense, Finding, Layer, Reason, Report, Result, Stage, ThreatTag, Verdict,
};
use serde::{Deserialize, Serialize};

/// How strong a per-sample flag is, which decides what the combiner does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlagKind {
    /// Unusual, not confirmed as poison (outlier, spectral, cluster).
    Outlier,
    /// The label disagrees with a model that never saw the sample.
    LabelIssue,
    /// Carries a mined trigger that a counterfactual test confirmed.
    Trigger,
}

impl FlagKind {
    /// True for the kinds that count as found poison (verdict Fail).
    pub fn confirmed(self) -> bool {
        !matches!(self, FlagKind::Outlier)
    }
}

/// One sample a detector flags, with the explanation the quarantine keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flag {
    /// Row index in the dataset.
    pub index: usize,
    /// Normalised score: 1.0 is the detector's decision threshold.
    pub score: f64,
    /// Kind of evidence.
    pub kind: FlagKind,
    /// A sentence a person can act on.
    pub message: String,
    /// The suspected trigger, when the detector found one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<serde_json::Value>,
}

/// The result of one detector over one dataset.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DetectorOutput {
    /// Detector name.
    pub detector: String,
    /// Per-sample score, larger is more suspicious; normalised so that 1.0 is
    /// the detector's own threshold (empty when the detector does not score samples).
    pub scores: Vec<f64>,
    /// Samples the detector flags.
    pub flags: Vec<Flag>,
    /// Dataset-level findings (a mined trigger, a drift test).
    pub findings: Vec<Finding>,
    /// Named numbers for the report.
    pub metrics: BTreeMap<String, f64>,
}

/// A detector: checked parameters plus a pure function of the dataset.
///
/// Every detector is also a [`Defense`] (see [`run_as_defense`]), so a policy
/// can run any of them alone.
pub trait Detector: Send + Sync {
    /// Stable name.
    fn name(&self) -> &str;
    /// Score the dataset. `seed` drives every random choice.
    fn detect(&self, ds: &Dataset, seed: u64) -> Result<DetectorOutput>;
}

/// The threat tags every poisoning finding carries.
pub fn poison_tags() -> Vec<ThreatTag> {
    vec![
        ThreatTag::owasp_llm04(),
        ThreatTag::atlas_poison_training_data(),
    ]
}

/// Run a detector on `cx.dataset`: flag into the quarantine and build the
/// report (Fail when a confirmed flag exists, Warn for outliers only).
pub fn run_as_defense(
    d: &dyn Detector,
    stage: Stage,
    params: serde_json::Value,
    cx: &mut Context,
) -> Result<Report> {
    let ds = cx.dataset.as_ref().ok_or_else(|| {
        mithridate_core::Error::data(format!("{} needs a dataset in the context", d.name()))
    })?;
    let out = d.detect(ds, cx.seed)?;
    let mut report = Report::new(d.name(), Layer::Anomaly, stage);
    for f in &out.flags {
        let Some(id) = ds.ids.get(f.index) else {
            continue;
        };
        let e = cx.quarantine.flag(
            id.clone(),
            Reason {
                detector: d.name().to_owned(),
                score: f.score,
                message: f.message.clone(),
            },
        );
        if e.trigger.is_none() {
            e.trigger.clone_from(&f.trigger);
        }
    }
    let confirmed = out.flags.iter().filter(|f| f.kind.confirmed()).count();
    report.metric("flagged", out.flags.len() as f64);
    report.metric("samples", ds.len() as f64);
    report.metric("confirmed", confirmed as f64);
    for (k, v) in &out.metrics {
        report.metric(k.clone(), *v);
    }
    if confirmed > 0 {
        report.escalate(Verdict::Fail);
    } else if !out.flags.is_empty() || !out.findings.is_empty() {
        report.escalate(Verdict::Warn);
    }
    report.summary = format!(
        "{}: {} of {} samples flagged ({} confirmed)",
        d.name(),
        out.flags.len(),
        ds.len(),
        confirmed
    );
    report.findings = out.findings;
    report.scores = out.scores;
    report.params = params;
    Ok(report)
}

/// Implement [`Defense`] for a detector type with a `params` field.
macro_rules! detector_defense {
    ($t:ty) => {
        impl mithridate_core::Defense for $t {
            fn name(&self) -> &str {
                $crate::detector::Detector::name(self)
            }
            fn layer(&self) -> mithridate_core::Layer {
                mithridate_core::Layer::Anomaly
            }
            fn stage(&self) -> mithridate_core::Stage {
                mithridate_core::Stage::Ingest
            }
            fn run(
                &self,
                cx: &mut mithridate_core::Context,
            ) -> mithridate_core::Result<mithridate_core::Report> {
                let params = serde_json::to_value(&self.params).unwrap_or(serde_json::Value::Null);
                $crate::detector::run_as_defense(self, mithridate_core::Stage::Ingest, params, cx)
            }
        }
    };
}
pub(crate) use detector_defense;

/// Keep the [`Defense`] import meaningful for docs.
#[allow(dead_code)]
fn _assert_object_safe(_: &dyn Defense) {}
