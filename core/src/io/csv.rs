//! CSV with a header row: one label column, an optional id column, and every
//! other column a numeric feature.

use std::collections::HashSet;
use std::path::Path;

use ndarray::Array2;

use super::labels::LabelBuilder;
use super::{atomic, open, ReadOptions, ReadStats};
use crate::dataset::{Dataset, Origin, SampleId};
use crate::error::{Error, Location, Result};

/// Read a CSV file. See [`ReadOptions`] for the label and id columns.
///
/// Errors name the file, the 1-based line and the column. A duplicate id is an
/// error: ids must identify samples.
pub fn read_csv(path: &Path, opts: &ReadOptions) -> Result<(Dataset, ReadStats)> {
    let reader = LimitedReader::new(open(path)?, opts.max_record_bytes);
    read_csv_from(reader, path, opts)
}

/// Read CSV from any reader (stdin, a decompressor); `path` names the source
/// in errors. Records are limited to [`ReadOptions::max_record_bytes`].
pub fn read_csv_reader<R: std::io::Read>(
    r: R,
    path: &Path,
    opts: &ReadOptions,
) -> Result<(Dataset, ReadStats)> {
    read_csv_from(LimitedReader::new(r, opts.max_record_bytes), path, opts)
}

fn read_csv_from<R: std::io::Read>(
    r: R,
    path: &Path,
    opts: &ReadOptions,
) -> Result<(Dataset, ReadStats)> {
    let loc = || Location::file(path);
    let mut rdr = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(r);
    let headers = rdr
        .headers()
        .map_err(|e| csv_err(path, &e, "reading the header"))?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect::<Vec<_>>();
    if headers.is_empty() || (headers.len() == 1 && headers[0].is_empty()) {
        return Err(Error::parse(
            loc().at_line(1),
            "empty file or empty header row",
        ));
    }
    let mut seen = HashSet::new();
    if let Some(dup) = headers.iter().find(|h| !seen.insert(h.as_str())) {
        return Err(Error::parse(
            loc().at_line(1).at_field(dup.clone()),
            "duplicate column name",
        ));
    }
    let find = |name: &str| headers.iter().position(|h| h == name);
    let label_idx = match &opts.label_column {
        Some(l) => match find(l) {
            Some(i) => Some(i),
            None if l == "label" => None,
            None => {
                return Err(Error::parse(
                    loc().at_line(1).at_field(l.clone()),
                    "label column not in header",
                ))
            }
        },
        None => None,
    };
    let id_idx = match &opts.id_column {
        Some(c) => Some(find(c).ok_or_else(|| {
            Error::parse(
                loc().at_line(1).at_field(c.clone()),
                "id column not in header",
            )
        })?),
        None => None,
    };
    let feat_idx: Vec<usize> = (0..headers.len())
        .filter(|i| Some(*i) != label_idx && Some(*i) != id_idx)
        .collect();
    let d = feat_idx.len();

    let mut stats = ReadStats::default();
    let mut feats: Vec<f32> = Vec::new();
    let mut ids = Vec::new();
    let mut labels = LabelBuilder::default();
    let mut origins = Vec::new();
    let mut id_seen = HashSet::new();
    let mut record = ::csv::StringRecord::new();
    let mut row_index: u64 = 0;
    let mut row = Vec::with_capacity(d);
    loop {
        let start = rdr.position().clone();
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let err = csv_err(path, &e, "reading a record");
                // An I/O error (including an over-long record) ends the file.
                if opts.skip_bad && !matches!(e.kind(), ::csv::ErrorKind::Io(_)) {
                    stats.skip(&err);
                    continue;
                }
                return Err(err);
            }
        }
        let line = record
            .position()
            .map_or(start.line(), ::csv::Position::line);
        let at = |field: &str| loc().at_line(line).at_field(field.to_owned());
        let parsed = (|| -> Result<SampleId> {
            if record.len() != headers.len() {
                return Err(Error::parse(
                    loc().at_line(line),
                    format!("{} fields, header has {}", record.len(), headers.len()),
                ));
            }
            row.clear();
            for &j in &feat_idx {
                let cell = record[j].trim();
                let v: f32 = cell.parse().map_err(|_| {
                    Error::parse(at(&headers[j]), format!("not a number: {cell:?}"))
                })?;
                if !v.is_finite() {
                    return Err(Error::parse(
                        at(&headers[j]),
                        format!("not a finite number: {cell:?}"),
                    ));
                }
                row.push(v);
            }
            let id = match id_idx {
                Some(j) => SampleId::parse(record[j].trim()),
                None => SampleId::Num(row_index),
            };
            if !id_seen.insert(id.clone()) {
                let field = id_idx.map_or("id", |j| headers[j].as_str());
                return Err(Error::parse(at(field), format!("duplicate id {id}")));
            }
            if let Some(j) = label_idx {
                labels
                    .push(&record[j])
                    .map_err(|m| Error::parse(at(&headers[j]), m))?;
            }
            Ok(id)
        })();
        match parsed {
            Ok(id) => {
                feats.extend_from_slice(&row);
                ids.push(id);
                let end = rdr.position().byte();
                let off = record
                    .position()
                    .map_or(start.byte(), ::csv::Position::byte);
                origins.push(Origin {
                    file: 0,
                    line,
                    offset: off,
                    len: end.saturating_sub(off),
                });
                stats.records += 1;
            }
            Err(e) if opts.skip_bad => stats.skip(&e),
            Err(e) => return Err(e),
        }
        // Ids are record indices in the file, skipped records included, so an
        // id always points at the same row whatever was skipped.
        row_index += 1;
    }
    let n = ids.len();
    let features = Array2::from_shape_vec((n, d), feats).map_err(|e| Error::data(e.to_string()))?;
    let (labels, label_names) = if label_idx.is_some() {
        let (l, names) = labels.finish();
        (Some(l), names)
    } else {
        (None, None)
    };
    let ds = Dataset {
        ids,
        features: if d > 0 { Some(features) } else { None },
        feature_names: if d > 0 {
            feat_idx.iter().map(|&j| headers[j].clone()).collect()
        } else {
            Vec::new()
        },
        labels,
        label_names,
        text_fields: Default::default(),
        text_column: None,
        source_files: vec![path.display().to_string()],
        origins,
    };
    ds.validate()?;
    Ok((ds, stats))
}

