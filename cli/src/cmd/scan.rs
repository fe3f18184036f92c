//! `mithridate scan` (anomaly detection and quarantine of a dataset) and
//! `mithridate quarantine list | release | purge` (review of a quarantine file).

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use mithridate_anomaly::{scan, ScanParams};
use mithridate_core::io::{self, Format, ReadOptions};
use mithridate_core::quarantine::Status;
use mithridate_core::{Dataset, Quarantine, SampleId, Verdict};
use serde_json::json;

use crate::{Global, Outcome};

/// `mithridate scan DATA --out DIR`.
#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// The dataset: a CSV file, a JSONL file, an `X.npy` (labels from `y.npy` beside it) or a directory holding both.
    pub data: PathBuf,
    /// Output directory: `clean.<ext>` (input minus quarantined rows), `quarantine.jsonl`, `report.json`.
    #[arg(long)]
    pub out: PathBuf,
    /// Label column (CSV) or field (JSONL).
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// Id column or field (default: the 0-based record index).
    #[arg(long)]
    pub id_column: Option<String>,
    /// JSONL: the text field to mine for triggers (default: `text`, `prompt`, ... whichever exists).
    #[arg(long)]
    pub text_column: Option<String>,
    /// Largest fraction of samples unconfirmed outlier evidence may quarantine.
    #[arg(long, default_value_t = 0.005)]
    pub fp_budget: f64,
    /// Seed for every random choice (cross-validation folds, baselines).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `mithridate quarantine`.
#[derive(Debug, clap::Args)]
pub struct QuarantineArgs {
    /// What to do.
    #[command(subcommand)]
    pub cmd: QuarantineCmd,
}

/// Quarantine review actions.
#[derive(Debug, clap::Subcommand)]
pub enum QuarantineCmd {
    /// List the entries of a quarantine file.
    List {
        /// The `quarantine.jsonl` file.
        file: PathBuf,
        /// Only entries in this state.
        #[arg(long, value_enum, default_value_t = StateArg::All)]
        state: StateArg,
    },
    /// Give samples back to training (the entry stays, marked released).
    Release(ReviewArgs),
    /// Drop the stored records of samples (the entry and its reasons stay).
    Purge(ReviewArgs),
}

/// Arguments of `release` and `purge`.
#[derive(Debug, clap::Args)]
pub struct ReviewArgs {
    /// The `quarantine.jsonl` file (rewritten atomically).
    pub file: PathBuf,
    /// Sample ids.
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// Who reviewed.
    #[arg(long)]
    pub by: String,
    /// Why.
    #[arg(long, default_value = "")]
    pub note: String,
}

/// Entry state filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StateArg {
    /// Every entry.
    All,
    /// Held out of training.
    Quarantined,
    /// Released back.
    Released,
    /// Purged.
    Purged,
}

fn read_options(a: &ScanArgs) -> ReadOptions {
    ReadOptions {
        label_column: Some(a.label_column.clone()),
        id_column: a.id_column.clone(),
        text_column: a.text_column.clone(),
        ..Default::default()
    }
}

