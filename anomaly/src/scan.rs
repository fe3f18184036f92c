//! The scan: pick a suite of detectors for the data, run them, and combine
//! their scores into quarantine decisions under an explicit false-positive
//! budget, each decision explained.
//!
//! The combiner distinguishes two kinds of evidence:
//! - confirmed evidence (a trigger that passed its counterfactual test, a
//!   label that a model which never saw the sample contradicts): quarantined;
//!   the verdict is Fail for a trigger, and for label issues when they exceed
//!   the budget (a few are the ordinary label noise of real data: Warn);
//! - unconfirmed anomaly (outlier distance, spectral score, a small cluster):
//!   quarantined only when at least `min_votes` detectors agree, and never more
//!   than `fp_budget` of the samples (the most anomalous first); verdict Warn.
//!
//! Every outlier detector's threshold is itself capped at the `1 - fp_budget`
//! quantile of its scores, so on clean data the unconfirmed path can flag at
//! most the budget whatever the score distribution.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use mithridate_core::{
    Classifier, Context, Dataset, Defense, Error, Finding, Layer, Quarantine, Reason, Report,
    Result, Stage, Verdict,
};
use serde::{Deserialize, Serialize};

use crate::detector::{Detector, DetectorOutput, FlagKind};
use crate::label::{LabelConsistency, LabelParams};
use crate::outlier::{KnnOutlier, Mahalanobis, OutlierParams};
use crate::spectral::{ActivationClustering, SpectralParams, SpectralSignatures};
use crate::text::{TextTriggerMining, TextTriggerParams};
use crate::trigger::{FeatureTriggerMining, FeatureTriggerParams};

/// The detectors a scan can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DetectorKind {
    /// [`FeatureTriggerMining`].
    TriggerMining,
    /// [`TextTriggerMining`].
    TextTriggerMining,
    /// [`LabelConsistency`].
    LabelConsistency,
    /// [`KnnOutlier`].
    KnnOutlier,
    /// [`Mahalanobis`].
    Mahalanobis,
    /// [`SpectralSignatures`].
    SpectralSignatures,
    /// [`ActivationClustering`].
    ActivationClustering,
}

impl DetectorKind {
    /// The default suite for what `ds` holds: trigger mining, label
    /// consistency and outlier scores for labelled features; outlier scores
    /// for unlabelled features; n-gram trigger mining for text with labels or
    /// a response field.
    pub fn default_suite(ds: &Dataset) -> Vec<DetectorKind> {
        let mut v = Vec::new();
        let labelled = ds.labels.is_some() && ds.n_classes() >= 2;
        if ds.features.is_some() {
            if labelled {
                v.extend([DetectorKind::TriggerMining, DetectorKind::LabelConsistency]);
            }
            v.extend([DetectorKind::KnnOutlier, DetectorKind::Mahalanobis]);
            if labelled {
                v.push(DetectorKind::SpectralSignatures);
            }
        }
        if ds.text().is_some() {
            v.push(DetectorKind::TextTriggerMining);
        }
        v
    }
}

/// Parameters of a scan. `Default` is the suite the CLI runs with no options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScanParams {
    /// Largest fraction of samples the unconfirmed (outlier) evidence may
    /// quarantine; also caps each outlier detector.
    pub fp_budget: f64,
    /// Unconfirmed detectors that must agree before an outlier is quarantined.
    pub min_votes: usize,
    /// Detectors to run; `None` picks [`DetectorKind::default_suite`].
    pub detectors: Option<Vec<DetectorKind>>,
    /// Feature trigger mining.
    pub trigger: FeatureTriggerParams,
    /// Text trigger mining.
    pub text: TextTriggerParams,
    /// Label consistency.
    pub label: LabelParams,
    /// Outlier detectors (their `fp_budget` is overridden by the scan's).
    pub outlier: OutlierParams,
    /// Spectral detectors (their `fp_budget` is overridden by the scan's).
    pub spectral: SpectralParams,
}

impl Default for ScanParams {
    fn default() -> Self {
        Self {
            fp_budget: 0.005,
            min_votes: 3,
            detectors: None,
            trigger: FeatureTriggerParams::default(),
            text: TextTriggerParams::default(),
            label: LabelParams::default(),
            outlier: OutlierParams::default(),
            spectral: SpectralParams::default(),
        }
    }
}

