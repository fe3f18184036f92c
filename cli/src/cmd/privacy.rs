//! `mithridate privacy epsilon | calibrate` (privacy accounting for DP-SGD)
//! and `mithridate train` (fit a built-in model, optionally with DP-SGD).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use mithridate_core::io::atomic::write_atomic;
use mithridate_core::io::{read_path, ReadOptions};
use mithridate_core::model::accuracy;
use mithridate_core::rng::derive_seed;
use mithridate_robust::dp::{self, AccountantKind};
use mithridate_robust::dpsgd::Optimizer;
use mithridate_robust::train::{ModelKind, TrainConfig};
use serde_json::json;

use crate::{Global, Outcome};

/// Accountant choice on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccountantArg {
    /// Rényi DP (fast; reports the optimal order too).
    Rdp,
    /// Privacy loss distributions (tighter).
    Pld,
}

impl From<AccountantArg> for AccountantKind {
    fn from(a: AccountantArg) -> Self {
        match a {
            AccountantArg::Rdp => AccountantKind::Rdp,
            AccountantArg::Pld => AccountantKind::Pld,
        }
    }
}

/// `mithridate privacy`.
#[derive(Debug, clap::Args)]
pub struct PrivacyArgs {
    #[command(subcommand)]
    pub command: PrivacyCommand,
}

/// Privacy accounting sub-commands.
#[derive(Debug, clap::Subcommand)]
pub enum PrivacyCommand {
    /// Epsilon spent by T steps of the Poisson-subsampled Gaussian mechanism.
    Epsilon(EpsilonArgs),
    /// The smallest noise multiplier reaching a target epsilon.
    Calibrate(CalibrateArgs),
}

/// `mithridate privacy epsilon`.
#[derive(Debug, clap::Args)]
pub struct EpsilonArgs {
    /// Poisson sampling rate q (expected batch size / dataset size).
    #[arg(long)]
    pub sampling_rate: f64,
    /// Noise multiplier sigma (noise standard deviation / clipping norm).
    #[arg(long)]
    pub noise_multiplier: f64,
    /// Number of steps.
    #[arg(long)]
    pub steps: u64,
    /// Target delta.
    #[arg(long)]
    pub delta: f64,
    /// Accountant.
    #[arg(long, value_enum, default_value = "rdp")]
    pub accountant: AccountantArg,
}

/// `mithridate privacy calibrate`.
#[derive(Debug, clap::Args)]
pub struct CalibrateArgs {
    /// Target epsilon.
    #[arg(long)]
    pub epsilon: f64,
    /// Poisson sampling rate q.
    #[arg(long)]
    pub sampling_rate: f64,
    /// Number of steps.
    #[arg(long)]
    pub steps: u64,
    /// Target delta.
    #[arg(long)]
    pub delta: f64,
    /// Accountant.
    #[arg(long, value_enum, default_value = "rdp")]
    pub accountant: AccountantArg,
}

/// Run `mithridate privacy ...`.
pub fn run(args: PrivacyArgs, g: &Global) -> Result<Outcome> {
    match args.command {
        PrivacyCommand::Epsilon(a) => run_epsilon(a, g),
        PrivacyCommand::Calibrate(a) => run_calibrate(a, g),
    }
}

fn run_epsilon(a: EpsilonArgs, g: &Global) -> Result<Outcome> {
    let t0 = Instant::now();
    let kind = AccountantKind::from(a.accountant);
    let (eps, order) = match kind {
        AccountantKind::Rdp => {
            let (e, o) =
                dp::try_epsilon_rdp(a.sampling_rate, a.noise_multiplier, a.steps, a.delta)?;
            (e, Some(o))
        }
        AccountantKind::Pld => (
            dp::try_epsilon_pld(
                a.sampling_rate,
                a.noise_multiplier,
                a.steps,
                a.delta,
                dp::pld::DEFAULT_DISCRETIZATION,
            )?,
            None,
        ),
    };
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let doc = json!({
        "accountant": kind.to_string(),
        "epsilon": if eps.is_finite() { json!(eps) } else { json!("inf") },
        "order": order,
        "sampling_rate": a.sampling_rate,
        "noise_multiplier": a.noise_multiplier,
        "steps": a.steps,
        "delta": a.delta,
        "elapsed_ms": ms,
    });
    if !g.emit_json(&doc)? {
        match order {
            Some(o) => g.say(format!(
                "epsilon = {eps:.6} (rdp, optimal order {o}) at delta = {:e}",
                a.delta
            )),
            None => g.say(format!("epsilon = {eps:.6} (pld) at delta = {:e}", a.delta)),
        }
    }
    Ok(Outcome::Pass)
}

