//! From a tier and a config to a list of defenses, and running them.
//!
//! A tier is data: a list of [`Control`]s, each on or off with a reason. The
//! pipeline is that list turned into `Box<dyn Defense>` values and run stage by
//! stage, like a stack of tower layers; no tier has a special code path.

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use mithridate_core::{Context, Defense, Error, Layer, Report, Result, Stage, Verdict};

use crate::config::{Config, Thresholds, TrainingMode};
use crate::tier::Tier;

/// Names of the controls a pipeline can run, in pipeline order.
pub const CONTROLS: [(&str, Layer, Stage); 8] = [
    ("provenance-verify", Layer::Provenance, Stage::Ingest),
    ("anomaly-scan", Layer::Anomaly, Stage::Ingest),
    ("canary-plant", Layer::Canary, Stage::Ingest),
    ("train", Layer::Robust, Stage::Train),
    ("holdout-gate", Layer::Validation, Stage::Release),
    ("backdoor-trigger-test", Layer::Validation, Stage::Release),
    ("unknown-trigger-scan", Layer::Validation, Stage::Release),
    ("canary-assert", Layer::Canary, Stage::Release),
];

/// One control of the effective policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Control {
    /// Control name (see [`CONTROLS`]).
    pub name: String,
    /// Layer.
    pub layer: Layer,
    /// Stage.
    pub stage: Stage,
    /// Whether it runs.
    pub enabled: bool,
    /// Why it is on or off: the tier's rule or the config's override.
    pub why: String,
}

/// The policy after the config's overrides: what an auditor reads to know
/// exactly what ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffectivePolicy {
    /// Tier.
    pub tier: Tier,
    /// The tier's requirement in words.
    pub requirement: String,
    /// Thresholds in force.
    pub thresholds: Thresholds,
    /// Training mode of the built-in trainer.
    pub training: TrainingMode,
    /// Partitions for certified training.
    pub partitions: usize,
    /// Whether manifests must be signed by an allow-listed key.
    pub require_signed_sources: bool,
    /// Whether poison found and quarantined at ingest fails the gate by itself.
    pub block_on_quarantine: bool,
    /// Every control, on or off.
    pub controls: Vec<Control>,
    /// Seed.
    pub seed: u64,
    /// The model the release stage checks: `built-in trainer`, `file PATH`,
    /// `command CMD` or `endpoint URL` (from `[model]`).
    #[serde(default)]
    pub model: String,
    /// Whether that model lives outside the process (a command or an
    /// endpoint): only checks that query it can run.
    #[serde(default)]
    pub external_model: bool,
}

fn tier_default(tier: Tier, name: &str) -> (bool, &'static str) {
    use Tier::*;
    match (tier, name) {
        (_, "provenance-verify") => (true, "every tier verifies provenance"),
        (_, "train") => (
            true,
            "the built-in trainer trains between ingest and release",
        ),
        (_, "holdout-gate") => (true, "every tier validates on a clean holdout"),
        (Low, "backdoor-trigger-test") => (true, "low tier: backdoor tests before production use"),
        (_, "backdoor-trigger-test") => (true, "backdoor tests on every release"),
        (Low, "anomaly-scan") => (false, "low tier does not require anomaly detection"),
        (_, "anomaly-scan") => (true, "medium and high tiers require anomaly detection"),
        (Low, "canary-plant" | "canary-assert") => (false, "low tier does not require canaries"),
        (Medium, "canary-plant" | "canary-assert") => (true, "medium tier: canaries on by default"),
        (High, "canary-plant" | "canary-assert") => (true, "high tier runs all five layers"),
        (High, "unknown-trigger-scan") => (
            true,
            "high tier searches for unknown triggers on every release",
        ),
        (_, "unknown-trigger-scan") => (
            false,
            "only the high tier requires the unknown-trigger search",
        ),
        _ => (false, "not part of this tier"),
    }
}

/// How `[model]` names the model, for the report.
fn model_description(cfg: &Config) -> String {
    let m = &cfg.model;
    if let Some(f) = &m.file {
        format!("file {}", f.display())
    } else if let Some(c) = &m.command {
        format!("command `{c}`")
    } else if let Some(e) = &m.endpoint {
        format!("endpoint {e}")
    } else {
        "built-in trainer".into()
    }
}

