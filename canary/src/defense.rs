//! The canary layer as pipeline [`Defense`]s: plant a canary set before
//! training, assert it after.

use mithridate_core::{
    Context, Defense, Error, Finding, Layer, Report, Result, Stage, ThreatTag, Verdict,
};

use crate::canaries::{CanarySet, ClassifierCanaries, Expected};

/// The artifact key under which [`PlantCanaries`] leaves the canary set.
pub const CANARY_SET_ARTIFACT: &str = "canary_set";

/// Ingest-stage defense: appends `count` classifier canaries (ids
/// `canary-<i>`, features of the dataset's width, labels) to the dataset and
/// records the set in `cx.artifacts["canary_set"]`.
///
/// By default every canary is a lightly perturbed copy of a real sample with
/// its label, so a softmax regression learns them like the rest of the data;
/// [`PlantCanaries::with_params`] can mix in synthetic blends.
#[derive(Debug, Clone, PartialEq)]
pub struct PlantCanaries {
    params: ClassifierCanaries,
    secret_seed: u64,
}

impl PlantCanaries {
    /// `count` perturbed-copy canaries drawn with `secret_seed` (keep it secret:
    /// whoever knows it knows the canaries).
    pub fn new(count: usize, secret_seed: u64) -> Self {
        Self {
            params: ClassifierCanaries {
                count,
                ..Default::default()
            },
            secret_seed,
        }
    }

    /// The same with explicit parameters (checked when run).
    #[must_use]
    pub fn with_params(mut self, params: ClassifierCanaries) -> Self {
        self.params = params;
        self
    }
}

impl Defense for PlantCanaries {
    fn name(&self) -> &str {
        "canary-plant"
    }
    fn layer(&self) -> Layer {
        Layer::Canary
    }
    fn stage(&self) -> Stage {
        Stage::Ingest
    }
    fn run(&self, cx: &mut Context) -> Result<Report> {
        self.params.check()?;
        let ds = cx
            .dataset
            .as_mut()
            .ok_or_else(|| Error::data("canary-plant needs a dataset in the context"))?;
        let set = CanarySet::for_classifier(ds, &self.params, self.secret_seed)?;
        set.append_to(ds)?;
        let value =
            serde_json::to_value(&set).map_err(|e| Error::data(format!("canary set: {e}")))?;
        cx.artifacts.insert(CANARY_SET_ARTIFACT.into(), value);
        let mut r = Report::new(self.name(), self.layer(), self.stage());
        r.metric("canaries", set.canaries.len() as f64);
        r.params = serde_json::json!({
            "count": self.params.count,
            "synthetic_fraction": self.params.synthetic_fraction,
            "perturb_fraction": self.params.perturb_fraction,
            "perturb_scale": self.params.perturb_scale,
        });
        r.summary = format!(
            "planted {} canaries into the training set",
            set.canaries.len()
        );
        Ok(r)
    }
}

/// Release-stage defense: predicts the canary set left by [`PlantCanaries`]
/// with the trained model and fails when fewer than `min_pass_rate` of the
/// canaries get their expected output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AssertCanaries {
    min_pass_rate: f64,
}

impl AssertCanaries {
    /// Fail below `min_pass_rate` (a fraction in `[0, 1]`, checked when run).
    pub fn new(min_pass_rate: f64) -> Self {
        Self { min_pass_rate }
    }
}