fn csv_err(path: &Path, e: &::csv::Error, what: &str) -> Error {
    let mut loc = Location::file(path);
    if let Some(p) = e.position() {
        loc = loc.at_line(p.line());
    }
    match e.kind() {
        ::csv::ErrorKind::Utf8 { err, .. } => Error::parse(
            loc.at_field(format!("#{}", err.field())),
            format!("{what}: invalid UTF-8"),
        ),
        ::csv::ErrorKind::Io(io) => Error::parse(loc, format!("{what}: {io}")),
        _ => Error::parse(loc, format!("{what}: {e}")),
    }
}

/// Write `ds` as CSV: `id`, the features (named `f0..` when unnamed), then `label`.
pub fn write_csv(ds: &Dataset, path: &Path) -> Result<()> {
    ds.validate()?;
    let d = ds.n_features();
    let names: Vec<String> = if ds.feature_names.len() == d {
        ds.feature_names.clone()
    } else {
        (0..d).map(|j| format!("f{j}")).collect()
    };
    atomic::write_atomic(path, |w| {
        let mut wr = ::csv::Writer::from_writer(w);
        let mut header = vec!["id".to_owned()];
        header.extend(names.iter().cloned());
        if ds.labels.is_some() {
            header.push("label".into());
        }
        wr.write_record(&header)?;
        let mut rec: Vec<String> = Vec::with_capacity(d + 2);
        for i in 0..ds.len() {
            rec.clear();
            rec.push(ds.ids[i].to_string());
            if let Some(f) = &ds.features {
                rec.extend(f.row(i).iter().map(|v| v.to_string()));
            }
            if let Some(l) = &ds.labels {
                rec.push(ds.label_name(l[i]));
            }
            wr.write_record(&rec)?;
        }
        wr.flush()?;
        Ok(())
    })
}

