//! `mithridate validate`: the release gate of layer 4.
//!
//! - `validate record-holdout H -o M`: freeze a holdout (record digests and Merkle root);
//! - `validate holdout`: metrics on the holdout against levels and a baseline,
//!   and the proof that the holdout never touched training;
//! - `validate triggers --suite S`: known-trigger attack success rates;
//! - `validate scan`: unknown-trigger scan (Neural Cleanse + STRIP);
//! - `validate llm`: trigger-phrase, system-prompt-leak and behaviour probes
//!   against a chat endpoint or a JSONL command.
//!
//! Every subcommand takes `--junit FILE` (one test case per check) and the
//! global `--json`; exit 0 pass, 1 a check failed, 2 error.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use mithridate_core::io::atomic::write_atomic;
use mithridate_core::io::{read_path, ReadOptions};
use mithridate_core::model::{ClassifierPredictor, Predictor};
use mithridate_core::{Classifier, Dataset, Verdict};
use mithridate_validation::digest::{parse_digest, Digest};
use mithridate_validation::{
    junit_xml, Baseline, ChatPredictor, CommandPredictor, ExternalOptions, HoldoutGate,
    HoldoutManifest, HttpPredictor, LlmProbes, Outcome as Checked, ProbeSuite, ScanParams,
    TriggerScan, TriggerSuite, TriggerTest,
};
use serde_json::json;

use crate::{Global, Outcome};

/// `mithridate validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    #[command(subcommand)]
    cmd: ValidateCmd,
}

#[derive(Debug, clap::Subcommand)]
enum ValidateCmd {
    /// Freeze a holdout: write its record digests and Merkle root.
    RecordHoldout(RecordArgs),
    /// Holdout metrics vs levels and baseline, and the no-overlap proof.
    Holdout(HoldoutArgs),
    /// Known backdoor triggers from a suite file: ASR per trigger and target.
    Triggers(TriggersArgs),
    /// Unknown-trigger scan of a built-in model (Neural Cleanse, STRIP).
    Scan(ScanArgs),
    /// LLM probes: trigger phrases, system-prompt leak, behaviour change.
    Llm(LlmArgs),
}

/// Output options shared by the subcommands.
#[derive(Debug, Clone, clap::Args)]
struct OutArgs {
    /// Write a JUnit XML file (one test case per check).
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
}

/// How to read data files.
#[derive(Debug, Clone, clap::Args)]
struct DataArgs {
    /// Label column or field.
    #[arg(long, default_value = "label")]
    label_column: String,
    /// Id column or field.
    #[arg(long)]
    id_column: Option<String>,
    /// Text field (JSONL) for phrase triggers.
    #[arg(long)]
    text_column: Option<String>,
}

impl DataArgs {
    fn read(&self, path: &Path) -> Result<Dataset> {
        let opts = ReadOptions {
            label_column: Some(self.label_column.clone()),
            id_column: self.id_column.clone(),
            text_column: self.text_column.clone(),
            ..Default::default()
        };
        let (ds, _) =
            read_path(path, &opts).with_context(|| format!("reading {}", path.display()))?;
        Ok(ds)
    }
}

/// Where the model is: a saved built-in model, a command or an endpoint.
#[derive(Debug, Clone, clap::Args)]
struct ModelArgs {
    /// A built-in model saved as JSON (by `mithridate train`), or an ONNX
    /// classifier (`.onnx`, needs the `onnx` feature).
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// A command speaking JSONL on stdin/stdout (split on whitespace).
    #[arg(long = "cmd", value_name = "COMMAND")]
    command: Option<String>,
    /// An HTTP endpoint taking {"inputs": [...]} and answering {"outputs": [...]}.
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// Seconds allowed per call to a command or endpoint.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Retries on transient failures.
    #[arg(long, default_value_t = 2)]
    retries: u32,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Inputs per call.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
}

