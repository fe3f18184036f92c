//! `mithridate keygen` and `mithridate manifest create | sign | verify | diff | lineage | merge`:
//! layer 1, provenance. Glue over `mithridate-provenance`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use mithridate_core::Error;
use mithridate_provenance::{
    self as prov, keys, Algorithm, CreateOptions, FileChange, Lineage, LineageGraph, Manifest,
    Metadata, VerifyOptions,
};
use serde_json::json;

use crate::{Global, Outcome};

mod model_signing;
pub use model_signing::{KeyType, SignFormat};

/// Most record changes listed per file in human output (JSON lists all).
const HUMAN_RECORDS: usize = 20;

/// `keygen`: write an Ed25519 key pair as PKCS#8 PEM.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Directory for `<name>.key` (private, mode 0600) and `<name>.pub`.
    #[arg(long)]
    pub out: PathBuf,
    /// File name stem of the two keys.
    #[arg(long, default_value = keys::KEY_STEM)]
    pub name: String,
    /// Replace existing key files.
    #[arg(long)]
    pub force: bool,
    /// Key type: ed25519 (mithridate manifests) or ecdsa-p256 (OpenSSF
    /// model-signing bundles).
    #[arg(long = "type", value_enum, default_value_t = KeyType::Ed25519)]
    pub key_type: KeyType,
}

/// `manifest`: dataset manifests.
#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ManifestCommand,
}

/// `manifest` subcommands.
#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Hash a dataset directory into a manifest.
    Create(Box<CreateArgs>),
    /// Sign a manifest: in-toto Statement v1 in a DSSE envelope (Ed25519).
    Sign(SignArgs),
    /// Verify a dataset against a (signed) manifest; exit 1 on any mismatch.
    Verify(VerifyArgs),
    /// Files and records that differ between two manifests; exit 1 if any.
    Diff(DiffArgs),
    /// The lineage graph of several manifests, as text and Graphviz DOT.
    Lineage(LineageArgs),
    /// Merge shard manifests (`create --file`) into one dataset manifest.
    Merge(MergeArgs),
}

/// `manifest create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Dataset root directory.
    pub path: PathBuf,
    /// Manifest file to write (skipped when hashing if inside PATH).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Per-record digests for JSONL, CSV and NPY files.
    #[arg(long)]
    pub records: bool,
    /// SHA-256 instead of BLAKE3.
    #[arg(long)]
    pub sha256: bool,
    /// JSON field / CSV column holding record ids.
    #[arg(long, default_value = prov::DEFAULT_ID_FIELD)]
    pub id_field: String,
    /// Source URI.
    #[arg(long)]
    pub source: Option<String>,
    /// Revision or version pin of the source.
    #[arg(long)]
    pub revision: Option<String>,
    /// Who collected the data.
    #[arg(long)]
    pub collector: Option<String>,
    /// Collection date (ISO 8601).
    #[arg(long)]
    pub collected: Option<String>,
    /// Licence (SPDX expression).
    #[arg(long)]
    pub license: Option<String>,
    /// Free-form notes.
    #[arg(long)]
    pub notes: Option<String>,
    /// Parent dataset: a manifest file or a manifest root (hex). Repeatable.
    #[arg(long = "parent")]
    pub parents: Vec<String>,
    /// Step that derived this dataset from its parents (e.g. dedup, filter).
    #[arg(long, requires = "parents")]
    pub step: Option<String>,
    /// Hash only this file (relative to PATH) into a shard manifest, to be
    /// joined with `manifest merge`; repeatable.
    #[arg(long = "file")]
    pub files: Vec<PathBuf>,
}

/// `manifest merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Shard manifests (plain or signed; signatures are not checked here).
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
    /// Merged manifest to write.
    #[arg(short, long)]
    pub output: PathBuf,
}

/// `manifest sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// Manifest to sign.
    pub manifest: PathBuf,
    /// PKCS#8 PEM private key.
    #[arg(long)]
    pub key: PathBuf,
    /// Signed envelope to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// dsse (mithridate manifest, Ed25519) or model-signing (OpenSSF
    /// model-signing bundle over a directory: MANIFEST is then the dataset
    /// directory and KEY an ECDSA P-256 key).
    #[arg(long, value_enum, default_value_t = SignFormat::Dsse)]
    pub format: SignFormat,
}

/// `manifest verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Dataset root directory.
    pub path: PathBuf,
    /// Manifest or signed envelope.
    #[arg(long)]
    pub manifest: PathBuf,
    /// Trusted public key (SPKI PEM); repeatable. With any, the manifest must
    /// be signed by one of them.
    #[arg(long = "trust")]
    pub trust: Vec<PathBuf>,
}

/// `manifest diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Expected (old) manifest.
    pub a: PathBuf,
    /// Actual (new) manifest.
    pub b: PathBuf,
}