/// A reader that fails once more than `max` bytes pass without a newline, so
/// one enormous record cannot make the CSV parser buffer without bound.
pub(crate) struct LimitedReader<R> {
    inner: R,
    max: usize,
    since_newline: usize,
}

impl<R> LimitedReader<R> {
    pub(crate) fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            max,
            since_newline: 0,
        }
    }
}

impl<R: std::io::Read> std::io::Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            if b == b'\n' {
                self.since_newline = 0;
            } else {
                self.since_newline += 1;
                if self.since_newline > self.max {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("record longer than {} bytes", self.max),
                    ));
                }
            }
        }
        Ok(n)
    }
}

#[doc(hidden)]
/// Parse CSV from bytes (for fuzzing and tests); the path is only used in messages.
pub fn read_csv_bytes(bytes: &[u8], opts: &ReadOptions) -> Result<(Dataset, ReadStats)> {
    let r = LimitedReader::new(bytes, opts.max_record_bytes);
    read_csv_from(r, Path::new("<bytes>"), opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ReadOptions {
        ReadOptions::default()
    }

    #[test]
    fn reads_features_labels_and_ids() {
        let (ds, st) = read_csv_bytes(
            b"id,a,b,label\nx1,1,2,cat\nx2,3,4.5,dog\n",
            &ReadOptions {
                id_column: Some("id".into()),
                ..opts()
            },
        )
        .unwrap();
        assert_eq!(st.records, 2);
        assert_eq!(ds.ids, vec![SampleId::from("x1"), SampleId::from("x2")]);
        assert_eq!(ds.feature_names, vec!["a", "b"]);
        assert_eq!(ds.labels, Some(vec![0, 1]));
        assert_eq!(ds.label_names, Some(vec!["cat".into(), "dog".into()]));
        assert_eq!(ds.features.unwrap()[[1, 1]], 4.5);
    }

    #[test]
    fn bad_cell_names_line_and_column() {
        let err = read_csv_bytes(b"a,b,label\n1,2,0\n3,oops,1\n", &opts())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 3") && err.contains("`b`") && err.contains("oops"),
            "{err}"
        );
        let err = read_csv_bytes(b"a,label\n1,0\nnan,1\n", &opts())
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3") && err.contains("finite"), "{err}");
        let err = read_csv_bytes(b"a,label\n1,0\n2\n", &opts())
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3") && err.contains("1 fields"), "{err}");
    }

    #[test]
    fn skip_bad_counts_every_skipped_record() {
        let (ds, st) = read_csv_bytes(
            b"a,label\n1,0\nx,1\n2,1\n,\n",
            &ReadOptions {
                skip_bad: true,
                ..opts()
            },
        )
        .unwrap();
        assert_eq!(ds.len(), 2);
        assert_eq!(st.skipped, 2);
        assert_eq!(ds.ids, vec![SampleId::Num(0), SampleId::Num(2)]);
    }

    #[test]
    fn duplicate_ids_and_over_long_records_are_errors() {
        let o = ReadOptions {
            id_column: Some("id".into()),
            ..opts()
        };
        let err = read_csv_bytes(b"id,a\n1,1\n1,2\n", &o)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("duplicate id 1") && err.contains("line 3"),
            "{err}"
        );
        let long = format!("a,label\n{},0\n", "1".repeat(100));
        let err = read_csv_bytes(
            long.as_bytes(),
            &ReadOptions {
                max_record_bytes: 50,
                ..opts()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("longer than 50"), "{err}");
    }
}
