//! JSONL: one JSON object per line, with text fields, an optional label, an
//! optional id and optional numeric `features`.

use std::collections::{BTreeMap, HashSet};
use std::io::BufRead;
use std::path::Path;

use ndarray::Array2;
use serde_json::{Map, Value};

use super::labels::LabelBuilder;
use super::lines::{read_line_bounded, Line};
use super::{atomic, open, ReadOptions, ReadStats};
use crate::dataset::{Dataset, Origin, SampleId};
use crate::error::{Error, Location, Result};

/// The field that holds numeric features in JSONL records.
pub const FEATURES_FIELD: &str = "features";

/// Read a JSONL file. Blank lines are skipped silently (they are not records).
///
/// Errors name the file, the 1-based line and the field. Nesting is limited by
/// `serde_json`'s recursion limit (128), so deeply nested input is an error,
/// not a stack overflow.
pub fn read_jsonl(path: &Path, opts: &ReadOptions) -> Result<(Dataset, ReadStats)> {
    read_jsonl_from(open(path)?, path, opts)
}

#[doc(hidden)]
/// Parse JSONL from bytes (for fuzzing and tests).
pub fn read_jsonl_bytes(bytes: &[u8], opts: &ReadOptions) -> Result<(Dataset, ReadStats)> {
    read_jsonl_from(bytes, Path::new("<bytes>"), opts)
}

struct Columns {
    text_fields: Vec<String>,
    ids: Vec<SampleId>,
    texts: Vec<Vec<String>>,
    labels: LabelBuilder,
    has_labels: bool,
    feats: Vec<f32>,
    d: Option<usize>,
    origins: Vec<Origin>,
    id_seen: HashSet<SampleId>,
}

/// Read JSONL from any buffered reader (stdin, a decompressor); `path` names
/// the source in errors and in [`Dataset::source_files`].
pub fn read_jsonl_reader<R: BufRead>(
    r: R,
    path: &Path,
    opts: &ReadOptions,
) -> Result<(Dataset, ReadStats)> {
    read_jsonl_from(r, path, opts)
}

