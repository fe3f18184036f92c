//! `mithridate.toml`: what a team writes to tighten or loosen a tier.
//!
//! Unknown keys are rejected (a typo must not silently disable a control), and
//! every error names the key and the line.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::tier::Tier;
use mithridate_core::{Error, Location, Result};

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Tier (the command line's `--tier` wins when given).
    pub tier: Option<Tier>,
    /// Seed of every random choice.
    pub seed: Option<u64>,
    /// Data locations.
    #[serde(default)]
    pub data: DataConfig,
    /// Threshold overrides.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Controls added to or removed from the tier.
    #[serde(default)]
    pub defenses: DefenseChanges,
    /// How the built-in trainer trains.
    #[serde(default)]
    pub training: TrainingConfig,
    /// The model a release run checks, when it is not the built-in trainer's.
    #[serde(default)]
    pub model: ModelConfig,
}

/// `[model]`: the model a release stage checks when the team trains outside
/// mithridate (PyTorch and the like sit between `--stage ingest` and
/// `--stage release`). Give at most one of `file`, `command`, `endpoint`;
/// with none, the built-in trainer's model is checked (or `--model`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// A saved built-in model (JSON written by `mithridate train` or the
    /// library's `SavedModel`, or a bare softmax regression).
    pub file: Option<PathBuf>,
    /// A command speaking JSONL on stdin/stdout (`{"features": [...]}` in,
    /// `{"label": k}` or `{"proba": [...]}` out), split on whitespace.
    pub command: Option<String>,
    /// An HTTP endpoint taking `{"inputs": [...]}` and answering `{"outputs": [...]}`.
    pub endpoint: Option<String>,
    /// Seconds allowed per call to a command or endpoint (default 30).
    pub timeout_s: Option<f64>,
    /// Retries on transient failures (default 2).
    pub retries: Option<u32>,
    /// Calls in flight at once (default 4).
    pub concurrency: Option<usize>,
    /// Inputs per call (default 64).
    pub batch_size: Option<usize>,
}

impl ModelConfig {
    /// Whether the model lives outside the process (a command or an endpoint).
    pub fn is_external(&self) -> bool {
        self.command.is_some() || self.endpoint.is_some()
    }

    /// Check that at most one model is named and the call settings are sane.
    pub fn check(&self) -> Result<()> {
        let given = usize::from(self.file.is_some())
            + usize::from(self.command.is_some())
            + usize::from(self.endpoint.is_some());
        if given > 1 {
            return Err(Error::param(
                "model",
                "give at most one of `file`, `command`, `endpoint`",
            ));
        }
        if let Some(t) = self.timeout_s {
            if !(t.is_finite() && t > 0.0) {
                return Err(Error::param(
                    "model.timeout_s",
                    format!("must be a positive number of seconds, got {t}"),
                ));
            }
        }
        if self.concurrency == Some(0) {
            return Err(Error::param("model.concurrency", "must be at least 1"));
        }
        if self.batch_size == Some(0) {
            return Err(Error::param("model.batch_size", "must be at least 1"));
        }
        if let Some(c) = &self.command {
            if c.split_whitespace().next().is_none() {
                return Err(Error::param("model.command", "is empty"));
            }
        }
        Ok(())
    }
}

/// `[data]`: where the datasets, manifests and keys are. Relative paths are
/// relative to the config file's directory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Training data file (CSV, JSONL, NPY).
    pub train: Option<PathBuf>,
    /// Clean held-out data file.
    pub holdout: Option<PathBuf>,
    /// Manifest (plain or signed envelope) of the training data's directory.
    pub manifest: Option<PathBuf>,
    /// Public keys allowed to sign manifests (PEM).
    #[serde(default)]
    pub trusted_keys: Vec<PathBuf>,
    /// Label column.
    pub label_column: Option<String>,
    /// Id column.
    pub id_column: Option<String>,
    /// Text column.
    pub text_column: Option<String>,
    /// Known-trigger suite file (TOML or JSON).
    pub trigger_suite: Option<PathBuf>,
}

/// `[thresholds]`: every number a control compares against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Fraction of clean samples the anomaly scan may flag.
    pub fp_budget: f64,
    /// Lowest holdout accuracy that passes.
    pub min_accuracy: f64,
    /// Highest attack success rate of a known trigger that passes.
    pub max_asr: f64,
    /// DP target epsilon (high tier, DP training).
    pub target_epsilon: f64,
    /// DP delta.
    pub delta: f64,
    /// Fraction of canaries that must keep their expected output.
    pub canary_min_pass: f64,
    /// Number of canaries planted.
    pub canaries: usize,
    /// Whether quarantined poison fails the gate by itself (default: only at
    /// the high tier; elsewhere the quarantine is the remedy and the release
    /// checks decide).
    pub block_on_quarantine: Option<bool>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            fp_budget: 0.005,
            min_accuracy: 0.85,
            max_asr: 0.05,
            target_epsilon: 8.0,
            delta: 1e-5,
            canary_min_pass: 0.9,
            canaries: 10,
            block_on_quarantine: None,
        }
    }
}

