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
    /// Generate an Ed25519 key pair (PKCS#8 PEM) for signing manifests.
    Keygen(cmd::provenance::KeygenArgs),
    /// Dataset manifests: create, sign, verify, diff, lineage.
    Manifest(cmd::provenance::ManifestArgs),
    /// Robust aggregation of federated client updates (n x d NPY).
    Aggregate(cmd::aggregate::AggregateArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    ui::init_tracing(&cli.global);
    let g = &cli.global;
    let result: anyhow::Result<Outcome> = match cli.command {
        Command::Keygen(a) => cmd::provenance::run_keygen(a, g),
        Command::Manifest(a) => cmd::provenance::run(a, g),
        Command::Aggregate(a) => cmd::aggregate::run(a, g),
    };
    ui::finish(g, result)
}
