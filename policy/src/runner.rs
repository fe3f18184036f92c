//! Running a tier on files: what `mithridate run` and `cargo xtask demo` share.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mithridate_core::io::{self, Format, ReadOptions};
use mithridate_core::model::{Classifier, Predictor, SoftmaxRegression};
use mithridate_core::{Context, Dataset, Error, Progress, Result, Stage};
use mithridate_validation::{CommandPredictor, ExternalOptions, HttpPredictor};

use crate::audit::AuditReport;
use crate::config::{Config, ModelConfig};
use crate::pipeline::{EffectivePolicy, Inputs, Pipeline, RunSummary};
use crate::tier::Tier;

/// A request to run a tier.
pub struct RunRequest {
    /// Tier.
    pub tier: Tier,
    /// Config (defaults when there is no file).
    pub config: Config,
    /// Stages to run, in order.
    pub stages: Vec<Stage>,
    /// Output directory for the clean data, quarantine and reports.
    pub out: PathBuf,
    /// A trained model (a saved built-in model's JSON) for a release-only run;
    /// overrides `[model] file`.
    pub model: Option<PathBuf>,
    /// Progress sink.
    pub progress: Arc<dyn Progress>,
}

/// What a run produced.
pub struct RunOutput {
    /// The gate and the reports.
    pub summary: RunSummary,
    /// The audit report (already written to `out`).
    pub report: AuditReport,
    /// The context after the run (model, quarantine, artifacts).
    pub context: Context,
    /// Files written.
    pub written: Vec<PathBuf>,
}

/// Read options from the config's `[data]` columns.
pub fn read_options(cfg: &Config) -> ReadOptions {
    let mut o = ReadOptions::default();
    if let Some(l) = &cfg.data.label_column {
        o.label_column = Some(l.clone());
    }
    o.id_column = cfg.data.id_column.clone();
    o.text_column = cfg.data.text_column.clone();
    o
}

/// Run `req`: load the data named by the config, run the tier's defenses for
/// the requested stages, write the clean dataset and quarantine (ingest) and
/// the audit report (always) into `req.out`.
pub fn run(req: RunRequest) -> Result<RunOutput> {
    let cfg = &req.config;
    let train_path = cfg
        .data
        .train
        .clone()
        .ok_or_else(|| Error::param("data.train", "the config names no training data"))?;
    let opts = read_options(cfg);
    let (train, stats) = io::read_path(&train_path, &opts)?;
    let holdout = match &cfg.data.holdout {
        Some(p) => Some(io::read_path(p, &opts)?.0),
        None => None,
    };
    let policy = EffectivePolicy::new(req.tier, cfg)?;
    let inputs = Inputs {
        manifest: cfg.data.manifest.clone(),
        trusted_keys: cfg.data.trusted_keys.clone(),
        trigger_suite: cfg.data.trigger_suite.clone(),
    };
    let seed = policy.seed;
    let pipe = Pipeline::build(policy.clone(), &inputs)?;
    // Kept to cut `clean.<ext>` from the input's own bytes after the run (the
    // pipeline may add planted canaries to the context's copy).
    let input = train.clone();
    let mut cx = Context::new(seed).with_dataset(train);
    cx.dataset_paths = vec![train_path.clone()];
    cx.dataset_root = Some(root_of(&train_path));
    cx.holdout = holdout;
    cx.progress = req.progress.clone();
    cx.artifacts.insert(
        "read_stats".into(),
        serde_json::to_value(&stats).unwrap_or_default(),
    );
    if req.model.is_some() && cfg.model.is_external() {
        return Err(Error::param(
            "--model",
            "the config names an external model ([model] command / endpoint): give one or the other",
        ));
    }
    // `--model` wins over `[model] file`.
    if let Some(m) = req.model.as_ref().or(cfg.model.file.as_ref()) {
        cx.model = Some(load_model_file(m)?);
    }
    if cfg.model.is_external() {
        if req.stages.contains(&Stage::Train) {
            return Err(Error::param(
                "model",
                "the config names an external model: run `--stage ingest`, train outside mithridate, then `--stage release`",
            ));
        }
        cx.predictor = Some(external_predictor(&cfg.model)?);
    }
    if req.stages.contains(&Stage::Release)
        && !req.stages.contains(&Stage::Train)
        && cx.model.is_none()
        && cx.predictor.is_none()
    {
        return Err(Error::param(
            "--model",
            "a release-only run needs the trained model: --model MODEL.json, or [model] file / command / endpoint in the config",
        ));
    }
    std::fs::create_dir_all(&req.out).map_err(|e| Error::io(&req.out, e))?;
    if !req.stages.contains(&Stage::Ingest) {
        load_handoff(&mut cx, &req.out, pipe.policy.enabled("canary-assert"))?;
    }
    let summary = pipe.run(&mut cx, &req.stages)?;
    let mut written = Vec::new();
    if req.stages.contains(&Stage::Ingest) {
        req.progress
            .start("writing clean data and its manifest", None);
        written.extend(write_ingest_outputs(&cx, &input, &train_path, &req.out)?);
        written.push(write_clean_manifest(&cx, &req.out)?);
        if !req.stages.contains(&Stage::Release) {
            written.extend(write_handoff(&cx, input.len(), &train_path, &req.out)?);
        }
        req.progress.finish();
    }
    let title = format!(
        "mithridate audit — {} tier — {}",
        req.tier,
        train_path.display()
    );
    let report = AuditReport::new(&title, &policy, &req.stages, &summary, &cx);
    report.write_all(&req.out)?;
    for f in ["report.json", "report.md", "report.html"] {
        written.push(req.out.join(f));
    }
    Ok(RunOutput {
        summary,
        report,
        context: cx,
        written,
    })
}