impl Defense for AssertCanaries {
    fn name(&self) -> &str {
        "canary-assert"
    }
    fn layer(&self) -> Layer {
        Layer::Canary
    }
    fn stage(&self) -> Stage {
        Stage::Release
    }
    fn run(&self, cx: &mut Context) -> Result<Report> {
        if !(self.min_pass_rate.is_finite() && (0.0..=1.0).contains(&self.min_pass_rate)) {
            return Err(Error::param("min_pass_rate", "must be within [0, 1]"));
        }
        let v = cx.artifacts.get(CANARY_SET_ARTIFACT).ok_or_else(|| {
            Error::data("canary-assert needs the `canary_set` artifact (run canary-plant first)")
        })?;
        let set: CanarySet = serde_json::from_value(v.clone())
            .map_err(|e| Error::data(format!("artifact `canary_set`: {e}")))?;
        let predictor = cx.require_predictor("canary-assert")?;
        let check = set.assert_with(predictor.as_ref())?;
        let mut r = Report::new(self.name(), self.layer(), self.stage());
        r.metric("canaries", check.total as f64);
        r.metric("canaries_passed", check.passed as f64);
        r.metric("canary_pass_rate", check.pass_rate());
        r.params = serde_json::json!({ "min_pass_rate": self.min_pass_rate });
        for f in &check.failed {
            let expected = match &f.expected {
                Expected::Label(l) => format!("class {l}"),
                Expected::Text(t) => format!("{t:?}"),
            };
            let got = f
                .got
                .label
                .map_or_else(|| format!("{:?}", f.got.text), |l| format!("class {l}"));
            r.findings.push(
                Finding::new(
                    1.0,
                    format!("canary {} expected {expected}, the model gave {got}", f.id),
                )
                .with_ids(vec![mithridate_core::SampleId::Str(f.id.clone())])
                .with_tags([
                    ThreatTag::atlas_poison_training_data(),
                    ThreatTag::atlas_supply_chain(),
                ])
                .with_detail(serde_json::json!({ "expected": f.expected, "got": f.got })),
            );
        }
        let rate = check.pass_rate();
        if rate < self.min_pass_rate {
            r.escalate(Verdict::Fail);
        } else if !check.failed.is_empty() {
            r.escalate(Verdict::Warn);
        }
        r.summary = format!(
            "{}/{} canaries gave their expected output ({:.1}%, minimum {:.1}%)",
            check.passed,
            check.total,
            rate * 100.0,
            self.min_pass_rate * 100.0
        );
        Ok(r)
    }
}

/// Release-stage defense: scans files (model outputs, generated samples,
/// logs, exported datasets) for the tokens of a honeypot registry and fails on
/// any hit, naming the honeypot, where and when it was planted, and where it
/// was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanHoneypots {
    registry: std::path::PathBuf,
    paths: Vec<std::path::PathBuf>,
}

impl ScanHoneypots {
    /// Scan `paths` (files or directories) for the tokens of the registry file `registry`.
    pub fn new(registry: impl Into<std::path::PathBuf>, paths: Vec<std::path::PathBuf>) -> Self {
        Self {
            registry: registry.into(),
            paths,
        }
    }
}

