//! `cargo xtask`: project automation in Rust instead of shell scripts.
//!
//! - `cargo xtask demo [--out DIR]`: the end-to-end poisoning demo on the
//!   embedded digits dataset.
//! - `cargo xtask ci`: what `.ci/run` runs.
//! - `cargo xtask fuzz [--seconds N]`: every fuzz target for N seconds.
//! - `cargo xtask bench provenance`: manifest speed against b3sum and sha256sum.
//! - `cargo xtask eval anomaly`: detector quality over attack variants.
//! - `cargo xtask fl`: federated learning with Byzantine clients, per aggregator.

mod bench_provenance;
mod demo;
mod demo_provenance;
mod eval_anomaly;
mod fl;
mod fuzz;

use anyhow::{bail, Result};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = dispatch(&args) {
        eprintln!("xtask: {e:#}");
        std::process::exit(2);
    }
}

fn dispatch(args: &[String]) -> Result<()> {
    let rest = args.get(1..).unwrap_or(&[]);
    match args.first().map(String::as_str) {
        Some("demo") => demo::run(rest),
        Some("fuzz") => fuzz::run(rest),
        Some("fl") => fl::run(rest),
        Some("eval") => match rest.first().map(String::as_str) {
            Some("anomaly") => eval_anomaly::run(rest.get(1..).unwrap_or(&[])),
            other => bail!("unknown evaluation {other:?} (expected: anomaly)"),
        },
        Some("bench") => match rest.first().map(String::as_str) {
            Some("provenance") => bench_provenance::run(rest.get(1..).unwrap_or(&[])),
            other => bail!("unknown benchmark {other:?} (expected: provenance)"),
        },
        Some("ci") => ci(),
        Some(other) => bail!("unknown task {other:?}\n{USAGE}"),
        None => {
            eprintln!("{USAGE}");
            Ok(())
        }
    }
}

const USAGE: &str = "usage: cargo xtask <task>
  demo [--out DIR] [--seed N]   end-to-end poisoning demo on the embedded digits
  fuzz [--seconds N]            run every fuzz target for N seconds (default 60)
  bench provenance              manifest hashing against b3sum and sha256sum on 700 MB of JSONL
  eval anomaly                  detector precision/recall/F1 over attack variants
  fl                            federated training on digits with Byzantine clients, per aggregator
  ci                            formatting, lints and tests, as CI runs them";

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> std::path::PathBuf {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// Value of `--name VALUE` in `args`.
pub fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn ci() -> Result<()> {
    let root = workspace_root();
    for cmd in [
        vec!["fmt", "--all", "--", "--check"],
        vec![
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        vec!["test", "--workspace"],
    ] {
        eprintln!("$ cargo {}", cmd.join(" "));
        let st = std::process::Command::new(env!("CARGO"))
            .args(&cmd)
            .current_dir(&root)
            .status()?;
        if !st.success() {
            bail!("cargo {} failed", cmd.join(" "));
        }
    }
    Ok(())
}