/// File an ingest-only run leaves for the release run in the same `--out`.
pub const HANDOFF_FILE: &str = "ingest.json";
/// Schema of [`HANDOFF_FILE`].
pub const HANDOFF_SCHEMA: &str = "mithridate.ingest/v1";
/// Artifacts of the ingest stage that the release stage needs.
const HANDOFF_ARTIFACTS: [&str; 2] = [mithridate_canary::CANARY_SET_ARTIFACT, "manifest_root"];

/// After an ingest-only run: the canary rows to train on (`canaries.<ext>`,
/// same format as the input: train on `clean.<ext>` plus these, or the
/// release stage's canary check fails, which is its point: it shows the
/// released model learned the vetted data) and `ingest.json`, the state the
/// release run reads back.
fn write_handoff(cx: &Context, input_len: usize, path: &Path, out: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut state = serde_json::Map::new();
    state.insert("schema".into(), HANDOFF_SCHEMA.into());
    for k in HANDOFF_ARTIFACTS {
        if let Some(v) = cx.artifacts.get(k) {
            state.insert(k.into(), v.clone());
        }
    }
    if let Some(ds) = &cx.dataset {
        if ds.len() > input_len {
            let planted: Vec<usize> = (input_len..ds.len()).collect();
            let format = Format::detect(path)?;
            let file = out.join(format!("canaries.{}", format.extension()));
            io::write_path(&ds.select(&planted)?, &file, format)?;
            state.insert(
                "canary_rows".into(),
                serde_json::Value::String(file.display().to_string()),
            );
            written.push(file);
        }
    }
    let file = out.join(HANDOFF_FILE);
    let bytes = serde_json::to_vec_pretty(&serde_json::Value::Object(state))
        .map_err(|e| Error::data(format!("{HANDOFF_FILE}: {e}")))?;
    io::atomic::write_bytes_atomic(&file, &bytes)?;
    written.push(file);
    Ok(written)
}

/// Before a release-only run: read back what the ingest run left in `out`.
/// A missing file is an error only when a control needs it (the canary check).
fn load_handoff(cx: &mut Context, out: &Path, need_canaries: bool) -> Result<()> {
    let file = out.join(HANDOFF_FILE);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if need_canaries {
                return Err(Error::param(
                    "canary-assert",
                    format!(
                        "{} not found: the canary check needs the canaries planted at ingest; run `--stage ingest --out {}` first, or remove canary-assert in [defenses]",
                        file.display(),
                        out.display()
                    ),
                ));
            }
            return Ok(());
        }
        Err(e) => return Err(Error::io(&file, e)),
    };
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        Error::parse(
            mithridate_core::Location::file(&file).at_line(e.line() as u64),
            e.to_string(),
        )
    })?;
    if v.get("schema").and_then(|s| s.as_str()) != Some(HANDOFF_SCHEMA) {
        return Err(Error::parse(
            mithridate_core::Location::file(&file),
            format!("field `schema`: expected {HANDOFF_SCHEMA}"),
        ));
    }
    for k in HANDOFF_ARTIFACTS {
        if let Some(a) = v.get(k) {
            cx.artifacts.insert(k.into(), a.clone());
        }
    }
    Ok(())
}

