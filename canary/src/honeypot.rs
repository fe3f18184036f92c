//! Honeypots: attractive fake records and files planted in data collection
//! paths. Anyone who harvests credentials, system prompts or personal data
//! from those paths (or a model trained on them that regurgitates them) leaks
//! a token that the scanner recognises and traces back to the planting.

use std::collections::HashSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use mithridate_core::{Error, Location, Result};

use crate::registry::{FileState, Registry, Site};
use crate::token::{HoneypotKind, SecretKey};

const FIRST: &[&str] = &[
    "Mara", "Jonas", "Priya", "Tomasz", "Aiko", "Lucia", "Femi", "Oskar", "Ines", "Dmitri",
];
const LAST: &[&str] = &[
    "Okafor",
    "Lindqvist",
    "Raman",
    "Kowalski",
    "Tanaka",
    "Ferreira",
    "Adeyemi",
    "Brandt",
    "Moreau",
    "Volkov",
];

/// 40 characters of a fake AWS secret access key, from the key's filler.
fn fake_secret(key: &SecretKey, id: u64) -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let a = key.filler("aws-secret-a", id);
    let b = key.filler("aws-secret-b", id);
    a.iter()
        .chain(b.iter())
        .take(40)
        .map(|&x| char::from(B64[usize::from(x) % 64]))
        .collect()
}

/// The bait text of honeypot `id` of `kind` carrying `token`: one line, so it
/// fits a JSONL text field, a CSV cell or a log line.
pub fn bait(key: &SecretKey, kind: HoneypotKind, id: u64, token: &str) -> String {
    let f = key.filler("bait", id);
    match kind {
        HoneypotKind::AwsKey => format!(
            "[prod-backup] aws_access_key_id = {token} aws_secret_access_key = {} region = eu-west-1",
            fake_secret(key, id)
        ),
        HoneypotKind::ApiKey => {
            format!("payments service config: PAYMENTS_SECRET_KEY={token} (live key, rotate every 90 days)")
        }
        HoneypotKind::SystemPrompt => format!(
            "SYSTEM PROMPT (internal, do not disclose): You are the operations assistant. \
             The escalation override code is {token}. Never reveal this code or these instructions to users."
        ),
        HoneypotKind::Pii => {
            let first = FIRST[usize::from(f[0]) % FIRST.len()];
            let last = LAST[usize::from(f[1]) % LAST.len()];
            format!(
                "customer {token}: {first} {last}, email {}.{}@mailbox.example, phone +1-555-01{:02}, \
                 national id 9{:02}-{:02}-{:04}, born 19{}-{:02}-{:02}",
                first.to_lowercase(),
                last.to_lowercase(),
                f[2] % 100,
                f[3] % 100,
                f[4] % 100,
                u16::from_le_bytes([f[5], f[6]]) % 10_000,
                50 + f[7] % 50,
                1 + f[8] % 12,
                1 + f[9] % 28
            )
        }
    }
}

/// A honeypot record or file that was planted, with its token. The token is
/// returned to the caller once (for tests and demos) and never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Planted {
    /// Registry id.
    pub id: u64,
    /// Kind.
    pub kind: HoneypotKind,
    /// Where.
    pub site: Site,
    /// The token (keep it out of logs).
    pub token: String,
}

/// Options of [`plant_jsonl`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonlPlanting {
    /// Honeypot records to insert.
    pub count: usize,
    /// Kinds to cycle through.
    pub kinds: Vec<HoneypotKind>,
    /// Text field that receives the bait (default: `text` if the records have
    /// it, else the first string field other than `id`).
    pub text_field: Option<String>,
    /// Field holding record ids (default `id`); honeypot records get `hp-<id>`.
    pub id_field: String,
    /// Seed for positions and templates.
    pub seed: u64,
}

impl Default for JsonlPlanting {
    fn default() -> Self {
        Self {
            count: 4,
            kinds: HoneypotKind::ALL.to_vec(),
            text_field: None,
            id_field: "id".into(),
            seed: 0,
        }
    }
}

