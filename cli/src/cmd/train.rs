//! `mithridate train`: the plain and DP-SGD training of
//! [`crate::cmd::privacy::run_train`], plus `--certified`: a partition
//! ensemble (Deep Partition Aggregation, or Finite Aggregation with
//! `--spread`) whose every prediction carries a poisoning certificate.
//!
//! ```text
//! mithridate train --certified --partitions 50 DATA -o ENSEMBLE.json
//!                  [--spread D] [--holdout H] [--predictions OUT.jsonl] [--json]
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use mithridate_core::io::atomic::write_atomic;
use mithridate_core::io::{read_path, ReadOptions};
use mithridate_core::rng::derive_seed;
use mithridate_core::Dataset;
use mithridate_robust::certified::{certified_accuracy, Certified, Dpa, Scheme};
use mithridate_robust::train::{SavedModel, TrainConfig};
use serde_json::json;

use crate::cmd::privacy;
use crate::{Global, Outcome};

/// `mithridate train`: everything `train` accepts, and the certified options.
#[derive(Debug, clap::Args)]
#[group(skip)]
pub struct TrainArgs {
    /// Data, output and model options shared with plain training.
    #[command(flatten)]
    pub base: privacy::TrainArgs,
    /// Certified training options.
    #[command(flatten)]
    pub certified: CertifiedArgs,
}

/// Options of `train --certified`.
#[derive(Debug, Clone, clap::Args)]
pub struct CertifiedArgs {
    /// Train a certified partition ensemble (DPA; Finite Aggregation with
    /// --spread above 1) instead of one model. The base models are the
    /// --model family with the plain (non-DP) training options.
    #[arg(long)]
    pub certified: bool,
    /// Partitions k (with --certified): each base model sees about 1/k of the data.
    #[arg(long, default_value_t = 50)]
    pub partitions: usize,
    /// Finite Aggregation spread d (with --certified): k*d base models, each
    /// sample used by d of them; 1 is DPA.
    #[arg(long, default_value_t = 1)]
    pub spread: usize,
    /// Write every holdout prediction with its certificate here (JSON lines; needs --holdout).
    #[arg(long)]
    pub predictions: Option<PathBuf>,
}

/// Run `mithridate train`.
pub fn run(a: TrainArgs, g: &Global) -> Result<Outcome> {
    if !a.certified.certified {
        if a.certified.predictions.is_some() {
            bail!("--predictions needs --certified");
        }
        return privacy::run_train(a.base, g);
    }
    run_certified(&a.base, &a.certified, g)
}

fn read(path: &Path, b: &privacy::TrainArgs) -> Result<Dataset> {
    let opts = ReadOptions {
        label_column: Some(b.label_column.clone()),
        id_column: b.id_column.clone(),
        ..Default::default()
    };
    let (ds, _) = read_path(path, &opts).with_context(|| format!("reading {}", path.display()))?;
    ds.require_features("train --certified")
        .with_context(|| path.display().to_string())?;
    ds.require_labels("train --certified")
        .with_context(|| path.display().to_string())?;
    Ok(ds)
}