impl ModelArgs {
    fn options(&self) -> Result<ExternalOptions> {
        if !(self.timeout.is_finite() && self.timeout > 0.0) {
            bail!("--timeout must be a positive number of seconds");
        }
        let o = ExternalOptions {
            timeout: Duration::from_secs_f64(self.timeout),
            retries: self.retries,
            concurrency: self.concurrency,
            batch_size: self.batch_size,
            ..ExternalOptions::default()
        };
        o.check()?;
        Ok(o)
    }

    fn given(&self) -> usize {
        usize::from(self.model.is_some())
            + usize::from(self.command.is_some())
            + usize::from(self.endpoint.is_some())
    }

    fn predictor(&self) -> Result<Box<dyn Predictor>> {
        if self.given() != 1 {
            bail!("give exactly one of --model, --cmd, --endpoint");
        }
        if let Some(p) = &self.model {
            if is_onnx(p) {
                return Ok(load_onnx(p)?.0);
            }
            return Ok(Box::new(OwnedClassifier {
                model: load_model(p)?,
            }));
        }
        if let Some(c) = &self.command {
            return Ok(Box::new(
                CommandPredictor::from_command_line(c)?.with_options(self.options()?),
            ));
        }
        let url = self.endpoint.clone().unwrap_or_default();
        Ok(Box::new(
            HttpPredictor::new(url).with_options(self.options()?),
        ))
    }
}

/// A loaded model as a predictor.
struct OwnedClassifier {
    model: Arc<dyn Classifier>,
}

impl Predictor for OwnedClassifier {
    fn name(&self) -> &str {
        "built-in model"
    }
    fn predict(
        &self,
        inputs: &[mithridate_core::model::Input],
    ) -> mithridate_core::Result<Vec<mithridate_core::model::Output>> {
        ClassifierPredictor {
            model: self.model.as_ref(),
        }
        .predict(inputs)
    }
}