fn read_jsonl_from<R: BufRead>(
    mut r: R,
    path: &Path,
    opts: &ReadOptions,
) -> Result<(Dataset, ReadStats)> {
    let mut stats = ReadStats::default();
    let mut cols: Option<Columns> = None;
    let mut buf = Vec::new();
    let mut line_no: u64 = 0;
    let mut offset: u64 = 0;
    let mut index: u64 = 0;
    loop {
        let (kind, consumed) = read_line_bounded(&mut r, &mut buf, opts.max_record_bytes)
            .map_err(|e| Error::io(path, e))?;
        let start = offset;
        offset += consumed;
        line_no += 1;
        let loc = || Location::file(path).at_line(line_no);
        match kind {
            Line::Eof => break,
            Line::TooLong(n) => {
                let e = Error::parse(
                    loc(),
                    format!(
                        "line of {n} bytes exceeds the limit of {}",
                        opts.max_record_bytes
                    ),
                );
                if opts.skip_bad {
                    stats.skip(&e);
                    continue;
                }
                return Err(e);
            }
            Line::Ok => {}
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let res = parse_record(&buf, loc, opts, &mut cols, index).map(|_| ());
        match res {
            Ok(()) => {
                let c = cols
                    .as_mut()
                    .ok_or_else(|| Error::data("internal: columns not set"))?;
                c.origins.push(Origin {
                    file: 0,
                    line: line_no,
                    offset: start,
                    len: consumed,
                });
                stats.records += 1;
            }
            Err(e) if opts.skip_bad => stats.skip(&e),
            Err(e) => return Err(e),
        }
        index += 1;
    }
    let Some(c) = cols else {
        let ds = Dataset {
            source_files: vec![path.display().to_string()],
            ..Default::default()
        };
        return Ok((ds, stats));
    };
    let n = c.ids.len();
    let features = match c.d {
        Some(d) => {
            Some(Array2::from_shape_vec((n, d), c.feats).map_err(|e| Error::data(e.to_string()))?)
        }
        None => None,
    };
    let (labels, label_names) = if c.has_labels {
        let (l, names) = c.labels.finish();
        (Some(l), names)
    } else {
        (None, None)
    };
    let text_column = opts
        .text_column
        .clone()
        .filter(|t| c.text_fields.contains(t))
        .or_else(|| {
            ["text", "prompt", "instruction", "input", "content"]
                .iter()
                .map(|s| (*s).to_owned())
                .find(|s| c.text_fields.contains(s))
                .or_else(|| c.text_fields.first().cloned())
        });
    let ds = Dataset {
        ids: c.ids,
        features,
        feature_names: Vec::new(),
        labels,
        label_names,
        text_fields: c
            .text_fields
            .into_iter()
            .zip(c.texts)
            .collect::<BTreeMap<_, _>>(),
        text_column,
        source_files: vec![path.display().to_string()],
        origins: c.origins,
    };
    ds.validate()?;
    Ok((ds, stats))
}

fn parse_record(
    line: &[u8],
    loc: impl Fn() -> Location,
    opts: &ReadOptions,
    cols: &mut Option<Columns>,
    index: u64,
) -> Result<()> {
    let v: Value = serde_json::from_slice(line)
        .map_err(|e| Error::parse(loc(), format!("invalid JSON at column {}: {e}", e.column())))?;
    let Value::Object(obj) = v else {
        return Err(Error::parse(loc(), "a JSONL record must be a JSON object"));
    };
    let label_field = opts.label_column.as_deref();
    let id_field = opts.id_column.as_deref();
    if cols.is_none() {
        let text_fields = if opts.text_fields.is_empty() {
            obj.iter()
                .filter(|(k, v)| {
                    v.is_string() && Some(k.as_str()) != label_field && Some(k.as_str()) != id_field
                })
                .map(|(k, _)| k.clone())
                .collect()
        } else {
            opts.text_fields.clone()
        };
        let has_labels = match label_field {
            Some(l) => obj.contains_key(l) || l != "label",
            None => false,
        };
        let d = match obj.get(FEATURES_FIELD) {
            Some(Value::Array(a)) => Some(a.len()),
            _ => None,
        };
        *cols = Some(Columns {
            texts: vec![Vec::new(); text_fields.len()],
            text_fields,
            ids: Vec::new(),
            labels: LabelBuilder::default(),
            has_labels,
            feats: Vec::new(),
            d,
            origins: Vec::new(),
            id_seen: HashSet::new(),
        });
    }
    let c = cols
        .as_mut()
        .ok_or_else(|| Error::data("internal: columns not set"))?;
    // Validate everything before touching the columns, so a skipped record leaves no trace.
    let mut texts = Vec::with_capacity(c.text_fields.len());
    for f in &c.text_fields {
        match obj.get(f) {
            Some(Value::String(s)) => texts.push(s.clone()),
            Some(_) => return Err(Error::parse(loc().at_field(f.clone()), "expected a string")),
            None => return Err(Error::parse(loc().at_field(f.clone()), "missing field")),
        }
    }
    let label = if c.has_labels {
        let l = label_field.unwrap_or("label");
        Some(match obj.get(l) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) if n.is_u64() => n.to_string(),
            Some(_) => {
                return Err(Error::parse(
                    loc().at_field(l),
                    "label must be a string or a non-negative integer",
                ))
            }
            None => return Err(Error::parse(loc().at_field(l), "missing label")),
        })
    } else {
        None
    };
    let id = match id_field {
        Some(f) => match obj.get(f) {
            Some(Value::String(s)) => SampleId::Str(s.clone()),
            Some(Value::Number(n)) if n.is_u64() => SampleId::Num(n.as_u64().unwrap_or(0)),
            Some(_) => {
                return Err(Error::parse(
                    loc().at_field(f),
                    "id must be a string or a non-negative integer",
                ))
            }
            None => return Err(Error::parse(loc().at_field(f), "missing id")),
        },
        None => SampleId::Num(index),
    };
    let row = match c.d {
        Some(d) => Some(parse_features(&obj, d, &loc)?),
        None => None,
    };
    if c.id_seen.contains(&id) {
        return Err(Error::parse(
            loc().at_field(id_field.unwrap_or("id")),
            format!("duplicate id {id}"),
        ));
    }
    if let Some(l) = &label {
        c.labels
            .push(l)
            .map_err(|m| Error::parse(loc().at_field(label_field.unwrap_or("label")), m))?;
    }
    c.id_seen.insert(id.clone());
    c.ids.push(id);
    for (col, t) in c.texts.iter_mut().zip(texts) {
        col.push(t);
    }
    if let Some(r) = row {
        c.feats.extend(r);
    }
    Ok(())
}