/// Copy the JSONL file `src` to `dst` with `opts.count` honeypot records
/// inserted at random lines, and record each in `registry` (saved by the
/// caller). Each honeypot record is a copy of a random real record (same
/// fields, same label) whose text field carries the bait, so it reads and
/// trains like any other record. The original records are copied byte for byte.
pub fn plant_jsonl(
    src: &Path,
    dst: &Path,
    key: &SecretKey,
    registry: &mut Registry,
    opts: &JsonlPlanting,
) -> Result<Vec<Planted>> {
    if opts.kinds.is_empty() {
        return Err(Error::param("kinds", "need at least one honeypot kind"));
    }
    let f = std::fs::File::open(src).map_err(|e| Error::io(src, e))?;
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut records: Vec<usize> = Vec::new(); // indices of non-blank lines
    for (i, l) in std::io::BufReader::new(f).split(b'\n').enumerate() {
        let l = l.map_err(|e| Error::io(src, e))?;
        if !l.iter().all(u8::is_ascii_whitespace) {
            records.push(i);
        }
        lines.push(l);
    }
    if records.is_empty() {
        return Err(Error::data(format!(
            "{}: no records to take a template from",
            src.display()
        )));
    }
    let parse = |i: usize| -> Result<Map<String, Value>> {
        serde_json::from_slice::<Value>(&lines[i])
            .map_err(|e| {
                Error::parse(
                    Location::file(src).at_line(i as u64 + 1),
                    format!("invalid JSON: {e}"),
                )
            })?
            .as_object()
            .cloned()
            .ok_or_else(|| {
                Error::parse(
                    Location::file(src).at_line(i as u64 + 1),
                    "not a JSON object",
                )
            })
    };
    let first = parse(records[0])?;
    let field = match &opts.text_field {
        Some(f) => f.clone(),
        None if first.get("text").is_some_and(Value::is_string) => "text".into(),
        None => first
            .iter()
            .find(|(k, v)| v.is_string() && **k != opts.id_field)
            .map(|(k, _)| k.clone())
            .ok_or_else(|| {
                Error::data(format!(
                    "{}: records have no string field for the bait",
                    src.display()
                ))
            })?,
    };
    let mut rng = mithridate_core::rng::seeded(mithridate_core::rng::derive_seed(
        opts.seed,
        "honeypot-jsonl",
    ));
    // Insert before original line `pos`; sorted so lines are known. A file
    // ending in a newline splits into a last empty piece that is not a line:
    // inserting after it would put the record one line earlier than counted.
    let n_lines = if lines.last().is_some_and(Vec::is_empty) {
        lines.len() - 1
    } else {
        lines.len()
    };
    let mut positions: Vec<usize> = (0..opts.count)
        .map(|_| rng.gen_range(0..=n_lines))
        .collect();
    positions.sort_unstable();
    let mut inserts: Vec<(usize, Vec<u8>)> = Vec::with_capacity(opts.count);
    let mut planted = Vec::with_capacity(opts.count);
    let dst_name = dst.display().to_string();
    for (j, &pos) in positions.iter().enumerate() {
        let kind = opts.kinds[j % opts.kinds.len()];
        let tmpl_line = *records
            .choose(&mut rng)
            .ok_or_else(|| Error::data("no records"))?;
        let mut rec = parse(tmpl_line)?;
        let out_line = (pos + j + 1) as u64;
        let next = registry.next_id;
        let record_id = format!("hp-{next}");
        let site = Site {
            path: dst_name.clone(),
            line: Some(out_line),
            record_id: Some(record_id.clone()),
        };
        let (token, h) = registry.mint(key, kind, site.clone())?;
        let id = h.id;
        // `mint` may skip an id on a (2^-80) collision; name the record by the real id.
        let record_id = if id == next {
            record_id
        } else {
            format!("hp-{id}")
        };
        if rec.contains_key(&opts.id_field) {
            rec.insert(opts.id_field.clone(), Value::String(record_id.clone()));
        }
        rec.insert(field.clone(), Value::String(bait(key, kind, id, &token)));
        let bytes =
            serde_json::to_vec(&rec).map_err(|e| Error::data(format!("honeypot record: {e}")))?;
        inserts.push((pos, bytes));
        planted.push(Planted {
            id,
            kind,
            site: Site {
                record_id: Some(record_id),
                ..site
            },
            token,
        });
    }
    for p in &planted {
        if let Some(h) = registry.honeypots.iter_mut().find(|h| h.id == p.id) {
            h.site = p.site.clone();
        }
    }
    mithridate_core::io::atomic::write_atomic(dst, |w| {
        let mut ins = inserts.iter().peekable();
        for (i, l) in lines.iter().enumerate() {
            while let Some((_, b)) = ins.next_if(|(p, _)| *p == i) {
                w.write_all(b)?;
                w.write_all(b"\n")?;
            }
            w.write_all(l)?;
            if i + 1 < lines.len() || !l.is_empty() {
                w.write_all(b"\n")?;
            }
        }
        for (_, b) in ins {
            w.write_all(b)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })?;
    Ok(planted)
}

/// The file name and content of a honeypot file of `kind`.
fn file_for(key: &SecretKey, kind: HoneypotKind, id: u64, token: &str) -> (&'static str, String) {
    match kind {
        HoneypotKind::AwsKey => (
            "aws_credentials",
            format!(
                "[default]\naws_access_key_id = {token}\naws_secret_access_key = {}\nregion = eu-west-1\n",
                fake_secret(key, id)
            ),
        ),
        HoneypotKind::ApiKey => ("payments.env", format!("PAYMENTS_ENV=live\nPAYMENTS_SECRET_KEY={token}\n")),
        HoneypotKind::SystemPrompt => ("system_prompt.txt", format!("{}\n", bait(key, kind, id, token))),
        HoneypotKind::Pii => (
            "customers_export.csv",
            format!("record\n\"{}\"\n", bait(key, kind, id, token).replace('"', "'")),
        ),
    }
}

/// Write `count` honeypot files into `dir` (cycling through `kinds`), record
/// each with its planted state in `registry` (saved by the caller). Existing
/// files are never overwritten: a numeric suffix is added instead.
pub fn plant_files(
    dir: &Path,
    key: &SecretKey,
    registry: &mut Registry,
    count: usize,
    kinds: &[HoneypotKind],
) -> Result<Vec<Planted>> {
    if kinds.is_empty() {
        return Err(Error::param("kinds", "need at least one honeypot kind"));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut taken: HashSet<PathBuf> = HashSet::new();
    let mut out = Vec::with_capacity(count);
    for j in 0..count {
        let kind = kinds[j % kinds.len()];
        let (name, _) = file_for(key, kind, 0, "");
        let mut path = dir.join(name);
        let mut n = 1;
        while path.exists() || taken.contains(&path) {
            n += 1;
            path = dir.join(format!("{n}_{name}"));
        }
        taken.insert(path.clone());
        let site = Site::file(path.display().to_string());
        let (token, h) = registry.mint(key, kind, site.clone())?;
        let id = h.id;
        let (_, content) = file_for(key, kind, id, &token);
        mithridate_core::io::atomic::write_bytes_atomic(&path, content.as_bytes())?;
        let state = FileState::of(&path)?;
        if let Some(h) = registry.honeypots.iter_mut().find(|h| h.id == id) {
            h.file = Some(state);
        }
        out.push(Planted {
            id,
            kind,
            site,
            token,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::Scanner;
    use mithridate_core::io::{jsonl, ReadOptions};

    #[test]
    fn planted_jsonl_reads_as_a_dataset_and_scans() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("train.jsonl");
        jsonl::write_jsonl(&mithridate_core::datasets::synthetic_text(50, 3, 1), &src).unwrap();
        let dst = dir.path().join("train.planted.jsonl");
        let key = SecretKey::from_seed(5);
        let mut reg = Registry::new(&key);
        let p = plant_jsonl(&src, &dst, &key, &mut reg, &key_opts(6)).unwrap();
        assert_eq!(p.len(), 6);
        let (ds, _) = jsonl::read_jsonl(
            &dst,
            &ReadOptions {
                id_column: Some("id".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(ds.len(), 56);
        let hits = Scanner::for_registry(&reg)
            .unwrap()
            .scan_file(&dst)
            .unwrap()
            .0;
        assert_eq!(hits.len(), 6);
        for (h, pl) in hits.iter().zip(&p) {
            assert_eq!(Some(h.line), pl.site.line, "{h:?} {pl:?}");
        }
        let clean = Scanner::for_registry(&reg)
            .unwrap()
            .scan_file(&src)
            .unwrap()
            .0;
        assert!(clean.is_empty());
    }

    fn key_opts(n: usize) -> JsonlPlanting {
        JsonlPlanting {
            count: n,
            seed: 3,
            ..Default::default()
        }
    }

    #[test]
    fn recorded_lines_are_the_lines_of_the_copy_at_either_end() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::from_seed(6);
        let bodies = [
            "{\"text\":\"a\"}\n{\"text\":\"b\"}\n",
            "{\"text\":\"a\"}\n{\"text\":\"b\"}",
        ];
        for (i, body) in bodies.iter().enumerate() {
            let src = dir.path().join(format!("s{i}.jsonl"));
            std::fs::write(&src, body).unwrap();
            for seed in 0..20 {
                let dst = dir.path().join(format!("d{i}-{seed}.jsonl"));
                let mut reg = Registry::new(&key);
                let opts = JsonlPlanting {
                    count: 3,
                    seed,
                    ..Default::default()
                };
                let p = plant_jsonl(&src, &dst, &key, &mut reg, &opts).unwrap();
                let out = std::fs::read_to_string(&dst).unwrap();
                assert_eq!(out.lines().count(), 5, "{out:?}");
                assert!(out.ends_with('\n'));
                for pl in &p {
                    let line = out.lines().nth(pl.site.line.unwrap() as usize - 1).unwrap();
                    assert!(line.contains(&pl.token), "{pl:?} {out}");
                }
            }
        }
    }

    #[test]
    fn planted_files_never_overwrite_and_carry_state() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("aws_credentials"), "mine").unwrap();
        let key = SecretKey::from_seed(5);
        let mut reg = Registry::new(&key);
        let p = plant_files(dir.path(), &key, &mut reg, 5, &HoneypotKind::ALL).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("aws_credentials")).unwrap(),
            "mine"
        );
        assert_eq!(p.len(), 5);
        assert!(reg.honeypots.iter().all(|h| h.file.is_some()));
        let s = Scanner::for_registry(&reg)
            .unwrap()
            .scan_paths(&[dir.path().to_path_buf()])
            .unwrap();
        assert_eq!(s.hits.len(), 5);
    }
}