fn run_calibrate(a: CalibrateArgs, g: &Global) -> Result<Outcome> {
    let kind = AccountantKind::from(a.accountant);
    let sigma = dp::calibrate_sigma(a.epsilon, a.sampling_rate, a.steps, a.delta, kind)?;
    let reached = dp::epsilon(kind, a.sampling_rate, sigma, a.steps, a.delta)?;
    let doc = json!({
        "accountant": kind.to_string(),
        "noise_multiplier": sigma,
        "epsilon": reached,
        "target_epsilon": a.epsilon,
        "sampling_rate": a.sampling_rate,
        "steps": a.steps,
        "delta": a.delta,
    });
    if !g.emit_json(&doc)? {
        g.say(format!(
            "noise multiplier = {sigma:.4} ({kind}: epsilon {reached:.4} <= {} at delta {:e})",
            a.epsilon, a.delta
        ));
    }
    Ok(Outcome::Pass)
}

/// Model family on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelArg {
    /// Softmax (multinomial logistic) regression.
    Softmax,
    /// One-hidden-layer MLP.
    Mlp,
}

/// Optimiser on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OptimizerArg {
    /// Adam.
    Adam,
    /// SGD with momentum (`--momentum`).
    Sgd,
}

/// `mithridate train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Training data (CSV, JSONL or NPY; features and labels).
    pub data: PathBuf,
    /// Where to write the model (JSON).
    #[arg(short = 'o', long = "out")]
    pub out: PathBuf,
    /// Label column or field.
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// Id column or field.
    #[arg(long)]
    pub id_column: Option<String>,
    /// Labelled held-out data to report accuracy on (same format as the training data).
    #[arg(long)]
    pub holdout: Option<PathBuf>,
    /// Model family.
    #[arg(long, value_enum, default_value = "softmax")]
    pub model: ModelArg,
    /// Passes over the data.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Mini-batch size (expected lot size with --dp).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Learning rate.
    #[arg(long)]
    pub learning_rate: Option<f32>,
    /// Hidden units of the MLP.
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Train with DP-SGD.
    #[arg(long)]
    pub dp: bool,
    /// Privacy budget (with --dp).
    #[arg(long, default_value_t = 3.0)]
    pub target_epsilon: f64,
    /// Delta (with --dp).
    #[arg(long, default_value_t = 1e-5)]
    pub delta: f64,
    /// Noise multiplier (with --dp; default: calibrated to reach --target-epsilon).
    #[arg(long)]
    pub noise_multiplier: Option<f64>,
    /// Per-sample gradient norm bound (with --dp).
    #[arg(long)]
    pub clip: Option<f32>,
    /// Accountant (with --dp).
    #[arg(long, value_enum, default_value = "rdp")]
    pub accountant: AccountantArg,
    /// Optimiser (with --dp).
    #[arg(long, value_enum, default_value = "adam")]
    pub optimizer: OptimizerArg,
    /// Momentum of SGD (with --optimizer sgd).
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    /// Public input scale: features are divided by it (with --dp; default 8, for 0..16 pixels).
    #[arg(long)]
    pub input_scale: Option<f32>,
    /// Seed for every random choice.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl TrainArgs {
    /// Set the model family and the options given on the command line
    /// (`--model`, `--epochs`, `--batch-size`, `--learning-rate`,
    /// `--hidden`) in `cfg`, leaving its defaults where an option is absent.
    pub(crate) fn apply_model_options(&self, cfg: &mut TrainConfig) {
        cfg.model = match self.model {
            ModelArg::Softmax => ModelKind::Softmax,
            ModelArg::Mlp => ModelKind::Mlp,
        };
        if let Some(e) = self.epochs {
            cfg.epochs = e;
        }
        if let Some(b) = self.batch_size {
            cfg.batch_size = b;
        }
        if let Some(lr) = self.learning_rate {
            cfg.learning_rate = lr;
        }
        if let Some(h) = self.hidden {
            cfg.hidden = h;
        }
    }
}