impl EffectivePolicy {
    /// The tier's controls with `cfg`'s overrides applied. Unknown control names
    /// in `[defenses]` are an error.
    pub fn new(tier: Tier, cfg: &Config) -> Result<Self> {
        for n in cfg.defenses.add.iter().chain(&cfg.defenses.remove) {
            if !CONTROLS.iter().any(|(c, _, _)| c == n) {
                let known: Vec<&str> = CONTROLS.iter().map(|c| c.0).collect();
                return Err(Error::param(
                    "defenses",
                    format!("unknown control {n:?}; known: {}", known.join(", ")),
                ));
            }
        }
        let controls = CONTROLS
            .iter()
            .map(|&(name, layer, stage)| {
                let (mut enabled, why) = tier_default(tier, name);
                let mut why = why.to_owned();
                if cfg.defenses.add.iter().any(|a| a == name) {
                    enabled = true;
                    why = "added by [defenses].add".into();
                }
                if cfg.defenses.remove.iter().any(|a| a == name) {
                    enabled = false;
                    why = "removed by [defenses].remove".into();
                }
                Control {
                    name: name.into(),
                    layer,
                    stage,
                    enabled,
                    why,
                }
            })
            .collect();
        let training = cfg.training.mode.unwrap_or(match tier {
            Tier::High => TrainingMode::Dp,
            _ => TrainingMode::Plain,
        });
        if tier == Tier::High && training == TrainingMode::Plain {
            return Err(Error::param(
                "training.mode",
                "the high tier requires DP or certified training",
            ));
        }
        Ok(Self {
            tier,
            requirement: tier.requirement().into(),
            thresholds: cfg.thresholds.clone(),
            training,
            partitions: cfg.training.partitions.unwrap_or(50),
            require_signed_sources: tier == Tier::High,
            block_on_quarantine: cfg
                .thresholds
                .block_on_quarantine
                .unwrap_or(tier == Tier::High),
            controls,
            seed: cfg.seed.unwrap_or(42),
            model: model_description(cfg),
            external_model: cfg.model.is_external(),
        })
    }

    /// Whether control `name` runs.
    pub fn enabled(&self, name: &str) -> bool {
        self.controls.iter().any(|c| c.name == name && c.enabled)
    }

    /// The policy as text, one control a line (for `mithridate policy show`).
    pub fn to_text(&self) -> String {
        let mut s = format!("tier: {} — {}\n", self.tier, self.requirement);
        s.push_str(&format!(
            "training: {:?}{}; signed sources required: {}\n",
            self.training,
            if self.training == TrainingMode::Dp {
                format!(
                    " (target epsilon {}, delta {})",
                    self.thresholds.target_epsilon, self.thresholds.delta
                )
            } else if self.training == TrainingMode::Certified {
                format!(" ({} partitions)", self.partitions)
            } else {
                String::new()
            },
            self.require_signed_sources
        ));
        let t = &self.thresholds;
        s.push_str(&format!("model: {}\n", self.model));
        s.push_str(&format!(
            "thresholds: fp_budget {} · min_accuracy {} · max_asr {} · canary_min_pass {} · quarantined poison blocks the gate: {}\n",
            t.fp_budget, t.min_accuracy, t.max_asr, t.canary_min_pass, self.block_on_quarantine
        ));
        for c in &self.controls {
            s.push_str(&format!(
                "  [{}] {:<22} {:<10} {:<8} {}\n",
                if c.enabled { "x" } else { " " },
                c.name,
                c.layer.to_string(),
                c.stage.to_string(),
                c.why
            ));
        }
        s
    }
}

/// What the pipeline needs besides the policy: where things are.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Manifest of the training data (plain or signed).
    pub manifest: Option<PathBuf>,
    /// Trusted signing keys.
    pub trusted_keys: Vec<PathBuf>,
    /// Known-trigger suite file (TOML or JSON, see `mithridate-validation`).
    pub trigger_suite: Option<PathBuf>,
}

/// A control that was enabled but could not run, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// Control name.
    pub name: String,
    /// Why.
    pub reason: String,
    /// What the skip means for the gate (Fail when the tier requires it).
    pub verdict: Verdict,
}

/// A policy turned into defenses.
pub struct Pipeline {
    /// The effective policy.
    pub policy: EffectivePolicy,
    /// Defenses in run order.
    pub defenses: Vec<Box<dyn Defense>>,
    /// Enabled controls that cannot run with these inputs.
    pub skipped: Vec<Skipped>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("tier", &self.policy.tier)
            .field(
                "defenses",
                &self
                    .defenses
                    .iter()
                    .map(|d| d.name().to_owned())
                    .collect::<Vec<_>>(),
            )
            .field("skipped", &self.skipped)
            .finish()
    }
}

