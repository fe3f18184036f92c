//! Running a tier on files: what `mithridate run` and `cargo xtask demo` share.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mithridate_core::io::{self, Format, ReadOptions};
use mithridate_core::model::SoftmaxRegression;
use mithridate_core::{Context, Dataset, Error, Progress, Result, Stage};

use crate::audit::AuditReport;
use crate::config::Config;
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
    /// A trained model (JSON of a softmax regression) for a release-only run.
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
    if let Some(m) = &req.model {
        let text = std::fs::read_to_string(m).map_err(|e| Error::io(m, e))?;
        let model: SoftmaxRegression = serde_json::from_str(&text).map_err(|e| {
            Error::parse(
                mithridate_core::Location::file(m).at_line(e.line() as u64),
                e.to_string(),
            )
        })?;
        cx.model = Some(Arc::new(model));
    }
    if req.stages.contains(&Stage::Release)
        && !req.stages.contains(&Stage::Train)
        && cx.model.is_none()
    {
        return Err(Error::param(
            "--model",
            "a release-only run needs the trained model (--model MODEL.json)",
        ));
    }
    std::fs::create_dir_all(&req.out).map_err(|e| Error::io(&req.out, e))?;
    let summary = pipe.run(&mut cx, &req.stages)?;
    let mut written = Vec::new();
    if req.stages.contains(&Stage::Ingest) {
        written.extend(write_ingest_outputs(&cx, &input, &train_path, &req.out)?);
        written.push(write_clean_manifest(&cx, &req.out)?);
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
