//! What a defense returns: a [`Report`] with a [`Verdict`], metrics and [`Finding`]s.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::dataset::SampleId;
use crate::defense::{Layer, Stage};

/// Outcome of one defense. Ordered: `Pass < Warn < Fail`, so the verdict of a
/// pipeline is the maximum of its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Nothing found that blocks a release.
    Pass,
    /// Something worth a look that does not block.
    Warn,
    /// The gate fails: tamper, poison, trigger or threshold.
    Fail,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "PASS",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        })
    }
}

/// An entry of a public threat catalog a finding maps to, so an auditor can
/// relate it to the framework they report against.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ThreatTag {
    /// Catalog: `OWASP-LLM` or `MITRE-ATLAS`.
    pub catalog: String,
    /// Identifier in that catalog.
    pub id: String,
    /// Human title.
    pub title: String,
}

impl ThreatTag {
    fn new(catalog: &str, id: &str, title: &str) -> Self {
        Self {
            catalog: catalog.into(),
            id: id.into(),
            title: title.into(),
        }
    }
    /// OWASP Top 10 for LLM Applications 2025, LLM04: Data and Model Poisoning.
    pub fn owasp_llm04() -> Self {
        Self::new("OWASP-LLM", "LLM04:2025", "Data and Model Poisoning")
    }
    /// OWASP Top 10 for LLM Applications 2025, LLM07: System Prompt Leakage.
    pub fn owasp_llm07() -> Self {
        Self::new("OWASP-LLM", "LLM07:2025", "System Prompt Leakage")
    }
    /// MITRE ATLAS AML.T0020: Poison Training Data.
    pub fn atlas_poison_training_data() -> Self {
        Self::new("MITRE-ATLAS", "AML.T0020", "Poison Training Data")
    }
    /// MITRE ATLAS AML.T0018: Backdoor ML Model (Manipulate AI Model).
    pub fn atlas_backdoor_model() -> Self {
        Self::new("MITRE-ATLAS", "AML.T0018", "Backdoor ML Model")
    }
    /// MITRE ATLAS AML.T0010: ML Supply Chain Compromise.
    pub fn atlas_supply_chain() -> Self {
        Self::new("MITRE-ATLAS", "AML.T0010", "ML Supply Chain Compromise")
    }
    /// MITRE ATLAS AML.T0024: Exfiltration via ML Inference API.
    pub fn atlas_exfiltration() -> Self {
        Self::new(
            "MITRE-ATLAS",
            "AML.T0024",
            "Exfiltration via ML Inference API",
        )
    }
}

impl fmt::Display for ThreatTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.catalog, self.id)
    }
}

/// One thing a defense found: the samples (or files) involved, how strongly,
/// why in words, and which threats it relates to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Samples concerned (empty for whole-dataset findings such as a bad signature).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<SampleId>,
    /// Strength of the finding; larger is more suspicious. Its scale is the defense's.
    pub score: f64,
    /// A sentence a person can act on.
    pub reason: String,
    /// Threat-catalog entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<ThreatTag>,
    /// Structured detail (trigger location, file and record, ...).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

impl Finding {
    /// A finding with no ids, no tags and no detail.
    pub fn new(score: f64, reason: impl Into<String>) -> Self {
        Self {
            ids: Vec::new(),
            score,
            reason: reason.into(),
            tags: Vec::new(),
            detail: serde_json::Value::Null,
        }
    }
    /// The same finding about `ids`.
    #[must_use]
    pub fn with_ids(mut self, ids: Vec<SampleId>) -> Self {
        self.ids = ids;
        self
    }
    /// The same finding with `tags` added.
    #[must_use]
    pub fn with_tags(mut self, tags: impl IntoIterator<Item = ThreatTag>) -> Self {
        self.tags.extend(tags);
        self
    }
    /// The same finding with structured detail.
    #[must_use]
    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

/// The result of one defense run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Defense name (see [`crate::Defense::name`]).
    pub defense: String,
    /// Its layer.
    pub layer: Layer,
    /// Its stage.
    pub stage: Stage,
    /// Outcome.
    pub verdict: Verdict,
    /// One-line summary for people.
    pub summary: String,
    /// Named numeric results (accuracy, ASR, epsilon, counts...).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// What was found.
    #[serde(default)]
    pub findings: Vec<Finding>,
    /// Per-sample scores, for histograms (empty when the defense does not score samples).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scores: Vec<f64>,
    /// The checked parameters the defense ran with.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub params: serde_json::Value,
    /// Wall time in milliseconds (filled in by the runner).
    #[serde(default)]
    pub elapsed_ms: f64,
}

impl Report {
    /// An empty passing report for a defense.
    pub fn new(defense: impl Into<String>, layer: Layer, stage: Stage) -> Self {
        Self {
            defense: defense.into(),
            layer,
            stage,
            verdict: Verdict::Pass,
            summary: String::new(),
            metrics: BTreeMap::new(),
            findings: Vec::new(),
            scores: Vec::new(),
            params: serde_json::Value::Null,
            elapsed_ms: 0.0,
        }
    }

    /// Set a metric.
    pub fn metric(&mut self, name: impl Into<String>, value: f64) -> &mut Self {
        self.metrics.insert(name.into(), value);
        self
    }

    /// Raise the verdict to at least `v` (a report never goes from Fail back to Pass).
    pub fn escalate(&mut self, v: Verdict) -> &mut Self {
        self.verdict = self.verdict.max(v);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_orders_and_escalates_only_upwards() {
        assert!(Verdict::Pass < Verdict::Warn && Verdict::Warn < Verdict::Fail);
        let mut r = Report::new("x", Layer::Anomaly, Stage::Ingest);
        r.escalate(Verdict::Fail).escalate(Verdict::Warn);
        assert_eq!(r.verdict, Verdict::Fail);
    }

    #[test]
    fn report_round_trips_json() {
        let mut r = Report::new("knn", Layer::Anomaly, Stage::Ingest);
        r.metric("flagged", 3.0);
        r.findings.push(
            Finding::new(2.5, "far from its class")
                .with_ids(vec![SampleId::Num(4)])
                .with_tags([
                    ThreatTag::owasp_llm04(),
                    ThreatTag::atlas_poison_training_data(),
                ]),
        );
        let s = serde_json::to_string(&r).unwrap();
        assert!(s.contains("LLM04:2025") && s.contains("AML.T0020"));
        let back: Report = serde_json::from_str(&s).unwrap();
        assert_eq!(back, r);
    }
}