impl Pipeline {
    /// Build the defenses of `policy` for `inputs`.
    pub fn build(policy: EffectivePolicy, inputs: &Inputs) -> Result<Self> {
        let t = policy.thresholds.clone();
        let mut defenses: Vec<Box<dyn Defense>> = Vec::new();
        let mut skipped = Vec::new();
        let mut skip = |name: &str, reason: String, required: bool| {
            skipped.push(Skipped {
                name: name.into(),
                reason,
                verdict: if required {
                    Verdict::Fail
                } else {
                    Verdict::Warn
                },
            });
        };
        for c in policy.controls.iter().filter(|c| c.enabled) {
            match c.name.as_str() {
                "provenance-verify" => {
                    match &inputs.manifest {
                        Some(m) => {
                            if policy.require_signed_sources && inputs.trusted_keys.is_empty() {
                                skip(&c.name, "the high tier needs allow-listed signing keys (data.trusted_keys)".into(), true);
                            } else {
                                defenses.push(Box::new(mithridate_provenance::VerifyDefense::new(
                                    m.clone(),
                                    inputs.trusted_keys.clone(),
                                )));
                            }
                        }
                        None => skip(
                            &c.name,
                            "no manifest given (data.manifest)".into(),
                            policy.tier == Tier::High,
                        ),
                    }
                }
                "anomaly-scan" => {
                    let params = mithridate_anomaly::ScanParams {
                        fp_budget: t.fp_budget,
                        ..Default::default()
                    };
                    defenses.push(Box::new(mithridate_anomaly::ScanDefense::new(params)));
                }
                "canary-plant" => defenses.push(Box::new(mithridate_canary::PlantCanaries::new(
                    t.canaries,
                    mithridate_core::rng::derive_seed(policy.seed, "canary"),
                ))),
                "train" if policy.external_model => skip(
                    &c.name,
                    "the model is trained outside mithridate ([model]): run --stage ingest, train, then --stage release".into(),
                    true,
                ),
                "train" => match policy.training {
                    TrainingMode::Plain => {
                        defenses.push(Box::new(mithridate_robust::TrainDefense::new(
                            mithridate_robust::TrainConfig::plain(),
                        )))
                    }
                    TrainingMode::Dp => {
                        defenses.push(Box::new(mithridate_robust::TrainDefense::new(
                            mithridate_robust::TrainConfig::dp(t.target_epsilon, t.delta),
                        )))
                    }
                    TrainingMode::Certified => defenses.push(Box::new(
                        mithridate_robust::CertifiedTrainDefense::new(policy.partitions),
                    )),
                },
                "holdout-gate" => defenses.push(Box::new(mithridate_validation::HoldoutGate::new(
                    t.min_accuracy,
                ))),
                "backdoor-trigger-test" => match &inputs.trigger_suite {
                    Some(p) => defenses.push(Box::new(mithridate_validation::TriggerTest::new(
                        mithridate_validation::TriggerSuite::load(p)?,
                        t.max_asr,
                    ))),
                    // Without known triggers the high tier still tests for backdoors
                    // through the unknown-trigger search; without that, it fails closed.
                    None => skip(
                        &c.name,
                        "no known-trigger suite configured (data.trigger_suite)".into(),
                        policy.tier == Tier::High && !policy.enabled("unknown-trigger-scan"),
                    ),
                },
                // Reverse-engineering a trigger needs input gradients, which
                // a model behind a command or an endpoint does not give.
                "unknown-trigger-scan" if policy.external_model => skip(
                    &c.name,
                    "the model is external ([model]): the unknown-trigger search needs an in-process model's input gradients".into(),
                    policy.tier == Tier::High && inputs.trigger_suite.is_none(),
                ),
                "unknown-trigger-scan" => {
                    defenses.push(Box::new(mithridate_validation::TriggerScan::new()))
                }
                "canary-assert" => {
                    defenses.push(Box::new(mithridate_canary::AssertCanaries::new(
                        t.canary_min_pass,
                    )));
                }
                other => {
                    return Err(Error::param(
                        "defenses",
                        format!("unknown control {other:?}"),
                    ))
                }
            }
        }
        Ok(Self {
            policy,
            defenses,
            skipped,
        })
    }

