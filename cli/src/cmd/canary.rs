//! `mithridate canary plant | verify | exposure | scan | watch`: canary and
//! honeypot data (layer 5).

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use mithridate_canary::canaries::{CanarySet, Expected};
use mithridate_canary::exposure::{self, ExposureParams, SecretFormat, SecretSet};
use mithridate_canary::honeypot::{plant_files, plant_jsonl, JsonlPlanting};
use mithridate_canary::monitor::{self, WatchOptions};
use mithridate_canary::ngram::NgramLm;
use mithridate_canary::registry::Registry;
use mithridate_canary::scan::{Scanner, Target};
use mithridate_canary::token::{HoneypotKind, SecretKey};
use mithridate_core::io::{jsonl, ReadOptions};
use mithridate_core::model::Predictor;
use serde_json::json;

use crate::{Global, Outcome};

/// `mithridate canary`.
#[derive(Debug, clap::Args)]
pub struct CanaryArgs {
    #[command(subcommand)]
    pub command: CanaryCommand,
}

/// Canary and honeypot sub-commands.
#[derive(Debug, clap::Subcommand)]
pub enum CanaryCommand {
    /// Plant honeypot records, honeypot files or exposure secrets.
    Plant(PlantArgs),
    /// Report honeypot files whose content or metadata changed since planting.
    Verify(VerifyArgs),
    /// Secret-sharer exposure of planted secrets through a model's log-likelihoods.
    Exposure(ExposureArgs),
    /// Find planted honeypot tokens and canaries in files (JSONL, CSV, text, .gz, .zst).
    Scan(ScanArgs),
    /// Log every open and change of honeypot files as JSON lines.
    Watch(WatchArgs),
}

/// Key and registry options shared by the planting commands.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyArgs {
    /// Honeypot registry (JSON; created if missing). Safe to keep beside the data.
    #[arg(long)]
    pub registry: PathBuf,
    /// Secret key file (64 hex digits). Keep it away from the data.
    #[arg(long)]
    pub key: PathBuf,
    /// Create the key file if it does not exist.
    #[arg(long)]
    pub new_key: bool,
}

/// `mithridate canary plant`.
#[derive(Debug, clap::Args)]
pub struct PlantArgs {
    #[command(subcommand)]
    pub what: PlantWhat,
}

/// What to plant.
#[derive(Debug, clap::Subcommand)]
pub enum PlantWhat {
    /// Copy a JSONL dataset with honeypot records inserted at random lines.
    Records(PlantRecordsArgs),
    /// Write honeypot files (fake credentials, system prompt, customer export) into a directory.
    Files(PlantFilesArgs),
    /// Copy a JSONL dataset with random secrets inserted (for `canary exposure`).
    Secrets(PlantSecretsArgs),
    /// Copy a JSONL dataset with text canaries (prompt + secret answer) appended.
    Canaries(PlantCanariesArgs),
}

/// `mithridate canary plant canaries`.
#[derive(Debug, clap::Args)]
pub struct PlantCanariesArgs {
    /// Source JSONL dataset (left untouched).
    #[arg(long)]
    pub into: PathBuf,
    /// The copy with the canary records appended.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Where to write the canary set (prompts and expected answers; keep it private).
    #[arg(long)]
    pub set_out: PathBuf,
    /// Number of canaries.
    #[arg(long, default_value_t = 8)]
    pub count: usize,
    /// Text field of the records.
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// Secret seed of the canaries.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `mithridate canary plant records`.
#[derive(Debug, clap::Args)]
pub struct PlantRecordsArgs {
    /// Source JSONL dataset (left untouched).
    #[arg(long)]
    pub into: PathBuf,
    /// The copy with honeypots.
    #[arg(long, short)]
    pub out: PathBuf,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Honeypot records to insert.
    #[arg(long, default_value_t = 4)]
    pub count: usize,
    /// Kinds, comma-separated: aws-key, api-key, system-prompt, pii.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "aws-key,api-key,system-prompt,pii"
    )]
    pub kinds: Vec<String>,
    /// Text field that receives the bait (default `text`, else the first string field).
    #[arg(long)]
    pub text_field: Option<String>,
    /// Seed for positions.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `mithridate canary plant files`.