/// Whether `path` names an ONNX model (by its extension).
fn is_onnx(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

/// An ONNX classifier run in-process, with its number of classes.
#[cfg(feature = "onnx")]
fn load_onnx(path: &Path) -> Result<(Box<dyn Predictor>, usize)> {
    let m = mithridate_validation::onnx::OnnxPredictor::load(path)?;
    let k = m.n_classes();
    Ok((Box::new(m), k))
}

/// Without the `onnx` feature: an error that says how to get it.
#[cfg(not(feature = "onnx"))]
fn load_onnx(path: &Path) -> Result<(Box<dyn Predictor>, usize)> {
    bail!(
        "{}: ONNX models need mithridate built with the `onnx` cargo feature \
         (cargo install mithridate --features onnx, or cargo build -p mithridate --features onnx)",
        path.display()
    )
}

/// Read a built-in model: the `{"kind": ..., "model": ...}` form written by
/// `mithridate train`, or a bare softmax regression.
fn load_model(path: &Path) -> Result<Arc<dyn Classifier>> {
    Ok(mithridate_policy::runner::load_model_file(path)?)
}

#[derive(Debug, clap::Args)]
struct RecordArgs {
    /// The holdout data.
    holdout: PathBuf,
    /// Where to write the holdout manifest (JSON).
    #[arg(short = 'o', long = "out")]
    out: PathBuf,
    #[command(flatten)]
    data: DataArgs,
}

#[derive(Debug, clap::Args)]
struct HoldoutArgs {
    /// The holdout data (labelled).
    #[arg(long)]
    holdout: PathBuf,
    /// A built-in model saved as JSON, or an ONNX classifier (`.onnx`, needs the `onnx` feature).
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// Training data, to prove the holdout shares no record with it.
    #[arg(long, value_name = "DATA")]
    train: Option<PathBuf>,
    /// Training record digests: a JSON array of hex digests, or a holdout-style manifest of the training set.
    #[arg(long, value_name = "FILE")]
    training_digests: Option<PathBuf>,
    /// The holdout manifest written by `record-holdout`: the holdout must match it.
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// Minimum accuracy.
    #[arg(long, default_value_t = 0.9)]
    min_accuracy: f64,
    /// Minimum macro F1.
    #[arg(long)]
    min_macro_f1: Option<f64>,
    /// Maximum expected calibration error (warns above).
    #[arg(long)]
    max_ece: Option<f64>,
    /// Baseline metrics (JSON) to compare with.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Allowed drop of accuracy and macro F1 from the baseline.
    #[arg(long, default_value_t = 0.02)]
    max_regression: f64,
    /// Write this run's metrics as the new baseline (only when the gate passes).
    #[arg(long, value_name = "FILE")]
    save_baseline: Option<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    out: OutArgs,
}

#[derive(Debug, clap::Args)]
struct TriggersArgs {
    /// Trigger suite (TOML or JSON).
    #[arg(long)]
    suite: PathBuf,
    /// The holdout data (labelled).
    #[arg(long)]
    holdout: PathBuf,
    /// Fail above this attack success rate.
    #[arg(long, default_value_t = mithridate_validation::DEFAULT_MAX_ASR)]
    max_asr: f64,
    /// Seed for sampling and phrase positions.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    out: OutArgs,
}

#[derive(Debug, clap::Args)]
struct ScanArgs {
    /// The holdout data (labelled).
    #[arg(long)]
    holdout: PathBuf,
    /// A built-in model saved as JSON (the scan needs input gradients).
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// Optimisation steps per class.
    #[arg(long)]
    steps: Option<usize>,
    /// Anomaly index above which a class is flagged.
    #[arg(long)]
    threshold: Option<f64>,
    /// Do not compare with a reference model trained on the holdout.
    #[arg(long)]
    no_reference: bool,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    out: OutArgs,
}

#[derive(Debug, clap::Args)]
struct LlmArgs {
    /// OpenAI-compatible endpoint (base URL or .../chat/completions).
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// A command speaking JSONL instead of an endpoint.
    #[arg(long = "cmd", value_name = "COMMAND")]
    command: Option<String>,
    /// Model name sent to the endpoint.
    #[arg(long = "model-name", default_value = "default")]
    model_name: String,
    /// Environment variable holding the API key (sent as a bearer token).
    #[arg(long, value_name = "VAR")]
    api_key_env: Option<String>,
    /// Probe suite (TOML or JSON); default: the built-in suite.
    #[arg(long)]
    suite: Option<PathBuf>,
    /// Seconds allowed per request.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Retries on transient failures.
    #[arg(long, default_value_t = 2)]
    retries: u32,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    #[command(flatten)]
    out: OutArgs,
}

/// Run `mithridate validate`.
pub fn run(args: ValidateArgs, g: &Global) -> Result<Outcome> {
    match args.cmd {
        ValidateCmd::RecordHoldout(a) => record(a, g),
        ValidateCmd::Holdout(a) => {
            let junit = a.out.junit.clone();
            let out = holdout(a, g)?;
            finish("holdout", out, junit.as_deref(), g)
        }
        ValidateCmd::Triggers(a) => {
            let junit = a.out.junit.clone();
            let out = triggers(a)?;
            finish("triggers", out, junit.as_deref(), g)
        }
        ValidateCmd::Scan(a) => {
            let junit = a.out.junit.clone();
            let out = scan(a, g)?;
            finish("scan", out, junit.as_deref(), g)
        }
        ValidateCmd::Llm(a) => {
            let junit = a.out.junit.clone();
            let out = llm(a)?;
            finish("llm", out, junit.as_deref(), g)
        }
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |w| w.write_all(bytes))
        .with_context(|| format!("writing {}", path.display()))
}

fn finish(what: &str, out: Checked, junit: Option<&Path>, g: &Global) -> Result<Outcome> {
    if let Some(p) = junit {
        write_file(p, junit_xml(std::slice::from_ref(&out)).as_bytes())?;
    }
    let failed = out.report.verdict == Verdict::Fail;
    if !g.emit_json(&json!({ "command": format!("validate {what}"), "verdict": out.report.verdict, "report": out.report, "checks": out.checks }))? {
        for c in &out.checks {
            if c.verdict != Verdict::Pass {
                g.say(format!("  {} {}: {}", c.verdict, c.name, c.message));
            }
        }
        g.say(format!("{} {}: {}", out.report.verdict, out.report.defense, out.report.summary));
        if let Some(p) = junit {
            g.say(format!("JUnit written to {}", p.display()));
        }
    }
    Ok(Outcome::gate(failed))
}

fn record(a: RecordArgs, g: &Global) -> Result<Outcome> {
    let ds = a.data.read(&a.holdout)?;
    let m = HoldoutManifest::of(&ds);
    write_file(&a.out, &serde_json::to_vec_pretty(&m)?)?;
    if !g.emit_json(&json!({ "command": "validate record-holdout", "records": m.records, "root": m.root, "out": a.out }))? {
        g.say(format!("holdout of {} records, root {}, written to {}", m.records, m.root, a.out.display()));
    }
    Ok(Outcome::Pass)
}

/// Digests from a JSON array of hex strings or from any document with a `digests` array.
fn load_digests(path: &Path) -> Result<HashSet<Digest>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}:line {}: {e}", path.display(), e.line()))?;
    let arr = match &v {
        serde_json::Value::Array(a) => a,
        _ => v
            .get("digests")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: field `digests`: expected an array of hex digests",
                    path.display()
                )
            })?,
    };
    arr.iter()
        .enumerate()
        .map(|(i, d)| {
            let s = d.as_str().ok_or_else(|| {
                anyhow::anyhow!("{}: field `digests[{i}]`: not a string", path.display())
            })?;
            parse_digest(s)
                .map_err(|m| anyhow::anyhow!("{}: field `digests[{i}]`: {m}", path.display()))
        })
        .collect()
}