/// The original bytes of record `i` (a CSV row or JSONL line), for review.
fn record_of(ds: &Dataset, i: usize, file: &mut Option<std::fs::File>) -> Option<String> {
    let o = ds.origins.get(i)?;
    if o.len == 0 || o.len > 1 << 20 {
        return None;
    }
    if file.is_none() {
        *file = std::fs::File::open(ds.source_files.get(o.file as usize)?).ok();
    }
    let f = file.as_mut()?;
    f.seek(SeekFrom::Start(o.offset)).ok()?;
    let mut buf = vec![0u8; o.len as usize];
    f.read_exact(&mut buf).ok()?;
    Some(
        String::from_utf8_lossy(&buf)
            .trim_end_matches(['\r', '\n'])
            .to_owned(),
    )
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Run `mithridate scan`.
pub fn run(a: ScanArgs, g: &Global) -> Result<Outcome> {
    let format = Format::detect(&a.data)?;
    let (ds, stats) = io::read_path(&a.data, &read_options(&a))
        .with_context(|| format!("reading {}", a.data.display()))?;
    if ds.is_empty() {
        bail!("{}: no records", a.data.display());
    }
    let params = ScanParams {
        fp_budget: a.fp_budget,
        ..Default::default()
    };
    params.check()?;
    let progress = g.progress();
    progress.start("anomaly scan", None);
    let out = scan(&ds, &params, a.seed);
    progress.finish();
    let out = out?;

    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let drop: HashSet<usize> = out.quarantined_indices().into_iter().collect();
    let clean_path = match format {
        Format::Csv | Format::Jsonl => {
            let p = a.out.join(format!("clean.{}", format.extension()));
            if same_file(&p, &a.data) {
                bail!("{}: the output would overwrite the input", p.display());
            }
            io::write_filtered_copy(&ds, &drop, &p)?;
            p
        }
        Format::Npy => {
            let dir = a.out.join("clean");
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let xp = dir.join("X.npy");
            if same_file(&xp, &io::npy_features_path(&a.data)) {
                bail!("{}: the output would overwrite the input", xp.display());
            }
            let kept = ds.without(&drop.iter().copied().collect::<Vec<_>>())?;
            io::write_path(&kept, &xp, Format::Npy)?;
            dir
        }
    };
    let mut q = Quarantine::default();
    let mut src = None;
    for d in &out.decisions {
        let mut entry = d.entry.clone();
        entry.record = record_of(&ds, d.index, &mut src);
        mithridate_anomaly::scan::flag_into(&mut q, &entry);
    }
    let qpath = a.out.join("quarantine.jsonl");
    q.save(&qpath)?;
    let mut report = out.report.clone();
    report.metric("skipped_records", stats.skipped as f64);
    let rpath = a.out.join("report.json");
    mithridate_core::io::atomic::write_bytes_atomic(&rpath, &serde_json::to_vec_pretty(&report)?)?;

    let failed = report.verdict == Verdict::Fail;
    let doc = json!({
        "verdict": report.verdict,
        "samples": ds.len(),
        "flagged": out.decisions.len(),
        "confirmed": report.metrics.get("flagged_confirmed"),
        "outliers": report.metrics.get("flagged_outliers"),
        "clean": clean_path,
        "quarantine": qpath,
        "report": rpath,
        "summary": report.summary,
        "findings": report.findings.iter().map(|f| json!({"reason": f.reason, "samples": f.ids.len(), "score": f.score})).collect::<Vec<_>>(),
    });
    if !g.emit_json(&doc)? {
        g.say(format!("{}: {}", report.verdict, report.summary));
        for f in &report.findings {
            g.say(format!("  - {} ({} samples)", f.reason, f.ids.len()));
        }
        g.say(format!("clean data: {}", clean_path.display()));
        g.say(format!(
            "quarantine: {} ({} entries)",
            qpath.display(),
            q.len()
        ));
        g.say(format!("report:     {}", rpath.display()));
    }
    Ok(Outcome::gate(failed))
}

fn state_name(s: &Status) -> &'static str {
    match s {
        Status::Quarantined => "quarantined",
        Status::Released { .. } => "released",
        Status::Purged { .. } => "purged",
    }
}

fn load_existing(file: &Path) -> Result<Quarantine> {
    if !file.exists() {
        bail!("{}: no such quarantine file", file.display());
    }
    Ok(Quarantine::load(file)?)
}

/// Run `mithridate quarantine ...`.
pub fn run_quarantine(a: QuarantineArgs, g: &Global) -> Result<Outcome> {
    match a.cmd {
        QuarantineCmd::List { file, state } => {
            let q = load_existing(&file)?;
            let rows: Vec<_> = q
                .entries()
                .filter(|e| match state {
                    StateArg::All => true,
                    StateArg::Quarantined => matches!(e.status, Status::Quarantined),
                    StateArg::Released => matches!(e.status, Status::Released { .. }),
                    StateArg::Purged => matches!(e.status, Status::Purged { .. }),
                })
                .collect();
            if !g.emit_json(&json!({"file": file, "entries": rows}))? {
                g.say(format!(
                    "{}: {} entries ({} held out of training)",
                    file.display(),
                    rows.len(),
                    q.active_len()
                ));
                for e in rows {
                    let why: Vec<String> = e
                        .reasons
                        .iter()
                        .map(|r| format!("{}: {}", r.detector, r.message))
                        .collect();
                    g.say(format!(
                        "{:>8}  {:<11} {:>7.2}  {}",
                        e.id,
                        state_name(&e.status),
                        e.score,
                        why.join("; ")
                    ));
                }
            }
            Ok(Outcome::Pass)
        }
        QuarantineCmd::Release(r) | QuarantineCmd::Purge(r) if r.by.trim().is_empty() => {
            bail!("--by must name the reviewer")
        }
        QuarantineCmd::Release(r) => review(r, g, true),
        QuarantineCmd::Purge(r) => review(r, g, false),
    }
}

fn review(r: ReviewArgs, g: &Global, release: bool) -> Result<Outcome> {
    let mut q = load_existing(&r.file)?;
    let ids: Vec<SampleId> = r.ids.iter().map(|s| SampleId::parse(s)).collect();
    // All or nothing: check every id before changing anything.
    for id in &ids {
        if q.get(id).is_none() {
            bail!("{}: sample {id} is not in the quarantine", r.file.display());
        }
    }
    for id in &ids {
        if release {
            q.release(id, &r.by, &r.note)?;
        } else {
            q.purge(id, &r.by, &r.note)?;
        }
    }
    q.save(&r.file)?;
    let action = if release { "released" } else { "purged" };
    if !g.emit_json(&json!({"file": r.file, action: ids, "active": q.active_len()}))? {
        g.say(format!(
            "{action} {} sample(s); {} still held out of training",
            ids.len(),
            q.active_len()
        ));
    }
    Ok(Outcome::Pass)
}