/// Read a saved built-in model: the `{"kind": ..., "model": ...}` form of
/// `mithridate_robust::SavedModel`, or a bare softmax regression. Errors name
/// the file and line.
pub fn load_model_file(path: &Path) -> Result<Arc<dyn Classifier>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    if let Ok(m) = serde_json::from_str::<mithridate_robust::SavedModel>(&text) {
        return Ok(m.into_classifier());
    }
    let model: SoftmaxRegression = serde_json::from_str(&text).map_err(|e| {
        Error::parse(
            mithridate_core::Location::file(path).at_line(e.line() as u64),
            format!("not a saved model: {e}"),
        )
    })?;
    Ok(Arc::new(model))
}

/// The predictor of a command or endpoint named by `[model]`.
pub fn external_predictor(m: &ModelConfig) -> Result<Arc<dyn Predictor>> {
    let defaults = ExternalOptions::default();
    let opts = ExternalOptions {
        timeout: m
            .timeout_s
            .map_or(defaults.timeout, std::time::Duration::from_secs_f64),
        retries: m.retries.unwrap_or(defaults.retries),
        concurrency: m.concurrency.unwrap_or(defaults.concurrency),
        batch_size: m.batch_size.unwrap_or(defaults.batch_size),
        ..defaults
    };
    opts.check()?;
    if let Some(c) = &m.command {
        return Ok(Arc::new(
            CommandPredictor::from_command_line(c)?.with_options(opts),
        ));
    }
    match &m.endpoint {
        Some(url) => Ok(Arc::new(HttpPredictor::new(url.clone()).with_options(opts))),
        None => Err(Error::param("model", "names no command or endpoint")),
    }
}

/// Manifest the clean dataset (record level) with its lineage: the verified
/// input's root as parent, `scan --quarantine` as the step. Written to
/// `out/clean.manifest.json`; it covers `clean.*` only.
pub fn write_clean_manifest(cx: &Context, out: &Path) -> Result<PathBuf> {
    use mithridate_provenance::{create_manifest, CreateOptions, Lineage};
    let parents: Vec<String> = cx
        .artifacts
        .get("manifest_root")
        .and_then(|v| v.as_str())
        .map(|r| vec![r.to_owned()])
        .unwrap_or_default();
    let path = out.join("clean.manifest.json");
    // Everything in `out` but the clean data, including the reports written after it.
    let mut exclude: Vec<PathBuf> = [
        "clean.manifest.json",
        "report.json",
        "report.md",
        "report.html",
    ]
    .iter()
    .map(|n| out.join(n))
    .collect();
    for e in std::fs::read_dir(out).map_err(|e| Error::io(out, e))? {
        let name = e.map_err(|e| Error::io(out, e))?.file_name();
        let name_s = name.to_string_lossy();
        if !(name_s.starts_with("clean.") || name_s == "y.npy") {
            exclude.push(out.join(name));
        }
    }
    let opts = CreateOptions {
        records: true,
        lineage: Some(Lineage {
            parents,
            step: "scan --quarantine".into(),
        }),
        exclude,
        ..Default::default()
    };
    create_manifest(out, &opts)?.save(&path)?;
    Ok(path)
}

/// The directory whose files a manifest covers: the data file's parent.
pub fn root_of(path: &Path) -> PathBuf {
    if path.is_dir() {
        return path.to_path_buf();
    }
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Write `clean.<ext>` (the input minus quarantined records, cut from the
/// input's bytes for CSV and JSONL) and `quarantine.jsonl`. `input` is the
/// dataset as read from `path`, before any defense added to it.
pub fn write_ingest_outputs(
    cx: &Context,
    input: &Dataset,
    path: &Path,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let drop: HashSet<usize> = (0..input.len())
        .filter(|&i| cx.quarantine.is_quarantined(&input.ids[i]))
        .collect();
    let format = Format::detect(path)?;
    let clean = out.join(format!("clean.{}", format.extension()));
    match format {
        Format::Csv | Format::Jsonl => io::write_filtered_copy(input, &drop, &clean)?,
        Format::Npy => {
            let keep: Vec<usize> = (0..input.len()).filter(|i| !drop.contains(i)).collect();
            io::write_path(&input.select(&keep)?, &clean, Format::Npy)?;
        }
    }
    let q = out.join("quarantine.jsonl");
    cx.quarantine.save(&q)?;
    Ok(vec![clean, q])
}