#[derive(Debug, clap::Args)]
pub struct PlantFilesArgs {
    /// Directory that receives the files (created if missing).
    pub dir: PathBuf,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Files to write.
    #[arg(long, default_value_t = 4)]
    pub count: usize,
    /// Kinds, comma-separated: aws-key, api-key, system-prompt, pii.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "aws-key,api-key,system-prompt,pii"
    )]
    pub kinds: Vec<String>,
}

/// `mithridate canary plant secrets`.
#[derive(Debug, clap::Args)]
pub struct PlantSecretsArgs {
    /// Source JSONL dataset (left untouched).
    #[arg(long)]
    pub into: PathBuf,
    /// The copy with the secrets appended as records.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Where to write the secret set (needed by `canary exposure`; keep it private).
    #[arg(long)]
    pub secrets_out: PathBuf,
    /// Number of secrets.
    #[arg(long, default_value_t = 4)]
    pub secrets: usize,
    /// Times each secret is inserted.
    #[arg(long, default_value_t = 1)]
    pub repeats: usize,
    /// Random digits per secret (|R| = 10^digits).
    #[arg(long, default_value_t = 6)]
    pub digits: u32,
    /// Text before the digits.
    #[arg(long, default_value = "my secret code is ")]
    pub prefix: String,
    /// Text field of the records (default `text`).
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// Seed of the secrets (keep it secret).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `mithridate canary verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Honeypot registry.
    #[arg(long)]
    pub registry: PathBuf,
}

/// `mithridate canary exposure`.
#[derive(Debug, clap::Args)]
pub struct ExposureArgs {
    /// Secret set written by `canary plant secrets`.
    #[arg(long)]
    pub secrets: PathBuf,
    /// Model as a command speaking JSONL on stdin/stdout (outputs need `logprob`).
    #[arg(long, conflicts_with_all = ["url", "train_ngram"])]
    pub command: Option<String>,
    /// Model as an HTTP endpoint (`POST {"inputs": [..]}` -> `{"outputs": [..]}` with `logprob`).
    #[arg(long, conflicts_with = "train_ngram")]
    pub url: Option<String>,
    /// Train the built-in byte n-gram demo model on this JSONL file and measure it.
    #[arg(long)]
    pub train_ngram: Option<PathBuf>,
    /// Text field for --train-ngram.
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// Order of the demo n-gram model.
    #[arg(long, default_value_t = 10)]
    pub order: usize,
    /// Exposure (bits) above which a secret counts as memorised.
    #[arg(long, default_value_t = 10.0)]
    pub threshold: f64,
    /// Rank every candidate when |R| is at most this, else sample.
    #[arg(long, default_value_t = 100_000)]
    pub exact_limit: u64,
    /// Candidates sampled when not exact.
    #[arg(long, default_value_t = 5_000)]
    pub samples: usize,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `mithridate canary scan`.
#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// Files or directories to scan (datasets, model outputs, logs).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Honeypot registry whose tokens to find.
    #[arg(long)]
    pub registry: Option<PathBuf>,
    /// Canary set whose expected text answers to find.
    #[arg(long)]
    pub canaries: Option<PathBuf>,
    /// Secret set whose secrets to find.
    #[arg(long)]
    pub secrets: Option<PathBuf>,
}

/// `mithridate canary watch`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// Honeypot files or directories to watch.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Registry, to name the honeypot of each event.
    #[arg(long)]
    pub registry: Option<PathBuf>,
    /// Stop after this many seconds (default: until interrupted).
    #[arg(long = "for")]
    pub for_secs: Option<f64>,
    /// Poll every this many milliseconds instead of using inotify.
    #[arg(long)]
    pub poll_ms: Option<u64>,
}

/// Run `mithridate canary`.
pub fn run(args: CanaryArgs, g: &Global) -> Result<Outcome> {
    match args.command {
        CanaryCommand::Plant(a) => match a.what {
            PlantWhat::Records(a) => plant_records(a, g),
            PlantWhat::Files(a) => plant_files_cmd(a, g),
            PlantWhat::Secrets(a) => plant_secrets(a, g),
            PlantWhat::Canaries(a) => plant_text_canaries(a, g),
        },
        CanaryCommand::Verify(a) => verify(a, g),
        CanaryCommand::Exposure(a) => exposure_cmd(a, g),
        CanaryCommand::Scan(a) => scan(a, g),
        CanaryCommand::Watch(a) => watch(a, g),
    }
}