fn parse_features(
    obj: &Map<String, Value>,
    d: usize,
    loc: &impl Fn() -> Location,
) -> Result<Vec<f32>> {
    let at = || loc().at_field(FEATURES_FIELD);
    let Some(Value::Array(a)) = obj.get(FEATURES_FIELD) else {
        return Err(Error::parse(at(), "missing or not an array"));
    };
    if a.len() != d {
        return Err(Error::parse(
            at(),
            format!("{} values, the first record has {d}", a.len()),
        ));
    }
    a.iter()
        .enumerate()
        .map(|(j, v)| {
            v.as_f64()
                .map(|x| x as f32)
                .filter(|x| x.is_finite())
                .ok_or_else(|| Error::parse(at(), format!("value {j} is not a finite number")))
        })
        .collect()
}

/// Write `ds` as JSONL: `id`, each text field, `label` (its name when labels
/// were strings) and `features` when present.
pub fn write_jsonl(ds: &Dataset, path: &Path) -> Result<()> {
    ds.validate()?;
    atomic::write_atomic(path, |w| {
        for i in 0..ds.len() {
            let mut m = Map::new();
            m.insert(
                "id".into(),
                serde_json::to_value(&ds.ids[i]).map_err(std::io::Error::other)?,
            );
            for (k, col) in &ds.text_fields {
                m.insert(k.clone(), Value::String(col[i].clone()));
            }
            if let Some(l) = &ds.labels {
                let v = match &ds.label_names {
                    Some(_) => Value::String(ds.label_name(l[i])),
                    None => Value::from(l[i]),
                };
                m.insert("label".into(), v);
            }
            if let Some(f) = &ds.features {
                m.insert(
                    FEATURES_FIELD.into(),
                    f.row(i)
                        .iter()
                        .map(|&x| Value::from(f64::from(x)))
                        .collect(),
                );
            }
            serde_json::to_writer(&mut *w, &m).map_err(std::io::Error::other)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_text_label_id_and_keeps_origins() {
        let data = b"{\"id\":\"a\",\"text\":\"hello\",\"label\":1}\n\n{\"id\":\"b\",\"text\":\"bye\",\"label\":0}\n";
        let o = ReadOptions {
            id_column: Some("id".into()),
            ..Default::default()
        };
        let (ds, st) = read_jsonl_bytes(data, &o).unwrap();
        assert_eq!(st.records, 2);
        assert_eq!(
            ds.text().unwrap(),
            &["hello".to_string(), "bye".to_string()]
        );
        assert_eq!(ds.labels, Some(vec![1, 0]));
        assert_eq!(ds.origins[1].line, 3);
        assert_eq!(ds.origins[1].offset, 37);
    }

    #[test]
    fn errors_name_line_and_field() {
        let data = b"{\"text\":\"a\",\"label\":1}\n{\"text\":2,\"label\":1}\n";
        let err = read_jsonl_bytes(data, &ReadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("`text`"), "{err}");
        let err = read_jsonl_bytes(b"{\"text\":\"a\"\n", &ReadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 1") && err.contains("invalid JSON"),
            "{err}"
        );
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let err = read_jsonl_bytes(deep.as_bytes(), &ReadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn skipped_records_leave_no_partial_columns() {
        let data =
            b"{\"text\":\"a\",\"label\":1}\n{\"text\":\"b\"}\n{\"text\":\"c\",\"label\":2}\n";
        let (ds, st) = read_jsonl_bytes(
            data,
            &ReadOptions {
                skip_bad: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(st.skipped, 1);
        assert_eq!(ds.labels, Some(vec![1, 2]));
        assert_eq!(ds.text().unwrap().len(), 2);
    }
}