/// `manifest lineage`.
#[derive(Debug, Args)]
pub struct LineageArgs {
    /// Manifests (plain or signed).
    #[arg(required = true)]
    pub manifests: Vec<PathBuf>,
    /// Print Graphviz DOT on stdout.
    #[arg(long)]
    pub dot: bool,
    /// Write the DOT graph to this file.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

/// Run `keygen`.
pub fn run_keygen(args: KeygenArgs, g: &Global) -> anyhow::Result<Outcome> {
    if args.key_type == KeyType::EcdsaP256 {
        return model_signing::keygen(&args, g);
    }
    let p = keys::write_keypair_with(&args.out, &args.name, args.force)?;
    let vk = keys::load_public_key(&p.public)?;
    let id = keys::key_id(&vk);
    if !g.emit_json(&json!({ "private_key": p.private, "public_key": p.public, "keyid": id }))? {
        g.say(format!(
            "private key: {} (mode 0600, keep it secret)",
            p.private.display()
        ));
        g.say(format!("public key:  {}", p.public.display()));
        g.say(format!("key id:      {id}"));
    }
    Ok(Outcome::Pass)
}

/// Run a `manifest` subcommand.
pub fn run(args: ManifestArgs, g: &Global) -> anyhow::Result<Outcome> {
    match args.command {
        ManifestCommand::Create(a) => create(*a, g),
        ManifestCommand::Sign(a) => sign(a, g),
        ManifestCommand::Verify(a) => verify(a, g),
        ManifestCommand::Diff(a) => diff(a, g),
        ManifestCommand::Lineage(a) => lineage(a, g),
        ManifestCommand::Merge(a) => merge(a, g),
    }
}

fn create(a: CreateArgs, g: &Global) -> anyhow::Result<Outcome> {
    let parents = a
        .parents
        .iter()
        .map(|p| parent_root(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let lineage = match (parents.is_empty(), a.step) {
        (true, _) => None,
        (false, Some(step)) => Some(Lineage { parents, step }),
        (false, None) => bail!("--parent needs --step (the step that derived this dataset)"),
    };
    let opts = CreateOptions {
        records: a.records,
        algorithm: if a.sha256 {
            Algorithm::Sha256
        } else {
            Algorithm::Blake3
        },
        id_field: Some(a.id_field),
        metadata: Metadata {
            source: a.source,
            revision: a.revision,
            collector: a.collector,
            collected: a.collected,
            license: a.license,
            notes: a.notes,
        },
        lineage,
        exclude: vec![a.output.clone()],
    };
    let bar = g.progress();
    bar.start("hashing", None);
    let m = if a.files.is_empty() {
        prov::create_manifest(&a.path, &opts)
    } else {
        prov::create_shard_manifest(&a.path, &a.files, &opts)
    };
    bar.finish();
    let m = m?;
    m.save(&a.output)?;
    let doc = json!({
        "manifest": a.output, "root": m.root, "algorithm": m.algorithm,
        "files": m.files.len(), "records": m.record_count(),
        "bytes": m.files.iter().map(|f| f.size).sum::<u64>(),
    });
    if !g.emit_json(&doc)? {
        g.say(format!(
            "wrote {}: {} files, {} records, {} root {}",
            a.output.display(),
            m.files.len(),
            m.record_count(),
            m.algorithm,
            m.root
        ));
    }
    Ok(Outcome::Pass)
}

/// A `--parent` value: an existing manifest file (its root) or a hex root.
fn parent_root(p: &str) -> anyhow::Result<String> {
    let path = Path::new(p);
    if path.is_file() {
        return Ok(prov::load_any(path)?.manifest.root);
    }
    if !p.is_empty() && p.len().is_multiple_of(2) && p.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(p.to_ascii_lowercase());
    }
    bail!("--parent {p:?} is neither a manifest file nor a hex root")
}

fn sign(a: SignArgs, g: &Global) -> anyhow::Result<Outcome> {
    if a.format == SignFormat::ModelSigning {
        return model_signing::sign(&a, g);
    }
    let loaded = prov::load_any(&a.manifest)?;
    if loaded.envelope.is_some() {
        g.say(format!(
            "note: {} is already signed; signing its manifest again",
            a.manifest.display()
        ));
    }
    let key = keys::load_private_key(&a.key)?;
    let env = prov::sign_manifest(&loaded.manifest, &key)?;
    env.save(&a.output)?;
    let keyid = keys::key_id(&key.verifying_key());
    if !g.emit_json(&json!({ "signed": a.output, "root": loaded.manifest.root, "keyid": keyid }))? {
        g.say(format!(
            "wrote {} (root {}, key id {keyid})",
            a.output.display(),
            loaded.manifest.root
        ));
    }
    Ok(Outcome::Pass)
}

fn verify(a: VerifyArgs, g: &Global) -> anyhow::Result<Outcome> {
    if model_signing::is_bundle_file(&a.manifest) {
        return model_signing::verify(&a, g);
    }
    let keys = a
        .trust
        .iter()
        .map(|p| keys::load_public_key(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut signature = json!({ "checked": false });
    let manifest = if keys.is_empty() {
        let loaded = prov::load_any(&a.manifest)?;
        if loaded.envelope.is_some() {
            g.say("warning: signature NOT checked (no --trust key given)");
        }
        loaded.manifest
    } else {
        match prov::load_trusted(&a.manifest, &keys) {
            Ok(v) => {
                signature = json!({ "checked": true, "valid": true, "keyid": v.keyid });
                v.manifest
            }
            Err(Error::Crypto(msg)) => {
                let doc = json!({ "ok": false, "signature": { "checked": true, "valid": false, "error": msg } });
                if !g.emit_json(&doc)? {
                    g.say(format!("REJECTED {}: {msg}", a.manifest.display()));
                }
                return Ok(Outcome::GateFailed);
            }
            Err(e) => return Err(e.into()),
        }
    };
    let bar = g.progress();
    bar.start("verifying", None);
    let out = prov::verify_manifest_with(
        &a.path,
        &manifest,
        &VerifyOptions {
            ignore: vec![a.manifest.clone()],
        },
    );
    bar.finish();
    let out = out?;
    let doc = json!({
        "ok": out.ok(), "root": out.root, "algorithm": out.algorithm, "signature": signature,
        "files_checked": out.files_checked, "records_checked": out.records_checked,
        "mismatches": out.mismatches(), "changes": out.changes,
    });
    if !g.emit_json(&doc)? {
        if out.ok() {
            g.say(format!(
                "OK: {} files, {} records match {} (root {})",
                out.files_checked,
                out.records_checked,
                a.manifest.display(),
                out.root
            ));
        } else {
            g.say(format!(
                "MISMATCH against {} (root {}):",
                a.manifest.display(),
                out.root
            ));
            say_changes(g, &out.changes);
        }
    }
    Ok(Outcome::gate(!out.ok()))
}

fn say_changes(g: &Global, changes: &[FileChange]) {
    for c in changes {
        g.say(format!("  {c}"));
        for r in c.records.iter().take(HUMAN_RECORDS) {
            g.say(format!("    {r}"));
        }
        if c.records.len() > HUMAN_RECORDS {
            g.say(format!(
                "    ... and {} more record changes (see --json)",
                c.records.len() - HUMAN_RECORDS
            ));
        }
    }
}

fn diff(a: DiffArgs, g: &Global) -> anyhow::Result<Outcome> {
    let x = prov::load_any(&a.a)?.manifest;
    let y = prov::load_any(&a.b)?.manifest;
    let changes = prov::diff_manifests(&x, &y)
        .with_context(|| format!("{} vs {}", a.a.display(), a.b.display()))?;
    if !g.emit_json(
        &json!({ "same": changes.is_empty(), "a": x.root, "b": y.root, "changes": changes }),
    )? {
        if changes.is_empty() {
            g.say(format!("same content (root {})", x.root));
        } else {
            g.say(format!("{} -> {}:", a.a.display(), a.b.display()));
            say_changes(g, &changes);
        }
    }
    Ok(Outcome::gate(!changes.is_empty()))
}

fn merge(a: MergeArgs, g: &Global) -> anyhow::Result<Outcome> {
    let shards = a
        .shards
        .iter()
        .map(|p| {
            prov::load_any(p)
                .map(|l| l.manifest)
                .with_context(|| format!("shard {}", p.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let m = prov::merge_manifests(&shards, &prov::MergeOptions::default())?;
    m.save(&a.output)?;
    let doc = json!({
        "manifest": a.output, "root": m.root, "algorithm": m.algorithm,
        "shards": shards.len(), "files": m.files.len(), "records": m.record_count(),
        "bytes": m.files.iter().map(|f| f.size).sum::<u64>(),
    });
    if !g.emit_json(&doc)? {
        g.say(format!(
            "wrote {}: {} shards, {} files, {} records, {} root {}",
            a.output.display(),
            shards.len(),
            m.files.len(),
            m.record_count(),
            m.algorithm,
            m.root
        ));
    }
    Ok(Outcome::Pass)
}

fn lineage(a: LineageArgs, g: &Global) -> anyhow::Result<Outcome> {
    let ms = a
        .manifests
        .iter()
        .map(|p| Ok((p.display().to_string(), prov::load_any(p)?.manifest)))
        .collect::<anyhow::Result<Vec<(String, Manifest)>>>()?;
    let graph = LineageGraph::from_manifests(ms.iter().map(|(l, m)| (l.clone(), m)));
    let dot = graph.to_dot();
    if let Some(out) = &a.output {
        mithridate_core::io::atomic::write_bytes_atomic(out, dot.as_bytes())?;
    }
    if !g.emit_json(&json!({ "nodes": graph.nodes, "edges": graph.edges, "dot": dot }))? {
        if a.dot {
            print!("{dot}");
        } else {
            for line in graph.to_text().lines() {
                g.say(line);
            }
        }
    }
    Ok(Outcome::Pass)
}