fn kinds(names: &[String]) -> Result<Vec<HoneypotKind>> {
    names
        .iter()
        .map(|n| HoneypotKind::parse(n.trim()).map_err(anyhow::Error::from))
        .collect()
}

fn open_keys(k: &KeyArgs) -> Result<(SecretKey, Registry)> {
    let key = if k.key.exists() {
        SecretKey::read(&k.key)?
    } else if k.new_key {
        let key = SecretKey::generate();
        key.write(&k.key)?;
        key
    } else {
        bail!(
            "{}: no such key file (add --new-key to create one)",
            k.key.display()
        );
    };
    let reg = Registry::load_or_new(&k.registry, &key)?;
    Ok((key, reg))
}

fn plant_records(a: PlantRecordsArgs, g: &Global) -> Result<Outcome> {
    let (key, mut reg) = open_keys(&a.keys)?;
    let opts = JsonlPlanting {
        count: a.count,
        kinds: kinds(&a.kinds)?,
        text_field: a.text_field.clone(),
        seed: a.seed,
        ..Default::default()
    };
    let planted = plant_jsonl(&a.into, &a.out, &key, &mut reg, &opts)?;
    reg.save(&a.keys.registry)?;
    let sites: Vec<_> = planted
        .iter()
        .map(|p| json!({ "id": p.id, "kind": p.kind, "site": p.site }))
        .collect();
    if !g.emit_json(&json!({ "planted": sites, "registry": a.keys.registry, "out": a.out }))? {
        for p in &planted {
            g.say(format!(
                "planted honeypot #{} ({}) at {}:{}",
                p.id,
                p.kind,
                p.site.path,
                p.site.line.unwrap_or(0)
            ));
        }
        g.say(format!(
            "registry: {} ({} honeypots)",
            a.keys.registry.display(),
            reg.honeypots.len()
        ));
    }
    Ok(Outcome::Pass)
}

fn plant_files_cmd(a: PlantFilesArgs, g: &Global) -> Result<Outcome> {
    let (key, mut reg) = open_keys(&a.keys)?;
    let planted = plant_files(&a.dir, &key, &mut reg, a.count, &kinds(&a.kinds)?)?;
    reg.save(&a.keys.registry)?;
    let sites: Vec<_> = planted
        .iter()
        .map(|p| json!({ "id": p.id, "kind": p.kind, "path": p.site.path }))
        .collect();
    if !g.emit_json(&json!({ "planted": sites, "registry": a.keys.registry }))? {
        for p in &planted {
            g.say(format!(
                "planted honeypot file #{} ({}) {}",
                p.id, p.kind, p.site.path
            ));
        }
    }
    Ok(Outcome::Pass)
}

fn plant_secrets(a: PlantSecretsArgs, g: &Global) -> Result<Outcome> {
    let fmt = SecretFormat {
        prefix: a.prefix.clone(),
        digits: a.digits,
    };
    let set = SecretSet::generate(fmt, a.secrets, a.repeats, a.seed)?;
    let records: Vec<serde_json::Value> = set
        .training_texts()
        .iter()
        .enumerate()
        .map(|(i, t)| json!({ "id": format!("secret-record-{i}"), a.text_field.clone(): t }))
        .collect();
    append_jsonl(&a.into, &a.out, &records)?;
    let bytes = serde_json::to_vec_pretty(&set)?;
    mithridate_core::io::atomic::write_bytes_atomic(&a.secrets_out, &bytes)?;
    if !g.emit_json(&json!({ "secrets": set.secrets.len(), "repeats": a.repeats, "out": a.out, "secrets_out": a.secrets_out }))? {
        g.say(format!(
            "inserted {} secrets x{} into {}; secret set in {}",
            set.secrets.len(),
            a.repeats,
            a.out.display(),
            a.secrets_out.display()
        ));
    }
    Ok(Outcome::Pass)
}