/// The model of the holdout gate: built-in (probabilities directly) or ONNX
/// (through its predictor, with its number of classes).
enum HoldoutModel {
    Builtin(Arc<dyn Classifier>),
    Onnx((Box<dyn Predictor>, usize)),
}

fn holdout(a: HoldoutArgs, g: &Global) -> Result<Checked> {
    let h = a.data.read(&a.holdout)?;
    let model = if is_onnx(&a.model) {
        HoldoutModel::Onnx(load_onnx(&a.model)?)
    } else {
        HoldoutModel::Builtin(load_model(&a.model)?)
    };
    let mut gate = HoldoutGate::new(a.min_accuracy).with_max_regression(a.max_regression);
    if let Some(f) = a.min_macro_f1 {
        gate = gate.with_min_macro_f1(f);
    }
    if let Some(e) = a.max_ece {
        gate = gate.with_max_ece(e);
    }
    if let Some(b) = &a.baseline {
        gate = gate.with_baseline(Baseline::load(b)?);
    }
    if let Some(p) = &a.manifest {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        gate = gate.with_manifest(HoldoutManifest::from_json(&text, p)?);
    }
    if let Some(p) = &a.training_digests {
        gate = gate.with_training_digests(load_digests(p)?);
    }
    let train = a.train.as_deref().map(|p| a.data.read(p)).transpose()?;
    if let Some(t) = &train {
        // Records are compared by digests of their features: different widths can never match.
        if t.n_features() != h.n_features() {
            bail!(
                "{}: {} features, the holdout has {}",
                a.train.as_deref().unwrap_or(Path::new("")).display(),
                t.n_features(),
                h.n_features()
            );
        }
    }
    let x = h
        .require_features("holdout gate")
        .with_context(|| a.holdout.display().to_string())?;
    let t0 = Instant::now();
    let proba = match &model {
        HoldoutModel::Builtin(model) => {
            if x.ncols() != model.n_features() {
                bail!(
                    "{}: {} features, the model takes {}",
                    a.holdout.display(),
                    x.ncols(),
                    model.n_features()
                );
            }
            model.predict_proba(x.view())
        }
        HoldoutModel::Onnx((p, k)) => {
            mithridate_core::model::predict_proba_via(p.as_ref(), x.view(), *k)
                .with_context(|| format!("{}: predicting the holdout", a.model.display()))?
        }
    };
    let mut out = gate.evaluate(&h, proba.view(), train.as_ref())?;
    out.report.elapsed_ms = t0.elapsed().as_secs_f64() * 1e3;
    if let Some(p) = &a.save_baseline {
        if out.report.verdict == Verdict::Fail {
            g.say(format!("gate failed: baseline {} not written", p.display()));
        } else {
            let m = mithridate_validation::Metrics::compute(
                proba.view(),
                h.require_labels("holdout")?,
            )?;
            Baseline::from(&m).save(p)?;
        }
    }
    Ok(out)
}