impl Defense for ScanHoneypots {
    fn name(&self) -> &str {
        "canary-scan"
    }
    fn layer(&self) -> Layer {
        Layer::Canary
    }
    fn stage(&self) -> Stage {
        Stage::Release
    }
    fn run(&self, _cx: &mut Context) -> Result<Report> {
        let reg = crate::registry::Registry::load(&self.registry)?;
        let sum = crate::scan::Scanner::for_registry(&reg)?.scan_paths(&self.paths)?;
        let mut r = Report::new(self.name(), self.layer(), self.stage());
        r.metric("files_scanned", sum.files as f64);
        r.metric("bytes_scanned", sum.bytes as f64);
        r.metric("honeypot_hits", sum.hits.len() as f64);
        r.metric("unreadable_files", sum.errors.len() as f64);
        for h in &sum.hits {
            if let crate::scan::Target::Honeypot { honeypot } = &h.target {
                r.findings.push(
                    Finding::new(
                        1.0,
                        format!(
                            "honeypot #{} ({}) planted {} in {} found in {}:{}",
                            honeypot.id,
                            honeypot.kind,
                            honeypot.planted_at,
                            honeypot.site.path,
                            h.file,
                            h.line
                        ),
                    )
                    .with_tags([ThreatTag::atlas_exfiltration(), ThreatTag::owasp_llm04()])
                    .with_detail(serde_json::to_value(h).unwrap_or_default()),
                );
            }
        }
        for e in &sum.errors {
            r.findings
                .push(Finding::new(0.0, format!("not scanned: {e}")));
        }
        if !sum.hits.is_empty() {
            r.escalate(Verdict::Fail);
        } else if !sum.errors.is_empty() {
            r.escalate(Verdict::Warn);
        }
        r.summary = format!("{} honeypot hits in {} files", sum.hits.len(), sum.files);
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mithridate_core::datasets::digits;
    use mithridate_core::model::{SoftmaxParams, SoftmaxRegression};
    use mithridate_core::SampleId;
    use std::sync::Arc;

    fn train(cx: &Context, epochs: usize) -> Arc<dyn mithridate_core::Classifier> {
        let ds = cx.training_set().unwrap();
        let p = SoftmaxParams {
            epochs,
            ..Default::default()
        };
        Arc::new(
            SoftmaxRegression::fit(
                ds.features.as_ref().unwrap().view(),
                ds.labels.as_ref().unwrap(),
                10,
                &p,
                1,
            )
            .unwrap(),
        )
    }

    #[test]
    fn planted_canaries_are_learnt_and_asserted() {
        let mut cx = Context::new(1).with_dataset(digits());
        let r = cx.run(&PlantCanaries::new(20, 77)).unwrap();
        assert_eq!(r.metrics["canaries"], 20.0);
        let ds = cx.dataset.as_ref().unwrap();
        assert_eq!(ds.len(), 1797 + 20);
        assert_eq!(ds.ids.last(), Some(&SampleId::Str("canary-19".into())));
        cx.model = Some(train(&cx, 20));
        let r = cx.run(&AssertCanaries::new(0.9)).unwrap();
        assert_eq!(r.metrics["canaries"], 20.0);
        assert!(r.metrics["canaries_passed"] >= 18.0, "{r:?}");
        assert_ne!(r.verdict, Verdict::Fail);
    }

    #[test]
    fn a_substituted_model_fails_and_names_the_canaries() {
        let mut cx = Context::new(1).with_dataset(digits());
        cx.run(&PlantCanaries::new(20, 77)).unwrap();
        // A model of the same shape trained on labels shifted by one class.
        let ds = cx.training_set().unwrap();
        let y: Vec<u32> = ds
            .labels
            .as_ref()
            .unwrap()
            .iter()
            .map(|l| (l + 1) % 10)
            .collect();
        let p = SoftmaxParams {
            epochs: 10,
            ..Default::default()
        };
        cx.model = Some(Arc::new(
            SoftmaxRegression::fit(ds.features.as_ref().unwrap().view(), &y, 10, &p, 1).unwrap(),
        ));
        let r = cx.run(&AssertCanaries::new(0.9)).unwrap();
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(r.findings.len() >= 18);
        assert!(
            r.findings[0].reason.starts_with("canary canary-"),
            "{}",
            r.findings[0].reason
        );
    }

    #[test]
    fn scan_defense_fails_on_a_leaked_token() {
        use crate::registry::{Registry, Site};
        use crate::token::{HoneypotKind, SecretKey};
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::from_seed(8);
        let mut reg = Registry::new(&key);
        let (tok, _) = reg
            .mint(&key, HoneypotKind::Pii, Site::file("crm/export"))
            .unwrap();
        let rp = dir.path().join("reg.json");
        reg.save(&rp).unwrap();
        let out = dir.path().join("outputs");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("a.txt"), "all clear").unwrap();
        let mut cx = Context::new(1);
        let r = cx.run(&ScanHoneypots::new(&rp, vec![out.clone()])).unwrap();
        assert_eq!(r.verdict, Verdict::Pass);
        std::fs::write(out.join("b.txt"), format!("the customer is {tok}")).unwrap();
        let r = cx.run(&ScanHoneypots::new(&rp, vec![out])).unwrap();
        assert_eq!(r.verdict, Verdict::Fail);
        assert_eq!(r.metrics["honeypot_hits"], 1.0);
        assert!(
            r.findings[0].reason.contains("crm/export"),
            "{}",
            r.findings[0].reason
        );
    }

    #[test]
    fn missing_inputs_are_errors_not_panics() {
        let mut cx = Context::new(1);
        assert!(cx.run(&PlantCanaries::new(3, 1)).is_err());
        assert!(cx.run(&AssertCanaries::new(0.9)).is_err());
        let mut cx = Context::new(1).with_dataset(digits());
        assert!(cx.run(&PlantCanaries::new(0, 1)).is_err());
        assert!(cx.run(&AssertCanaries::new(1.5)).is_err());
    }
}