/// Append `records` to a copy of the JSONL file `src` written atomically to
/// `out`. Each appended record starts as a copy of the first record of `src`
/// (same label and other fields) so the copy still reads as one dataset; the
/// given fields replace the copied ones.
fn append_jsonl(
    src: &std::path::Path,
    out: &std::path::Path,
    records: &[serde_json::Value],
) -> Result<()> {
    let mut bytes = std::fs::read(src).with_context(|| format!("reading {}", src.display()))?;
    let template: serde_json::Map<String, serde_json::Value> = bytes
        .split(|&b| b == b'\n')
        .find(|l| !l.iter().all(u8::is_ascii_whitespace))
        .and_then(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    if !bytes.is_empty() && !bytes.ends_with(b"\n") {
        bytes.push(b'\n');
    }
    for r in records {
        let mut rec = template.clone();
        if let Some(o) = r.as_object() {
            rec.extend(o.clone());
        }
        serde_json::to_writer(&mut bytes, &rec)?;
        bytes.push(b'\n');
    }
    mithridate_core::io::atomic::write_bytes_atomic(out, &bytes)?;
    Ok(())
}

fn plant_text_canaries(a: PlantCanariesArgs, g: &Global) -> Result<Outcome> {
    let set = CanarySet::for_text(a.count, a.seed)?;
    let records: Vec<serde_json::Value> = set
        .canaries
        .iter()
        .filter_map(|c| {
            c.training_text()
                .map(|t| json!({ "id": c.id, a.text_field.clone(): t }))
        })
        .collect();
    append_jsonl(&a.into, &a.out, &records)?;
    set.save(&a.set_out)?;
    if !g
        .emit_json(&json!({ "canaries": set.canaries.len(), "out": a.out, "set_out": a.set_out }))?
    {
        g.say(format!(
            "appended {} text canaries to {}; canary set in {}",
            set.canaries.len(),
            a.out.display(),
            a.set_out.display()
        ));
    }
    Ok(Outcome::Pass)
}

fn verify(a: VerifyArgs, g: &Global) -> Result<Outcome> {
    let reg = Registry::load(&a.registry)?;
    let checked = reg.honeypots.iter().filter(|h| h.file.is_some()).count();
    let changed = monitor::verify(&reg);
    if !g.emit_json(&json!({ "checked": checked, "changed": changed }))? {
        for c in &changed {
            g.say(format!(
                "CHANGED honeypot #{} {}: {}",
                c.id,
                c.path,
                c.changes.join(", ")
            ));
        }
        g.say(format!(
            "{checked} honeypot files checked, {} changed",
            changed.len()
        ));
    }
    Ok(Outcome::gate(!changed.is_empty()))
}

fn exposure_cmd(a: ExposureArgs, g: &Global) -> Result<Outcome> {
    let bytes =
        std::fs::read(&a.secrets).with_context(|| format!("reading {}", a.secrets.display()))?;
    let set: SecretSet = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not a secret set", a.secrets.display()))?;
    let predictor: Box<dyn Predictor> = if let Some(c) = &a.command {
        Box::new(mithridate_validation::CommandPredictor::from_command_line(
            c,
        )?)
    } else if let Some(u) = &a.url {
        Box::new(mithridate_validation::HttpPredictor::new(u.clone()))
    } else if let Some(p) = &a.train_ngram {
        let opts = ReadOptions {
            text_fields: vec![a.text_field.clone()],
            label_column: None,
            ..Default::default()
        };
        let (ds, _) = jsonl::read_jsonl(p, &opts)?;
        let texts = ds
            .text_fields
            .get(&a.text_field)
            .with_context(|| format!("{}: no text field `{}`", p.display(), a.text_field))?;
        Box::new(NgramLm::train(texts, a.order)?)
    } else {
        bail!("give the model: --command CMD, --url URL or --train-ngram DATA.jsonl");
    };
    let params = ExposureParams {
        exact_limit: a.exact_limit,
        samples: a.samples,
        threshold_bits: a.threshold,
        seed: a.seed,
        ..Default::default()
    };
    let t0 = Instant::now();
    let ex = exposure::measure(&set, predictor.as_ref(), &params)?;
    let mut report = exposure::to_report(&set, &ex, &params);
    report.elapsed_ms = t0.elapsed().as_secs_f64() * 1e3;
    let memorised = ex.iter().any(|e| e.memorised);
    if !g.emit_json(&json!({ "exposures": ex, "report": report }))? {
        for e in &ex {
            g.say(format!(
                "{}: exposure {:.1} bits ({:?}){}",
                e.id,
                e.exposure,
                e.method,
                if e.memorised { "  MEMORISED" } else { "" }
            ));
        }
        g.say(report.summary.clone());
    }
    Ok(Outcome::gate(memorised))
}

fn scan(a: ScanArgs, g: &Global) -> Result<Outcome> {
    let mut b = Scanner::builder();
    let mut what = 0usize;
    if let Some(r) = &a.registry {
        let reg = Registry::load(r)?;
        what += reg.honeypots.len();
        b = b.registry(&reg);
    }
    if let Some(c) = &a.canaries {
        for c in CanarySet::load(c)?.canaries {
            if let Expected::Text(t) = c.expected {
                b = b.exact(c.id, t);
                what += 1;
            }
        }
    }
    if let Some(s) = &a.secrets {
        let bytes = std::fs::read(s).with_context(|| format!("reading {}", s.display()))?;
        let set: SecretSet = serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: not a secret set", s.display()))?;
        for s in set.secrets {
            b = b.exact(s.id, s.text);
            what += 1;
        }
    }
    if what == 0 {
        bail!("nothing to look for: give --registry, --canaries or --secrets (with entries)");
    }
    let scanner = b.build()?;
    let t0 = Instant::now();
    let sum = scanner.scan_paths(&a.paths)?;
    let secs = t0.elapsed().as_secs_f64();
    if !g.emit_json(&json!({
        "files": sum.files, "bytes": sum.bytes, "seconds": secs,
        "hits": sum.hits, "errors": sum.errors,
    }))? {
        for h in &sum.hits {
            match &h.target {
                Target::Honeypot { honeypot: p } => g.say(format!(
                    "FOUND honeypot #{} ({}) planted {} in {}{} -> {}:{}",
                    p.id,
                    p.kind,
                    p.planted_at,
                    p.site.path,
                    p.site.line.map(|l| format!(":{l}")).unwrap_or_default(),
                    h.file,
                    h.line
                )),
                Target::Canary { name } => {
                    g.say(format!("FOUND canary {name} -> {}:{}", h.file, h.line))
                }
            }
        }
        for e in &sum.errors {
            g.say(format!("error: {e}"));
        }
        g.say(format!(
            "{} files, {} bytes scanned in {secs:.2}s: {} hits",
            sum.files,
            sum.bytes,
            sum.hits.len()
        ));
    }
    if sum.hits.is_empty() && !sum.errors.is_empty() {
        bail!(
            "{} files could not be read: {}",
            sum.errors.len(),
            sum.errors.join("; ")
        );
    }
    Ok(Outcome::gate(!sum.hits.is_empty()))
}

fn watch(a: WatchArgs, g: &Global) -> Result<Outcome> {
    let reg = a.registry.as_deref().map(Registry::load).transpose()?;
    let duration = match a.for_secs {
        Some(s) if s.is_finite() && s >= 0.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => bail!("--for {s}: must be a non-negative number of seconds"),
        None => None,
    };
    let opts = WatchOptions {
        duration,
        poll: a.poll_ms.map(Duration::from_millis),
    };
    let stop = AtomicBool::new(false);
    let mut all = Vec::new();
    let json_doc = g.json;
    let stdout = std::io::stdout();
    let n = monitor::watch(&a.paths, reg.as_ref(), &opts, &stop, &mut |e| {
        if json_doc {
            all.push(e.clone());
        } else {
            let mut out = stdout.lock();
            let line = serde_json::to_string(e)
                .map_err(|err| mithridate_core::Error::data(err.to_string()))?;
            writeln!(out, "{line}")
                .and_then(|()| out.flush())
                .map_err(|err| mithridate_core::Error::io("<stdout>", err))?;
        }
        Ok(())
    })?;
    g.emit_json(&json!({ "events": all, "count": n }))?;
    if !g.json {
        g.say(format!("{n} events"));
    }
    Ok(Outcome::Pass)
}
