//! `mithridate`: the command-line interface. Thin glue over the library crates:
//! argument parsing, progress, output formatting and exit codes live here; the
//! work lives in the layer crates.
//!
//! Exit codes: 0 pass, 1 the gate failed (tamper, poison, trigger, threshold),
//! 2 error (bad input, I/O, usage).

mod cmd;
mod ui;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use ui::{Global, Outcome};

/// Defend machine-learning training pipelines against data poisoning.
#[derive(Debug, Parser)]
#[command(name = "mithridate", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    // Each layer's commands are added here, one variant per top-level command.
    /// Canary and honeypot data: plant, verify, exposure, scan, watch.
    Canary(cmd::canary::CanaryArgs),
    /// Run a risk tier's pipeline (ingest, train, release) as a CI gate and write the audit report.
    Run(cmd::run::RunArgs),
    /// Answer predictions of a saved built-in model over the JSONL command protocol (stdin/stdout).
    Serve(cmd::serve::ServeArgs),
    /// Show the effective policy of a tier.
    #[command(subcommand)]
    Policy(cmd::run::PolicyCmd),
    /// Privacy accounting for DP-SGD: epsilon of a run, noise calibration.
    Privacy(cmd::privacy::PrivacyArgs),
    /// Train a built-in model on a dataset (optionally with DP-SGD, or a certified partition ensemble) and save it as JSON.
    Train(cmd::train::TrainArgs),
    /// Generate an Ed25519 key pair (PKCS#8 PEM) for signing manifests.
    Keygen(cmd::provenance::KeygenArgs),
    /// Dataset manifests: create, sign, verify, diff, lineage.
    Manifest(cmd::provenance::ManifestArgs),
    /// Robust aggregation of federated client updates (n x d NPY).
    Aggregate(cmd::aggregate::AggregateArgs),
    /// Release gate: holdout metrics, backdoor trigger tests and scans, LLM probes.
    Validate(cmd::validate::ValidateArgs),
    /// Scan a dataset for poison; write clean data, a quarantine file and a report.
    Scan(cmd::scan::ScanArgs),
    /// Review a quarantine file: list, release or purge entries.
    Quarantine(cmd::scan::QuarantineArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    ui::init_tracing(&cli.global);
    let g = &cli.global;
    let result: anyhow::Result<Outcome> = match cli.command {
        Command::Canary(a) => cmd::canary::run(a, g),
        Command::Run(a) => cmd::run::run(a, g),
        Command::Serve(a) => cmd::serve::run(a, g),
        Command::Policy(c) => cmd::run::policy(c, g),
        Command::Privacy(a) => cmd::privacy::run(a, g),
        Command::Train(a) => cmd::train::run(a, g),
        Command::Keygen(a) => cmd::provenance::run_keygen(a, g),
        Command::Manifest(a) => cmd::provenance::run(a, g),
        Command::Aggregate(a) => cmd::aggregate::run(a, g),
        Command::Validate(a) => cmd::validate::run(a, g),
        Command::Scan(a) => cmd::scan::run(a, g),
        Command::Quarantine(a) => cmd::scan::run_quarantine(a, g),
    };
    ui::finish(g, result)
}
