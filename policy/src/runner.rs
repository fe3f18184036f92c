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

/// The side of square images if the features look like pixels: `d` a perfect
/// square of at least 4 and every value in `[0, max]`.
pub fn guess_image_side(ds: &Dataset) -> Option<(usize, f32)> {
    let x = ds.features.as_ref()?;
    let d = x.ncols();
    let side = (d as f64).sqrt().round() as usize;
    if side < 2 || side * side != d {
        return None;
    }
    let (lo, hi) = x.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    (lo >= 0.0 && hi > 0.0).then_some((side, hi))
}

/// Run `req`: load the data named by the config, run the tier's defenses for
/// the requested stages, write the clean dataset and quarantine (ingest) and
/// the audit report (always) into `req.out`.
pub fn run(req: RunRequest) -> Result<RunOutput> {
    let cfg = &req.config;
    let train_path = cfg.data.train.clone().ok_or_else(|| Error::param("data.train", "the config names no training data"))?;
    let opts = read_options(cfg);
    let (train, stats) = io::read_path(&train_path, &opts)?;
    let holdout = match &cfg.data.holdout {
        Some(p) => Some(io::read_path(p, &opts)?.0),
        None => None,
    };
    let policy = EffectivePolicy::new(req.tier, cfg)?;
    let image = cfg.data.image_side.map(|s| (s, 1.0f32)).or_else(|| guess_image_side(&train));
    let pixel_max = guess_image_side(&train).map_or(1.0, |(_, m)| m);
    let inputs = Inputs {
        manifest: cfg.data.manifest.clone(),
        trusted_keys: cfg.data.trusted_keys.clone(),
        trigger_suite: cfg.data.trigger_suite.clone(),
        image_side: image.map(|(s, _)| s),
        pixel_max,
    };
    let classes = train.n_classes().max(holdout.as_ref().map_or(0, Dataset::n_classes));
    let seed = policy.seed;
    let pipe = Pipeline::build(policy.clone(), &inputs, classes)?;
    let mut cx = Context::new(seed).with_dataset(train);
    cx.dataset_paths = vec![train_path.clone()];
    cx.dataset_root = Some(root_of(&train_path));
    cx.holdout = holdout;
    cx.progress = req.progress.clone();
    cx.artifacts.insert("read_stats".into(), serde_json::to_value(&stats).unwrap_or_default());
    if let Some(m) = &req.model {
        let text = std::fs::read_to_string(m).map_err(|e| Error::io(m, e))?;
        let model: SoftmaxRegression = serde_json::from_str(&text)
            .map_err(|e| Error::parse(mithridate_core::Location::file(m).at_line(e.line() as u64), e.to_string()))?;
        cx.model = Some(Arc::new(model));
    }
    if req.stages.contains(&Stage::Release) && !req.stages.contains(&Stage::Train) && cx.model.is_none() {
        return Err(Error::param("--model", "a release-only run needs the trained model (--model MODEL.json)"));
    }
    std::fs::create_dir_all(&req.out).map_err(|e| Error::io(&req.out, e))?;
    let summary = pipe.run(&mut cx, &req.stages)?;
    let mut written = Vec::new();
    if req.stages.contains(&Stage::Ingest) {
        written.extend(write_ingest_outputs(&cx, &train_path, &req.out)?);
    }
    let title = format!("mithridate audit — {} tier — {}", req.tier, train_path.display());
    let report = AuditReport::new(&title, &policy, &req.stages, &summary, &cx);
    report.write_all(&req.out)?;
    for f in ["report.json", "report.md", "report.html"] {
        written.push(req.out.join(f));
    }
    Ok(RunOutput { summary, report, context: cx, written })
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

/// Write `clean.<ext>` (input minus quarantined records) and `quarantine.jsonl`.
pub fn write_ingest_outputs(cx: &Context, input: &Path, out: &Path) -> Result<Vec<PathBuf>> {
    let ds = cx.dataset.as_ref().ok_or_else(|| Error::data("no dataset"))?;
    // Canaries planted during ingest are not part of the input file.
    let original: Vec<usize> = (0..ds.len()).filter(|&i| !is_planted(&ds.ids[i])).collect();
    let input_ds = ds.select(&original)?;
    let drop: HashSet<usize> =
        (0..input_ds.len()).filter(|&i| cx.quarantine.is_quarantined(&input_ds.ids[i])).collect();
    let format = Format::detect(input)?;
    let clean = out.join(format!("clean.{}", format.extension()));
    match format {
        Format::Csv | Format::Jsonl => io::write_filtered_copy(&input_ds, &drop, &clean)?,
        Format::Npy => {
            let keep: Vec<usize> = (0..input_ds.len()).filter(|i| !drop.contains(i)).collect();
            io::write_path(&input_ds.select(&keep)?, &clean, Format::Npy)?;
        }
    }
    let q = out.join("quarantine.jsonl");
    cx.quarantine.save(&q)?;
    Ok(vec![clean, q])
}

/// Ids of samples a canary defense planted (they are not in the input file).
pub fn is_planted(id: &mithridate_core::SampleId) -> bool {
    matches!(id, mithridate_core::SampleId::Str(s) if s.starts_with("canary-"))
}
