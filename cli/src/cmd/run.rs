//! `mithridate run` and `mithridate policy show`: the tier pipeline as a CI gate.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use mithridate_core::Stage;
use mithridate_policy::runner::{run as run_pipeline, RunRequest};
use mithridate_policy::{Config, EffectivePolicy, Tier};

use crate::{Global, Outcome};

/// Which stages to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StageArg {
    /// Verify provenance, scan, quarantine, write the clean dataset.
    Ingest,
    /// Validation and canaries against a trained model (`--model`).
    Release,
    /// Ingest, built-in training, release.
    All,
}

/// `mithridate run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Risk tier (overrides `tier` in the config).
    #[arg(long)]
    pub tier: Option<Tier>,
    /// Policy file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Training data (overrides `[data] train`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Clean held-out data (overrides `[data] holdout`).
    #[arg(long)]
    pub holdout: Option<PathBuf>,
    /// Stage(s) to run.
    #[arg(long, value_enum, default_value = "all")]
    pub stage: StageArg,
    /// Trained model (a saved built-in model's JSON) for `--stage release`;
    /// overrides `[model] file`. A model behind a command or an HTTP endpoint
    /// is named in the config's `[model]` table.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
}

/// `mithridate policy ...`.
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCmd {
    /// Print the effective pipeline of a tier (after the config's overrides).
    Show {
        /// Risk tier.
        #[arg(long)]
        tier: Option<Tier>,
        /// Policy file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn load_config(path: Option<&PathBuf>) -> Result<Config> {
    Ok(match path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    })
}

fn tier_of(arg: Option<Tier>, cfg: &Config) -> Tier {
    arg.or(cfg.tier).unwrap_or(Tier::Medium)
}

/// Run `mithridate policy`.
pub fn policy(cmd: PolicyCmd, g: &Global) -> Result<Outcome> {
    match cmd {
        PolicyCmd::Show { tier, config } => {
            let cfg = load_config(config.as_ref())?;
            let p = EffectivePolicy::new(tier_of(tier, &cfg), &cfg)?;
            if !g.emit_json(&p)? {
                print!("{}", p.to_text());
            }
            Ok(Outcome::Pass)
        }
    }
}

/// Run `mithridate run`.
pub fn run(a: RunArgs, g: &Global) -> Result<Outcome> {
    let mut cfg = load_config(a.config.as_ref())?;
    if let Some(d) = a.data {
        cfg.data.train = Some(d);
    }
    if let Some(h) = a.holdout {
        cfg.data.holdout = Some(h);
    }
    let tier = tier_of(a.tier, &cfg);
    let stages = match a.stage {
        StageArg::Ingest => vec![Stage::Ingest],
        StageArg::Release => vec![Stage::Release],
        StageArg::All => vec![Stage::Ingest, Stage::Train, Stage::Release],
    };
    let out = run_pipeline(RunRequest {
        tier,
        config: cfg,
        stages,
        out: a.out.clone(),
        model: a.model,
        progress: g.progress(),
    })
    .with_context(|| format!("{} tier pipeline", tier))?;
    let s = &out.summary;
    if !g.emit_json(&out.report)? {
        for r in &s.reports {
            g.say(format!(
                "{:<24} {:<5} {}",
                r.defense,
                r.verdict.to_string(),
                r.summary
            ));
        }
        for k in &s.skipped {
            g.say(format!(
                "{:<24} {:<5} skipped: {}",
                k.name,
                k.verdict.to_string(),
                k.reason
            ));
        }
        g.say(format!("gate: {} ({} tier)", s.verdict, tier));
        let handoff = a.out.join(mithridate_policy::runner::HANDOFF_FILE);
        if out.written.contains(&handoff) {
            let canaries: Vec<String> = out
                .written
                .iter()
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("canaries."))
                })
                .map(|p| p.display().to_string())
                .collect();
            if canaries.is_empty() {
                g.say(format!(
                    "next: train on {}, then run --stage release --out {}",
                    a.out.join("clean.*").display(),
                    a.out.display()
                ));
            } else {
                g.say(format!(
                    "next: train on {} plus the canary rows {}, then run --stage release --out {}",
                    a.out.join("clean.*").display(),
                    canaries.join(", "),
                    a.out.display()
                ));
            }
        }
        g.say(format!("report: {}", a.out.join("report.html").display()));
    }
    Ok(Outcome::gate(s.verdict == mithridate_core::Verdict::Fail))
}