fn read_opts(a: &TrainArgs) -> ReadOptions {
    ReadOptions {
        label_column: Some(a.label_column.clone()),
        id_column: a.id_column.clone(),
        ..Default::default()
    }
}

/// Run `mithridate train`.
pub fn run_train(a: TrainArgs, g: &Global) -> Result<Outcome> {
    let opts = read_opts(&a);
    let (ds, _) =
        read_path(&a.data, &opts).with_context(|| format!("reading {}", a.data.display()))?;
    let x = ds
        .require_features("train")
        .with_context(|| a.data.display().to_string())?;
    let y = ds
        .require_labels("train")
        .with_context(|| a.data.display().to_string())?;
    let mut cfg = if a.dp {
        TrainConfig::dp(a.target_epsilon, a.delta)
    } else {
        TrainConfig::plain()
    };
    a.apply_model_options(&mut cfg);
    if let Some(dpc) = cfg.dp.as_mut() {
        dpc.noise_multiplier = a.noise_multiplier;
        if let Some(c) = a.clip {
            dpc.clip = c;
        }
        dpc.accountant = a.accountant.into();
        dpc.optimizer = match a.optimizer {
            OptimizerArg::Adam => Optimizer::Adam,
            OptimizerArg::Sgd => Optimizer::Sgd {
                momentum: a.momentum,
            },
        };
        if let Some(s) = a.input_scale {
            dpc.input_scale = s;
        }
    } else if a.noise_multiplier.is_some() || a.clip.is_some() {
        bail!("--noise-multiplier and --clip need --dp");
    }
    let k = ds.n_classes().max(2);
    let t0 = Instant::now();
    let trained = cfg.fit(x.view(), y, k, derive_seed(a.seed, "train"))?;
    let secs = t0.elapsed().as_secs_f64();
    let clf = trained.model.as_classifier();
    let train_acc = accuracy(&clf.predict(x.view()), y);
    let holdout_acc = match &a.holdout {
        None => None,
        Some(p) => {
            let (h, _) = read_path(p, &opts).with_context(|| format!("reading {}", p.display()))?;
            let hx = h
                .require_features("holdout")
                .with_context(|| p.display().to_string())?;
            let hy = h
                .require_labels("holdout")
                .with_context(|| p.display().to_string())?;
            if hx.ncols() != x.ncols() {
                bail!(
                    "{}: {} features, the training data has {}",
                    p.display(),
                    hx.ncols(),
                    x.ncols()
                );
            }
            Some(accuracy(&clf.predict(hx.view()), hy))
        }
    };
    let bytes = serde_json::to_vec_pretty(&trained.model)?;
    write_atomic(&a.out, |w| w.write_all(&bytes))
        .with_context(|| format!("writing {}", a.out.display()))?;
    let doc = json!({
        "model": cfg.model.to_string(),
        "out": a.out,
        "train_samples": ds.len(),
        "train_accuracy": train_acc,
        "holdout_accuracy": holdout_acc,
        "seconds": secs,
        "dp": trained.dp,
    });
    if !g.emit_json(&doc)? {
        g.say(format!(
            "trained {} on {} samples in {secs:.2}s: train accuracy {train_acc:.4}",
            cfg.model,
            ds.len()
        ));
        if let Some(h) = holdout_acc {
            g.say(format!("holdout accuracy {h:.4}"));
        }
        if let Some(s) = &trained.dp {
            g.say(format!(
                "DP-SGD: epsilon {:.4} at delta {:e} ({}), noise multiplier {:.4}, {} of {} steps, q = {:.4}",
                s.epsilon, s.delta, s.accountant, s.noise_multiplier, s.steps, s.planned_steps, s.sampling_rate
            ));
            if s.stopped_by_budget {
                g.say("warning: the privacy budget stopped training before the planned steps");
            }
        }
        g.say(format!("model written to {}", a.out.display()));
    }
    Ok(Outcome::Pass)
}