impl ScanParams {
    /// Check every field, including each detector's parameters.
    pub fn check(&self) -> Result<()> {
        if !(self.fp_budget.is_finite() && (0.0..=0.5).contains(&self.fp_budget)) {
            return Err(Error::param(
                "fp_budget",
                format!("must be in [0, 0.5], got {}", self.fp_budget),
            ));
        }
        if self.min_votes == 0 {
            return Err(Error::param("min_votes", "must be at least 1"));
        }
        self.trigger.check()?;
        self.text.check()?;
        self.label.check()?;
        OutlierParams {
            fp_budget: self.fp_budget,
            ..self.outlier.clone()
        }
        .check()?;
        SpectralParams {
            fp_budget: self.fp_budget,
            ..self.spectral.clone()
        }
        .check()
    }
}

/// One quarantine decision with its explanation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Row index in the scanned dataset.
    pub index: usize,
    /// The quarantine entry (id, combined score, reasons, trigger).
    pub entry: mithridate_core::QuarantineEntry,
    /// True when backed by confirmed evidence (trigger or label issue).
    pub confirmed: bool,
}

/// Everything a scan produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanOutcome {
    /// The combined report (name `anomaly-scan`); `scores` are the combined per-sample scores.
    pub report: Report,
    /// Quarantine decisions, by row index.
    pub decisions: Vec<Decision>,
    /// Combined per-sample score (max over detectors of their normalised scores).
    pub combined: Vec<f64>,
    /// Each detector's own output.
    pub detectors: Vec<DetectorOutput>,
}

impl ScanOutcome {
    /// Row indices quarantined, ascending.
    pub fn quarantined_indices(&self) -> Vec<usize> {
        self.decisions.iter().map(|d| d.index).collect()
    }

    /// The decisions as a [`Quarantine`].
    pub fn quarantine(&self) -> Quarantine {
        let mut q = Quarantine::default();
        for d in &self.decisions {
            flag_into(&mut q, &d.entry);
        }
        q
    }
}

/// Flag `entry`'s reasons into `q`, keeping its combined score, trigger and record.
pub fn flag_into(q: &mut Quarantine, entry: &mithridate_core::QuarantineEntry) {
    let Some((last, rest)) = entry.reasons.split_last() else {
        return;
    };
    for r in rest {
        q.flag(entry.id.clone(), r.clone());
    }
    let e = q.flag(entry.id.clone(), last.clone());
    e.score = e.score.max(entry.score);
    if e.trigger.is_none() {
        e.trigger.clone_from(&entry.trigger);
    }
    if e.record.is_none() {
        e.record.clone_from(&entry.record);
    }
}

fn build(
    kind: DetectorKind,
    p: &ScanParams,
    model: Option<&Arc<dyn Classifier>>,
) -> Box<dyn Detector> {
    let outlier = OutlierParams {
        fp_budget: p.fp_budget,
        ..p.outlier.clone()
    };
    let spectral = SpectralParams {
        fp_budget: p.fp_budget,
        ..p.spectral.clone()
    };
    match kind {
        DetectorKind::TriggerMining => Box::new(FeatureTriggerMining {
            params: p.trigger.clone(),
        }),
        DetectorKind::TextTriggerMining => Box::new(TextTriggerMining {
            params: p.text.clone(),
        }),
        DetectorKind::LabelConsistency => Box::new(LabelConsistency {
            params: p.label.clone(),
        }),
        DetectorKind::KnnOutlier => Box::new(KnnOutlier { params: outlier }),
        DetectorKind::Mahalanobis => Box::new(Mahalanobis { params: outlier }),
        DetectorKind::SpectralSignatures => Box::new(SpectralSignatures {
            params: spectral,
            model: model.cloned(),
        }),
        DetectorKind::ActivationClustering => Box::new(ActivationClustering {
            params: spectral,
            model: model.cloned(),
        }),
    }
}

/// Scan `ds` with `params` and no model. See [`scan_with_model`].
pub fn scan(ds: &Dataset, params: &ScanParams, seed: u64) -> Result<ScanOutcome> {
    scan_with_model(ds, params, None, seed)
}