fn run_certified(b: &privacy::TrainArgs, c: &CertifiedArgs, g: &Global) -> Result<Outcome> {
    if b.dp || b.noise_multiplier.is_some() || b.clip.is_some() {
        bail!("--certified trains without DP-SGD: drop --dp, --noise-multiplier and --clip");
    }
    if c.partitions == 0 {
        bail!("--partitions must be at least 1");
    }
    if c.predictions.is_some() && b.holdout.is_none() {
        bail!("--predictions needs --holdout (the rows to predict)");
    }
    let scheme = if c.spread <= 1 {
        if c.spread == 0 {
            bail!("--spread must be at least 1");
        }
        Scheme::dpa(c.partitions)
    } else {
        Scheme::finite_aggregation(c.partitions, c.spread)?
    };
    let ds = read(&b.data, b)?;
    let n_features = ds.features.as_ref().map_or(0, |x| x.ncols());
    let holdout = match &b.holdout {
        Some(p) => {
            let h = read(p, b)?;
            let hf = h.features.as_ref().map_or(0, |x| x.ncols());
            if hf != n_features {
                bail!(
                    "{}: {hf} features, the training data {} has {n_features}",
                    p.display(),
                    b.data.display()
                );
            }
            Some(h)
        }
        None => None,
    };

    let mut cfg = TrainConfig::plain();
    b.apply_model_options(&mut cfg);

    let bar = g.progress();
    let models = scheme.buckets();
    bar.start(
        &format!("training {models} base models"),
        Some(models as u64),
    );
    let t0 = Instant::now();
    let ens = Dpa::<SavedModel>::fit_with_progress(
        &ds,
        scheme.clone(),
        derive_seed(b.seed, "train-certified"),
        |x, y, k, s| cfg.fit(x, y, k, s).map(|t| t.model),
        || bar.advance(1),
    );
    bar.finish();
    let ens = ens?;
    let secs = t0.elapsed().as_secs_f64();

    let bytes = serde_json::to_vec(&ens)?;
    write_atomic(&b.out, |w| w.write_all(&bytes))
        .with_context(|| format!("writing {}", b.out.display()))?;

    let sizes = ens.partition_sizes();
    let empty = sizes.iter().filter(|&&s| s == 0).count();
    let mut doc = json!({
        "scheme": scheme.name(),
        "partitions": c.partitions,
        "spread": c.spread.max(1),
        "base_models": models,
        "base_model": cfg.model.to_string(),
        "empty_base_models": empty,
        "smallest_base_training_set": sizes.iter().min().copied().unwrap_or(0),
        "largest_base_training_set": sizes.iter().max().copied().unwrap_or(0),
        "train_samples": ds.len(),
        "seconds": secs,
        "out": b.out,
    });
    let mut curve_text = Vec::new();
    if let (Some(h), Some(p)) = (&holdout, &b.holdout) {
        let hx = h.require_features("holdout")?;
        let hy = h.require_labels("holdout")?;
        let preds = ens.certify(hx.view());
        let max_r = preds.iter().map(|p| p.certificate).max().unwrap_or(0);
        let radii: Vec<u32> = (0..=max_r).collect();
        let curve = certified_accuracy(&preds, hy, &radii);
        let mut certs: Vec<u32> = preds.iter().map(|p| p.certificate).collect();
        certs.sort_unstable();
        let median = certs.get(certs.len() / 2).copied().unwrap_or(0);
        doc["holdout_samples"] = json!(hy.len());
        doc["holdout_accuracy"] = json!(curve.first().copied().unwrap_or(0.0));
        doc["median_certificate"] = json!(median);
        doc["certified_accuracy"] = json!(radii
            .iter()
            .zip(&curve)
            .map(|(r, a)| json!({ "radius": r, "accuracy": a }))
            .collect::<Vec<_>>());
        for (r, a) in radii.iter().zip(&curve) {
            if *r <= 10 || r % 5 == 0 {
                curve_text.push(format!("  r={r:<4} {a:.4}"));
            }
        }
        if let Some(out) = &c.predictions {
            write_predictions(out, h, &preds)?;
            doc["predictions"] = json!(out);
        }
        doc["holdout"] = json!(p);
    }
    if !g.emit_json(&doc)? {
        g.say(format!(
            "trained {} ({} base {} models, {} empty) on {} samples in {secs:.2}s",
            scheme.name(),
            models,
            cfg.model,
            empty,
            ds.len()
        ));
        if !curve_text.is_empty() {
            g.say(format!(
                "holdout accuracy {:.4}, median certificate {}; certified accuracy by radius \
                 (inserted/deleted training samples):",
                doc["holdout_accuracy"].as_f64().unwrap_or(0.0),
                doc["median_certificate"]
            ));
            for l in &curve_text {
                g.say(l);
            }
        }
        if let Some(out) = &c.predictions {
            g.say(format!("predictions written to {}", out.display()));
        }
        g.say(format!("ensemble written to {}", b.out.display()));
    }
    Ok(Outcome::Pass)
}

/// One JSON line per row: id, prediction, votes, certificate, and the label when known.
fn write_predictions(out: &Path, h: &Dataset, preds: &[Certified]) -> Result<()> {
    let mut text = String::new();
    for (i, p) in preds.iter().enumerate() {
        let line = json!({
            "id": h.ids.get(i),
            "label": p.label,
            "votes": p.votes,
            "certificate": p.certificate,
            "truth": h.labels.as_ref().and_then(|l| l.get(i)),
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    write_atomic(out, |w| w.write_all(text.as_bytes()))
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