    /// Run every defense whose stage is in `stages`, in order. A defense that
    /// fails to run (an `Err`) stops the run: the gate cannot pass on a control
    /// that did not run.
    pub fn run(&self, cx: &mut Context, stages: &[Stage]) -> Result<RunSummary> {
        let t0 = Instant::now();
        let first = cx.reports.len();
        let todo: Vec<&dyn Defense> = self
            .defenses
            .iter()
            .filter(|d| stages.contains(&d.stage()))
            .map(|d| d.as_ref())
            .collect();
        for (i, d) in todo.iter().enumerate() {
            cx.progress.step(d.name(), i, todo.len());
            cx.run(*d)?;
        }
        cx.progress.step("done", todo.len(), todo.len());
        let reports: Vec<Report> = cx.reports[first..].to_vec();
        let skipped: Vec<Skipped> = self
            .skipped
            .iter()
            .filter(|s| {
                CONTROLS
                    .iter()
                    .any(|(n, _, st)| *n == s.name && stages.contains(st))
            })
            .cloned()
            .collect();
        let mut notes = Vec::new();
        let verdict = reports
            .iter()
            .map(|r| {
                let gate = self.gate_verdict(r);
                if gate != r.verdict {
                    notes.push(format!(
                        "{}: {} counted as {} because quarantined poison does not block this tier (thresholds.block_on_quarantine)",
                        r.defense, r.verdict, gate
                    ));
                }
                gate
            })
            .chain(skipped.iter().map(|s| s.verdict))
            .max()
            .unwrap_or(Verdict::Pass);
        Ok(RunSummary {
            verdict,
            reports,
            skipped,
            notes,
            elapsed_ms: t0.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// What a report counts for in the gate: an anomaly finding whose samples
    /// are quarantined counts as a warning unless the policy blocks on it.
    pub fn gate_verdict(&self, r: &Report) -> Verdict {
        if r.layer == Layer::Anomaly
            && r.verdict == Verdict::Fail
            && !self.policy.block_on_quarantine
        {
            Verdict::Warn
        } else {
            r.verdict
        }
    }
}

/// The outcome of [`Pipeline::run`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The gate: the worst verdict of the reports and skips.
    pub verdict: Verdict,
    /// Reports of the defenses that ran.
    pub reports: Vec<Report>,
    /// Required controls that could not run.
    pub skipped: Vec<Skipped>,
    /// How the gate was reached where it differs from the reports' verdicts.
    #[serde(default)]
    pub notes: Vec<String>,
    /// Wall time.
    pub elapsed_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_follow_the_guide() {
        let cfg = Config::default();
        let low = EffectivePolicy::new(Tier::Low, &cfg).unwrap();
        let med = EffectivePolicy::new(Tier::Medium, &cfg).unwrap();
        let high = EffectivePolicy::new(Tier::High, &cfg).unwrap();
        assert!(
            low.enabled("provenance-verify")
                && low.enabled("holdout-gate")
                && !low.enabled("anomaly-scan")
        );
        assert!(
            med.enabled("anomaly-scan")
                && med.enabled("canary-plant")
                && !med.enabled("unknown-trigger-scan")
        );
        assert!(
            CONTROLS.iter().all(|(n, _, _)| high.enabled(n)),
            "high runs every control"
        );
        assert_eq!(high.training, TrainingMode::Dp);
        assert!(high.require_signed_sources && !med.require_signed_sources);
    }

    #[test]
    fn overrides_apply_and_are_explained() {
        let mut cfg = Config::default();
        cfg.defenses.remove.push("canary-plant".into());
        cfg.defenses.add.push("unknown-trigger-scan".into());
        let p = EffectivePolicy::new(Tier::Medium, &cfg).unwrap();
        assert!(!p.enabled("canary-plant") && p.enabled("unknown-trigger-scan"));
        assert!(p.to_text().contains("removed by [defenses].remove"));
        cfg.defenses.add.push("magic".into());
        assert!(EffectivePolicy::new(Tier::Medium, &cfg).is_err());
        let mut cfg = Config::default();
        cfg.training.mode = Some(TrainingMode::Plain);
        assert!(
            EffectivePolicy::new(Tier::High, &cfg).is_err(),
            "high tier refuses plain training"
        );
    }

    #[test]
    fn an_external_model_skips_what_needs_the_model_in_process() {
        let mut cfg = Config::default();
        cfg.model.endpoint = Some("http://127.0.0.1:9/predict".into());
        let p = EffectivePolicy::new(Tier::High, &cfg).unwrap();
        assert!(p.external_model && p.model.contains("endpoint"));
        assert!(p
            .to_text()
            .contains("model: endpoint http://127.0.0.1:9/predict"));
        let pipe = Pipeline::build(p.clone(), &Inputs::default()).unwrap();
        let names: Vec<&str> = pipe.defenses.iter().map(|d| d.name()).collect();
        assert!(names.contains(&"holdout-gate") && !names.contains(&"unknown-trigger-scan"));
        let scan = pipe
            .skipped
            .iter()
            .find(|s| s.name == "unknown-trigger-scan")
            .unwrap();
        assert_eq!(scan.verdict, Verdict::Fail, "no known-trigger suite either");
        let low = EffectivePolicy::new(Tier::Low, &cfg).unwrap();
        assert!(
            Pipeline::build(low, &Inputs::default())
                .unwrap()
                .skipped
                .iter()
                .all(|s| s.name != "unknown-trigger-scan"),
            "a control the tier does not enable is not reported as skipped"
        );
    }

    #[test]
    fn high_tier_without_keys_fails_closed() {
        let p = EffectivePolicy::new(Tier::High, &Config::default()).unwrap();
        let inputs = Inputs {
            manifest: Some("m.json".into()),
            ..Default::default()
        };
        let pipe = Pipeline::build(p, &inputs).unwrap();
        assert!(pipe
            .skipped
            .iter()
            .any(|s| s.name == "provenance-verify" && s.verdict == Verdict::Fail));
    }
}
