//! `cargo xtask bench provenance`: manifest throughput against `b3sum` and
//! `sha256sum` on the same files, in the same run.
//!
//! Generates a JSONL dataset (default 700 MB, 1.6 M records of ~450 bytes,
//! 8 shards) in a temporary directory outside the repository, then times, in
//! interleaved rounds so that background load hits every contender alike:
//! `b3sum`, `sha256sum`, and mithridate file-level (BLAKE3), record-level
//! (BLAKE3) and file-level SHA-256 manifests (create + save, as the CLI does),
//! plus a record-level verify and record-level hashing alone (no manifest
//! written: the per-record leaves make the manifest large). Prints the best time of each and the ratios the
//! issue sets as targets.
//!
//! Options: `--mb N`, `--records N`, `--shards N`, `--rounds N`,
//! `--dir DIR` (generate there and keep it), `--keep`.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use mithridate_provenance::{create_manifest, verify_manifest, Algorithm, CreateOptions};

use crate::flag;

fn num<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T> {
    match flag(args, name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}: cannot parse {v:?}")),
    }
}

/// Run the benchmark.
pub fn run(args: &[String]) -> Result<()> {
    let mb: u64 = num(args, "--mb", 700)?;
    let records: u64 = num(args, "--records", 1_600_000)?;
    let shards: u64 = num(args, "--shards", 8)?;
    let rounds: usize = num(args, "--rounds", 3)?;
    let keep = args.iter().any(|a| a == "--keep") || flag(args, "--dir").is_some();
    if shards == 0 || records == 0 || rounds == 0 {
        bail!("--shards, --records and --rounds must be positive");
    }
    for tool in ["b3sum", "sha256sum"] {
        if Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            bail!("`{tool}` not found on PATH (Debian: apt-get install b3sum coreutils)");
        }
    }
    let base = match flag(args, "--dir") {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join(format!(
            "mithridate-bench-provenance-{}",
            std::process::id()
        )),
    };
    let data = base.join("data");
    let files = generate(&data, mb * 1_000_000, records, shards)?;
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    eprintln!(
        "dataset: {} files, {:.1} MB, {records} records in {}",
        files.len(),
        total as f64 / 1e6,
        data.display()
    );

    let out = base.join("manifests");
    std::fs::create_dir_all(&out)?;
    // Warm the page cache so every contender reads from memory.
    time_cmd("cat", &files)?;

    let file_opts = CreateOptions::default();
    let rec_opts = CreateOptions {
        records: true,
        ..Default::default()
    };
    let sha_opts = CreateOptions {
        algorithm: Algorithm::Sha256,
        ..Default::default()
    };
    let names = [
        "b3sum",
        "sha256sum",
        "mithridate blake3 file-level",
        "mithridate blake3 record-level",
        "mithridate sha256 file-level",
        "mithridate verify record-level",
        "  record-level, hashing only",
    ];
    let mut best = [f64::INFINITY; 7];
    for round in 0..rounds {
        let t = [
            time_cmd("b3sum", &files)?,
            time_cmd("sha256sum", &files)?,
            time_manifest(&data, &file_opts, &out.join("file.json"))?,
            time_manifest(&data, &rec_opts, &out.join("records.json"))?,
            time_manifest(&data, &sha_opts, &out.join("sha256.json"))?,
            time_verify(&data, &out.join("records.json"))?,
            time_create(&data, &rec_opts)?,
        ];
        eprintln!(
            "round {}: {}",
            round + 1,
            t.iter()
                .map(|s| format!("{s:.3}s"))
                .collect::<Vec<_>>()
                .join("  ")
        );
        for (b, s) in best.iter_mut().zip(t) {
            *b = b.min(s);
        }
    }
    let mbs = |s: f64| total as f64 / 1e6 / s;
    println!("provenance benchmark: {:.1} MB, {records} records, {shards} shards, best of {rounds} rounds, {} threads", total as f64 / 1e6, rayon_threads());
    for (n, s) in names.iter().zip(best) {
        println!("  {n:<34} {s:>8.3} s  {:>8.0} MB/s", mbs(s));
    }
    let r_file = best[2] / best[0];
    let r_rec = best[3] / best[0];
    let r_sha = best[4] / best[1];
    let r_rec_hash = best[6] / best[0];
    println!("ratios:");
    println!(
        "  file-level / b3sum        {r_file:>6.2}x  (target <= 1.2)  {}",
        verdict(r_file <= 1.2)
    );
    println!(
        "  record-level / b3sum      {r_rec:>6.2}x  (target <= 3.0)  {}",
        verdict(r_rec <= 3.0)
    );
    println!("    (record-level hashing only, manifest not written: {r_rec_hash:.2}x)");
    println!(
        "  sha256 file / sha256sum   {r_sha:>6.2}x  (target <  1.0)  {}",
        verdict(r_sha < 1.0)
    );
    let msize = std::fs::metadata(out.join("records.json"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!("  record-level manifest size {:.1} MB", msize as f64 / 1e6);
    if keep {
        eprintln!("kept {}", base.display());
    } else {
        std::fs::remove_dir_all(&base).with_context(|| format!("removing {}", base.display()))?;
    }
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Wall time of `tool files...` with stdout discarded.
fn time_cmd(tool: &str, files: &[PathBuf]) -> Result<f64> {
    let t0 = Instant::now();
    let st = Command::new(tool)
        .args(files)
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("running {tool}"))?;
    let s = t0.elapsed().as_secs_f64();
    if !st.success() {
        bail!("{tool} failed: {st}");
    }
    Ok(s)
}

fn time_manifest(data: &Path, opts: &CreateOptions, out: &Path) -> Result<f64> {
    let t0 = Instant::now();
    let m = create_manifest(data, opts)?;
    m.save(out)?;
    Ok(t0.elapsed().as_secs_f64())
}

fn time_create(data: &Path, opts: &CreateOptions) -> Result<f64> {
    let t0 = Instant::now();
    let m = create_manifest(data, opts)?;
    let s = t0.elapsed().as_secs_f64();
    drop(m);
    Ok(s)
}

fn time_verify(data: &Path, manifest: &Path) -> Result<f64> {
    let m = mithridate_provenance::Manifest::load(manifest)?;
    let t0 = Instant::now();
    let out = verify_manifest(data, &m)?;
    let s = t0.elapsed().as_secs_f64();
    if !out.ok() {
        bail!(
            "verify of unchanged data reported {} changes",
            out.changes.len()
        );
    }
    Ok(s)
}

/// Deterministic JSONL shards: `records` records of about `bytes / records`
/// bytes each (lengths vary ±~30%), spread over `shards` files. Reuses an
/// existing dataset of the same shape.
fn generate(dir: &Path, bytes: u64, records: u64, shards: u64) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let files: Vec<PathBuf> = (0..shards)
        .map(|s| dir.join(format!("part-{s:05}.jsonl")))
        .collect();
    // Beside the data, not in it: the manifests must cover the shards only.
    let stamp = dir.with_extension("shape");
    let shape = format!("{bytes} {records} {shards}");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(shape.as_str())
        && files.iter().all(|f| f.exists())
    {
        return Ok(files);
    }
    let avg = (bytes / records) as usize;
    let words = [
        "the", "model", "data", "poison", "label", "train", "signal", "noise", "token", "batch",
        "vector", "gradient", "sample", "record", "shard", "review",
    ];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let per = records.div_ceil(shards);
    let mut id = 0u64;
    for f in &files {
        let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(f)?);
        let mut line = String::with_capacity(avg * 2);
        for _ in 0..per {
            if id >= records {
                break;
            }
            line.clear();
            let label = next() % 10;
            line.push_str(&format!(
                "{{\"id\":\"r{id:08}\",\"label\":{label},\"source\":\"crawl-2026-11\",\"text\":\""
            ));
            // Target length varies between 0.7 and 1.3 times the average.
            let target = avg * 7 / 10 + (next() % (avg as u64 * 6 / 10 + 1)) as usize;
            while line.len() + 2 < target {
                line.push_str(words[(next() % words.len() as u64) as usize]);
                line.push(' ');
            }
            line.push_str("\"}\n");
            w.write_all(line.as_bytes())?;
            id += 1;
        }
        w.flush()?;
    }
    std::fs::write(&stamp, shape)?;
    Ok(files)
}