impl Thresholds {
    /// Check ranges.
    pub fn check(&self) -> Result<()> {
        let unit = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::param(
                    format!("thresholds.{name}"),
                    format!("must be in [0, 1], got {v}"),
                ))
            }
        };
        unit("fp_budget", self.fp_budget)?;
        unit("min_accuracy", self.min_accuracy)?;
        unit("max_asr", self.max_asr)?;
        unit("canary_min_pass", self.canary_min_pass)?;
        if !(self.target_epsilon.is_finite() && self.target_epsilon > 0.0) {
            return Err(Error::param(
                "thresholds.target_epsilon",
                "must be a positive number",
            ));
        }
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return Err(Error::param("thresholds.delta", "must be in (0, 1)"));
        }
        Ok(())
    }
}

/// `[defenses]`: names of controls to add to or remove from the tier.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefenseChanges {
    /// Controls to add.
    #[serde(default)]
    pub add: Vec<String>,
    /// Controls to remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// How the built-in trainer trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainingMode {
    /// Plain softmax regression.
    Plain,
    /// DP-SGD to the target epsilon.
    Dp,
    /// Deep Partition Aggregation with certificates.
    Certified,
}

/// `[training]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingConfig {
    /// Mode; the tier's default when absent (high: dp, others: plain).
    pub mode: Option<TrainingMode>,
    /// Partitions for certified training.
    pub partitions: Option<usize>,
}

impl Config {
    /// Parse TOML text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() as u64 + 1);
            let mut loc = Location::file(path);
            loc.line = line;
            Error::parse(loc, e.message().to_owned())
        })?;
        // Range errors name the key; the line is that of its table's header.
        let at_table = |table: &str, e: Error| {
            let header = format!("[{table}]");
            let mut loc = Location::file(path);
            loc.line = text
                .lines()
                .position(|l| l.trim() == header)
                .map(|i| i as u64 + 1);
            Error::parse(loc, e.to_string())
        };
        cfg.thresholds
            .check()
            .map_err(|e| at_table("thresholds", e))?;
        cfg.model.check().map_err(|e| at_table("model", e))?;
        Ok(cfg)
    }

    /// Read and parse a file; relative data paths become relative to its directory.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut cfg = Self::parse(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let fix = |p: &mut Option<PathBuf>| {
            if let Some(q) = p {
                if q.is_relative() {
                    *q = base.join(&*q);
                }
            }
        };
        fix(&mut cfg.data.train);
        fix(&mut cfg.data.holdout);
        fix(&mut cfg.data.manifest);
        fix(&mut cfg.data.trigger_suite);
        fix(&mut cfg.model.file);
        for k in &mut cfg.data.trusted_keys {
            if k.is_relative() {
                *k = base.join(&*k);
            }
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_file() {
        let t = r#"
tier = "high"
seed = 7
[data]
train = "train.csv"
trusted_keys = ["a.pub"]
[thresholds]
max_asr = 0.02
[defenses]
remove = ["canary-plant"]
[training]
mode = "certified"
partitions = 20
"#;
        let c = Config::parse(t, Path::new("m.toml")).unwrap();
        assert_eq!(c.tier, Some(Tier::High));
        assert_eq!(c.thresholds.max_asr, 0.02);
        assert_eq!(
            c.thresholds.min_accuracy, 0.85,
            "unset thresholds keep defaults"
        );
        assert_eq!(c.training.mode, Some(TrainingMode::Certified));
    }

    #[test]
    fn unknown_keys_and_bad_values_name_key_and_line() {
        let err = Config::parse(
            "seed = 1\n[thresholds]\nmax_asrr = 0.1\n",
            Path::new("m.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("m.toml:line 3") && err.contains("max_asrr"),
            "{err}"
        );
        let err = Config::parse("[thresholds]\nmax_asr = 3.0\n", Path::new("m.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("thresholds.max_asr"), "{err}");
        let err = Config::parse(
            "seed = 1\n[model]\nfile = \"m.json\"\ncommand = \"python serve.py\"\n",
            Path::new("m.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("m.toml:line 2") && err.contains("at most one of"),
            "{err}"
        );
        let err = Config::parse(
            "[model]\nendpoint = \"http://x\"\ntimeout_s = 0\n",
            Path::new("m.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("model.timeout_s"), "{err}");
        let err = Config::parse("[model]\nurl = \"http://x\"\n", Path::new("m.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("url"), "{err}");
        let err = Config::parse("tier = \"extreme\"\n", Path::new("m.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
