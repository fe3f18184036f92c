//! `cargo xtask fuzz [--seconds N] [--target NAME]`: run each cargo-fuzz target
//! for N seconds and print executions and crashes per target.
//!
//! Needs the nightly toolchain and `cargo-fuzz` (`cargo install cargo-fuzz`),
//! as cargo-fuzz does. Crashing inputs land in `fuzz/artifacts/<target>/`;
//! each one fixed becomes a regression test beside the parser it broke.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{flag, workspace_root};

/// Target names, read from `fuzz/Cargo.toml`'s `[[bin]]` sections.
fn targets(root: &std::path::Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(root.join("fuzz/Cargo.toml")).context("reading fuzz/Cargo.toml")?;
    let mut out = Vec::new();
    let mut in_bin = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin {
            if let Some(v) = line.strip_prefix("name = ") {
                out.push(v.trim_matches('"').to_owned());
            }
        }
    }
    Ok(out)
}

pub fn run(args: &[String]) -> Result<()> {
    let secs: u64 = flag(args, "--seconds")
        .map(str::parse)
        .transpose()?
        .unwrap_or(60);
    let only = flag(args, "--target");
    let root = workspace_root();
    let fuzz_dir = root.join("fuzz");
    let mut rows = Vec::new();
    for t in targets(&root)? {
        if only.is_some_and(|o| o != t) {
            continue;
        }
        eprintln!("fuzzing {t} for {secs} s");
        let corpus = fuzz_dir.join("corpus").join(&t);
        std::fs::create_dir_all(&corpus)?;
        let out = Command::new("cargo")
            .args(["+nightly", "fuzz", "run", &t, "--"])
            .arg(format!("-max_total_time={secs}"))
            .arg("-print_final_stats=1")
            .arg("-rss_limit_mb=4096")
            .current_dir(&fuzz_dir)
            .output()
            .context("running cargo +nightly fuzz (is cargo-fuzz installed?)")?;
        let log = String::from_utf8_lossy(&out.stderr);
        let execs = log
            .lines()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .map_or("?".to_owned(), |v| v.trim().to_owned());
        let crashed = !out.status.success();
        if crashed {
            eprintln!(
                "{}",
                log.lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        rows.push((t, execs, crashed));
    }
    println!(
        "{:<16} {:>8} {:>14} {:>8}",
        "target", "seconds", "executions", "crash"
    );
    for (t, e, c) in &rows {
        println!(
            "{t:<16} {secs:>8} {e:>14} {:>8}",
            if *c { "YES" } else { "no" }
        );
    }
    if rows.iter().any(|r| r.2) {
        bail!("a fuzz target crashed; see fuzz/artifacts/");
    }
    Ok(())
}