/// Scan `ds`: run the suite, combine, decide. `model` (if any) provides the
/// representation of the spectral detectors.
pub fn scan_with_model(
    ds: &Dataset,
    params: &ScanParams,
    model: Option<&Arc<dyn Classifier>>,
    seed: u64,
) -> Result<ScanOutcome> {
    params.check()?;
    ds.validate()?;
    let n = ds.len();
    let kinds = params
        .detectors
        .clone()
        .unwrap_or_else(|| DetectorKind::default_suite(ds));
    let mut outputs = Vec::with_capacity(kinds.len());
    let mut skipped = Vec::new();
    for (i, kind) in kinds.iter().enumerate() {
        let det = build(*kind, params, model);
        let span = tracing::info_span!("detector", name = det.name());
        let _g = span.enter();
        match det.detect(
            ds,
            mithridate_core::rng::derive_seed(seed, &format!("detector-{i}")),
        ) {
            Ok(o) => outputs.push(o),
            // A detector whose data needs are not met is skipped and said so, not fatal.
            Err(Error::Data(m)) => skipped.push(format!("{}: {m}", det.name())),
            Err(e) => return Err(e),
        }
    }
    let mut combined = vec![0.0f64; n];
    for o in &outputs {
        for (c, s) in combined.iter_mut().zip(&o.scores) {
            if s.is_finite() {
                *c = c.max(*s);
            }
        }
        for f in &o.flags {
            if let Some(c) = combined.get_mut(f.index) {
                *c = c.max(f.score);
            }
        }
    }
    // Gather flags per sample.
    let mut per: BTreeMap<usize, Vec<(&str, &crate::detector::Flag)>> = BTreeMap::new();
    for o in &outputs {
        for f in &o.flags {
            if f.index < n {
                per.entry(f.index)
                    .or_default()
                    .push((o.detector.as_str(), f));
            }
        }
    }
    // Label issues that no trigger explains are also what ordinary label
    // noise looks like: every real dataset has a few ambiguous or mislabelled
    // samples, and the clean-data null is that they stay within the
    // false-positive budget. Within it they are reported, not quarantined (a
    // quarantine of a few natural look-alikes would cost more precision than
    // the evidence is worth); beyond it the excess cannot be natural and all
    // of them are quarantined, so a flip attack keeps its recall. Held-back
    // label issues still count as one vote on the outlier path.
    let has =
        |fl: &[(&str, &crate::detector::Flag)], k: FlagKind| fl.iter().any(|(_, f)| f.kind == k);
    let label_only: Vec<usize> = per
        .iter()
        .filter(|(_, fl)| has(fl, FlagKind::LabelIssue) && !has(fl, FlagKind::Trigger))
        .map(|(&i, _)| i)
        .collect();
    let label_allowance = (params.fp_budget * n as f64).floor() as usize;
    let admit_labels = label_only.len() > label_allowance;
    let mut confirmed: BTreeSet<usize> = BTreeSet::new();
    let mut outliers: Vec<usize> = Vec::new();
    for (&i, fl) in &per {
        if has(fl, FlagKind::Trigger) || (admit_labels && has(fl, FlagKind::LabelIssue)) {
            confirmed.insert(i);
        } else if fl.len() >= params.min_votes {
            outliers.push(i);
        }
    }
    outliers.sort_by(|&a, &b| combined[b].total_cmp(&combined[a]));
    outliers.truncate((params.fp_budget * n as f64).floor() as usize);
    let chosen: BTreeSet<usize> = confirmed
        .iter()
        .copied()
        .chain(outliers.iter().copied())
        .collect();
    let mut decisions = Vec::with_capacity(chosen.len());
    for &i in &chosen {
        let fl = &per[&i];
        let is_conf = confirmed.contains(&i);
        let reasons: Vec<Reason> = fl
            .iter()
            .filter(|(_, f)| !is_conf || f.kind.confirmed() || fl.len() > 1)
            .map(|(d, f)| Reason {
                detector: (*d).to_owned(),
                score: f.score,
                message: f.message.clone(),
            })
            .collect();
        let trigger = fl.iter().find_map(|(_, f)| f.trigger.clone());
        decisions.push(Decision {
            index: i,
            confirmed: is_conf,
            entry: mithridate_core::QuarantineEntry {
                id: ds.ids[i].clone(),
                score: combined[i],
                reasons,
                trigger,
                record: None,
                status: mithridate_core::quarantine::Status::Quarantined,
            },
        });
    }
    let mut report = Report::new("anomaly-scan", Layer::Anomaly, Stage::Ingest);
    report.metric("samples", n as f64);
    report.metric("flagged", decisions.len() as f64);
    report.metric("flagged_confirmed", confirmed.len() as f64);
    report.metric("flagged_outliers", outliers.len() as f64);
    report.metric("fp_budget", params.fp_budget);
    for o in &outputs {
        report.metric(format!("{}.flagged", o.detector), o.flags.len() as f64);
        for (k, v) in &o.metrics {
            report.metric(format!("{}.{k}", o.detector), *v);
        }
        report.findings.extend(o.findings.iter().cloned());
    }
    if !outliers.is_empty() {
        report.findings.push(
            Finding::new(outliers.len() as f64, format!(
                "{} sample(s) anomalous for at least {} detectors (within the {:.2}% false-positive budget)",
                outliers.len(),
                params.min_votes,
                params.fp_budget * 100.0
            ))
            .with_ids(outliers.iter().map(|&i| ds.ids[i].clone()).collect()),
        );
    }
    let held_back: Vec<usize> = if admit_labels {
        Vec::new()
    } else {
        label_only
            .iter()
            .copied()
            .filter(|i| !outliers.contains(i))
            .collect()
    };
    report.metric("label_issues_held_back", held_back.len() as f64);
    if !held_back.is_empty() {
        report.findings.push(
            Finding::new(held_back.len() as f64, format!(
                "{} label issue(s) not explained by a trigger, within the {:.2}% false-positive budget that ordinary label noise uses: reported, not quarantined",
                held_back.len(),
                params.fp_budget * 100.0
            ))
            .with_ids(held_back.iter().map(|&i| ds.ids[i].clone()).collect()),
        );
    }
    for s in &skipped {
        report
            .findings
            .push(Finding::new(0.0, format!("detector skipped: {s}")));
    }
    // A confirmed trigger is poison. Label issues are poison when there are
    // more of them than the false-positive budget allows for the ordinary label
    // noise every real dataset has; fewer are reported as a warning.
    let trigger_hits = decisions
        .iter()
        .filter(|d| {
            per[&d.index]
                .iter()
                .any(|(_, f)| f.kind == FlagKind::Trigger)
        })
        .count();
    let label_hits = decisions
        .iter()
        .filter(|d| {
            per[&d.index]
                .iter()
                .any(|(_, f)| f.kind == FlagKind::LabelIssue)
        })
        .count();
    report.metric("flagged_trigger", trigger_hits as f64);
    report.metric("flagged_label_issue", label_hits as f64);
    if trigger_hits > 0 || label_hits as f64 > params.fp_budget * n as f64 {
        report.escalate(Verdict::Fail);
    } else if !decisions.is_empty() {
        report.escalate(Verdict::Warn);
    }
    report.summary = format!(
        "anomaly scan: {} of {} samples quarantined ({} confirmed poison, {} outliers) by {}",
        decisions.len(),
        n,
        confirmed.len(),
        outliers.len(),
        outputs
            .iter()
            .map(|o| o.detector.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    report.scores.clone_from(&combined);
    report.params = serde_json::to_value(params).unwrap_or_default();
    Ok(ScanOutcome {
        report,
        decisions,
        combined,
        detectors: outputs,
    })
}

/// The anomaly layer as one defense: the default suite plus the combiner.
///
/// Reads `cx.dataset` (and `cx.model` for the spectral representation when
/// present), flags into `cx.quarantine`. Verdict: Fail when poison is found (a
/// confirmed trigger, or more label issues than the false-positive budget
/// allows for ordinary label noise), Warn when only outliers or a few label
/// issues are quarantined, Pass otherwise.
/// Metrics: `flagged`, `samples`, `flagged_confirmed`, `flagged_outliers`,
/// `<detector>.flagged` per detector and the detectors' own metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScanDefense {
    params: ScanParams,
}

impl ScanDefense {
    /// A scan defense with `params` (checked when it runs).
    pub fn new(params: ScanParams) -> Self {
        Self { params }
    }

    /// The parameters.
    pub fn params(&self) -> &ScanParams {
        &self.params
    }
}

impl Defense for ScanDefense {
    fn name(&self) -> &str {
        "anomaly-scan"
    }
    fn layer(&self) -> Layer {
        Layer::Anomaly
    }
    fn stage(&self) -> Stage {
        Stage::Ingest
    }
    fn run(&self, cx: &mut Context) -> Result<Report> {
        let ds = cx
            .dataset
            .as_ref()
            .ok_or_else(|| Error::data("anomaly-scan needs a dataset in the context"))?;
        cx.progress.start("anomaly scan", None);
        let out = scan_with_model(ds, &self.params, cx.model.as_ref(), cx.seed);
        cx.progress.finish();
        let out = out?;
        for d in &out.decisions {
            flag_into(&mut cx.quarantine, &d.entry);
        }
        cx.artifacts.insert(
            "anomaly.quarantined".into(),
            serde_json::to_value(
                out.decisions
                    .iter()
                    .map(|d| &d.entry.id)
                    .collect::<Vec<_>>(),
            )
            .unwrap_or_default(),
        );
        Ok(out.report)
    }
}