fn triggers(a: TriggersArgs) -> Result<Checked> {
    let suite = TriggerSuite::load(&a.suite)?;
    let h = a.data.read(&a.holdout)?;
    let p = a.model.predictor()?;
    let t0 = Instant::now();
    let (mut out, _) = TriggerTest::new(suite, a.max_asr)
        .evaluate(p.as_ref(), &h, a.seed)
        .with_context(|| format!("testing through {}", p.name()))?;
    out.report.elapsed_ms = t0.elapsed().as_secs_f64() * 1e3;
    Ok(out)
}

fn scan(a: ScanArgs, g: &Global) -> Result<Checked> {
    if is_onnx(&a.model) {
        bail!(
            "{}: the unknown-trigger scan needs input gradients, which an ONNX model run \
             in-process does not give; scan the built-in model, or test known triggers with \
             `validate triggers --model {}`",
            a.model.display(),
            a.model.display()
        );
    }
    let h = a.data.read(&a.holdout)?;
    let model = load_model(&a.model)?;
    let mut params = ScanParams {
        reference: !a.no_reference,
        ..ScanParams::default()
    };
    if let Some(s) = a.steps {
        params.steps = s;
    }
    if let Some(t) = a.threshold {
        params.anomaly_threshold = t;
    }
    if !g.json {
        g.say(format!(
            "scanning {} classes ({} steps each)...",
            model.n_classes(),
            params.steps
        ));
    }
    let t0 = Instant::now();
    let (mut out, _) =
        TriggerScan::new()
            .with_params(params)
            .evaluate(model.as_ref(), &h, a.seed)?;
    out.report.elapsed_ms = t0.elapsed().as_secs_f64() * 1e3;
    Ok(out)
}

fn llm(a: LlmArgs) -> Result<Checked> {
    let suite = match &a.suite {
        Some(p) => ProbeSuite::load(p)?,
        None => ProbeSuite::default(),
    };
    if !(a.timeout.is_finite() && a.timeout > 0.0) {
        bail!("--timeout must be a positive number of seconds");
    }
    let opts = ExternalOptions {
        timeout: Duration::from_secs_f64(a.timeout),
        retries: a.retries,
        concurrency: a.concurrency,
        batch_size: 16,
        ..ExternalOptions::default()
    };
    opts.check()?;
    let predictor: Box<dyn Predictor> = match (&a.endpoint, &a.command) {
        (Some(url), None) => {
            let mut c = ChatPredictor::new(url, a.model_name.clone()).with_options(opts);
            if let Some(var) = &a.api_key_env {
                let key = std::env::var(var).with_context(|| {
                    format!("--api-key-env: environment variable {var} is not set")
                })?;
                c = c.with_api_key(key);
            }
            Box::new(c)
        }
        (None, Some(cmd)) => Box::new(CommandPredictor::from_command_line(cmd)?.with_options(opts)),
        _ => bail!("give exactly one of --endpoint, --cmd"),
    };
    let t0 = Instant::now();
    let mut out = LlmProbes::new(suite, predictor).evaluate()?;
    out.report.elapsed_ms = t0.elapsed().as_secs_f64() * 1e3;
    Ok(out)
}
